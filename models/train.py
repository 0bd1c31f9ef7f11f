"""Train the churn model: out-of-time split, LightGBM with early stopping,
calibration on a held-out time window, and two transparent baselines.

Input: a training set from :func:`features.build.build_training_set`
(one row per account and snapshot, with ``churned`` and ``mature``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from features import catalog
from features.build import EVENT_TYPES_ATTR, feature_columns
from models import treeshap
from models.calibration import (  # noqa: F401  (Calibrator here too: models pickled before the split name it so)
    ISOTONIC_MIN_POSITIVES,
    PROBABILITY_FLOOR,
    Calibrator,
    _logit,
    fit_calibrator,
    level_shift,
)
from models.drift import reference_profile

log = logging.getLogger(__name__)

LABEL = "churned"
#: prediction and TreeSHAP are independent per row: use every core (same results)
PREDICT_THREADS = os.cpu_count() or 1
#: features of the transparent baseline, used when present
BASELINE_FEATURES = (
    "seat_utilization_30d",
    "active_users_trend_30d",
    "days_since_last_activity",
    "days_to_renewal",
    "tenure_days",
    "open_urgent_tickets",
    "nps_latest",
)


class TrainingDataError(ValueError):
    """The training set cannot support an honest model (too few rows, labels or snapshots)."""


class NotEnoughHistoryError(TrainingDataError):
    """Too few snapshots before an evaluation window to train for it."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters and split settings. Defaults keep trees shallow so that
    TreeSHAP on every account stays cheap (cost grows with depth squared)."""

    learning_rate: float = 0.1
    num_leaves: int = 15
    max_depth: int = 5
    n_estimators: int = 400  # with depth <= 5 this caps TreeSHAP cost per account
    min_child_samples: int = 40
    reg_lambda: float = 1.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    early_stopping_rounds: int = 50
    seed: int = 42
    calibration: Literal["auto", "isotonic", "platt"] = "auto"
    test_snapshots: int = 1
    #: walk-forward evaluation: the last N mature snapshots, each scored by a model that never saw it
    eval_windows: int = 3
    #: the shipped model's average probability over the last N mature snapshots equals their churn
    #: rate (its calibrator's shape comes from the evaluation windows alone); 0 = no level shift
    level_snapshots: int = 12
    bootstrap: int = 200  # draws for the 90% intervals of the reported metrics
    calibration_snapshots: int = 1
    validation_snapshots: int = 1
    embargo: bool = True  # drop training snapshots whose label window reaches the evaluation windows
    min_train_snapshots: int = 2
    min_positives: int = 20
    search_trials: int = 0  # > 0: small random search on the validation window
    n_jobs: int = 1  # LightGBM threads; 1 is fastest at training-set sizes and never oversubscribes

    def lgb_params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "n_estimators": self.n_estimators,
            "min_child_samples": self.min_child_samples,
            "reg_lambda": self.reg_lambda,
            "subsample": self.subsample,
            "subsample_freq": 1,
            "colsample_bytree": self.colsample_bytree,
            "random_state": self.seed,
            "n_jobs": self.n_jobs,
            "min_data_per_group": 200,
            "cat_smooth": 50.0,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }


@dataclass
class Split:
    train: pd.DataFrame
    valid: pd.DataFrame
    calib: pd.DataFrame
    test: pd.DataFrame

    def windows(self) -> dict[str, list[str]]:
        return {
            name: sorted({str(d.date()) for d in getattr(self, name)["as_of_date"]})
            for name in ("train", "valid", "calib", "test")
        }


def split_out_of_time(frame: pd.DataFrame, config: TrainConfig, horizon_days: int, grace_days: int = 0) -> Split:
    """Oldest snapshots train; then validation (early stopping), calibration and
    test windows, newest last. With ``embargo`` a training snapshot is kept only
    when its label was known before the first evaluation snapshot: a label at T
    reads coverage up to T + horizon + grace."""
    frame = frame[frame["mature"]] if "mature" in frame else frame
    dates = sorted(frame["as_of_date"].unique())
    n_eval = config.validation_snapshots + config.calibration_snapshots + config.test_snapshots
    if len(dates) < n_eval + config.min_train_snapshots:
        raise NotEnoughHistoryError(
            f"Only {len(dates)} mature snapshot(s); training needs at least "
            f"{n_eval + config.min_train_snapshots} ({config.min_train_snapshots} to train, {n_eval} to "
            "validate, calibrate and test). Use a longer history (e.g. `churn generate --months 24`) "
            "or a shorter snapshot cadence."
        )
    test_d = dates[-config.test_snapshots :]
    calib_d = dates[-(config.test_snapshots + config.calibration_snapshots) : -config.test_snapshots]
    valid_d = dates[-n_eval : -(config.test_snapshots + config.calibration_snapshots)]
    first_eval = pd.Timestamp(valid_d[0])
    gap = pd.Timedelta(days=horizon_days + grace_days)
    train_d = [d for d in dates[:-n_eval] if not config.embargo or pd.Timestamp(d) + gap <= first_eval]
    if len(train_d) < config.min_train_snapshots:
        raise NotEnoughHistoryError(
            f"Only {len(train_d)} training snapshot(s) remain after keeping a {gap.days}-day gap before "
            f"the evaluation windows (embargo); need {config.min_train_snapshots}. Use a longer history."
        )

    def take(ds):
        return frame[frame["as_of_date"].isin(ds)].reset_index(drop=True)

    split = Split(take(train_d), take(valid_d), take(calib_d), take(test_d))
    _check_labels(split, config)
    return split


def _check_labels(split: Split, config: TrainConfig) -> None:
    for name in ("train", "valid", "calib", "test"):
        part = getattr(split, name)
        positives = int(part[LABEL].sum())
        if part[LABEL].nunique() < 2:
            raise TrainingDataError(
                f"The {name} window ({', '.join(split.windows()[name])}) has a single class "
                f"({len(part)} rows, {positives} churned): a longer history or more accounts are needed."
            )
        if name == "train" and positives < config.min_positives:
            raise NotEnoughHistoryError(
                f"Only {positives} churned examples in the training window (need {config.min_positives}): "
                "use a longer history or more accounts."
            )


# -- the model -------------------------------------------------------------------
@dataclass
class ChurnModel:
    """A trained, calibrated churn model and everything needed to use it."""

    booster: lgb.Booster
    calibrator: Calibrator
    features: list[str]
    categories: dict[str, list[str]]
    event_types: dict[str, str]  # per-event-type feature column -> raw event type
    #: TrainConfig's fields, ``params`` (the LightGBM parameters it was trained
    #: with), ``trials`` (the search, if any) and ``best_iteration``
    config: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)  # training distributions, for drift

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's input matrix: its feature columns, categoricals with the
        training categories (unseen values become missing)."""
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise KeyError(f"Input lacks model feature(s): {', '.join(missing)}")
        return to_model_matrix(frame, self.features, self.categories)

    def predict_raw(self, frame: pd.DataFrame) -> np.ndarray:
        """The booster's own (uncalibrated) probability, the sigmoid of the raw
        margin in log-odds; the calibrator maps it to :meth:`predict_proba`."""
        return self.booster.predict(self.matrix(frame), num_threads=PREDICT_THREADS)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of churn within the horizon."""
        return self.calibrator(self.predict_raw(frame))

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """TreeSHAP contributions in log-odds (exact: LightGBM's own values, computed
        faster by :mod:`models.treeshap`), one column per feature plus
        ``base_value``; each row sums to the raw margin."""
        values = treeshap.explainer_for(self.booster).contributions(self.matrix(frame), threads=PREDICT_THREADS)
        return pd.DataFrame(values, columns=[*self.features, "base_value"], index=frame.index)


def to_model_matrix(frame: pd.DataFrame, features: list[str], categories: dict[str, list[str]]) -> pd.DataFrame:
    out = frame[features].copy()
    for col in features:
        if col in categories:
            out[col] = pd.Categorical(out[col].astype("object"), categories=categories[col])
        else:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    return out


def model_features(frame: pd.DataFrame) -> list[str]:
    """Feature columns of a training set that carry information."""
    cols = feature_columns(frame)
    return [c for c in cols if frame[c].notna().any()]


def _categories(frame: pd.DataFrame, features: list[str]) -> dict[str, list[str]]:
    cats = set(catalog.categorical_names())
    return {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in features if c in cats}


def event_types_of(frame: pd.DataFrame, features: list[str]) -> dict[str, str]:
    """Raw event type behind each per-event-type feature the model uses."""
    known = frame.attrs.get(EVENT_TYPES_ATTR, {})
    return {f: known.get(f, f) for f in features if catalog.is_event_type_column(f)}


def _fit_booster(params: dict[str, Any], split: Split, features, categories, config: TrainConfig) -> lgb.LGBMClassifier:
    clf = lgb.LGBMClassifier(**params)
    clf.fit(
        to_model_matrix(split.train, features, categories),
        split.train[LABEL],
        eval_X=(to_model_matrix(split.valid, features, categories),),
        eval_y=(split.valid[LABEL],),
        eval_metric="binary_logloss",
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    return clf


#: the hyperparameters the search varies, and the values it draws from
SEARCH_SPACE: dict[str, list[int] | list[float]] = {
    "num_leaves": [7, 15, 31],
    "max_depth": [3, 4, 5, 6],
    "min_child_samples": [20, 40, 80, 160],
    "learning_rate": [0.03, 0.05, 0.1],
    "reg_lambda": [0.0, 1.0, 5.0],
}


def _search(split: Split, features, categories, config: TrainConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Small random search scored on the validation window (log loss): the
    best trial's parameters, and every trial (its varied parameters, trees and
    validation log loss; ``chosen`` marks the best)."""
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(config.seed)
    best, best_score, best_trial = config.lgb_params(), np.inf, None
    valid_x = to_model_matrix(split.valid, features, categories)
    trials: list[dict[str, Any]] = []
    for trial in range(config.search_trials):
        varied = {name: type(values[0])(rng.choice(values)) for name, values in SEARCH_SPACE.items()}
        params = {**config.lgb_params(), **varied}
        clf = _fit_booster(params, split, features, categories, config)
        score = float(log_loss(split.valid[LABEL], clf.predict_proba(valid_x)[:, 1], labels=[0, 1]))
        trials.append(
            {
                "trial": trial,
                **varied,
                "trees": int(clf.booster_.best_iteration or clf.booster_.num_trees()),
                "valid_log_loss": score,
            }
        )
        if score < best_score:
            best, best_score, best_trial = params, score, trial
    for row in trials:
        row["chosen"] = row["trial"] == best_trial
    return best, trials


