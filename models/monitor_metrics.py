"""Live performance of scored dates, computed without MLflow or a database:
the metrics of :mod:`models.evaluate` for every (date, model version, slice)
at once, and the alert rule.

Vectorised: the rows of every slice are sorted once (slice, then probability
descending) and each metric is a sum per slice or per tie block, so a history
of a million scored accounts takes seconds, not a loop over hundreds of
slices. Each metric equals its definition in :mod:`models.evaluate` (and
scikit-learn's): ROC AUC from average ranks (ties count half), PR AUC as
average precision over distinct thresholds, equal-count ECE bins with tied
probabilities in one bin, and the top-10% capture sharing ties at the cut-off.
A metric a slice cannot define (one class only) is missing, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd

KEYS = ["as_of_date", "model_name", "model_version"]
METRICS = [
    "accounts",
    "churned",
    "observed_rate",
    "mean_probability",
    "roc_auc",
    "pr_auc",
    "brier",
    "ece",
    "lift_top10",
    "recall_top10",
    "arr_churned",
    "arr_captured_top10",
]
ALL = "all"


def slice_metrics(outcomes: pd.DataFrame, keys: Sequence[str] = KEYS, top_share: float = 0.1) -> pd.DataFrame:
    """One row per (``keys``, slice) of the labelled rows of ``outcomes``
    (columns ``churned`` 0/1, ``churn_probability``, ``arr``, ``segment``,
    ``risk_tier``): slice ``all``, ``segment=<value>`` and ``tier=<value>``
    (a missing value reads ``unknown``), with :data:`METRICS`."""
    keys = list(keys)
    rows = outcomes[outcomes["churned"].notna()]
    if rows.empty:
        return pd.DataFrame(columns=[*keys, "slice", *METRICS])
    key_id = rows.groupby(keys, sort=True, observed=True, dropna=False).ngroup().to_numpy()
    key_values = rows[keys].drop_duplicates().sort_values(keys, kind="stable").reset_index(drop=True)
    segment, segments = pd.factorize(rows["segment"].astype("string").fillna("unknown"), sort=True)
    tier, tiers = pd.factorize(rows["risk_tier"].astype("string").fillna("unknown"), sort=True)
    labels = [ALL, *(f"segment={s}" for s in segments), *(f"tier={t}" for t in tiers)]
    width = len(labels)
    slice_id = np.concatenate([np.zeros(len(rows), np.int64), 1 + segment, 1 + len(segments) + tier])
    raw = np.tile(key_id, 3) * width + slice_id
    used, group = np.unique(raw, return_inverse=True)
    y = np.tile(rows["churned"].to_numpy(float), 3)
    p = np.tile(rows["churn_probability"].to_numpy(float), 3)
    arr = np.tile(np.nan_to_num(rows["arr"].to_numpy(float)), 3)
    out = key_values.iloc[used // width].reset_index(drop=True)
    out["slice"] = [labels[i] for i in used % width]
    for name, values in _metrics(group, len(used), y, p, arr, top_share).items():
        out[name] = values
    return out


def _metrics(g: np.ndarray, groups: int, y: np.ndarray, p: np.ndarray, arr: np.ndarray, share: float) -> dict:
    def per_group(weights: np.ndarray, ids: np.ndarray = g) -> np.ndarray:
        return np.bincount(ids, weights, minlength=groups)

    n = np.bincount(g, minlength=groups).astype(float)
    pos = per_group(y)
    neg = n - pos
    arr_churned = per_group(arr * y)
    # sort by slice, then probability descending: tie blocks are runs of one probability
    order = np.lexsort((-p, g))
    gs, ps, ys = g[order], p[order], y[order]
    start = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
    new_block = np.r_[True, (gs[1:] != gs[:-1]) | (ps[1:] != ps[:-1])]
    block = np.cumsum(new_block) - 1
    first = np.flatnonzero(new_block)  # sorted positions where each block starts
    size = np.bincount(block)
    last = first + size - 1
    block_g = gs[first]
    block_pos = np.bincount(block, ys)
    a, b = first - start[block_g], last - start[block_g]  # positions in the slice, highest probability = 0
    # ROC AUC: Mann-Whitney with average ranks (ascending rank of the block = n - (a + b) / 2)
    rank_sum = per_group(block_pos * (n[block_g] - (a + b) / 2), block_g)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
        # PR AUC: sum over thresholds of (recall step) x (precision at the threshold)
        tp_end = np.cumsum(ys)[last] - np.concatenate([[0], np.cumsum(pos)[:-1]])[block_g]
        ap = per_group(block_pos * tp_end / (b + 1), block_g) / pos
    both = (pos > 0) & (neg > 0)
    auc, ap = np.where(both, auc, np.nan), np.where(both, ap, np.nan)
    ece = _ece(g, groups, n, y, p, start, order, block, a, b)
    k = np.maximum(1, np.round(n * share)).astype(np.int64)
    threshold = ps[start + k - 1]
    caught, caught_arr = _capture(g, groups, k, threshold[g], p, y), _capture(g, groups, k, threshold[g], p, arr * y)
    with np.errstate(divide="ignore", invalid="ignore"):
        base = pos / n
        lift = np.where(pos > 0, caught / k / base, np.nan)
        recall = np.where(pos > 0, caught / pos, np.nan)
        captured = np.where(arr_churned > 0, caught_arr / arr_churned, np.nan)
    return {
        "accounts": n.astype(np.int64),
        "churned": pos.astype(np.int64),
        "observed_rate": pos / n,
        "mean_probability": per_group(p) / n,
        "roc_auc": auc,
        "pr_auc": ap,
        "brier": per_group((y - p) ** 2) / n,
        "ece": ece,
        "lift_top10": lift,
        "recall_top10": recall,
        "arr_churned": arr_churned,
        "arr_captured_top10": captured,
    }


def _ece(g, groups, n, y, p, start, order, block, a, b, bins: int = 10) -> np.ndarray:
    """Expected calibration error as :func:`models.evaluate.expected_calibration_error`:
    equal-count bins by ascending rank, a tie block in the bin of its middle rank."""
    gs = g[order]
    size = n[gs].astype(np.int64)
    middle = (2 * (size - 1) - a[block] - b[block]) // 2  # ascending rank of the block's middle
    count = np.minimum(bins, size)
    q, r = np.divmod(size, count)
    cut = r * (q + 1)
    bin_ = np.where(middle < cut, middle // (q + 1), r + (middle - cut) // np.maximum(q, 1))
    cell = gs * bins + bin_
    cells = groups * bins
    gap = np.abs(np.bincount(cell, y[order], minlength=cells) - np.bincount(cell, p[order], minlength=cells))
    return gap.reshape(groups, bins).sum(axis=1) / n


def _capture(g, groups, k, threshold_of_row, p, values) -> np.ndarray:
    """Per slice, :func:`models.evaluate.top_share_capture`: the sum of
    ``values`` over the k highest probabilities, ties at the cut shared."""
    above = p > threshold_of_row
    tied = p == threshold_of_row
    above_n = np.bincount(g, above, minlength=groups)
    tied_n = np.bincount(g, tied, minlength=groups)
    above_sum = np.bincount(g, values * above, minlength=groups)
    tied_sum = np.bincount(g, values * tied, minlength=groups)
    return above_sum + (k - above_n) * tied_sum / tied_n


# -- alerts -------------------------------------------------------------------------------
def binomial_interval(successes: np.ndarray, n: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (vectorised)."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    n = np.asarray(n, float)
    rate = np.asarray(successes, float) / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def flag(
    performance: pd.DataFrame,
    test_auc: Mapping[tuple[str, str], float | None],
    auc_drop: float = 0.05,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Add ``test_roc_auc`` (the model version's test-window AUC at training,
    from ``test_auc[(model_name, model_version)]``), ``alert`` and
    ``alert_reason``. A mature date (its ``all`` slice) is flagged when its
    ROC AUC is more than ``auc_drop`` below the test-window AUC, or when its
    mean predicted probability lies outside the ``confidence`` binomial
    interval of the observed rate; other slices are not judged (NULL)."""
    out = performance.copy()
    expected = [test_auc.get((str(m), str(v))) for m, v in zip(out["model_name"], out["model_version"])]
    out["test_roc_auc"] = pd.array([np.nan if e is None else float(e) for e in expected], dtype="float64")
    low, high = binomial_interval(out["churned"].to_numpy(float), out["accounts"].to_numpy(float), confidence)
    reasons: list[str | None] = []
    for row, lo, hi in zip(out.itertuples(index=False), low, high):
        if row.slice != ALL:
            reasons.append(None)
            continue
        why = []
        if pd.notna(row.roc_auc) and pd.notna(row.test_roc_auc) and row.roc_auc < row.test_roc_auc - auc_drop:
            why.append(
                f"ROC AUC {row.roc_auc:.3f} is {row.test_roc_auc - row.roc_auc:.3f} below the test-window "
                f"AUC {row.test_roc_auc:.3f} (limit {auc_drop:g})"
            )
        if not lo <= row.mean_probability <= hi:
            why.append(
                f"mean predicted probability {row.mean_probability:.3f} is outside the {confidence:.0%} interval "
                f"{lo:.3f}-{hi:.3f} of the observed churn rate {row.observed_rate:.3f}"
            )
        reasons.append("; ".join(why))
    out["alert"] = pd.array([None if r is None else bool(r) for r in reasons], dtype="boolean")
    out["alert_reason"] = pd.array([r or None for r in reasons], dtype="string")
    return out
