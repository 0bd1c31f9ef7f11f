"""Bulk writes: a DataFrame into a table through Arrow (DuckDB) or ``COPY``
(PostgreSQL), never row by row; and the DuckDB read copy of the outputs."""

from __future__ import annotations

import io
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.warehouse.errors import WarehouseError
from pipeline.warehouse.sql import quote

WriteMode = Literal["replace", "append"]

#: PostgreSQL: a replace of at least this many rows is loaded by several COPY
#: streams at once, each on its own connection (and so its own server process)
PARALLEL_COPY_MIN_ROWS = 200_000
#: how many COPY streams such a replace uses
COPY_STREAMS = 2
#: the name prefix of the table a parallel replace fills before the swap
LOAD_PREFIX = "_churn_load_"


def write_duckdb(
    conn: Any, name: str, table: pa.Table, mode: WriteMode, temporary: bool, exists: Callable[[str], bool]
) -> None:
    if any(pa.types.is_null(field.type) for field in table.schema):
        # An all-NULL object column has no Arrow type; DuckDB would create a column of
        # type NULL that no later append can fill. Make it text, as on PostgreSQL.
        table = table.cast(
            pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema])
        )
    qname = quote(name)
    temp = "TEMP " if temporary else ""
    view = "_churn_arrow_in"
    try:
        conn.register(view, table)  # inside: an Arrow type DuckDB cannot read fails here
        if mode == "replace" or not exists(name):
            conn.execute(f"CREATE OR REPLACE {temp}TABLE {qname} AS SELECT * FROM {view}")
        else:
            conn.execute(f"INSERT INTO {qname} BY NAME SELECT * FROM {view}")
    except Exception as exc:
        raise WarehouseError(f"Writing {name}: {exc}") from exc
    finally:
        conn.unregister(view)


def write_postgres(
    conn: Any,
    name: str,
    table: pa.Table,
    mode: WriteMode,
    temporary: bool,
    exists: Callable[[str], bool],
    connect: Callable[[], Any] | None = None,
) -> None:
    """COPY ``table`` into ``name``. A large replace outside a transaction, when
    ``connect`` opens more connections, is loaded by several streams at once
    (:func:`replace_postgres_parallel`); anything else by one."""
    import psycopg

    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    if connect and idle and mode == "replace" and not temporary and table.num_rows >= PARALLEL_COPY_MIN_ROWS:
        replace_postgres_parallel(conn, name, table, exists, connect, COPY_STREAMS)
        return
    qname = quote(name)
    columns = ", ".join(quote(c) for c in table.column_names)
    try:
        with conn.transaction(), conn.cursor() as cur:
            present = exists(name)
            if mode == "replace" and present:
                cur.execute(f"DROP TABLE {qname}")
            if mode == "replace" or not present:
                cur.execute(_pg_ddl(qname, table, temporary))
            _copy(cur, qname, columns, table)
    except Exception as exc:
        raise WarehouseError(f"Writing {name}: {exc}") from exc


def _copy(cur: Any, qname: str, columns: str, table: pa.Table) -> None:
    with cur.copy(f"COPY {qname} ({columns}) FROM STDIN WITH (FORMAT csv, HEADER false)") as copy:
        for chunk in _csv_chunks(table):
            copy.write(chunk)


