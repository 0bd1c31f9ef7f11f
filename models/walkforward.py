"""Walk-forward (rolling-origin) evaluation, and the model that ships: trained
on the freshest mature labels, calibrated on held-out predictions.

Evaluation: for each of the last ``eval_windows`` mature snapshots T, a
*fold* model is trained exactly as a single out-of-time split would train it
with T as its test window (train on the oldest snapshots whose labels were
known before the validation window, embargo included; early stopping on the
validation snapshot; calibration on the next one) and predicts T. Each
window is therefore scored by a model that never saw it: the reported
metrics, their bootstrap intervals and the gate's comparison all come from
these held-out predictions.

The shipped model is then refit on every mature snapshot (the evaluation
windows included: the freshest labels) with the number of trees the folds
chose (their median), and calibrated on the folds' held-out raw predictions
(out of fold across time, as scikit-learn's ``CalibratedClassifierCV(
ensemble=False)`` does across folds). The snapshots each model saw are
recorded (``Fold.windows``, ``RefitWindows``) so the claim can be checked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.calibration import fit_calibrator, level_shift
from models.evaluate import classification_metrics, expected_calibration_error, top_share_capture
from models.train import (
    LABEL,
    ChurnModel,
    NotEnoughHistoryError,
    Split,
    TrainConfig,
    _categories,
    annual_value,
    base_rate_baseline,
    event_types_of,
    fit_model,
    logistic_baseline,
    model_features,
    reference_profile,
    split_out_of_time,
    to_model_matrix,
)

log = logging.getLogger(__name__)

#: metrics reported per window and as their mean (ARR capture needs MRR, present in every contract)
METRICS = ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_top10", "recall_top10", "arr_captured_top10")
#: metrics with a bootstrap interval (and those the gate can compare with a paired bootstrap)
INTERVAL_METRICS = ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_top10")
#: the drift reference is the population of this many latest training snapshots
REFERENCE_SNAPSHOTS = 3


@dataclass(frozen=True)
class Fold:
    """One evaluation window and the snapshots its model saw."""

    test_date: str
    windows: dict[str, list[str]]  # train / valid / calib / test snapshot dates of the fold model
    best_iteration: int
    params: dict  # the LightGBM parameters the fold trained with (after a search, the chosen ones)
    trials: list  # the fold's search trials, if any


@dataclass(frozen=True)
class RefitWindows:
    """What the shipped model saw: its training snapshots and the windows whose
    held-out predictions calibrated it."""

    train: list[str]
    calibration: list[str]
    trees: int


def _dates(frame: pd.DataFrame) -> list[str]:
    return sorted({str(pd.Timestamp(d).date()) for d in frame["as_of_date"]})


def mature(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["mature"]] if "mature" in frame else frame


def evaluation_dates(frame: pd.DataFrame, config: TrainConfig) -> list[pd.Timestamp]:
    """The last ``eval_windows`` mature snapshots (fewer when the history is short)."""
    dates = sorted(pd.Timestamp(d) for d in mature(frame)["as_of_date"].unique())
    return dates[-config.eval_windows :]


def walk_forward(
    frame: pd.DataFrame, config: TrainConfig, horizon_days: int, grace_days: int
) -> tuple[list[Fold], pd.DataFrame]:
    """The folds and their held-out rows: every row of every evaluation window
    with ``prob`` (the fold model's calibrated probability), ``raw`` (its
    uncalibrated one) and the two baselines' probabilities, fitted per fold."""
    single = replace(config, test_snapshots=1)
    folds, parts = [], []
    dates = evaluation_dates(frame, config)
    if not dates:  # no mature snapshot: the split says so, with its advice
        split_out_of_time(frame, single, horizon_days, grace_days)
    for when in dates:
        try:
            split = split_out_of_time(frame[frame["as_of_date"] <= when], single, horizon_days, grace_days)
        except NotEnoughHistoryError:
            if when == dates[-1]:
                raise  # not even the latest window can be trained for
            log.warning("Evaluation window %s skipped: not enough history before it", when.date())
            continue  # an early window without enough history before it: fewer windows
        model = fit_model(split, single)
        logistic, _ = logistic_baseline(split)
        test = split.test.assign(
            prob=model.predict_proba(split.test),
            raw=model.predict_raw(split.test),
            baseline_logistic=logistic,
            baseline_base_rate=base_rate_baseline(split),
            window=str(when.date()),
        )
        parts.append(test)
        config_used = model.config
        folds.append(
            Fold(
                str(when.date()),
                split.windows(),
                int(config_used["best_iteration"]),
                config_used["params"],
                config_used.get("trials", []),
            )
        )
    return folds, pd.concat(parts, ignore_index=True)


