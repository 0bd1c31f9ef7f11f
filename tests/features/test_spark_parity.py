"""Spark SQL gives the same validation report, feature matrix and labels as
DuckDB on the same data (the parity data set of test_parity.py): the same
definitions, transpiled, not rewritten."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from features.build import LabelConfig, build_features, build_labels, build_training_set
from features.staging import validate
from tests.conftest import load, spark_warehouse
from tests.features.test_parity import DATES, END, _engine_neutral, dirty_tables

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def both(spark_url):
    """(report, warehouse) for DuckDB and Spark, loaded with the same data."""
    from pipeline.warehouse import Warehouse

    tables = dirty_tables()
    spark = spark_warehouse(spark_url)
    with Warehouse("duckdb:///:memory:") as duck:
        try:
            sp = next(spark)
            out = {}
            for name, wh in (("duckdb", duck), ("spark", sp)):
                load(wh, **tables)
                out[name] = (validate(wh, END, max_bad_share=0.5), wh)
            yield out
        finally:
            spark.close()


def _assert_same(spark: pd.DataFrame, duck: pd.DataFrame) -> None:
    assert list(spark.columns) == list(duck.columns)
    assert len(spark) == len(duck)
    pd.testing.assert_frame_equal(spark.isna(), duck.isna())  # NULLs in the same places
    pd.testing.assert_frame_equal(spark, duck, check_dtype=False, rtol=1e-9)


def test_validation_reports_match(both):
    (duck, _), (spark, _) = both["duckdb"], both["spark"]
    assert _engine_neutral(spark.to_dict()) == _engine_neutral(duck.to_dict())
    assert duck.problems()  # the data breaks rules: the comparison is not of empty reports


def test_content_fingerprint_is_stable_on_spark(both):
    report, wh = both["spark"]
    again = validate(wh, END, max_bad_share=0.5)
    assert again.to_dict()["fingerprint"] == report.to_dict()["fingerprint"]
    hashes = {t: s["content_hash"] for t, s in report.to_dict()["tables"].items()}
    assert len(set(hashes.values())) == len(hashes)  # a real hash per table, not a constant


def test_feature_matrix_and_labels_match(both):
    frames = {name: build_features(wh, DATES, report, with_labels=True) for name, (report, wh) in both.items()}
    _assert_same(frames["spark"], frames["duckdb"])
    duck = frames["duckdb"]
    assert len(duck) > 50 and duck["as_of_date"].nunique() == len(DATES)
    assert duck.isna().any().any() and set(duck["churned"]) == {0, 1}


def test_labels_with_other_settings_match(both):
    config = LabelConfig(horizon_days=45, grace_days=0)
    frames = {name: build_labels(wh, DATES, report, config) for name, (report, wh) in both.items()}
    _assert_same(frames["spark"], frames["duckdb"])
    assert frames["duckdb"]["churned"].sum() > 0


def test_training_sets_match(both):
    """The training set (snapshots, labels, maturity) is the same on Spark: a
    model trained on either is the same model."""
    frames = {
        name: build_training_set(wh, report, dt.date(2023, 9, 1), END, cadence="monthly", max_event_types=2)
        for name, (report, wh) in both.items()
    }
    _assert_same(frames["spark"], frames["duckdb"])
    assert frames["duckdb"]["mature"].all() and len(frames["duckdb"]) > 20
