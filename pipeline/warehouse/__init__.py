"""The one package that talks to the warehouse.

A :class:`Warehouse` is opened from a URL (``duckdb:///path/file.duckdb``,
``duckdb:///:memory:`` or ``postgresql://user:pw@host:5432/db``). SQL is
written once in DuckDB's dialect and transpiled with sqlglot for other
engines; values are always bound as parameters (``$name``), identifiers are
always quoted with :meth:`Warehouse.quote`. Bulk writes go through Arrow
(DuckDB) or ``COPY`` (PostgreSQL), never row-by-row inserts.

Modules: ``connection`` (the :class:`Warehouse`), ``errors`` (what failed and
whether to retry), ``sql`` (transpiling, binding, result shapes) and
``writes`` (bulk writes and the DuckDB read copy).
"""

from models.redaction import redact_url
from pipeline.warehouse.connection import DDL_LOCK_TIMEOUT_MS, LOCK_WAIT_SECONDS, Warehouse, read_copy_path
from pipeline.warehouse.errors import WarehouseError, is_transient
from pipeline.warehouse.sql import transpile
from pipeline.warehouse.writes import WriteMode

__all__ = [
    "DDL_LOCK_TIMEOUT_MS",
    "LOCK_WAIT_SECONDS",
    "Warehouse",
    "WarehouseError",
    "WriteMode",
    "is_transient",
    "read_copy_path",
    "redact_url",
    "transpile",
]