def fit_model(split: Split, config: TrainConfig) -> ChurnModel:
    features = model_features(split.train)
    categories = _categories(split.train, features)
    params, trials = _search(split, features, categories, config) if config.search_trials else (config.lgb_params(), [])
    clf = _fit_booster(params, split, features, categories, config)
    booster = clf.booster_
    raw_calib = booster.predict(to_model_matrix(split.calib, features, categories))
    calibrator = fit_calibrator(raw_calib, split.calib[LABEL].to_numpy(), config.calibration)
    model = ChurnModel(
        booster=booster,
        calibrator=calibrator,
        features=features,
        categories=categories,
        event_types=event_types_of(split.train, features),
        config={
            **asdict(config),
            "params": params,
            "trials": trials,
            "best_iteration": int(booster.best_iteration or booster.num_trees()),
        },
    )
    model.reference = reference_profile(model.matrix(split.train), model.predict_proba(split.train), set(categories))
    return model


# -- baselines ----------------------------------------------------------------------
def base_rate_baseline(split: Split) -> np.ndarray:
    """Everyone gets the training churn rate."""
    return np.full(len(split.test), split.train[LABEL].mean())


def logistic_baseline(split: Split) -> tuple[np.ndarray, list[str]]:
    """Logistic regression on a few transparent usage/contract features."""
    cols = [c for c in BASELINE_FEATURES if c in split.train and split.train[c].notna().any()]
    pipe = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=1000))
    pipe.fit(split.train[cols].astype(float), split.train[LABEL])
    return pipe.predict_proba(split.test[cols].astype(float))[:, 1], cols


