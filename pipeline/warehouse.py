"""The one module that talks to the warehouse.

A :class:`Warehouse` is opened from a URL (``duckdb:///path/file.duckdb``,
``duckdb:///:memory:`` or ``postgresql://user:pw@host:5432/db``). SQL is
written once in DuckDB's dialect and transpiled with sqlglot for other
engines; values are always bound as parameters (``$name``), identifiers are
always quoted with :meth:`Warehouse.quote`. Bulk writes go through Arrow
(DuckDB) or ``COPY`` (PostgreSQL), never row-by-row inserts.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlglot

log = logging.getLogger(__name__)

WriteMode = Literal["replace", "append"]

_PG_TYPES = {
    "b": "BOOLEAN",
    "i": "BIGINT",
    "u": "BIGINT",
    "f": "DOUBLE PRECISION",
    "M": "TIMESTAMP",
}


class WarehouseError(RuntimeError):
    """A warehouse could not be opened or a statement failed. ``transient`` is
    True for errors worth retrying (lost connection, locked file)."""

    @property
    def transient(self) -> bool:
        cause = self.__cause__
        return type(cause).__name__ in _TRANSIENT or isinstance(cause, (ConnectionError, TimeoutError))


_TRANSIENT = {"OperationalError", "InterfaceError", "IOException", "ConnectionException", "IOError"}


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to log)."""
    parts = urlsplit(url)
    redacted = url
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        redacted = urlunsplit(parts._replace(netloc=netloc))
    if parts.query:  # libpq also takes the password as a query parameter
        redacted = re.sub(r"([?&][^=&#]*password=)[^&#]*", r"\1***", redacted, flags=re.IGNORECASE)
    return redacted


@lru_cache(maxsize=512)
def transpile(sql: str, dialect: str) -> str:
    """Translate DuckDB-dialect SQL to ``dialect`` (cached)."""
    if dialect == "duckdb":
        return sql
    return ";\n".join(sqlglot.transpile(sql, read="duckdb", write=dialect))