def replace_postgres_parallel(
    conn: Any,
    name: str,
    table: pa.Table,
    exists: Callable[[str], bool],
    connect: Callable[[], Any],
    streams: int,
) -> None:
    """Replace table ``name`` with ``table``, loaded by ``streams`` COPY
    streams at once on connections from ``connect``.

    One COPY keeps one server process busy parsing; a large table loads
    faster from several. The rows go to a new table under a hidden name
    (``LOAD_PREFIX`` + random hex, in the session's schema) that readers of
    ``name`` never see; it replaces ``name`` in one transaction once every
    stream has committed, so readers see the old table or the whole new one.
    A failed stream drops the new table and leaves the old one. The session
    holds an advisory lock named after the new table while it loads, so a
    load abandoned by a killed process (its lock gone with its session) is
    dropped by the next parallel replace in the schema."""
    schema = conn.execute("SELECT current_schema()").fetchone()[0]
    _drop_abandoned_loads(conn, schema)
    load = f"{LOAD_PREFIX}{uuid.uuid4().hex[:16]}"
    qload = f"{quote(schema)}.{quote(load)}"
    columns = ", ".join(quote(c) for c in table.column_names)
    key = f"{schema}.{load}"
    conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [key])
    try:
        conn.execute(_pg_ddl(qload, table, False))
        step = -(-table.num_rows // max(streams, 1))
        errors: list[BaseException] = []

        def load_part(part: pa.Table) -> None:
            try:
                with connect() as other, other.transaction(), other.cursor() as cur:
                    _copy(cur, qload, columns, part)
            except BaseException as exc:  # reported by the caller's thread
                errors.append(exc)

        threads = [
            threading.Thread(target=load_part, args=(table.slice(start, step),), name=f"copy-{i}", daemon=True)
            for i, start in enumerate(range(0, table.num_rows, step))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        with conn.transaction():
            if exists(name):
                conn.execute(f"DROP TABLE {quote(name)}")
            conn.execute(f"ALTER TABLE {qload} RENAME TO {quote(name)}")
    except Exception as exc:
        raise WarehouseError(f"Writing {name}: {exc}") from exc
    finally:
        try:
            conn.execute(f"DROP TABLE IF EXISTS {qload}")  # after a failure; renamed away otherwise
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])
        except Exception:  # already failing (a lost connection, say): keep the first error
            pass


def _drop_abandoned_loads(conn: Any, schema: str) -> None:
    """Drop the hidden tables of parallel replaces whose session is gone (no
    one holds their advisory lock): what a killed process left behind."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r' AND starts_with(c.relname, %s)",
        [schema, LOAD_PREFIX],
    ).fetchall()
    for (load,) in rows:
        key = f"{schema}.{load}"
        if conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [key]).fetchone()[0]:
            try:
                conn.execute(f"DROP TABLE IF EXISTS {quote(schema)}.{quote(load)}")
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])


def _pg_ddl(qname: str, table: pa.Table, temporary: bool) -> str:
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
        cols.append(f"{quote(field.name)} {sql_type}")
    temp = "TEMP " if temporary else ""
    return f"CREATE {temp}TABLE {qname} ({', '.join(cols)})"


def _csv_chunks(table: pa.Table, rows: int = 200_000) -> Iterator[bytes]:
    """Arrow -> CSV bytes for COPY, in bounded chunks."""
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    for start in range(0, table.num_rows, rows):
        buf = io.BytesIO()
        pacsv.write_csv(table.slice(start, rows), buf, options)
        yield buf.getvalue()


def publish_copy(
    conn: Any,
    path: Path,
    tables: Sequence[str],
    views: Mapping[str, str],
    partitions: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """DuckDB: write ``tables`` and ``views`` (name -> SELECT over those tables)
    to a new database file and atomically rename it to ``path``.

    ``partitions``: table -> the columns its rows are replaced by (e.g. model
    and date). When the current copy at ``path`` has exactly these tables
    (same columns and types) and views, the new file starts as a copy of it
    and only the partitions whose rows differ (count and hash of the rows)
    are rewritten: a scoring run rewrites one date, not the whole history.
    A copy that cannot be updated (unreadable, say) is written afresh.
    Either way readers see the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    leftovers = (tmp, tmp.with_name(tmp.name + ".wal"))
    try:
        database, schema = conn.execute("SELECT current_database(), current_schema()").fetchone()
        home = (str(database), str(schema))
        written = False
        if partitions and _copy_file(path, tmp):
            try:
                written = _write(conn, tmp, home, tables, views, partitions)
            except Exception:  # an unreadable or odd copy: written afresh below
                written = False
            if not written:
                for leftover in leftovers:
                    leftover.unlink(missing_ok=True)
        if not written:
            _write(conn, tmp, home, tables, views, None)
        os.replace(tmp, path)
    except Exception as exc:
        raise WarehouseError(f"Publishing the read copy {path}: {exc}", transient=False) from exc
    finally:
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)