def refit(
    frame: pd.DataFrame, config: TrainConfig, folds: list[Fold], heldout: pd.DataFrame
) -> tuple[ChurnModel, RefitWindows]:
    """The shipped model: every mature snapshot, the latest fold's parameters
    (after a search, the ones chosen on the latest validation window) with the
    folds' median number of trees, calibrated on the folds' held-out raw
    predictions."""
    rows = mature(frame).reset_index(drop=True)
    features = model_features(rows)
    categories = _categories(rows, features)
    trees = max(1, int(np.median([f.best_iteration for f in folds])))
    params = {**folds[-1].params, "n_estimators": trees, "random_state": config.seed}
    clf = lgb.LGBMClassifier(**params)
    clf.fit(to_model_matrix(rows, features, categories), rows[LABEL])
    calibrator = fit_calibrator(heldout["raw"].to_numpy(), heldout[LABEL].to_numpy(), config.calibration)
    if config.level_snapshots:
        level = rows[rows["as_of_date"].isin(sorted(rows["as_of_date"].unique())[-config.level_snapshots :])]
        raw = clf.booster_.predict(to_model_matrix(level, features, categories))
        calibrator.shift = level_shift(calibrator, raw, level[LABEL].to_numpy())
    model = ChurnModel(
        booster=clf.booster_,
        calibrator=calibrator,
        features=features,
        categories=categories,
        event_types=event_types_of(rows, features),
        config={**config.__dict__, "params": params, "trials": folds[-1].trials, "best_iteration": trees},
    )
    latest = sorted(rows["as_of_date"].unique())[-REFERENCE_SNAPSHOTS:]
    recent = rows[rows["as_of_date"].isin(latest)]
    # the drift reference: the latest snapshots, whose windows are all complete
    model.reference = reference_profile(model.matrix(recent), model.predict_proba(recent), set(categories))
    return model, RefitWindows(_dates(rows), sorted(heldout["window"].unique()), trees)


# -- metrics per window, their mean and a bootstrap interval ----------------------
def _window_metrics(part: pd.DataFrame, column: str) -> dict[str, float]:
    return classification_metrics(part[LABEL].to_numpy(), part[column].to_numpy(), annual_value(part))


def per_window(heldout: pd.DataFrame, column: str = "prob") -> pd.DataFrame:
    """One row of metrics per evaluation window, with its accounts and churners."""
    rows = []
    for window, part in heldout.groupby("window", sort=True):
        rows.append(
            {
                "window": window,
                "accounts": len(part),
                "churned": int(part[LABEL].sum()),
                **_window_metrics(part, column),
            }
        )
    return pd.DataFrame(rows)


def _resample(heldout: pd.DataFrame, rng: np.random.Generator) -> list[np.ndarray]:
    """Row positions of one bootstrap draw: accounts resampled within each window."""
    out = []
    for idx in heldout.groupby("window", sort=True).indices.values():
        out.append(rng.choice(idx, size=len(idx), replace=True))
    return out


