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
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from models.redaction import password_of, redact_text
from models.redaction import redact_url as _redact_url

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
    True only for errors worth retrying (a lost connection, a timeout, a lock
    conflict), never for bad credentials, a missing database or object, or bad
    SQL. ``sqlstate`` is PostgreSQL's error code when there is one."""

    def __init__(self, message: str, transient: bool | None = None, sqlstate: str | None = None):
        super().__init__(message)
        self._transient = transient
        self.sqlstate = sqlstate

    @property
    def transient(self) -> bool:
        if self._transient is not None:
            return self._transient
        return is_transient(self.__cause__)

    def __reduce__(self):  # picklable across processes (Prefect results, Dask)
        return (type(self), (str(self), self._transient, self.sqlstate))


#: PostgreSQL error classes / codes worth retrying: connection exceptions,
#: insufficient resources, operator intervention (shutdown, cancel, timeout),
#: serialization failures, deadlocks and lock timeouts.
_PG_TRANSIENT_CLASSES = ("08", "53", "57")
_PG_TRANSIENT_CODES = ("40001", "40P01", "55P03", "55006")
#: a failed connection attempt carries no SQLSTATE: these messages are final
_PG_FINAL_CONNECT = re.compile(
    r"authentication failed|no password supplied|does not exist|no pg_hba\.conf entry|"
    r"permission denied|not permitted to log in|invalid (?:dsn|connection option|port)|"
    r"could not translate host name|SSL .*(?:required|unsupported)|certificate",
    re.IGNORECASE,
)


def is_transient(exc: BaseException | None) -> bool:
    """Whether a driver error is worth retrying."""
    if exc is None:
        return False
    if isinstance(exc, WarehouseError):
        return exc.transient
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    kind = type(exc).__name__
    module = type(exc).__module__ or ""
    if module.startswith("psycopg"):
        code = getattr(exc, "sqlstate", None)
        if code:
            return code[:2] in _PG_TRANSIENT_CLASSES or code in _PG_TRANSIENT_CODES
        # no SQLSTATE: a connection that failed or was lost
        return kind in ("OperationalError", "InterfaceError") and not _PG_FINAL_CONNECT.search(str(exc))
    if module.startswith("duckdb") or kind.endswith("Exception"):
        text = str(exc).lower()
        return kind == "ConnectionException" or (kind == "IOException" and "lock" in text)
    return False


def redact_url(url: str) -> str:
    """The URL or DSN with any password replaced by ``***`` (safe to log)."""
    return _redact_url(url)


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


#: how long a writer waits for a DuckDB file another process holds, by default
LOCK_WAIT_SECONDS = 60.0
#: PostgreSQL: how long one DDL statement may wait for a table lock before it
#: gives up (and is retried), so a run never queues every dashboard behind it
DDL_LOCK_TIMEOUT_MS = 2_000


