"""The Spark warehouse: URLs, the session, run tables and clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.warehouse import Warehouse, WarehouseError
from pipeline.warehouse.spark import parse_url
from pipeline.warehouse.spark_sql import to_spark

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("url", "where", "database", "catalog"),
    [
        ("spark://local[2]?warehouse_dir=/tmp/w", "local[2]", "churn", "hive"),
        ("spark://local[*]?database=sales&catalog=in-memory", "local[*]", "sales", "in-memory"),
        ("spark://spark-master:7077?database=churn&spark.executor.memory=8g", "spark-master:7077", "churn", "hive"),
        ("sc://connect.example.com:15002?database=churn", "connect.example.com:15002", "churn", "hive"),
    ],
)
def test_spark_urls(url, where, database, catalog):
    target = parse_url(url)
    assert (target.where, target.database, target.catalog) == (where, database, catalog)
    assert target.local == where.startswith("local")


def test_spark_url_settings_pass_through_and_unknown_keys_are_refused():
    assert dict(parse_url("spark://local[1]?spark.sql.shuffle.partitions=4").conf) == {
        "spark.sql.shuffle.partitions": "4"
    }
    with pytest.raises(WarehouseError, match="Unknown Spark URL setting.*warehous_dir"):
        parse_url("spark://local[1]?warehous_dir=/tmp/w")
    with pytest.raises(WarehouseError, match="letters, digits and _"):
        parse_url("spark://local[1]?database=a;drop")


def test_duckdb_sql_that_means_something_else_on_spark_is_rewritten():
    (epoch,) = to_spark("SELECT EPOCH(a - b) / 86400.0 FROM t")
    assert "TIMESTAMPDIFF(MICROSECOND, b, a)" in epoch and "UNIX_TIMESTAMP" not in epoch
    (avg,) = to_spark("SELECT AVG(CASE WHEN x THEN 1.0 ELSE 0.0 END), CAST(y AS DECIMAL(12, 4)) FROM t")
    assert "CAST(1.0 AS DOUBLE)" in avg and "DECIMAL(12, 4)" in avg
    assert to_spark("SELECT $a; SELECT 2") == ("SELECT :a", "SELECT 2")


@pytest.mark.spark
def test_a_missing_database_is_an_error_unless_created(spark_url):
    with pytest.raises(WarehouseError, match="database nowhere_db does not exist.*churn generate"):
        Warehouse(f"{spark_url}&database=nowhere_db")


@pytest.mark.spark
def test_another_spark_setup_in_the_same_process_is_refused(spark_url, spark_wh):
    with pytest.raises(WarehouseError, match="one Spark session per process"):
        Warehouse("spark://local[2]?catalog=in-memory", create=True)


@pytest.mark.spark
def test_table_names_spark_cannot_hold_fail_clearly(spark_wh):
    with pytest.raises(WarehouseError, match='Writing my "odd" table.*not a valid name'):
        spark_wh.write_table('my "odd" table', pd.DataFrame({"a": [1]}))


@pytest.mark.spark
def test_run_tables_are_computed_once_and_dropped(spark_wh):
    spark_wh.write_table("src", pd.DataFrame({"a": [1, 2, 3]}))
    held = spark_wh.spark.sparkContext._jsc.getPersistentRDDs().size()
    spark_wh.execute("CREATE TEMP TABLE _churn_run AS SELECT a * 2 AS b FROM src WHERE a > $n", {"n": 1})
    spark_wh.write_table("src", pd.DataFrame({"a": [10]}))  # the run table keeps what it computed
    assert sorted(spark_wh.read_table("_churn_run")["b"]) == [4, 6]
    assert spark_wh.column_types("_churn_run") == {"b": "bigint"}
    assert spark_wh.spark.sparkContext._jsc.getPersistentRDDs().size() == held + 1
    spark_wh.drop("_churn_run")
    assert not spark_wh.table_exists("_churn_run")
    assert spark_wh.spark.sparkContext._jsc.getPersistentRDDs().size() == held  # its blocks are freed


@pytest.mark.spark
def test_views_carry_their_comment(spark_wh):
    spark_wh.write_table("scores", pd.DataFrame({"p": [0.5]}))
    assert spark_wh.view_comment("scores_latest") is None
    spark_wh.create_view("scores_latest", "SELECT * FROM scores", "latest view v3; it's")
    assert spark_wh.view_comment("scores_latest") == "latest view v3; it's"
    assert spark_wh.read_table("scores_latest")["p"].tolist() == [0.5]


_HOLDER = """
import sys, time
from pipeline.warehouse import Warehouse
Warehouse(sys.argv[1], create=True)  # boots the embedded metastore
print("holding", flush=True)
time.sleep(300)
"""


@pytest.mark.spark
def test_a_metastore_in_use_by_another_process_is_a_clear_error_and_free_once_it_ends(tmp_path):
    """A local hive catalog's Derby serves one process at a time: the second
    gets a one-line error naming the warehouse and how to read meanwhile, not
    Hive's page of Java; once the first process ends, the metastore is free."""
    from pipeline.warehouse.spark_session import _wait_for_metastore

    url = (
        f"spark://local[1]?warehouse_dir={tmp_path}&spark.driver.memory=512m"
        "&spark.driver.extraJavaOptions=-XX:%2BUseSerialGC -XX:TieredStopAtLevel=1"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,  # its JVM too, in one process group
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with pytest.raises(WarehouseError, match=rf"{tmp_path} is in use by another process.*waited 1 s.*read_parquet"):
            _wait_for_metastore(parse_url(url), 1.0)
        assert time.monotonic() - started >= 1.0
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    _wait_for_metastore(parse_url(url), 30.0)  # free once the JVM is gone (the kernel drops its lock)
