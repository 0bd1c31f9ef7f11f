"""Exact TreeSHAP options side by side on the benchmark's model and accounts.

    python -m benchmarks.shap_compare --accounts 100000      # after benchmarks.run made the data and model

Times every option on the same matrix (every active account of the
benchmark's last snapshot) and checks each against LightGBM's
``pred_contrib`` (max abs difference, base value column included):

- LightGBM ``pred_contrib`` on 2 threads and on 1 (what scoring used);
- ``shap.TreeExplainer`` (for LightGBM it calls ``pred_contrib`` itself);
- FastTreeSHAP (``fasttreeshap-fixed``) v1 and v2, when installed: it cannot
  parse LightGBM's categorical splits, so it is also timed on a model of the
  same shape trained with the categoricals as plain codes;
- :class:`models.treeshap.TreeShap` (v2-style tables, numba) on 2 threads and on 1.

Writes <out>/shap_compare_<accounts>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd

from features.build import build_features
from features.staging import validate
from models.treeshap import TreeShap
from pipeline.warehouse import Warehouse


def _timed(fn, repeat: int = 2) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return best, value


def _fasttreeshap(model, x: pd.DataFrame, algorithm: str) -> np.ndarray:
    import fasttreeshap_fixed as fts

    explainer = fts.TreeExplainer(model, algorithm=algorithm, n_jobs=2)
    values = explainer.shap_values(x, check_additivity=False)
    values = values[1] if isinstance(values, list) else values
    base = np.atleast_1d(explainer.expected_value)[-1]
    return np.column_stack([values, np.full(len(x), base)])


def _codes_model(booster: lgb.Booster, x: pd.DataFrame, rounds: int, params: dict[str, Any]):
    """A model of the same shape (trees, leaves, depth) with the categoricals as
    numeric codes: what FastTreeSHAP can parse. Labels are our model's own
    predictions, so the trees look alike."""
    codes = x.apply(lambda c: c.cat.codes.replace(-1, np.nan) if isinstance(c.dtype, pd.CategoricalDtype) else c)
    target = (booster.predict(x) > np.median(booster.predict(x))).astype(int)
    keep = {k: v for k, v in params.items() if k in ("num_leaves", "max_depth", "min_child_samples", "learning_rate")}
    clf = lgb.LGBMClassifier(n_estimators=rounds, verbose=-1, n_jobs=2, random_state=0, **keep)
    return clf.fit(codes, target), codes


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--workdir", default="benchmarks/out")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--end-date", default="2026-10-31")
    parser.add_argument("--skip-peer", action="store_true", help="skip the slow FastTreeSHAP runs")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    end = dt.date.fromisoformat(args.end_date)
    model = joblib.load(workdir / f"model_{args.accounts}.joblib")
    db = next(workdir.glob(f"bench_{args.accounts}_*_{end}.duckdb"))
    with Warehouse(f"duckdb://{db.resolve()}?memory_limit=3GB") as wh:
        frame = build_features(wh, [end], validate(wh, end), event_types=dict(model.event_types))
    x = model.matrix(frame)
    booster = model.booster
    rows: list[dict[str, Any]] = []
    ref_seconds, reference = _timed(lambda: booster.predict(x, pred_contrib=True, num_threads=2))

    def add(name: str, seconds: float | None, values: np.ndarray | None, note: str = "", ref=reference) -> None:
        diff = None if values is None else float(np.abs(values - ref).max())
        rows.append({"option": name, "seconds": seconds, "max_abs_diff": diff, "note": note})
        shown = "" if seconds is None else f"{seconds:7.2f} s"
        print(f"{name:<58} {shown:>10}  diff {diff}  {note}", flush=True)

    add("LightGBM pred_contrib, 2 threads (before)", ref_seconds, reference)
    add("LightGBM pred_contrib, 1 thread", *_timed(lambda: booster.predict(x, pred_contrib=True, num_threads=1), 1))
    started = time.perf_counter()
    explainer = TreeShap(booster)
    build = time.perf_counter() - started
    explainer.contributions(x.iloc[:10])  # numba: compile or load its cache
    add("TreeShap (v2 tables, numba), 2 threads", *_timed(lambda: explainer.contributions(x, threads=2), 3))
    add("TreeShap (v2 tables, numba), 1 thread", *_timed(lambda: explainer.contributions(x, threads=1), 1))
    rows[-2]["note"] = rows[-2]["note"] or f"tables built in {build:.2f} s, {explainer.ensemble.table.nbytes:,} bytes"
    try:
        import shap

        add("shap.TreeExplainer (calls pred_contrib)", *_timed(lambda: _shap(shap, booster, x), 1))
    except Exception as exc:  # noqa: BLE001 - report what failed
        add("shap.TreeExplainer", None, None, f"failed: {type(exc).__name__}: {exc}"[:160])
    if not args.skip_peer:
        _fasttreeshap_rows(add, model, booster, x)
    trees = booster.trees_to_dataframe()
    leaves = trees[trees["left_child"].isna()]
    summary = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": f"python -m benchmarks.shap_compare --accounts {args.accounts}",
        "rows": len(x),
        "features": x.shape[1],
        "trees": int(trees["tree_index"].nunique()),
        "mean_leaves": float(leaves.groupby("tree_index").size().mean()),
        "mean_leaf_depth": float(leaves["node_depth"].mean() - 1),
        "options": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"shap_compare_{args.accounts}.json").write_text(json.dumps(summary, indent=2))
    (out / f"shap_compare_{args.accounts}.md").write_text(markdown(summary))
    print(markdown(summary))
    return summary


def _shap(shap, booster, x) -> np.ndarray:
    explainer = shap.TreeExplainer(booster)
    values = explainer.shap_values(x)
    return np.column_stack([values, np.full(len(x), np.atleast_1d(explainer.expected_value)[-1])])


def _fasttreeshap_rows(add, model, booster, x) -> None:
    for algorithm in ("v1", "v2"):
        try:
            seconds, values = _timed(lambda a=algorithm: _fasttreeshap(booster, x, a), 1)
            add(f"fasttreeshap-fixed {algorithm}, 2 threads, our model", seconds, values)
        except Exception as exc:  # noqa: BLE001 - report what failed
            add(f"fasttreeshap-fixed {algorithm}, our model", None, None, f"failed: {type(exc).__name__}: {exc}"[:160])
    params = model.config.get("params", {}) if isinstance(model.config, dict) else {}
    same, codes = _codes_model(booster, x, booster.num_trees(), params)
    ref_seconds, ref = _timed(lambda: same.booster_.predict(codes, pred_contrib=True, num_threads=2), 1)
    add("same shape, codes for categoricals: pred_contrib, 2 threads", ref_seconds, ref, ref=ref)
    for algorithm in ("v1", "v2"):
        seconds, values = _timed(lambda a=algorithm: _fasttreeshap(same.booster_, codes, a), 1)
        add(f"same shape: fasttreeshap-fixed {algorithm}, 2 threads", seconds, values, ref=ref)
    ours = TreeShap(same.booster_)
    ours.contributions(codes.iloc[:10])
    add("same shape: TreeShap, 2 threads", *_timed(lambda: ours.contributions(codes, threads=2), 2), ref=ref)


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# Exact TreeSHAP options: {summary['rows']:,} accounts x {summary['features']} features",
        "",
        f"Run {summary['date']} on {summary['machine']} (`{summary['command']}`). Model: "
        f"{summary['trees']} trees, {summary['mean_leaves']:.1f} leaves and mean leaf depth "
        f"{summary['mean_leaf_depth']:.1f} on average; categorical features and missing values.",
        "",
        "| option | seconds | max abs diff vs pred_contrib | note |",
        "|---|---:|---:|---|",
    ]
    for row in summary["options"]:
        seconds = "" if row["seconds"] is None else f"{row['seconds']:.2f}"
        diff = "" if row["max_abs_diff"] is None else f"{row['max_abs_diff']:.1e}"
        lines.append(f"| {row['option']} | {seconds} | {diff} | {row['note']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
