"""The Spark session behind a Spark warehouse: the URL, the one session per
process and its settings.

URLs (see the README, "Spark"):

- ``spark://local[2]?warehouse_dir=/abs/dir&database=churn``: a Spark session
  in this process with 2 threads, tables as Parquet under ``warehouse_dir``;
- ``spark://host:7077?database=churn``: a standalone cluster's master;
- ``sc://host:15002/;token=...?database=churn``: a Spark Connect server.

Query keys: ``database`` (default ``churn``), ``warehouse_dir``, ``catalog``
(``hive``, the default: table metadata in an embedded Derby metastore under
``warehouse_dir``, so a table written by one process is seen by the next; or
``in-memory``: nothing outlives the process, for tests) and any ``spark.*``
setting, passed to the session as is.

A process has one Spark session (one JVM); each :class:`SparkWarehouse` is a
child session of it with its own temp views and current database.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import logging
import os
import re
import shutil
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from models.redaction import redact_url
from pipeline.warehouse.errors import WarehouseError

log = logging.getLogger(__name__)

_URL = re.compile(r"^\s*(spark|sc)://([^?]*)(?:\?(.*))?$", re.IGNORECASE)

#: Spark type name -> the name the catalog helpers use on DuckDB/PostgreSQL
TYPE_NAMES = {
    "string": "varchar",
    "int": "integer",
    "timestamp_ntz": "timestamp",
    "timestamp": "timestamp with time zone",
}


#: what the warehouse relies on, set per session where the server's
#: defaults rule (Spark Connect): naive timestamps read and written as they
#: are, and INSERT OVERWRITE replacing only the partitions it writes
_RUNTIME = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
}


def is_spark_url(url: str) -> bool:
    return bool(_URL.match(url))


@dataclass(frozen=True)
class SparkTarget:
    """What a Spark URL asks for."""

    scheme: str  # spark or sc
    where: str  # local[2], host:7077, or the Connect address
    database: str
    warehouse_dir: str | None
    catalog: str
    conf: tuple[tuple[str, str], ...] = field(default=())

    @property
    def local(self) -> bool:
        return self.scheme == "spark" and self.where.lower().startswith("local")


def parse_url(url: str) -> SparkTarget:
    match = _URL.match(url)
    if not match:
        raise WarehouseError(f"Not a Spark URL: {redact_url(url)}", transient=False)
    scheme, where, query = match.group(1).lower(), match.group(2), match.group(3) or ""
    params = dict(parse_qsl(query, keep_blank_values=True))
    database = params.pop("database", "churn")
    warehouse_dir = params.pop("warehouse_dir", None)
    catalog = params.pop("catalog", "hive").lower()
    unknown = [k for k in params if not k.startswith("spark.")]
    if unknown:
        raise WarehouseError(
            f"Unknown Spark URL setting(s) {', '.join(sorted(unknown))} in {redact_url(url)}: use database, "
            "warehouse_dir, catalog (hive or in-memory) or spark.* settings",
            transient=False,
        )
    if catalog not in ("hive", "in-memory"):
        raise WarehouseError(f"Spark catalog must be hive or in-memory, not {catalog!r}", transient=False)
    if not re.fullmatch(r"\w+", database):
        raise WarehouseError(f"Spark database name must be letters, digits and _: {database!r}", transient=False)
    if warehouse_dir:
        warehouse_dir = str(Path(warehouse_dir).expanduser().resolve())
    return SparkTarget(scheme, where.rstrip("/"), database, warehouse_dir, catalog, tuple(sorted(params.items())))


def _settings(target: SparkTarget) -> dict[str, str]:
    """The session's settings: ours for a predictable, quiet local session,
    then the URL's ``spark.*`` keys (which win)."""
    # wall-clock UTC everywhere: naive timestamps are neither shifted on the way in nor out
    conf = {"spark.ui.showConsoleProgress": "false", **_RUNTIME}
    java = ["-Duser.timezone=UTC"]
    if target.local:
        threads = re.search(r"\[(\d+|\*)", target.where)
        n = threads.group(1) if threads else "1"
        n = str(os.cpu_count() or 1) if n == "*" else n
        conf.update({"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": n, "spark.default.parallelism": n})
    if target.warehouse_dir:
        conf["spark.sql.warehouse.dir"] = target.warehouse_dir
    conf["spark.sql.catalogImplementation"] = target.catalog
    home = _derby_home(target)
    if home is not None:
        metastore = home / "metastore_db"
        conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = f"jdbc:derby:;databaseName={metastore};create=true"
        java.append(f"-Dderby.system.home={home}")
    given = dict(target.conf)
    extra = given.pop("spark.driver.extraJavaOptions", "")
    conf["spark.driver.extraJavaOptions"] = " ".join([*java, extra]).strip()
    conf.update(given)
    return conf


