"""Naive peers measured side by side with the pipeline's own paths.

(a) usage features computed in pandas from the raw events (what a notebook
    usually does); (b) ``shap.TreeExplainer`` on a default-depth LightGBM vs
    the pipeline's depth-limited model with LightGBM's native TreeSHAP;
(c) ``DataFrame.to_sql`` vs the pipeline's COPY path into PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pandas as pd

from pipeline.warehouse import Warehouse


def naive_pandas_usage(wh: Warehouse, as_of: dt.date) -> tuple[pd.DataFrame, dict[str, float]]:
    """Pull every raw event into pandas, then groupby: the usual notebook way."""
    started = time.perf_counter()
    events = wh.query("SELECT account_id, event_time, event_type, user_id, quantity FROM usage_events")
    loaded = time.perf_counter() - started
    cutoff = pd.Timestamp(as_of)
    events = events[events["event_time"] <= cutoff]
    events["quantity"] = events["quantity"].fillna(1)
    age = (cutoff - events["event_time"]).dt.total_seconds() / 86400
    out = {}
    for days in (7, 30, 90):
        window = events[age < days]
        out[f"events_{days}d"] = window.groupby("account_id")["quantity"].sum()
        out[f"active_users_{days}d"] = window.groupby("account_id")["user_id"].nunique()
    recent = events[age < 30]
    out["active_days_30d"] = recent.groupby("account_id")["event_time"].apply(lambda s: s.dt.normalize().nunique())
    out["event_types_used_30d"] = recent.groupby("account_id")["event_type"].nunique()
    out["days_since_last_activity"] = (
        cutoff - events.groupby("account_id")["event_time"].max()
    ).dt.total_seconds() / 86400
    frame = pd.DataFrame(out)
    total = time.perf_counter() - started
    return frame, {"load_seconds": loaded, "total_seconds": total, "rows": len(events)}


def shap_peer(train_x: pd.DataFrame, train_y: pd.Series, explain_x: pd.DataFrame, our_model) -> dict[str, float]:
    """Default-depth LightGBM explained with shap.TreeExplainer vs our path."""
    import lightgbm as lgb
    import shap

    default = lgb.LGBMClassifier(n_estimators=300, verbose=-1, n_jobs=2, random_state=0)
    default.fit(train_x, train_y)
    started = time.perf_counter()
    values = shap.TreeExplainer(default).shap_values(explain_x)
    peer_seconds = time.perf_counter() - started
    started = time.perf_counter()
    # our depth-limited model, exact TreeSHAP (models.treeshap; its tables were built when scoring)
    ours = our_model.contributions(explain_x.assign())
    our_seconds = time.perf_counter() - started
    depth = _mean_depth(default.booster_)
    return {
        "rows": len(explain_x),
        "peer_trees": default.booster_.num_trees(),
        "peer_mean_leaf_depth": depth,
        "peer_seconds": peer_seconds,
        "our_trees": our_model.booster.num_trees(),
        "our_mean_leaf_depth": _mean_depth(our_model.booster),
        "our_seconds": our_seconds,
        "speedup": peer_seconds / our_seconds if our_seconds else float("nan"),
        "peer_values_shape": str(np.shape(values)),
        "our_values_shape": str(ours.shape),
    }


def _mean_depth(booster) -> float:
    frame = booster.trees_to_dataframe()
    leaves = frame[frame["left_child"].isna()]
    return float(leaves["node_depth"].mean() - 1)


def write_peer(pg_url: str, frame: pd.DataFrame) -> dict[str, float]:
    """The same frame into PostgreSQL with DataFrame.to_sql and with COPY."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    started = time.perf_counter()
    frame.to_sql("bench_to_sql", engine, if_exists="replace", index=False, chunksize=50_000)
    to_sql_seconds = time.perf_counter() - started
    engine.dispose()
    with Warehouse(pg_url) as wh:
        started = time.perf_counter()
        wh.write_table("bench_copy", frame)
        copy_seconds = time.perf_counter() - started
        wh.drop("bench_copy")
        wh.drop("bench_to_sql")
    return {
        "rows": len(frame),
        "columns": frame.shape[1],
        "to_sql_seconds": to_sql_seconds,
        "copy_seconds": copy_seconds,
        "speedup": to_sql_seconds / copy_seconds,
    }