# -- one call: split, fit, evaluate against baselines ------------------------------
@dataclass
class TrainingResult:
    model: ChurnModel
    split: Split
    test_prob: np.ndarray
    metrics: dict[str, float]  # test window, model
    baselines: dict[str, dict[str, float]]  # test window, per baseline
    baseline_prob: dict[str, np.ndarray]  # test window predictions, per baseline
    by_segment: pd.DataFrame
    baseline_features: list[str]
    horizon_days: int
    #: the evaluation windows and the snapshots each fold model saw (models.walkforward)
    folds: list[Any] = field(default_factory=list)
    refit: Any = None  # RefitWindows: what the shipped model saw
    window_metrics: pd.DataFrame = field(default_factory=pd.DataFrame)  # model metrics per window
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # bootstrap 90% of the means
    #: every evaluation row: KEY, segment, churned, arr, window and the held-out predictions
    heldout: pd.DataFrame = field(default_factory=pd.DataFrame)

    def summary(self) -> pd.DataFrame:
        rows = {"model": self.metrics, **self.baselines}
        cols = ["roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_top10", "recall_top10", "arr_captured_top10"]
        return pd.DataFrame(rows).T[cols]


def annual_value(frame: pd.DataFrame) -> np.ndarray:
    """ARR per row (12 x MRR; zero where MRR is missing)."""
    return (12 * frame["mrr"].fillna(0)).to_numpy() if "mrr" in frame else np.zeros(len(frame))


