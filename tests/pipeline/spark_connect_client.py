"""The Spark Connect client side of test_spark_connect.py, run in its own
process (a process has one Spark session, and the test process already runs a
classic one): ``python -m tests.pipeline.spark_connect_client sc://host:port``.

On a Connect server started with Spark's defaults it checks that the
warehouse sets what it relies on (UTC, naive timestamps, dynamic partition
overwrite), that the validation report and the feature matrix with labels
equal DuckDB's on the parity data, and that a rerun of a date replaces exactly
that date's partition. Prints one JSON line: the settings it found and ok.
"""

from __future__ import annotations

import json
import sys

import pandas as pd

from features.build import build_features
from features.staging import validate
from pipeline import outputs
from pipeline.warehouse import Warehouse
from tests.conftest import load
from tests.features.test_parity import DATES, END, _engine_neutral, dirty_tables
from tests.pipeline.test_spark_writeback import D1, D2, NAMES, _chunk, _rows, _write

SETTINGS = (
    "spark.sql.session.timeZone",
    "spark.sql.timestampType",
    "spark.sql.sources.partitionOverwriteMode",
)


def main(url: str) -> dict:
    tables = dirty_tables()
    spark = Warehouse(f"{url}?database=connect_check", create=True)
    found = {key: spark.spark.conf.get(key) for key in SETTINGS}
    with Warehouse("duckdb:///:memory:") as duck:
        frames, reports = {}, {}
        for name, wh in (("duckdb", duck), ("spark", spark)):
            load(wh, **tables)
            reports[name] = validate(wh, END, max_bad_share=0.5)
            frames[name] = build_features(wh, DATES[:3], reports[name], with_labels=True)
    assert _engine_neutral(reports["spark"].to_dict()) == _engine_neutral(reports["duckdb"].to_dict())
    pd.testing.assert_frame_equal(frames["spark"].isna(), frames["duckdb"].isna())
    pd.testing.assert_frame_equal(frames["spark"], frames["duckdb"], check_dtype=False, rtol=1e-9)

    _write(spark, D1, _chunk(D1, ["a1", "a2"], 0.1))
    _write(spark, D2, _chunk(D2, ["a1", "a2", "a3"], 0.3))
    _write(spark, D2, _chunk(D2, ["a1"], 0.4))  # the rerun replaces D2 only
    scores = _rows(spark, NAMES.churn_scores)
    by_date = scores.groupby("as_of_date")["churn_probability"].agg(["count", "max"])
    assert by_date.loc[pd.Timestamp(D1)].tolist() == [2, 0.1], by_date
    assert by_date.loc[pd.Timestamp(D2)].tolist() == [1, 0.4], by_date
    latest = spark.query(f"SELECT account_id FROM {outputs.latest_view(NAMES)}")
    assert latest["account_id"].tolist() == ["a1"]
    spark.spark.sql("DROP DATABASE IF EXISTS connect_check CASCADE")
    return {"settings": found, "rows": len(frames["spark"]), "ok": True}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