def mean_with_interval(
    heldout: pd.DataFrame, column: str = "prob", n_boot: int = 200, seed: int = 0, level: float = 0.90
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Each metric's mean over the windows (counts: their sum) and the
    bootstrap ``level`` interval of the METRICS (accounts resampled within
    each window, the mean recomputed per draw)."""
    table = per_window(heldout, column).drop(columns=["window", "accounts", "churned"])
    mean = table.mean().to_dict()
    mean.update({k: float(table[k].sum()) for k in ("n", "positives") if k in table})
    rng = np.random.default_rng(seed)
    y, p = heldout[LABEL].to_numpy(float), heldout[column].to_numpy(float)
    draws = []
    for _ in range(n_boot):
        per = [fast_metrics(y[idx], p[idx], INTERVAL_METRICS) for idx in _resample(heldout, rng)]
        draws.append({m: np.nanmean([w[m] for w in per]) for m in INTERVAL_METRICS})
    table = pd.DataFrame(draws)
    tail = (1 - level) / 2
    interval = {m: (float(table[m].quantile(tail)), float(table[m].quantile(1 - tail))) for m in INTERVAL_METRICS}
    return {k: float(v) for k, v in mean.items()}, interval


def paired_bootstrap(
    heldout: pd.DataFrame,
    challenger: str,
    champion: str,
    metric: str,
    better: Callable[[float, float], float],
    n_boot: int = 500,
    seed: int = 0,
    level: float = 0.90,
) -> tuple[float, tuple[float, float]]:
    """The gain of ``challenger`` over ``champion`` (columns of the same rows)
    on ``metric``, mean over windows, and its paired bootstrap ``level``
    interval: both models are scored on the same resampled accounts."""

    y = heldout[LABEL].to_numpy(float)
    a, b = heldout[challenger].to_numpy(float), heldout[champion].to_numpy(float)
    names = (metric,)

    def gain(groups: list[np.ndarray]) -> float:
        values = [
            better(fast_metrics(y[i], a[i], names)[metric], fast_metrics(y[i], b[i], names)[metric]) for i in groups
        ]
        return float(np.nanmean(values))

    observed = gain(list(heldout.groupby("window", sort=True).indices.values()))
    rng = np.random.default_rng(seed)
    draws = np.array([gain(_resample(heldout, rng)) for _ in range(n_boot)])
    tail = (1 - level) / 2
    return observed, (float(np.nanquantile(draws, tail)), float(np.nanquantile(draws, 1 - tail)))


def as_split(frame: pd.DataFrame, heldout: pd.DataFrame) -> Split:
    """A :class:`Split` view for reports: ``train`` = the shipped model's rows,
    ``calib`` and ``test`` = the evaluation windows (their held-out
    predictions calibrated it and are scored), ``valid`` empty (the refit uses
    the folds' number of trees, not early stopping)."""
    columns = [c for c in heldout.columns if c in frame.columns]
    test = heldout[columns].reset_index(drop=True)
    return Split(mature(frame).reset_index(drop=True), test.iloc[:0], test, test)


# -- fast metrics for the bootstrap (the same definitions as models.evaluate) -----
def fast_metrics(y: np.ndarray, p: np.ndarray, names: tuple[str, ...] = ("roc_auc", "pr_auc", "brier")) -> dict:
    """ROC AUC (rank formula, ties averaged), average precision (sklearn's
    step-wise definition, ties grouped), Brier and mean predicted: plain numpy,
    ~50x faster than the sklearn calls for the thousands of bootstrap draws.
    Equal to :func:`models.evaluate.classification_metrics` (tested)."""
    y = np.asarray(y, float)
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    out: dict[str, float] = {}
    n1 = y.sum()
    n0 = len(y) - n1
    if "roc_auc" in names:
        from scipy.stats import rankdata

        out["roc_auc"] = float((rankdata(p)[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)) if n1 and n0 else np.nan
    if "pr_auc" in names:
        order = np.argsort(-p, kind="mergesort")
        ps, ys = p[order], y[order]
        last = np.r_[np.diff(ps) != 0, True]  # the last row of each group of tied scores
        tps = np.cumsum(ys)[last]
        seen = np.arange(1, len(ys) + 1)[last]
        out["pr_auc"] = float(np.sum(np.diff(np.r_[0.0, tps / n1]) * tps / seen)) if n1 and n0 else np.nan
    if "brier" in names:
        out["brier"] = float(np.mean((p - y) ** 2))
    if "log_loss" in names:
        out["log_loss"] = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    if "ece" in names:
        out["ece"] = expected_calibration_error(y, p)
    if "lift_top10" in names:
        k = max(1, int(round(len(p) * 0.1)))
        out["lift_top10"] = float(top_share_capture(y, p, 0.1) / k / y.mean()) if n1 else np.nan
    return out
