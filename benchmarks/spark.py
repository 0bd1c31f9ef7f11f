"""The same stages on a Spark warehouse, next to DuckDB's (issue 17).

    python -m benchmarks.run --accounts 10000 --skip-peers      # the DuckDB row (and its data, model)
    python -m benchmarks.spark --accounts 10000                 # the Spark local[2] row

The input tables are read from the DuckDB benchmark file that
``benchmarks.run`` generated (same seed, same rows) and loaded into the Spark
catalog through the warehouse's own ``write_table`` (the path ``churn
generate`` takes); the load is setup, timed for the record. Then: validate,
features for one snapshot, the 12-snapshot training set, and score + explain +
write with the DuckDB run's model (``model_<accounts>.joblib``), each timed
with the peak RSS of the whole process tree (Python + the Spark JVM). The
feature matrix is compared with DuckDB's (the parity test, at scale).
Writes <out>/bench_spark_<accounts>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import duckdb
import joblib
import numpy as np
import pandas as pd

from benchmarks.run import TABLES, Bench, data_arguments, run_header, score_stages, write_results
from features.build import build_features, build_training_set, snapshot_dates
from features.staging import validate
from models.redaction import redact_url
from pipeline.warehouse import Warehouse

LOAD_ROWS = 2_000_000  # rows per write_table chunk while loading


def _load(db: Path, spark: Warehouse) -> dict[str, int]:
    rows: dict[str, int] = {}
    with duckdb.connect(str(db), read_only=True) as duck:
        present = {r[0] for r in duck.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        for table in TABLES:
            spark.drop(table)
            if table not in present:
                continue
            for batch in duck.sql(f"SELECT * FROM {table}").to_arrow_reader(LOAD_ROWS):
                spark.write_table(table, batch.to_pandas(), mode="append")
                rows[table] = rows.get(table, 0) + batch.num_rows
    return rows


def _max_difference(ours: pd.DataFrame, theirs: pd.DataFrame) -> dict[str, Any]:
    """How far the Spark feature matrix is from DuckDB's: same accounts,
    same NULLs, the largest relative difference of a numeric value."""
    key = ["account_id", "as_of_date"]
    a = ours.sort_values(key).reset_index(drop=True)
    b = theirs.sort_values(key).reset_index(drop=True)[a.columns]
    same_rows = bool((a[key].astype(str).values == b[key].astype(str).values).all()) and len(a) == len(b)
    numeric = [c for c in a.columns if pd.api.types.is_numeric_dtype(a[c]) and c not in key]
    x = a[numeric].to_numpy(dtype="float64")
    y = b[numeric].to_numpy(dtype="float64")
    same_nulls = bool((np.isnan(x) == np.isnan(y)).all())
    scale = np.maximum(np.abs(y), 1.0)
    rel = np.nanmax(np.abs(x - y) / scale) if x.size else 0.0
    return {
        "same_rows": same_rows,
        "same_nulls": same_nulls,
        "max_rel_difference": float(rel),
        "columns": len(a.columns),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = data_arguments(argparse.ArgumentParser(description=__doc__), accounts=10_000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="8g", help="spark.driver.memory (local mode: the whole engine)")
    parser.add_argument("--keep", action="store_true", help="reuse the Spark tables of an earlier run (no load)")
    parser.add_argument("--url", help="a Spark warehouse URL to use instead of --master and --driver-memory")
    parser.add_argument("--snapshots", type=int, default=12, help="snapshots in the training set (at least 2)")
    args = parser.parse_args(argv)
    if args.snapshots < 2:
        parser.error("--snapshots must be at least 2 (scoring reads the month before the last)")

    end = dt.date.fromisoformat(args.end_date)
    workdir = Path(args.workdir).resolve()
    db = workdir / f"bench_{args.accounts}_{args.months}_{args.seed}_{end}.duckdb"
    if not db.exists():
        raise SystemExit(f"{db} is missing: run python -m benchmarks.run --accounts {args.accounts} first")
    spark_dir = workdir / f"spark_{args.accounts}"
    if not args.keep:
        shutil.rmtree(spark_dir, ignore_errors=True)
    url = args.url or (
        f"spark://{args.master}?warehouse_dir={spark_dir}&database=bench&spark.driver.memory={args.driver_memory}"
    )
    spark_dir.mkdir(parents=True, exist_ok=True)
    duck_url = f"duckdb://{db}?memory_limit=3GB"
    bench = Bench(tree=True)
    wh = Warehouse(url, create=True)
    rows = (
        {t: wh.row_count(t) for t in TABLES if wh.table_exists(t)}
        if args.keep
        else bench.stage("setup: load the inputs into Spark", lambda: _load(db, wh))
    )
    with Warehouse(duck_url) as duck:
        duck_report = validate(duck, end)
        duck_features = build_features(duck, [end], duck_report)
    print(f"rows: {rows}", flush=True)

    report = bench.stage("validate", lambda: validate(wh, end))
    features = bench.stage("features, 1 snapshot", lambda: build_features(wh, [end], report))
    parity = _max_difference(features, duck_features)
    print(f"feature matrix vs DuckDB: {parity}", flush=True)
    del duck_features
    dates = snapshot_dates(end - dt.timedelta(days=31 * args.snapshots + 5), end)[-args.snapshots :]
    train_set = bench.stage(
        f"training set, {len(dates)} snapshots",
        lambda: build_training_set(wh, report, dates[0], dates[-1], mature_only=False),
    )
    bench.stages[-1]["rows"] = len(train_set)
    del train_set
    wh.close()

    model_path = workdir / f"model_{args.accounts}.joblib"
    extra: dict[str, Any] = {}
    if model_path.exists():
        model = joblib.load(model_path)
        extra.update(score_stages(bench, url, spark_dir, model, end, dates[-2], features, report))
    else:
        print(f"no {model_path}: scoring skipped (run benchmarks.run without --skip-train first)")

    summary = {
        **run_header(),
        "engine": redact_url(args.url) if args.url else f"Spark {args.master}, driver memory {args.driver_memory}",
        "accounts": args.accounts,
        "months": args.months,
        "rows": rows,
        "active_accounts_scored": len(features),
        "feature_parity_with_duckdb": parity,
        "stages": bench.stages,
        **extra,
    }
    return write_results(Path(args.out) / f"bench_spark_{args.accounts}", summary, markdown)


def markdown(summary: dict[str, Any]) -> str:
    parity = summary["feature_parity_with_duckdb"]
    lines = [
        f"# Benchmark on Spark: {summary['accounts']:,} accounts x {summary['months']} months",
        "",
        f"Run {summary['date']} on {summary['machine']}; {summary['engine']}.",
        "Rows: " + ", ".join(f"{t} {n:,}" for t, n in summary["rows"].items()) + ".",
        f"Active accounts scored: {summary['active_accounts_scored']:,}.",
        f"Feature matrix vs DuckDB's on the same data: same rows {parity['same_rows']}, same NULLs "
        f"{parity['same_nulls']}, largest relative difference {parity['max_rel_difference']:.1e} "
        f"over {parity['columns']} columns.",
        "",
        "| stage | seconds | peak RSS, Python + JVM (MB) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {s['stage']} | {s['seconds']:.1f} | {s['peak_rss_mb']:,} |" for s in summary["stages"]]
    if summary.get("score_breakdown_s"):
        lines += [
            "",
            "Score + explain + write breakdown (s): "
            + ", ".join(f"{k} {v}" for k, v in summary["score_breakdown_s"].items()),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