class Warehouse:
    """A connection to one warehouse database (DuckDB or PostgreSQL).

    Sessions run in UTC (timestamps with a time zone are read as UTC wall
    time, whatever the host's zone). ``create=False`` refuses a DuckDB file
    that does not exist (a typo in a path must not start an empty
    warehouse); ``lock_wait_seconds`` is how long to wait for a DuckDB file
    that another process holds before failing with a clear message.
    """

    def __init__(self, url: str, create: bool = False, lock_wait_seconds: float = LOCK_WAIT_SECONDS):
        self.url = url
        text = url.strip()
        scheme = urlsplit(text).scheme.split("+")[0] if "://" in text else ""
        if scheme == "duckdb":
            self.dialect = "duckdb"
            self._conn = self._open_duckdb(text, create, lock_wait_seconds)
        elif scheme in ("postgresql", "postgres") or (not scheme and "=" in text):
            self.dialect = "postgres"  # a URL, or a libpq keyword DSN "host=... dbname=..."
            self._conn = self._open_postgres(text)
        else:
            raise WarehouseError(
                f"Unsupported warehouse URL scheme {scheme or text[:0]!r} in {redact_url(url)}: "
                "use duckdb:///path/to/file.duckdb, postgresql://user@host/db or a libpq DSN "
                "'host=... dbname=...'",
                transient=False,
            )

    # -- connection -----------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The DuckDB file (None in memory or on a server)."""
        if self.dialect != "duckdb":
            return None
        target = self.url.strip()[len("duckdb://"):].partition("?")[0]
        if target.startswith("/:memory:") or target in ("", ":memory:", "/"):
            return None
        return Path(target)

    def _open_duckdb(self, url: str, create: bool, lock_wait_seconds: float):
        import duckdb

        target, _, query = url[len("duckdb://"):].partition("?")
        # DuckDB settings from the query string, e.g. ?memory_limit=4GB&threads=2
        config = dict(parse_qsl(query))
        if target.startswith("/:memory:") or target in ("", ":memory:", "/"):
            return _utc(duckdb.connect(":memory:", config=config))
        path = Path(target)
        if not path.exists() and not create:
            raise WarehouseError(
                f"The DuckDB warehouse file {path} does not exist. Check the path "
                "(--warehouse / CHURN_WAREHOUSE_URL), or create it with `churn generate`.",
                transient=False,
            )
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + max(lock_wait_seconds, 0.0)
        waited = False
        while True:
            try:
                return _utc(duckdb.connect(str(path), config=config))
            except duckdb.Error as exc:
                locked = "lock" in str(exc).lower()
                if not locked:
                    raise WarehouseError(f"Cannot open DuckDB file {path}: {exc}", transient=False) from exc
                if time.monotonic() >= deadline:
                    holder = re.search(r"PID \d+", str(exc))
                    raise WarehouseError(
                        f"The DuckDB file {path} is locked by another process"
                        f"{f' ({holder.group(0)})' if holder else ''}; waited {lock_wait_seconds:.0f} s. "
                        "DuckDB allows one writer per file: point BI tools at the published copy "
                        f"{read_copy_path(path)} instead of the warehouse file, or raise "
                        "CHURN_LOCK_WAIT_SECONDS to wait longer.",
                        transient=False,
                    ) from exc
                if not waited:
                    log.warning("DuckDB file %s is locked by another process; waiting up to %.0f s",
                                path, lock_wait_seconds)
                    waited = True
                time.sleep(min(0.25, max(deadline - time.monotonic(), 0.0)))

    @staticmethod
    def _open_postgres(url: str):
        import psycopg

        dsn = re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in dsn:
            kwargs["connect_timeout"] = 15  # libpq waits forever by default
        try:
            conn = psycopg.connect(dsn, **kwargs)
        except Exception as exc:  # psycopg.Error, or a DSN psycopg cannot parse
            message = redact_text(f"Cannot connect to {redact_url(url)}: {exc}".strip(), password_of(url))
            raise WarehouseError(message, transient=is_transient(exc)) from exc
        try:
            conn.execute("SET TIME ZONE 'UTC'")
        except psycopg.Error as exc:
            conn.close()
            raise WarehouseError(f"Cannot set the session time zone: {exc}", transient=is_transient(exc)) from exc
        return conn

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
            raise self._error(exc) from exc

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
            raise self._error(exc) from exc

    def _error(self, exc: BaseException) -> WarehouseError:
        message = redact_text(f"{type(exc).__name__}: {exc}".strip(), password_of(self.url))
        return WarehouseError(message, transient=is_transient(exc), sqlstate=getattr(exc, "sqlstate", None))

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        frame = self.query(sql, params)
        return None if frame.empty else frame.iat[0, 0]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All statements inside run in one transaction: all or nothing. Nested
        blocks join the outer transaction (a savepoint on PostgreSQL)."""
        depth = getattr(self, "_depth", 0)
        self._depth = depth + 1
        try:
            if self.dialect != "duckdb":
                with self._conn.transaction():
                    yield
            elif depth:
                yield
            else:
                self._conn.execute("BEGIN TRANSACTION")
                try:
                    yield
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
        finally:
            self._depth = depth

    @property
    def in_transaction(self) -> bool:
        return getattr(self, "_depth", 0) > 0

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

    # -- concurrency and DDL ---------------------------------------------
    def lock(self, key: str) -> None:
        """Inside a transaction: wait for an exclusive lock on ``key``, held
        until the transaction ends. Writers of the same key serialise
        (PostgreSQL advisory lock); DuckDB allows one writing process per file,
        so the file lock already serialises them."""
        if self.dialect == "postgres":
            self.execute("SELECT pg_advisory_xact_lock(hashtextextended($key, 0))", {"key": key})

    def execute_ddl(self, sql: str, attempts: int = 5) -> None:
        """Run a DDL statement without queueing readers behind it: on PostgreSQL
        it waits at most ``DDL_LOCK_TIMEOUT_MS`` for its lock, then backs off and
        retries (a table lock request blocks every later reader while it waits)."""
        if self.dialect != "postgres":
            self.execute(sql)
            return
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction():
                    previous = self.scalar("SELECT current_setting('lock_timeout')")
                    self.execute(f"SET LOCAL lock_timeout = {int(DDL_LOCK_TIMEOUT_MS)}")
                    self.execute(sql)
                    # SET LOCAL outlives a savepoint: give the rest of an outer transaction its own setting back
                    self.execute("SELECT set_config('lock_timeout', $previous, true)", {"previous": previous})
                return
            except WarehouseError as exc:
                if exc.sqlstate != "55P03" or attempt == attempts:
                    raise
                log.info("DDL waited %d ms for a lock (attempt %d of %d); retrying", DDL_LOCK_TIMEOUT_MS,
                         attempt, attempts)
                time.sleep(0.5 * attempt)

    def view_comment(self, name: str) -> str | None:
        """The comment on a view in the current schema (None when the view or
        its comment is missing): a cheap way to know a view's version."""
        if self.dialect == "duckdb":
            sql = ("SELECT COALESCE(comment, '') FROM duckdb_views() WHERE view_name = $name "
                   "AND schema_name = current_schema() AND database_name = current_database() "
                   "AND NOT temporary")
        else:
            sql = ("SELECT COALESCE(obj_description(c.oid, 'pg_class'), '') FROM pg_class AS c "
                   "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                   "WHERE c.relname = $name AND n.nspname = current_schema() AND c.relkind = 'v'")
        value = self.scalar(sql, {"name": name})
        return None if value is None else str(value)

    def create_view(self, name: str, select: str, comment: str) -> None:
        """Create or replace a view and tag it with ``comment`` (its version)."""
        with self.transaction():
            self.execute_ddl(f"CREATE OR REPLACE VIEW {self.quote(name)} AS {select}",
                             attempts=1 if self.in_transaction else 5)
            escaped = comment.replace("'", "''")
            self.execute(f"COMMENT ON VIEW {self.quote(name)} IS '{escaped}'")

    def add_columns(self, name: str, columns: Mapping[str, str]) -> None:
        """Add the missing ``column -> SQL type`` columns to an existing table."""
        for column, sql_type in columns.items():
            self.execute_ddl(f"ALTER TABLE {self.quote(name)} ADD COLUMN {self.quote(column)} {sql_type}")

    def publish_copy(self, path: Path, tables: Sequence[str], views: Mapping[str, str]) -> None:
        """DuckDB only: write ``tables`` and ``views`` (name -> SELECT over those
        tables) to a new database file and atomically rename it to ``path``.

        Readers of ``path`` never conflict with the writer of the warehouse: one
        that has it open keeps reading the previous file, one that opens it next
        gets the new one, and no one ever sees a half-written copy."""
        if self.dialect != "duckdb":
            raise WarehouseError("Published copies are a DuckDB feature", transient=False)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        alias = "_churn_published"
        current = self.query("SELECT current_database() AS d, current_schema() AS s").iloc[0]
        home = f"{self.quote(str(current['d']))}.{self.quote(str(current['s']))}"
        literal = str(tmp).replace("'", "''")
        attached = False
        try:
            self._conn.execute(f"ATTACH '{literal}' AS {alias}")
            attached = True
            for table in tables:
                self._conn.execute(
                    f"CREATE TABLE {alias}.{self.quote(table)} AS SELECT * FROM {home}.{self.quote(table)}"
                )
            self._conn.execute(f"USE {alias}")
            try:
                for view, select in views.items():
                    self._conn.execute(f"CREATE VIEW {self.quote(view)} AS {select}")
            finally:
                self._conn.execute(f"USE {home}")
            self._conn.execute(f"CHECKPOINT {alias}")
            self._conn.execute(f"DETACH {alias}")
            attached = False
            os.replace(tmp, path)
        except Exception as exc:
            raise WarehouseError(f"Publishing the read copy {path}: {exc}", transient=False) from exc
        finally:
            if attached:
                try:
                    self._conn.execute(f"DETACH {alias}")
                except Exception:  # already failing: keep the first error
                    pass
            for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
                leftover.unlink(missing_ok=True)

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


def _utc(conn):
    """Run the DuckDB session in UTC (its default is the host's time zone)."""
    conn.execute("SET TimeZone = 'UTC'")
    return conn


def read_copy_path(warehouse_file: Path) -> Path:
    """Where the read copy of a DuckDB warehouse's outputs is published:
    ``<name>.outputs.duckdb`` next to the warehouse file."""
    warehouse_file = Path(warehouse_file)
    stem = warehouse_file.name.removesuffix(".duckdb").removesuffix(".db")
    return warehouse_file.with_name(f"{stem}.outputs.duckdb")


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
