"""The monitor's vectorised per-slice metrics equal scikit-learn's and
models.evaluate's on the same rows (ties, one-class slices, tiny slices),
and the alert rule flags what it promises."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from models import evaluate
from models.monitor_metrics import METRICS, binomial_interval, flag, slice_metrics


def _history(seed: int = 0, n: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # probabilities rounded to 2 decimals: many ties, inside and across slices
    p = np.round(rng.beta(1.2, 6, n), 2)
    y = (rng.random(n) < p * 1.3).astype(float)
    frame = pd.DataFrame(
        {
            "as_of_date": pd.to_datetime(rng.choice(["2025-01-31", "2025-02-28", "2025-03-31"], n)),
            "model_name": "churn-model",
            "model_version": rng.choice(["1", "2"], n),
            "churn_probability": p,
            "churned": y,
            "arr": rng.choice([1200.0, 6000.0, 30000.0], n),
            "segment": pd.array(rng.choice(["SMB", "Mid-Market", "Enterprise", None], n), dtype="string"),
            "risk_tier": np.where(p >= 0.5, "high", np.where(p >= 0.2, "medium", "low")),
        }
    )
    # a slice of one class only, and a pending row that must be ignored
    frame.loc[frame["segment"] == "Enterprise", "churned"] = 0.0
    pending = frame.iloc[:5].assign(churned=np.nan, churn_probability=0.99)
    return pd.concat([frame, pending], ignore_index=True)


def _expected(rows: pd.DataFrame) -> dict[str, float]:
    y, p, arr = rows["churned"].to_numpy(int), rows["churn_probability"].to_numpy(float), rows["arr"].to_numpy(float)
    both = len(set(y)) == 2
    k = max(1, int(round(len(p) * 0.1)))
    caught = evaluate.top_share_capture(y, p)
    churned_arr = float((arr * y).sum())
    return {
        "accounts": len(y),
        "churned": int(y.sum()),
        "observed_rate": y.mean(),
        "mean_probability": p.mean(),
        "roc_auc": roc_auc_score(y, p) if both else np.nan,
        "pr_auc": average_precision_score(y, p) if both else np.nan,
        "brier": brier_score_loss(y, p),
        "ece": evaluate.expected_calibration_error(y, p),
        "lift_top10": caught / k / y.mean() if y.sum() else np.nan,
        "recall_top10": caught / y.sum() if y.sum() else np.nan,
        "arr_churned": churned_arr,
        "arr_captured_top10": evaluate.top_share_capture(arr * y, p) / churned_arr if churned_arr else np.nan,
    }


def _rows_of(frame: pd.DataFrame, slice_name: str) -> pd.DataFrame:
    if slice_name == "all":
        return frame
    column, _, value = slice_name.partition("=")
    values = frame["segment" if column == "segment" else "risk_tier"].astype("string").fillna("unknown")
    return frame[values == value]


@pytest.mark.parametrize("seed", [0, 1])
def test_every_slice_equals_sklearn_and_evaluate(seed):
    frame = _history(seed)
    got = slice_metrics(frame)
    labelled = frame[frame["churned"].notna()]
    expected_slices = 3 * 2 * (1 + 4 + 3)  # dates x versions x (all, 4 segments incl. unknown, 3 tiers)
    assert len(got) == expected_slices and not got.duplicated(["as_of_date", "model_version", "slice"]).any()
    for row in got.itertuples(index=False):
        key = (labelled["as_of_date"] == row.as_of_date) & (labelled["model_version"] == row.model_version)
        want = _expected(_rows_of(labelled[key], row.slice))
        for metric in METRICS:
            value = getattr(row, metric)
            if np.isnan(want[metric]):
                assert np.isnan(value), (row.slice, metric)
            else:
                assert value == pytest.approx(want[metric], rel=1e-9, abs=1e-12), (row.as_of_date, row.slice, metric)


def test_one_class_slice_is_null_not_an_error():
    frame = _history(0)
    got = slice_metrics(frame)
    enterprise = got[got["slice"] == "segment=Enterprise"]
    assert len(enterprise) and enterprise["roc_auc"].isna().all() and enterprise["pr_auc"].isna().all()
    assert enterprise["lift_top10"].isna().all() and (enterprise["churned"] == 0).all()
    assert enterprise["brier"].notna().all()


def test_tiny_slices_and_no_labelled_rows():
    one = pd.DataFrame(
        {
            "as_of_date": pd.to_datetime(["2025-01-31"] * 2),
            "model_name": "m",
            "model_version": "1",
            "churn_probability": [0.3, 0.3],
            "churned": [1.0, 0.0],
            "arr": [100.0, 200.0],
            "segment": ["SMB", "SMB"],
            "risk_tier": ["medium", "medium"],
        }
    )
    got = slice_metrics(one).set_index("slice")
    assert got.loc["all", "roc_auc"] == 0.5 and got.loc["all", "recall_top10"] == 0.5  # a tie shares the cut
    assert slice_metrics(one.assign(churned=np.nan)).empty


def test_wilson_interval():
    low, high = binomial_interval(np.array([10]), np.array([100]))
    assert low[0] == pytest.approx(0.0552, abs=1e-4) and high[0] == pytest.approx(0.1744, abs=1e-4)


def test_flag_rules():
    perf = pd.DataFrame(
        {
            "as_of_date": pd.to_datetime(["2025-01-31", "2025-02-28", "2025-03-31", "2025-03-31"]),
            "model_name": "m",
            "model_version": ["1", "1", "1", "1"],
            "slice": ["all", "all", "all", "tier=high"],
            "accounts": [1000, 1000, 1000, 10],
            "churned": [100, 100, 100, 1],
            "observed_rate": [0.1, 0.1, 0.1, 0.1],
            "mean_probability": [0.11, 0.11, 0.2, 0.9],
            "roc_auc": [0.80, 0.74, 0.80, 0.1],
        }
    )
    got = flag(perf, {("m", "1"): 0.80}, auc_drop=0.05)
    assert list(got["alert"].iloc[:3]) == [False, True, True] and pd.isna(got["alert"].iloc[3])
    assert "below the test-window AUC 0.800" in got["alert_reason"].iloc[1]
    assert "outside the 95% interval" in got["alert_reason"].iloc[2]
    assert pd.isna(got["alert_reason"].iloc[0]) and (got["test_roc_auc"] == 0.8).all()
    # no test AUC known (e.g. an older model): only the calibration rule can fire
    unknown = flag(perf, {}, auc_drop=0.05)
    assert list(unknown["alert"].iloc[:3]) == [False, False, True]
