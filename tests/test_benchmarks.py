"""The benchmark commands run end to end at a tiny scale: a benchmark that
breaks when the outputs change is caught here, not on the day of a 1M run."""

from __future__ import annotations

import json
import sys

import pytest

from benchmarks import monitor, run
from benchmarks import spark as spark_bench


def test_monitor_benchmark_runs_on_a_small_history(tmp_path, monkeypatch):
    monkeypatch.setattr(
        sys,
        "argv",
        ["monitor", "--accounts", "400", "--dates", "3", "--workdir", str(tmp_path), "--out", str(tmp_path)],
    )
    monitor.main()
    (result,) = tmp_path.glob("monitor_*.json")
    summary = json.loads(result.read_text())
    assert summary["scored_rows"] > 400 and summary["performance_rows"] > 0
    assert len(summary["monitor_seconds"]) == 2


@pytest.mark.parametrize("extra", [["--skip-fit", "--snapshots-per-part", "2"]])
def test_run_benchmark_builds_the_bounded_memory_training_set(tmp_path, extra):
    summary = run.main(
        [
            "--accounts",
            "300",
            "--months",
            "14",
            "--workdir",
            str(tmp_path),
            "--out",
            str(tmp_path),
            "--skip-peers",
            *extra,
        ]
    )
    stages = {s["stage"]: s for s in summary["stages"]}
    assert "features, 1 snapshot" in stages
    assert any(name.startswith("training set, 12 snapshots, to Parquet") for name in stages)
    assert not list(tmp_path.glob("training_set_*")) and not list(tmp_path.glob("features_*.parquet"))  # cleaned up


@pytest.mark.spark
def test_spark_benchmark_times_the_stages_on_spark_with_duckdbs_features(tmp_path, spark_url):
    common = ["--accounts", "300", "--months", "14", "--workdir", str(tmp_path), "--out", str(tmp_path)]
    run.main([*common, "--skip-peers"])  # the DuckDB data and the model the Spark run scores with
    database = "bench_check"
    try:
        summary = spark_bench.main([*common, "--snapshots", "2", "--url", f"{spark_url}&database={database}"])
    finally:
        from pipeline.warehouse import Warehouse

        with Warehouse(f"{spark_url}&database={database}", create=True) as wh:
            wh.spark.sql("USE default")
            wh.spark.sql(f"DROP DATABASE IF EXISTS {database} CASCADE")
    parity = summary["feature_parity_with_duckdb"]
    assert parity["same_rows"] and parity["same_nulls"] and parity["max_rel_difference"] < 1e-9
    stages = [s["stage"] for s in summary["stages"]]
    assert stages[0] == "setup: load the inputs into Spark" and "score + explain + write" in stages
    assert "training set, 2 snapshots" in stages
    assert summary["rows"]["usage_events"] > 1000 and summary["reasons_written"] > 0
    assert (tmp_path / "bench_spark_300.md").read_text().startswith("# Benchmark on Spark: 300 accounts")