def _to_python(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


class Warehouse:
    """A connection to one warehouse database (DuckDB or PostgreSQL)."""

    def __init__(self, url: str):
        self.url = url
        scheme = urlsplit(url).scheme.split("+")[0]
        if scheme == "duckdb":
            self.dialect = "duckdb"
            self._conn = self._open_duckdb(url)
        elif scheme in ("postgresql", "postgres"):
            self.dialect = "postgres"
            self._conn = self._open_postgres(url)
        else:
            raise WarehouseError(
                f"Unsupported warehouse URL scheme {scheme!r} in {redact_url(url)}: "
                "use duckdb:///path/to/file.duckdb or postgresql://user@host/db"
            )

    # -- connection -----------------------------------------------------
    @staticmethod
    def _open_duckdb(url: str):
        import duckdb

        target, _, query = url[len("duckdb://"):].partition("?")
        # DuckDB settings from the query string, e.g. ?memory_limit=4GB&threads=2
        config = dict(parse_qsl(query))
        if target.startswith("/:memory:") or target in ("", ":memory:", "/"):
            return duckdb.connect(":memory:", config=config)
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return duckdb.connect(str(path), config=config)
        except duckdb.Error as exc:
            raise WarehouseError(f"Cannot open DuckDB file {path}: {exc}") from exc

    @staticmethod
    def _open_postgres(url: str):
        import psycopg

        dsn = re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)
        try:
            return psycopg.connect(dsn, autocommit=True)
        except psycopg.Error as exc:
            raise WarehouseError(f"Cannot connect to {redact_url(url)}: {exc}".strip()) from exc

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Warehouse({redact_url(self.url)!r})"

    # -- SQL ------------------------------------------------------------
    def quote(self, identifier: str) -> str:
        """Quote an identifier (table or column name) for this engine."""
        return '"' + identifier.replace('"', '""') + '"'

    def _prepare(self, sql: str, params: Mapping[str, Any] | None) -> tuple[str, Any]:
        try:
            text = transpile(sql, self.dialect)
        except sqlglot.errors.SqlglotError as exc:
            raise WarehouseError(f"Cannot translate the SQL for {self.dialect}: {exc}") from exc
        bound = {k: _to_python(v) for k, v in (params or {}).items()}
        if self.dialect == "duckdb":
            # DuckDB refuses unused named parameters; keep the ones the SQL uses
            # ("$ab" is not a use of "a").
            bound = {k: v for k, v in bound.items() if re.search(rf"\${re.escape(k)}(?!\w)", text)}
        elif bound:
            # psycopg reads every '%' as a placeholder: escape the literal ones.
            text = re.sub(r"%(?!\(\w+\)s)", "%%", text)
        return text, bound

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement written in DuckDB's dialect; values bound from ``params``."""
        text, bound = self._prepare(sql, params)
        try:
            if self.dialect == "duckdb":
                # drain the result: DuckDB 2 refuses further work (e.g. registering a
                # frame to write) while a statement's rows are still pending
                self._conn.execute(text, bound or None).fetchall()
            else:
                with self._conn.cursor() as cur:
                    cur.execute(text, bound or None)
        except Exception as exc:  # driver errors differ per engine
            raise WarehouseError(f"{type(exc).__name__}: {exc}".strip()) from exc

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run a query and return its (small, aggregated) result as a DataFrame."""
        text, bound = self._prepare(sql, params)
        try:
            if self.dialect == "duckdb":
                return self._conn.execute(text, bound or None).fetch_df()
            with self._conn.cursor() as cur:
                cur.execute(text, bound or None)
                names = [d.name for d in cur.description]
                frame = pd.DataFrame(cur.fetchall(), columns=names)
            return _normalise_pg_frame(frame)
        except WarehouseError:
            raise
        except Exception as exc:
            raise WarehouseError(f"{type(exc).__name__}: {exc}".strip()) from exc

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        frame = self.query(sql, params)
        return None if frame.empty else frame.iat[0, 0]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All statements inside run in one transaction: all or nothing."""
        if self.dialect == "duckdb":
            self._conn.execute("BEGIN TRANSACTION")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        else:
            with self._conn.transaction():
                yield

    # -- catalog --------------------------------------------------------
    def table_exists(self, name: str) -> bool:
        return bool(
            self.scalar(
                "SELECT COUNT(*) FROM information_schema.tables "
                "WHERE table_name = $name AND table_schema = current_schema()",
                {"name": name},
            )
        ) or self._temp_exists(name)

    def _temp_exists(self, name: str) -> bool:
        if self.dialect == "duckdb":
            sql = "SELECT COUNT(*) FROM duckdb_tables() WHERE table_name = $name AND temporary"
            views = "SELECT COUNT(*) FROM duckdb_views() WHERE view_name = $name AND temporary"
            return bool(self.scalar(sql, {"name": name})) or bool(self.scalar(views, {"name": name}))
        return bool(
            self.scalar(
                "SELECT COUNT(*) FROM information_schema.tables "
                "WHERE table_name = $name AND table_schema LIKE 'pg_temp%'",
                {"name": name},
            )
        )

    def column_types(self, name: str) -> dict[str, str]:
        """Column name -> the engine's data type name (lower case), in table order."""
        frame = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = $name AND (table_schema = current_schema() "
            "OR table_schema LIKE 'pg_temp%' OR table_schema = 'temp' OR table_catalog = 'temp') "
            "ORDER BY ordinal_position",
            {"name": name},
        )
        return {str(c): str(t).lower() for c, t in zip(frame["column_name"], frame["data_type"])}

    def row_count(self, name: str) -> int:
        return int(self.scalar(f"SELECT COUNT(*) FROM {self.quote(name)}"))

    def read_table(self, name: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        cols = ", ".join(self.quote(c) for c in columns) if columns else "*"
        return self.query(f"SELECT {cols} FROM {self.quote(name)}")

    def drop(self, name: str, kind: Literal["TABLE", "VIEW"] = "TABLE") -> None:
        self.execute(f"DROP {kind} IF EXISTS {self.quote(name)}")

    def publish(self, renames: Mapping[str, str]) -> None:
        """Atomically replace tables: each ``staging -> target`` pair drops the
        target and renames the staging table to it, all in one transaction."""
        with self.transaction():
            for staging, target in renames.items():
                self.execute(f"DROP TABLE IF EXISTS {self.quote(target)}")
                self.execute(f"ALTER TABLE {self.quote(staging)} RENAME TO {self.quote(target)}")

    def delete_where(self, name: str, where: Mapping[str, Any]) -> None:
        """Delete the rows whose columns equal the given (bound) values; a
        missing table has nothing to delete."""
        if not self.table_exists(name):
            return
        cond = " AND ".join(f"{self.quote(col)} = ${col}" for col in where)
        self.execute(f"DELETE FROM {self.quote(name)} WHERE {cond}", where)

    # -- bulk writes ----------------------------------------------------
    def write_table(
        self,
        name: str,
        frame: pd.DataFrame,
        mode: WriteMode = "replace",
        temporary: bool = False,
    ) -> None:
        """Bulk-write a DataFrame: ``replace`` swaps the table atomically,
        ``append`` adds rows (creating the table if needed)."""
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.dialect == "duckdb":
            self._write_duckdb(name, table, mode, temporary)
        else:
            self._write_postgres(name, table, mode, temporary)

    def _write_duckdb(self, name: str, table: pa.Table, mode: WriteMode, temporary: bool) -> None:
        if any(pa.types.is_null(field.type) for field in table.schema):
            # An all-NULL object column has no Arrow type; DuckDB would create a column of
            # type NULL that no later append can fill. Make it text, as on PostgreSQL.
            table = table.cast(pa.schema(
                [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
            ))
        qname = self.quote(name)
        temp = "TEMP " if temporary else ""
        view = "_churn_arrow_in"
        try:
            self._conn.register(view, table)  # inside: an Arrow type DuckDB cannot read fails here
            if mode == "replace" or not self.table_exists(name):
                self._conn.execute(f"CREATE OR REPLACE {temp}TABLE {qname} AS SELECT * FROM {view}")
            else:
                self._conn.execute(f"INSERT INTO {qname} BY NAME SELECT * FROM {view}")
        except Exception as exc:
            raise WarehouseError(f"Writing {name}: {exc}") from exc
        finally:
            self._conn.unregister(view)

    def _pg_ddl(self, name: str, table: pa.Table, temporary: bool) -> str:
        cols = []
        for field in table.schema:
            kind = pa.types
            if kind.is_boolean(field.type):
                sql_type = "BOOLEAN"
            elif kind.is_integer(field.type):
                sql_type = "BIGINT"
            elif kind.is_floating(field.type) or kind.is_decimal(field.type):
                sql_type = "DOUBLE PRECISION"
            elif kind.is_timestamp(field.type):
                sql_type = "TIMESTAMP"
            elif kind.is_date(field.type):
                sql_type = "DATE"
            else:
                sql_type = "TEXT"
            cols.append(f"{self.quote(field.name)} {sql_type}")
        temp = "TEMP " if temporary else ""
        return f"CREATE {temp}TABLE {self.quote(name)} ({', '.join(cols)})"

    def _write_postgres(self, name: str, table: pa.Table, mode: WriteMode, temporary: bool) -> None:
        qname = self.quote(name)
        columns = ", ".join(self.quote(c) for c in table.column_names)
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                exists = self.table_exists(name)
                if mode == "replace" and exists:
                    cur.execute(f"DROP TABLE {qname}")
                if mode == "replace" or not exists:
                    cur.execute(self._pg_ddl(name, table, temporary))
                with cur.copy(f"COPY {qname} ({columns}) FROM STDIN WITH (FORMAT csv, HEADER false)") as copy:
                    for chunk in _csv_chunks(table):
                        copy.write(chunk)
        except Exception as exc:
            raise WarehouseError(f"Writing {name}: {exc}") from exc


def _csv_chunks(table: pa.Table, rows: int = 200_000) -> Iterator[bytes]:
    """Arrow -> CSV bytes for COPY, in bounded chunks."""
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    for start in range(0, table.num_rows, rows):
        buf = io.BytesIO()
        pacsv.write_csv(table.slice(start, rows), buf, options)
        yield buf.getvalue()


def _normalise_pg_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Make PostgreSQL results look like DuckDB's: floats not Decimals,
    datetime64 not datetime.date objects."""
    out = frame.copy()
    for col in out.columns:
        series = out[col]
        if series.dtype != object:
            continue
        sample = series.dropna()
        if sample.empty:
            continue
        first = sample.iloc[0]
        if isinstance(first, decimal.Decimal):
            out[col] = series.astype("float64")
        elif isinstance(first, (dt.date, dt.datetime)):
            out[col] = pd.to_datetime(series)
        elif isinstance(first, bool):
            out[col] = series.astype("boolean")
    return out