def _write(
    conn: Any,
    tmp: Path,
    home: tuple[str, str],
    tables: Sequence[str],
    views: Mapping[str, str],
    partitions: Mapping[str, Sequence[str]] | None,
) -> bool:
    """Fill the database file ``tmp``: afresh, or (``partitions``) by updating
    the copy it holds, which must have the same shape (False when it has not)."""
    alias = "_churn_published"
    literal = str(tmp).replace("'", "''")
    source = f"{quote(home[0])}.{quote(home[1])}"
    conn.execute(f"ATTACH '{literal}' AS {alias}")
    try:
        if partitions and not _same_shape(conn, home, alias, tables, views):
            return False  # another shape (a new column, say): to be written afresh
        for table in tables:
            keys = (partitions or {}).get(table)
            if keys:
                _update_partitions(conn, source, alias, table, keys)
            else:
                conn.execute(f"CREATE OR REPLACE TABLE {alias}.{quote(table)} AS SELECT * FROM {source}.{quote(table)}")
        conn.execute(f"USE {alias}")
        try:
            for view, select in views.items():
                conn.execute(f"CREATE OR REPLACE VIEW {quote(view)} AS {select}")
        finally:
            conn.execute(f"USE {source}")
        conn.execute(f"CHECKPOINT {alias}")
        return True
    finally:
        try:
            conn.execute(f"DETACH {alias}")
        except Exception:  # already failing: keep the first error
            pass


def _copy_file(path: Path, tmp: Path) -> bool:
    """Start ``tmp`` as a copy of the published file (a complete, checkpointed
    one: never a file with a write-ahead log); False when there is none."""
    if not path.is_file() or path.with_name(path.name + ".wal").exists():
        return False
    try:
        shutil.copyfile(path, tmp)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


def _same_shape(conn: Any, home: tuple[str, str], alias: str, tables: Sequence[str], views: Mapping[str, str]) -> bool:
    """The copy holds exactly ``tables`` (same columns, types and order) and ``views``."""

    def shape(database: str, schema: str, names: Sequence[str] | None) -> dict[str, list[tuple[str, str]]]:
        rows = conn.execute(
            "SELECT c.table_name, c.column_name, c.data_type FROM duckdb_columns() AS c "
            "JOIN duckdb_tables() AS t USING (database_name, schema_name, table_name) "
            "WHERE c.database_name = ? AND c.schema_name = ? ORDER BY c.table_name, c.column_index",
            [database, schema],
        ).fetchall()
        out: dict[str, list[tuple[str, str]]] = {}
        for table, column, kind in rows:
            if names is None or table in names:
                out.setdefault(table, []).append((column, kind))
        return out

    copied_views = conn.execute(
        "SELECT view_name FROM duckdb_views() WHERE database_name = ? AND NOT internal", [alias]
    ).fetchall()
    if {v for (v,) in copied_views} != set(views):
        return False
    return shape(alias, "main", None) == shape(*home, list(tables))


def _update_partitions(conn: Any, home: str, alias: str, table: str, keys: Sequence[str]) -> None:
    """Rewrite in the copy the partitions of ``table`` (by ``keys``) whose rows differ from home's."""
    name = quote(table)
    columns = ", ".join(quote(k) for k in keys)

    def fingerprints(database: str) -> dict[tuple, tuple]:
        rows = conn.execute(
            f"SELECT {columns}, count(*), sum(hash(t)::HUGEINT) FROM {database}.{name} AS t GROUP BY ALL"
        ).fetchall()
        return {tuple(row[: len(keys)]): tuple(row[len(keys) :]) for row in rows}

    ours, theirs = fingerprints(home), fingerprints(alias)
    match = " AND ".join(f"{quote(k)} IS NOT DISTINCT FROM ?" for k in keys)
    for key, fingerprint in theirs.items():
        if ours.get(key) != fingerprint:
            conn.execute(f"DELETE FROM {alias}.{name} WHERE {match}", list(key))
    for key, fingerprint in ours.items():
        if theirs.get(key) != fingerprint:
            conn.execute(f"INSERT INTO {alias}.{name} SELECT * FROM {home}.{name} WHERE {match}", list(key))
