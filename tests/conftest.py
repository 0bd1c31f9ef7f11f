"""Shared fixtures: a warehouse per engine (DuckDB in memory, PostgreSQL in a
fresh schema) and helpers to load hand-made contract tables."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest

from pipeline.warehouse import Warehouse

POSTGRES_URL = os.environ.get("CHURN_TEST_POSTGRES_URL")


def _postgres_or_skip() -> str:
    if not POSTGRES_URL:
        if os.environ.get("CI"):
            pytest.fail("CHURN_TEST_POSTGRES_URL is not set in CI: PostgreSQL tests must run")
        pytest.skip("CHURN_TEST_POSTGRES_URL not set (run `make test`, which starts PostgreSQL)")
    return POSTGRES_URL


def _postgres_warehouse() -> Iterator[Warehouse]:
    wh = Warehouse(_postgres_or_skip())
    schema = f"t_{uuid.uuid4().hex[:12]}"
    wh.execute(f"CREATE SCHEMA {schema}")
    wh.execute(f"SET search_path TO {schema}")
    # The feature SQL over unanalysed temp tables is costed high enough to trigger
    # JIT compilation, which makes each tiny test build ~5x slower.
    wh.execute("SET jit = off")
    try:
        yield wh
    finally:
        wh.execute("RESET search_path")
        wh.execute(f"DROP SCHEMA {schema} CASCADE")
        wh.close()


def _spark_or_skip() -> None:
    import shutil

    try:
        import pyspark  # noqa: F401
    except ImportError:
        reason = "pyspark is not installed (run `make test`, which installs it)"
    else:
        if shutil.which("java") or os.environ.get("JAVA_HOME"):
            return
        reason = "no Java runtime for Spark"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: Spark tests must run in CI")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port nobody listens on now (for servers the tests start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a server the tests started with ``start_new_session=True``, and
    the processes it started: SIGTERM to its group, SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def spark_url(tmp_path_factory) -> str:
    """One local Spark session for the test process (one thread, an in-memory
    catalog, Parquet tables in a temporary directory)."""
    _spark_or_skip()
    home = tmp_path_factory.mktemp("spark")
    return (
        f"spark://local[1]?warehouse_dir={home}&catalog=in-memory&spark.driver.memory=1g"
        "&spark.driver.extraJavaOptions=-XX:%2BUseSerialGC -XX:TieredStopAtLevel=1"
        "&spark.sql.codegen.wholeStage=false&spark.sql.adaptive.enabled=false&spark.sql.codegen.factoryMode=NO_CODEGEN"
    )


def spark_warehouse(url: str) -> Iterator[Warehouse]:
    """A throw-away Spark database on the session's Spark."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    wh = Warehouse(f"{url}&database={database}", create=True)
    try:
        yield wh
    finally:
        wh.close()
        wh.spark.sql(f"DROP DATABASE IF EXISTS {database} CASCADE")


@pytest.fixture
def spark_wh(spark_url) -> Iterator[Warehouse]:
    yield from spark_warehouse(spark_url)


@pytest.fixture
def duckdb_wh() -> Iterator[Warehouse]:
    wh = Warehouse("duckdb:///:memory:")
    yield wh
    wh.close()


@pytest.fixture
def pg_wh() -> Iterator[Warehouse]:
    yield from _postgres_warehouse()


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def wh(request) -> Iterator[Warehouse]:
    """The same test on DuckDB and on a real PostgreSQL server."""
    if request.param == "duckdb":
        wh = Warehouse("duckdb:///:memory:")
        yield wh
        wh.close()
    else:
        yield from _postgres_warehouse()


def load(wh: Warehouse, **tables: pd.DataFrame) -> None:
    """Write hand-made tables (name=frame) into the warehouse."""
    for name, frame in tables.items():
        wh.write_table(name, frame)


# -- session fixtures shared by tests/pipeline and tests/reliability ------------------
@pytest.fixture(scope="session")
def trained_env(tmp_path_factory):
    """Data generated, a champion trained and two dates scored. Read-only:
    copy it (``trained_env.copy(tmp_path)``) before changing anything."""
    from tests.pipeline.churn_data import trained

    return trained(tmp_path_factory)


@pytest.fixture(scope="session")
def prefect_api_url(tmp_path_factory) -> Iterator[str]:
    """A temporary Prefect server (SQLite) for the whole session; yields its API
    URL, which subprocesses can use too. Task results (the feature cache) go
    to a temporary directory, not ~/.prefect."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        mp.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
        import prefect.settings
        from prefect.testing.utilities import prefect_test_harness

        storage = tmp_path_factory.mktemp("prefect-storage")
        with prefect.settings.temporary_settings(updates={prefect.settings.PREFECT_LOCAL_STORAGE_PATH: storage}):
            with prefect_test_harness(server_startup_timeout=90):
                yield prefect.settings.PREFECT_API_URL.value()