def _derby_home(target: SparkTarget) -> Path | None:
    """Where a local hive catalog keeps its embedded Derby metastore (None
    when the URL names a metastore of its own, or there is none)."""
    own = {"spark.hadoop.javax.jdo.option.ConnectionURL", "spark.hadoop.hive.metastore.uris"}
    if target.catalog != "hive" or not target.local or own & {k for k, _ in target.conf}:
        return None
    return Path(target.warehouse_dir or Path.cwd() / "spark-warehouse")


def _wait_for_metastore(target: SparkTarget, wait_seconds: float) -> None:
    """Embedded Derby serves one process at a time, and the process keeps it
    until it ends; a second one would fail deep in Hive with a page of Java.
    Wait for the holder (Derby holds a lock on ``dbex.lck``), then say so."""
    home = _derby_home(target)
    if home is None:
        return
    lock = home / "metastore_db" / "dbex.lck"
    deadline = time.monotonic() + max(wait_seconds, 0.0)
    warned = False
    while lock.exists():
        try:
            with open(lock, "r+b") as probe:  # closing the probe releases it
                fcntl.lockf(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                return  # not a lock held by another process: let Spark tell
        if time.monotonic() >= deadline:
            raise WarehouseError(
                f"The Spark warehouse {home} is in use by another process: its embedded metastore (Derby, "
                f"{home / 'metastore_db'}) serves one process at a time, held until that process ends; waited "
                f"{wait_seconds:.0f} s. Raise CHURN_LOCK_WAIT_SECONDS to wait longer. To read while jobs run, "
                "use a shared metastore (spark.hadoop.hive.metastore.uris=thrift://...) or read the Parquet "
                f"tables directly, e.g. DuckDB: read_parquet('{home}/<database>.db/churn_scores/*/*/*.parquet', "
                "hive_partitioning=true).",
                transient=False,
            )
        if not warned:
            log.warning(
                "The Spark metastore under %s is in use by another process; waiting up to %.0f s", home, wait_seconds
            )
            warned = True
        time.sleep(0.5)


class _Session:
    """The process's one Spark session, started on first use."""

    lock = threading.Lock()
    session: Any = None
    key: tuple | None = None


def base_session(target: SparkTarget, lock_wait_seconds: float = 0.0) -> Any:
    key = (target.scheme, target.where, target.warehouse_dir, target.catalog, target.conf)
    with _Session.lock:
        if _Session.session is not None:
            if _Session.key != key:
                raise WarehouseError(
                    "This process already runs a Spark session with other settings; one Spark session per "
                    "process (the same master, warehouse_dir, catalog and spark.* settings)",
                    transient=False,
                )
            return _Session.session
        try:
            warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise WarehouseError("Spark warehouses need pyspark: pip install '.[spark]'", transient=False) from exc
        if target.scheme == "sc":
            session = SparkSession.builder.remote(f"sc://{target.where}").create()
            _set_runtime(session, {**_RUNTIME, **dict(target.conf)})
        else:
            _check_java()
            _wait_for_metastore(target, lock_wait_seconds)
            builder = SparkSession.builder.master(target.where).appName("churn")
            for k, v in _settings(target).items():
                builder = builder.config(k, v)
            try:
                session = builder.getOrCreate()
            except Exception as exc:
                raise WarehouseError(f"Cannot start Spark ({target.where}): {exc}", transient=False) from exc
            session.sparkContext.setLogLevel("ERROR")
            _quiet_query_context(session)
        atexit.register(session.stop)
        _Session.session, _Session.key = session, key
        return session


def _set_runtime(session: Any, conf: dict[str, str]) -> None:
    for key, value in conf.items():
        try:
            session.conf.set(key, value)
        except Exception as exc:
            raise WarehouseError(
                f"The Spark Connect session refused {key}={value} (a server-wide setting belongs in the "
                f"server's configuration, not the URL): {str(exc).strip().splitlines()[0]}",
                transient=False,
            ) from exc


def _quiet_query_context(session: Any) -> None:
    """Spark logs every failed statement with its whole plan as JSON at ERROR
    level; the error itself reaches the caller as a WarehouseError."""
    try:
        jvm = session.sparkContext._jvm
        level = jvm.org.apache.logging.log4j.Level.OFF
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel("SQLQueryContextLogger", level)
    except Exception:  # noqa: S110 - logging only
        pass


def _check_java() -> None:
    home = os.environ.get("JAVA_HOME")
    if not (home and Path(home, "bin", "java").exists()) and not shutil.which("java"):
        raise WarehouseError(
            "Spark needs a Java 17+ runtime: none on the PATH and JAVA_HOME is not set", transient=False
        )


def ident(name: str) -> str:
    """A Spark identifier for the DataFrame/catalog API (backticks)."""
    return "`" + name.replace("`", "``") + "`"


def spark_transient(exc: BaseException) -> bool:
    """Lost connections to the JVM or the Connect server are worth retrying;
    analysis and parse errors (bad SQL, a missing table) are not."""
    kind = type(exc).__name__
    if kind == "SparkConnectGrpcException":
        return "UNAVAILABLE" in str(exc)
    return isinstance(exc, ConnectionError) or kind == "Py4JNetworkError"
