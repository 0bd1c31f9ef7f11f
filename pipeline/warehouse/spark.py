"""Apache Spark as a warehouse: the same :class:`Warehouse` methods over a
Spark session (:mod:`pipeline.warehouse.spark_session`: URLs and the
session), the statements transpiled from DuckDB's dialect
(:mod:`pipeline.warehouse.spark_sql`)."""

from __future__ import annotations

import fcntl
import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import sqlglot
from sqlglot import exp

from models.redaction import redact_url
from pipeline.warehouse.connection import LOCK_WAIT_SECONDS, Warehouse
from pipeline.warehouse.errors import WarehouseError
from pipeline.warehouse.spark_session import (
    TYPE_NAMES,
    SparkTarget,
    base_session,
    ident,
    is_spark_url,
    parse_url,
    spark_transient,
)
from pipeline.warehouse.spark_sql import to_spark
from pipeline.warehouse.sql import _to_python, normalise_pg_frame
from pipeline.warehouse.writes import WriteMode


class SparkWarehouse(Warehouse):
    """A :class:`Warehouse` on Spark. No transactions: a ``transaction()``
    block only groups statements, and outputs are replaced a partition at a
    time (:meth:`replace_partition`). Run tables (``CREATE TEMP TABLE``) are
    computed once and kept as temp views."""

    transactional = False

    def __init__(self, url: str, create: bool = False, lock_wait_seconds: float = LOCK_WAIT_SECONDS):
        self.url = url
        self.dialect = "spark"
        self.target = parse_url(url)
        base = base_session(self.target, lock_wait_seconds)
        self._spark = base if self.target.scheme == "sc" else base.newSession()
        self._cached: dict[str, Any] = {}
        self._temps: set[str] = set()
        db = self.target.database
        try:
            exists = self._spark.catalog.databaseExists(db)
            if not exists and create:
                self._spark.sql(f"CREATE DATABASE IF NOT EXISTS {ident(db)}")
            if exists or create:
                self._spark.catalog.setCurrentDatabase(db)
        except Exception as exc:
            cause = self._error(exc)
            raise WarehouseError(
                f"Opening the Spark database {db} in {redact_url(url)}: {cause}", transient=cause.transient
            ) from exc
        if not (exists or create):
            raise WarehouseError(
                f"The Spark database {db} does not exist in {redact_url(url)}. Check the URL "
                "(--warehouse / CHURN_WAREHOUSE_URL), or create it with `churn generate`.",
                transient=False,
            )

    @property
    def spark(self) -> Any:
        """The Spark session (for tests and notebooks)."""
        return self._spark

    def close(self) -> None:
        for name in list(self._cached) + list(self._temps):
            self._drop_temp(name)

    # -- SQL ------------------------------------------------------------
    def _run(self, text: str, params: Mapping[str, Any] | None) -> Any:
        args = {k: _to_python(v) for k, v in (params or {}).items() if re.search(rf":{re.escape(k)}(?!\w)", text)}
        return self._spark.sql(text, args=args or None)

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        try:
            trees = [t for t in sqlglot.parse(sql, read="duckdb") if t]
            for tree, text in zip(trees, to_spark(sql), strict=True):
                if isinstance(tree, exp.Create) and tree.kind == "TABLE" and tree.find(exp.TemporaryProperty):
                    self._materialise(tree.this.name, to_spark(tree.expression.sql(dialect="duckdb"))[0], params)
                else:
                    self._run(text, params).collect()
        except WarehouseError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc

    def _materialise(self, name: str, select: str, params: Mapping[str, Any] | None) -> None:
        """A run table: computed once and kept apart from its sources (a local
        checkpoint, not a cache, which Spark drops when a source changes), read
        as a temp view."""
        frame = self._run(select, params).localCheckpoint(eager=True)
        self._drop_temp(name)
        frame.createOrReplaceTempView(name)
        self._cached[name] = frame

    def _statement(self, text: str, params: Mapping[str, Any] | None = None) -> None:
        """Run one statement already in Spark SQL; failures as WarehouseError."""
        try:
            self._run(text, params).collect()
        except Exception as exc:
            raise self._error(exc) from exc

    def _frame(self, sql: str, params: Mapping[str, Any] | None) -> Any:
        statements = to_spark(sql)
        for text in statements[:-1]:
            self._run(text, params).collect()
        return self._run(statements[-1], params)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        return normalise_pg_frame(self.query_arrow(sql, params).to_pandas())

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        try:
            return self._frame(sql, params).toArrow()
        except Exception as exc:
            raise self._error(exc) from exc

    def _error(self, exc: BaseException) -> WarehouseError:
        state = None
        if hasattr(exc, "getSqlState"):
            try:
                state = exc.getSqlState()
            except Exception:
                state = None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return WarehouseError(f"{type(exc).__name__}: {first}", transient=spark_transient(exc), sqlstate=state)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Groups statements; Spark has no multi-statement transactions. The
        locks taken inside (:meth:`lock`) are held until the outermost block ends."""
        depth = getattr(self, "_depth", 0)
        self._depth = depth + 1
        try:
            yield
        finally:
            self._depth = depth
            if depth == 0:
                for handle in self.__dict__.pop("_locks", []):
                    handle.close()  # closing the file releases its lock

    def lock(self, key: str) -> None:
        """Inside a transaction block: wait for an exclusive lock on ``key``.
        A local Spark (``spark://local``) locks a file under ``warehouse_dir``,
        so runs on this machine that write the same partition take turns. A
        cluster has no shared lock: run one writer per date (the deployments'
        schedules do)."""
        if not self.in_transaction or not (self.target.local and self.target.warehouse_dir):
            return
        folder = Path(self.target.warehouse_dir) / ".churn-locks"
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha1(f"{self.target.database}:{key}".encode()).hexdigest()
        handle = open(folder / digest, "a+")  # noqa: SIM115 - held until the transaction ends
        fcntl.flock(handle, fcntl.LOCK_EX)
        self.__dict__.setdefault("_locks", []).append(handle)

    # -- catalog --------------------------------------------------------
    def table_exists(self, name: str) -> bool:
        return self._temp_exists(name) or bool(self._spark.catalog.tableExists(ident(name)))

    def _temp_exists(self, name: str) -> bool:
        return name in self._cached or name in self._temps

    def column_types(self, name: str) -> dict[str, str]:
        if not self.table_exists(name):
            return {}
        schema = self._spark.table(ident(name)).schema
        return {f.name: TYPE_NAMES.get(f.dataType.simpleString(), f.dataType.simpleString()) for f in schema.fields}

    def drop(self, name: str, kind: Literal["TABLE", "VIEW"] = "TABLE") -> None:
        if self._drop_temp(name):
            return
        self.execute(f"DROP {kind} IF EXISTS {self.quote(name)}")

    def _drop_temp(self, name: str) -> bool:
        cached = self._cached.pop(name, None)
        if cached is not None and self.target.scheme != "sc":
            try:  # free the checkpointed blocks
                cached._jdf.queryExecution().analyzed().rdd().unpersist(False)
            except Exception:  # noqa: S110 - memory only, never worth failing a run
                pass
        self._temps.discard(name)
        return bool(self._spark.catalog.dropTempView(name)) or cached is not None

    def publish(self, renames: Mapping[str, str]) -> None:
        """Replace tables by renaming the incoming ones. Not atomic on Spark:
        each pair is dropped and renamed in turn; the incoming table survives
        a failure, so the run can be repeated."""
        for incoming in renames:
            if not self.table_exists(incoming):
                raise WarehouseError(f"Cannot publish {incoming}: it does not exist", transient=False)
        for incoming, target in renames.items():
            self.execute(f"DROP TABLE IF EXISTS {self.quote(target)}")
            self.execute(f"ALTER TABLE {self.quote(incoming)} RENAME TO {self.quote(target)}")

    def delete_where(self, name: str, where: Mapping[str, Any]) -> None:
        raise WarehouseError(
            "Deleting rows is not supported on Spark Parquet tables; outputs are replaced by partition",
            transient=False,
        )

    def view_comment(self, name: str) -> str | None:
        if not self._spark.catalog.tableExists(ident(name)):
            return None
        table = self._spark.catalog.getTable(ident(name))
        return table.description or "" if table.tableType == "VIEW" else None

    def create_view(self, name: str, select: str, comment: str) -> None:
        escaped = comment.replace("\\", "\\\\").replace("'", "\\'")
        body = to_spark(select)[0]
        self._statement(f"CREATE OR REPLACE VIEW {ident(name)} COMMENT '{escaped}' AS {body}")

    def create_table(self, name: str, schema: Mapping[str, str], partition_by: Sequence[str] = ()) -> None:
        """A Parquet table; ``partition_by`` columns become its partitions
        (one directory per value, listed last among the columns)."""
        columns = ", ".join(f"{self.quote(c)} {t}" for c, t in schema.items())
        parts = f" PARTITIONED BY ({', '.join(ident(c) for c in partition_by)})" if partition_by else ""
        (create,) = to_spark(f"CREATE TABLE IF NOT EXISTS {self.quote(name)} ({columns})")
        self._statement(f"{create} USING parquet{parts}")

    def replace_rows(self, name: str, schema: Mapping[str, str], select: str, params: Mapping[str, Any]) -> None:
        """The new rows go to a table beside ``name`` (same partitions), which
        then replaces it (:meth:`publish`): a failed query leaves the old rows."""
        staging = f"{name}__churn_tmp"
        self.drop(staging)
        casts = ", ".join(f"CAST(s.{self.quote(c)} AS {t}) AS {self.quote(c)}" for c, t in schema.items())
        (body,) = to_spark(f"SELECT {casts} FROM ({select}) AS s")
        parts = [c for c in self._partition_columns(name) if c in schema] if self.table_exists(name) else []
        spec = f" PARTITIONED BY ({', '.join(ident(c) for c in parts)})" if parts else ""
        try:
            self._statement(f"CREATE TABLE {ident(staging)} USING parquet{spec} AS {body}", params)
            self.publish({staging: name})
        finally:
            self.drop(staging)

    def replace_partition(self, table: str, source: str | None, partition: Mapping[str, Any]) -> None:
        """Replace the rows of ``table``'s partition (column -> value, every
        partition column) with the rows of table ``source`` (None: no rows).
        A dynamic ``INSERT OVERWRITE`` writes the new files aside and swaps
        the partition's directory when the job commits: a failed job leaves
        the partition as it was, a rerun never duplicates rows."""
        if source is not None and self.row_count(source):
            self._statement(self._overwrite_sql(table, source))
            return
        spec = ", ".join(f"{ident(c)} = :{c}" for c in partition)
        self._statement(f"ALTER TABLE {ident(table)} DROP IF EXISTS PARTITION ({spec})", dict(partition))

    def _overwrite_sql(self, table: str, source: str) -> str:
        """``INSERT OVERWRITE`` of the partitions in ``source``, its columns in
        the table's order (partition columns last; missing ones NULL). Never a
        static partition spec: Spark would delete the partition before the job."""
        target = self._spark.table(ident(table)).schema
        have = set(self._spark.table(ident(source)).columns)
        parts = self._partition_columns(table)
        select = ", ".join(
            f"CAST({ident(f.name) if f.name in have else 'NULL'} AS {f.dataType.simpleString()}) AS {ident(f.name)}"
            for f in target.fields
        )
        spec = ", ".join(ident(c) for c in parts)
        return f"INSERT OVERWRITE TABLE {ident(table)} PARTITION ({spec}) SELECT {select} FROM {ident(source)}"

    def _partition_columns(self, table: str) -> list[str]:
        return [c.name for c in self._spark.catalog.listColumns(ident(table)) if c.isPartition]

    # -- bulk writes ----------------------------------------------------
    def write_table(
        self,
        name: str,
        frame: pd.DataFrame,
        mode: WriteMode = "replace",
        temporary: bool = False,
    ) -> None:
        """``replace`` writes the rows to ``<name>__churn_tmp`` and then swaps
        it in (:meth:`publish`), so a failed write leaves the previous table;
        ``append`` adds rows by column name (missing columns are NULL);
        ``temporary`` makes a temp view of this session."""
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.cast(
            pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema])
        )
        try:
            data = self._spark.createDataFrame(table) if table.num_columns else None
            if data is None:
                raise WarehouseError(f"Writing {name}: a table needs at least one column", transient=False)
            if temporary:
                self._drop_temp(name)
                data.createOrReplaceTempView(name)
                self._temps.add(name)
            elif mode == "replace" or not self.table_exists(name):
                staging = f"{name}__churn_tmp"
                self.drop(staging)
                data.write.mode("overwrite").format("parquet").saveAsTable(ident(staging))
                self.publish({staging: name})
            else:
                self._append(name, data)
        except WarehouseError:
            raise
        except Exception as exc:
            raise WarehouseError(f"Writing {name}: {self._error(exc)}") from exc

    def _append(self, name: str, data: Any) -> None:
        from pyspark.sql import functions as F

        target = self._spark.table(ident(name)).schema
        unknown = set(data.columns) - {f.name for f in target.fields}
        if unknown:
            raise WarehouseError(f"Writing {name}: no column(s) {', '.join(sorted(unknown))} in it", transient=False)
        columns = [
            (F.col(ident(f.name)) if f.name in data.columns else F.lit(None)).cast(f.dataType).alias(f.name)
            for f in target.fields
        ]
        data.select(*columns).write.insertInto(ident(name))


__all__: Sequence[str] = ["SparkTarget", "SparkWarehouse", "is_spark_url", "parse_url"]
