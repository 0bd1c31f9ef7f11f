"""The connection to one warehouse database (DuckDB or PostgreSQL): opening
it, running statements in transactions, the catalog, locks and DDL."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import pandas as pd
import pyarrow as pa
import sqlglot

from models.redaction import password_of, redact_text, redact_url
from pipeline.warehouse import writes
from pipeline.warehouse.errors import WarehouseError, is_transient
from pipeline.warehouse.spark_session import is_spark_url
from pipeline.warehouse.sql import bind, normalise_pg_frame, quote, transpile
from pipeline.warehouse.writes import WriteMode

log = logging.getLogger("pipeline.warehouse")


#: how long a writer waits for a DuckDB file another process holds, by default
LOCK_WAIT_SECONDS = 60.0
#: PostgreSQL: how long one DDL statement may wait for a table lock before it
#: gives up (and is retried), so a run never queues every dashboard behind it
DDL_LOCK_TIMEOUT_MS = 2_000


class Warehouse:
    """A connection to one warehouse database (DuckDB, PostgreSQL or Spark).

    Sessions run in UTC (timestamps with a time zone are read as UTC wall
    time, whatever the host's zone). ``create=False`` refuses a DuckDB file
    that does not exist (a typo in a path must not start an empty
    warehouse); ``lock_wait_seconds`` is how long to wait for a DuckDB file
    that another process holds before failing with a clear message.
    """

    #: whether several statements can be one all-or-nothing transaction
    #: (Spark: no; its outputs are replaced partition by partition instead)
    transactional = True

    @staticmethod
    def is_spark(url: str) -> bool:
        """Whether ``url`` opens a Spark warehouse (``spark://`` or ``sc://``)."""
        return isinstance(url, str) and is_spark_url(url)

    def __new__(cls, url: str, *args: Any, **kwargs: Any) -> Warehouse:
        if cls is Warehouse and Warehouse.is_spark(url):
            from pipeline.warehouse.spark import SparkWarehouse  # pyspark only when asked for

            return super().__new__(SparkWarehouse)
        return super().__new__(cls)

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
                "use duckdb:///path/to/file.duckdb, postgresql://user@host/db, a libpq DSN "
                "'host=... dbname=...' or spark://local[2]?warehouse_dir=/path",
                transient=False,
            )

    # -- connection -----------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The DuckDB file (None in memory or on a server)."""
        if self.dialect != "duckdb":
            return None
        target = self.url.strip()[len("duckdb://") :].partition("?")[0]
        if target.startswith("/:memory:") or target in ("", ":memory:", "/"):
            return None
        return Path(target)

    def _open_duckdb(self, url: str, create: bool, lock_wait_seconds: float):
        import duckdb

        target, _, query = url[len("duckdb://") :].partition("?")
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
                    log.warning(
                        "DuckDB file %s is locked by another process; waiting up to %.0f s", path, lock_wait_seconds
                    )
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
    @staticmethod
    def quote(identifier: str) -> str:
        """Quote an identifier (table or column name) for this engine."""
        return quote(identifier)

    def _prepare(self, sql: str, params: Mapping[str, Any] | None) -> tuple[str, Any]:
        try:
            text = transpile(sql, self.dialect)
        except sqlglot.errors.SqlglotError as exc:
            raise WarehouseError(f"Cannot translate the SQL for {self.dialect}: {exc}") from exc
        return bind(text, params, self.dialect)

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
            return normalise_pg_frame(frame)
        except WarehouseError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """:meth:`query` as an Arrow table: DuckDB hands it over without making
        Python strings (for large results, e.g. a million topic rows)."""
        if self.dialect != "duckdb":
            return pa.Table.from_pandas(self.query(sql, params), preserve_index=False)
        text, bound = self._prepare(sql, params)
        try:
            return self._conn.sql(text, params=bound or None).to_arrow_table()
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
        """Atomically replace tables: each ``incoming -> target`` pair drops the
        target and renames the incoming (swap) table to it, all in one transaction."""
        with self.transaction():
            for incoming, target in renames.items():
                self.execute(f"DROP TABLE IF EXISTS {self.quote(target)}")
                self.execute(f"ALTER TABLE {self.quote(incoming)} RENAME TO {self.quote(target)}")

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
                log.info(
                    "DDL waited %d ms for a lock (attempt %d of %d); retrying", DDL_LOCK_TIMEOUT_MS, attempt, attempts
                )
                time.sleep(0.5 * attempt)

    def view_comment(self, name: str) -> str | None:
        """The comment on a view in the current schema (None when the view or
        its comment is missing): a cheap way to know a view's version."""
        if self.dialect == "duckdb":
            sql = (
                "SELECT COALESCE(comment, '') FROM duckdb_views() WHERE view_name = $name "
                "AND schema_name = current_schema() AND database_name = current_database() "
                "AND NOT temporary"
            )
        else:
            sql = (
                "SELECT COALESCE(obj_description(c.oid, 'pg_class'), '') FROM pg_class AS c "
                "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                "WHERE c.relname = $name AND n.nspname = current_schema() AND c.relkind = 'v'"
            )
        value = self.scalar(sql, {"name": name})
        return None if value is None else str(value)

    def create_view(self, name: str, select: str, comment: str) -> None:
        """Create or replace a view and tag it with ``comment`` (its version)."""
        with self.transaction():
            self.execute_ddl(
                f"CREATE OR REPLACE VIEW {self.quote(name)} AS {select}", attempts=1 if self.in_transaction else 5
            )
            escaped = comment.replace("'", "''")
            self.execute(f"COMMENT ON VIEW {self.quote(name)} IS '{escaped}'")

    def create_table(self, name: str, schema: Mapping[str, str], partition_by: Sequence[str] = ()) -> None:
        """Create the table (``column -> SQL type``) when missing. ``partition_by``
        only matters on engines that store tables by partition (Spark)."""
        columns = ", ".join(f"{self.quote(c)} {t}" for c, t in schema.items())
        self.execute_ddl(f"CREATE TABLE IF NOT EXISTS {self.quote(name)} ({columns})")

    def replace_rows(self, name: str, schema: Mapping[str, str], select: str, params: Mapping[str, Any]) -> None:
        """Replace every row of table ``name`` with the rows of ``select``
        (columns named as in ``schema``); call it inside a transaction."""
        columns = ", ".join(self.quote(c) for c in schema)
        self.execute(f"DELETE FROM {self.quote(name)}")
        self.execute(f"INSERT INTO {self.quote(name)} ({columns}) {select}", params)

    def add_columns(self, name: str, columns: Mapping[str, str]) -> None:
        """Add the missing ``column -> SQL type`` columns to an existing table."""
        for column, sql_type in columns.items():
            self.execute_ddl(f"ALTER TABLE {self.quote(name)} ADD COLUMN {self.quote(column)} {sql_type}")

    def publish_copy(
        self,
        path: Path,
        tables: Sequence[str],
        views: Mapping[str, str],
        partitions: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """DuckDB only: write ``tables`` and ``views`` (name -> SELECT over those
        tables) to a new database file and atomically rename it to ``path``.

        Readers of ``path`` never conflict with the writer of the warehouse: one
        that has it open keeps reading the previous file, one that opens it next
        gets the new one, and no one ever sees a half-written copy. ``partitions``
        (table -> key columns): rewrite only the partitions that changed since
        the current copy (see :func:`writes.publish_copy`)."""
        if self.dialect != "duckdb":
            raise WarehouseError("Published copies are a DuckDB feature", transient=False)
        writes.publish_copy(self._conn, path, tables, views, partitions)

    # -- bulk writes ----------------------------------------------------
    def write_table(
        self,
        name: str,
        frame: pd.DataFrame,
        mode: WriteMode = "replace",
        temporary: bool = False,
    ) -> None:
        """Bulk-write a DataFrame: ``replace`` swaps the table atomically,
        ``append`` adds rows (creating the table if needed). On PostgreSQL a
        replace of ``writes.PARALLEL_COPY_MIN_ROWS`` rows or more, outside a
        transaction, is loaded by ``writes.COPY_STREAMS`` connections at once."""
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.dialect == "duckdb":
            writes.write_duckdb(self._conn, name, table, mode, temporary, self.table_exists)
        else:  # a large replace may load through more connections to the same server
            connect = lambda: self._open_postgres(self.url)  # noqa: E731
            writes.write_postgres(self._conn, name, table, mode, temporary, self.table_exists, connect)


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
