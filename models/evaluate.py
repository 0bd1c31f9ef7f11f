"""Evaluation metrics as pure functions: arrays in, numbers (or frames) out."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)


def expected_calibration_error(y_true: np.ndarray, prob: np.ndarray, bins: int = 10) -> float:
    """Weighted mean |observed rate - mean predicted| over equal-count bins.
    Tied probabilities always share a bin (the one of their middle rank), so
    the result does not depend on the row order."""
    y_true, prob = np.asarray(y_true, float), np.asarray(prob, float)
    if len(prob) == 0:
        return float("nan")
    order = np.argsort(prob, kind="stable")
    y, p = y_true[order], prob[order]
    n = len(p)
    ranks = np.array_split(np.arange(n), min(bins, n))
    bin_of_rank = np.repeat(np.arange(len(ranks)), [len(r) for r in ranks])
    middle = (np.searchsorted(p, p, side="left") + np.searchsorted(p, p, side="right") - 1) // 2
    bin_of_row = bin_of_rank[middle]
    total = 0.0
    for b in np.unique(bin_of_row):
        chunk = bin_of_row == b
        total += chunk.sum() * abs(y[chunk].mean() - p[chunk].mean())
    return total / n


def calibration_table(y_true: np.ndarray, prob: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed churn rate per equal-count bin (for plots)."""
    frame = pd.DataFrame({"y": np.asarray(y_true, float), "p": np.asarray(prob, float)})
    frame["bin"] = pd.qcut(frame["p"].rank(method="first"), min(bins, len(frame)), labels=False)
    return frame.groupby("bin").agg(predicted=("p", "mean"), observed=("y", "mean"), n=("y", "size")).reset_index()


def top_share_capture(values: np.ndarray, prob: np.ndarray, share: float = 0.1) -> float:
    """Sum of ``values`` over the ``share`` highest-probability rows, with ties
    at the cut-off shared in proportion (so a constant score captures exactly
    ``share`` of the total, as a random pick would on average)."""
    values, prob = np.asarray(values, float), np.asarray(prob, float)
    k = max(1, int(round(len(prob) * share)))
    threshold = np.sort(prob)[::-1][k - 1]
    above = prob > threshold
    tied = prob == threshold
    return float(values[above].sum() + (k - above.sum()) * values[tied].mean())


def lift_table(y_true: np.ndarray, prob: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Churn rate, lift and cumulative recall per risk decile (1 = highest risk)."""
    y = np.asarray(y_true, float)
    order = np.argsort(-np.asarray(prob, float), kind="stable")
    base, positives = (y.mean(), y.sum()) if len(y) else (float("nan"), 0.0)
    rows, caught = [], 0.0
    for i, chunk in enumerate(np.array_split(order, min(bins, len(order))), start=1):
        caught += y[chunk].sum()
        rate = y[chunk].mean()
        rows.append(
            {
                "decile": i,
                "n": len(chunk),
                "churn_rate": rate,
                "lift": rate / base if base else float("nan"),
                "cumulative_recall": caught / positives if positives else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def classification_metrics(
    y_true: np.ndarray,
    prob: np.ndarray,
    arr: np.ndarray | None = None,
    top_share: float = 0.1,
) -> dict[str, float]:
    """ROC AUC, PR AUC, Brier, log loss, ECE, lift/recall at the top share and
    the share of churned ARR captured there (when ``arr`` is given)."""
    y = np.asarray(y_true, int)
    p = np.clip(np.asarray(prob, float), 1e-6, 1 - 1e-6)
    both = len(np.unique(y)) == 2
    k = max(1, int(round(len(p) * top_share)))
    caught = top_share_capture(y, p, top_share)
    base = y.mean() if len(y) else float("nan")
    out = {
        "n": float(len(y)),
        "positives": float(y.sum()),
        "base_rate": float(base),
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": float(expected_calibration_error(y, p)),
        "mean_predicted": float(p.mean()),
        f"lift_top{int(top_share * 100)}": float(caught / k / base) if base else float("nan"),
        f"recall_top{int(top_share * 100)}": float(caught / y.sum()) if y.sum() else float("nan"),
    }
    if arr is not None:
        arr = np.asarray(arr, float)
        churned_arr = float((arr * y).sum())
        out[f"arr_captured_top{int(top_share * 100)}"] = (
            top_share_capture(arr * y, p, top_share) / churned_arr if churned_arr else float("nan")
        )
    return out


def metrics_by_segment(
    frame: pd.DataFrame,
    prob_col: str = "prob",
    label_col: str = "churned",
    segment_col: str = "segment",
    arr_col: str | None = "arr",
) -> pd.DataFrame:
    """The same metrics per segment (one row each, plus ``all``)."""
    rows = []
    groups: Mapping[str, pd.DataFrame] = {
        "all": frame,
        **{str(k): g for k, g in frame.groupby(frame[segment_col].fillna("unknown"), observed=True)},
    }
    for name, g in groups.items():
        arr = g[arr_col].to_numpy() if arr_col and arr_col in g else None
        y = g[label_col].to_numpy()
        counts = {"accounts": len(g), "churned": int(np.nansum(y))}
        rows.append({"segment": name, **counts, **classification_metrics(y, g[prob_col].to_numpy(), arr)})
    return pd.DataFrame(rows)
