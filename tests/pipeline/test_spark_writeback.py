"""Write-back on Spark keeps the promises of the transactional engines:
outputs partitioned by date (and model), a rerun replaces exactly that date,
a failure while scoring, staging or writing loses nothing, history is kept
and the latest view shows each model's latest date."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from features.contract import TableNames
from pipeline import outputs
from pipeline.warehouse import Warehouse, WarehouseError
from pipeline.warehouse.spark import SparkWarehouse

pytestmark = pytest.mark.spark

NAMES = TableNames()
D1, D2 = dt.date(2026, 9, 30), dt.date(2026, 10, 31)


def _chunk(as_of: dt.date, accounts: list[str], p: float, model: str = "churn-model"):
    common = {"as_of_date": pd.Timestamp(as_of), "model_name": model, "model_version": "3"}
    scores = pd.DataFrame(
        {"account_id": accounts, "churn_probability": p, "risk_tier": "high", "scored_at": pd.Timestamp(as_of)}
    ).assign(**common)
    reasons = pd.DataFrame({"account_id": accounts, "rank": 1, "reason": f"reason {p}"}).assign(**common)
    topics = pd.DataFrame({"account_id": accounts, "topic": "usage", "contribution": p}).assign(**common)
    return scores, reasons, topics


def _write(wh, as_of, *chunks, model="churn-model"):
    outputs.replace_date(wh, NAMES, model, as_of, iter(chunks))


def _rows(wh, table: str) -> pd.DataFrame:
    return wh.query(f"SELECT * FROM {table} ORDER BY model_name, as_of_date, account_id")


def _snapshot(wh) -> dict[str, pd.DataFrame]:
    return {t: _rows(wh, t) for t in outputs.schemas(NAMES)}


def _no_leftovers(wh) -> None:
    tables = [r["tableName"] for r in wh.spark.sql("SHOW TABLES").collect()]
    assert not [t for t in tables if t.startswith("_churn_stage_")]
    root = Path(wh.spark.conf.get("spark.sql.warehouse.dir").removeprefix("file:"))
    assert not list(root.rglob(".spark-staging*"))


def test_outputs_are_partitioned_and_a_rerun_replaces_exactly_that_date(spark_wh):
    _write(spark_wh, D1, _chunk(D1, ["a1", "a2"], 0.1), _chunk(D1, ["a3"], 0.1))
    _write(spark_wh, D1, _chunk(D1, ["a1"], 0.2, model="other-model"), model="other-model")
    _write(spark_wh, D2, _chunk(D2, ["a1", "a2", "a3"], 0.3))
    _write(spark_wh, D2, _chunk(D2, ["a1", "a2"], 0.4))  # rerun: replaces, never adds
    for table in outputs.schemas(NAMES):
        parts = spark_wh.spark.sql(f"SHOW PARTITIONS {table}").collect()
        assert {r[0] for r in parts} == {
            "as_of_date=2026-09-30/model_name=churn-model",
            "as_of_date=2026-09-30/model_name=other-model",
            "as_of_date=2026-10-31/model_name=churn-model",
        }
    scores = _rows(spark_wh, NAMES.churn_scores)
    key = ["model_name", "as_of_date", "account_id"]
    assert not scores.duplicated(key).any()
    latest = scores[scores["as_of_date"] == pd.Timestamp(D2)]
    assert latest["account_id"].tolist() == ["a1", "a2"] and set(latest["churn_probability"]) == {0.4}
    history = scores[(scores["as_of_date"] == pd.Timestamp(D1)) & (scores["model_name"] == "churn-model")]
    assert len(history) == 3 and set(history["churn_probability"]) == {0.1}  # history kept
    view = spark_wh.query(f"SELECT * FROM {outputs.latest_view(NAMES)} ORDER BY model_name, account_id")
    assert view[["model_name", "as_of_date"]].drop_duplicates().values.tolist() == [
        ["churn-model", pd.Timestamp(D2)],
        ["other-model", pd.Timestamp(D1)],
    ]
    reasons = _rows(spark_wh, NAMES.churn_risk_reasons)
    assert len(reasons[reasons["as_of_date"] == pd.Timestamp(D2)]) == 2
    _no_leftovers(spark_wh)


def test_a_failure_while_scoring_leaves_every_output_as_it_was(spark_wh):
    _write(spark_wh, D1, _chunk(D1, ["a1", "a2"], 0.1))
    before = _snapshot(spark_wh)

    def failing():
        yield _chunk(D1, ["a1"], 0.9)
        raise RuntimeError("scoring failed at the second chunk")

    with pytest.raises(RuntimeError, match="second chunk"):
        outputs.replace_date(spark_wh, NAMES, "churn-model", D1, failing())
    for table, frame in _snapshot(spark_wh).items():
        pd.testing.assert_frame_equal(frame, before[table])
    _no_leftovers(spark_wh)


def test_a_fault_inside_the_write_job_leaves_the_partition_whole(spark_wh, monkeypatch):
    _write(spark_wh, D1, _chunk(D1, ["a1", "a2", "a3"], 0.1))
    before = _snapshot(spark_wh)
    original = SparkWarehouse._overwrite_sql

    def faulty(self, table, source):
        # the job fails at one row, after others have been written to the new files
        sql = original(self, table, source)
        return sql.replace(
            "CAST(`account_id` AS string)",
            "CAST(CASE WHEN `account_id` = 'a3' THEN raise_error('injected fault') ELSE `account_id` END AS string)",
            1,
        )

    monkeypatch.setattr(SparkWarehouse, "_overwrite_sql", faulty)
    with pytest.raises(WarehouseError, match="injected fault"):
        _write(spark_wh, D1, _chunk(D1, ["a1", "a2", "a3", "a4"], 0.5))
    for table, frame in _snapshot(spark_wh).items():
        pd.testing.assert_frame_equal(frame, before[table])
    _no_leftovers(spark_wh)
    monkeypatch.undo()
    _write(spark_wh, D1, _chunk(D1, ["a1", "a2", "a3", "a4"], 0.5))  # the rerun succeeds: one row per key
    scores = _rows(spark_wh, NAMES.churn_scores)
    assert scores["account_id"].tolist() == ["a1", "a2", "a3", "a4"] and set(scores["churn_probability"]) == {0.5}


def test_a_date_with_no_active_account_empties_its_partition(spark_wh):
    _write(spark_wh, D1, _chunk(D1, ["a1"], 0.1))
    _write(spark_wh, D2, _chunk(D2, ["a1"], 0.2))
    empty = tuple(frame.iloc[0:0] for frame in _chunk(D2, ["x"], 0.0))
    _write(spark_wh, D2, empty)
    assert _rows(spark_wh, NAMES.churn_scores)["as_of_date"].tolist() == [pd.Timestamp(D1)]
    _no_leftovers(spark_wh)


def test_a_failed_first_write_leaves_no_output_table(spark_wh):
    def failing():
        raise RuntimeError("nothing scored")
        yield  # pragma: no cover

    with pytest.raises(RuntimeError):
        outputs.replace_date(spark_wh, NAMES, "churn-model", D1, failing())
    assert not any(spark_wh.table_exists(t) for t in outputs.schemas(NAMES))


def test_concurrent_writers_of_one_date_take_turns(spark_url, spark_wh, monkeypatch):
    import threading
    import time

    from pipeline.warehouse import Warehouse

    _write(spark_wh, D1, _chunk(D1, ["a1"], 0.1))  # the tables exist: both runs go straight to the write
    url = f"{spark_url}&database={spark_wh.target.database}"
    errors: list[BaseException] = []
    writes: list[str] = []
    original = SparkWarehouse.replace_partition

    def logged(self, table, source, partition):
        writes.append(threading.current_thread().name)
        time.sleep(0.3)  # a slow write: the other run would start its own meanwhile, without the lock
        original(self, table, source, partition)

    monkeypatch.setattr(SparkWarehouse, "replace_partition", logged)

    def run(p: float) -> None:
        try:
            with Warehouse(url) as wh:
                _write(wh, D1, _chunk(D1, ["a1", "a2", "a3"], p), _chunk(D1, ["a4"], p))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,), name=f"writer {p}") for p in (0.3, 0.7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert writes in (["writer 0.3"] * 3 + ["writer 0.7"] * 3, ["writer 0.7"] * 3 + ["writer 0.3"] * 3)
    for table in outputs.schemas(NAMES):
        rows = _rows(spark_wh, table)
        assert rows["account_id"].tolist() == ["a1", "a2", "a3", "a4"], table  # no duplicates, nothing half
    assert len(set(_rows(spark_wh, NAMES.churn_scores)["churn_probability"])) == 1  # one writer's rows, whole
    _no_leftovers(spark_wh)


def test_spark_scores_equal_duckdb_scores(trained_env, spark_url, spark_wh, tmp_path):
    """The generated inputs copied into Spark and scored with the same champion
    give the rows the DuckDB run wrote (probabilities to 1e-12, reasons, the
    latest view)."""
    from pipeline import steps
    from tests.pipeline.churn_data import END, assert_same_scores, mlflow_restored, read, settings_for

    with Warehouse(trained_env.settings.warehouse) as duck:
        for table in ("accounts", "subscriptions", "usage_events", "support_tickets", "nps_responses"):
            spark_wh.write_table(table, duck.read_table(table))
    url = f"{spark_url}&database={spark_wh.target.database}"
    settings = settings_for(tmp_path, warehouse_url=url, mlflow_tracking_uri=trained_env.settings.tracking_uri)
    with mlflow_restored():
        outcome = steps.score_accounts(settings, END)  # reruns: the partition tests above

    assert_same_scores(settings, trained_env.settings, END, outcome.accounts)
    latest = read(settings, "SELECT account_id FROM churn_scores_latest")
    assert latest["account_id"].is_unique and len(latest) == outcome.accounts