def train_and_evaluate(
    frame: pd.DataFrame, config: TrainConfig | None = None, horizon_days: int = 90, grace_days: int = 0
) -> TrainingResult:
    """Walk-forward evaluation of the recipe on the last ``eval_windows``
    mature snapshots (each by a model that never saw it, with both baselines),
    then the shipped model refit on every mature snapshot and calibrated on
    the held-out predictions (:mod:`models.walkforward`). Reported metrics
    are the mean over the windows, with bootstrap 90% intervals."""
    from models import walkforward as wf
    from models.evaluate import metrics_by_segment

    config = config or TrainConfig()
    folds, heldout = wf.walk_forward(frame, config, horizon_days, grace_days)
    model, refit = wf.refit(frame, config, folds, heldout)
    heldout = heldout.assign(arr=annual_value(heldout))
    metrics, intervals = wf.mean_with_interval(heldout, "prob", config.bootstrap, config.seed)
    names = ("baseline_base_rate", "baseline_logistic")
    baselines = {n: wf.per_window(heldout, n)[list(wf.METRICS)].mean().to_dict() for n in names}
    segments = heldout.assign(segment=heldout["segment"] if "segment" in heldout else "all")
    cols = [c for c in BASELINE_FEATURES if c in frame and frame[c].notna().any()]
    return TrainingResult(
        model=model,
        split=wf.as_split(frame, heldout),
        test_prob=heldout["prob"].to_numpy(),
        metrics=metrics,
        baselines=baselines,
        baseline_prob={n: heldout[n].to_numpy() for n in names},
        by_segment=metrics_by_segment(segments),
        baseline_features=cols,
        horizon_days=horizon_days,
        folds=folds,
        refit=refit,
        window_metrics=wf.per_window(heldout),
        intervals=intervals,
        heldout=heldout,
    )
