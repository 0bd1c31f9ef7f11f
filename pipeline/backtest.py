"""`churn backtest`: how would this configuration have done?

Trains a model exactly as ``churn train --as-of D0`` would (same training
set, same split, same configuration) but never registers or promotes it,
scores each later date with point-in-time features (a date's features read
only rows at or before it), labels the scored accounts with the contract's
churn definition (the training label, :func:`features.build.build_labels`)
and reports the monitor's metrics per date and slice, in the console and in
an MLflow run tagged ``churn_backtest``. It writes nothing to the output
tables: the warehouse sees only this run's temporary views.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import build as feature_build
from models import monitor_metrics
from models.scoring import risk_tier
from models.train import TrainConfig, TrainingResult, annual_value, train_and_evaluate
from pipeline import steps
from pipeline.settings import Settings

log = logging.getLogger(__name__)
MODEL_VERSION = "backtest"


class BacktestError(ValueError):
    """The backtest's dates cannot be evaluated as asked."""


@dataclass
class BacktestOutcome:
    train_as_of: dt.date
    dates: list[dt.date]
    result: TrainingResult
    outcomes: pd.DataFrame  # one row per scored account and date, with its outcome
    performance: pd.DataFrame
    run_id: str | None

    def pending_dates(self) -> list[dt.date]:
        pending = self.outcomes.loc[self.outcomes["churned"].isna(), "as_of_date"]
        return sorted({pd.Timestamp(d).date() for d in pending})


def backtest_dates(
    dates: Sequence[dt.date] = (),
    start: dt.date | None = None,
    end: dt.date | None = None,
    every: str = "monthly",
) -> list[dt.date]:
    """The dates to score: given, or from ``start`` to ``end`` on a cadence
    (``monthly``, ``weekly``, ``<N>d``; anchored on ``end`` as the training
    snapshots are)."""
    if dates and (start or end):
        raise BacktestError("Give either --dates or --from/--to, not both")
    if dates:
        return sorted(set(dates))
    if start is None or end is None:
        raise BacktestError("Give the dates to score: --dates D1,D2,... or --from D --to D [--every monthly]")
    return feature_build.snapshot_dates(start, end, every)


def run_backtest(
    settings: Settings,
    train_as_of: dt.date,
    dates: Sequence[dt.date],
    config: TrainConfig | None = None,
    tracking: bool = True,
) -> BacktestOutcome:
    """Train as of ``train_as_of`` (not registered), score ``dates`` and
    measure them against their realised outcomes."""
    dates = sorted(set(dates))
    if not dates:
        raise BacktestError("No date to score")
    if dates[0] < train_as_of:
        raise BacktestError(
            f"Backtest dates must be on or after the training date {train_as_of}: {dates[0]} is before it"
        )
    extra = steps.champion_event_types(settings) if tracking else []
    frame, _ = steps.training_set(settings, None, train_as_of, extra_event_types=extra)
    result = train_and_evaluate(frame, config or TrainConfig(), settings.horizon_days, settings.grace_days)
    model = result.model
    with steps.open_warehouse(settings) as wh:
        report = steps.validate_inputs(wh, settings, dt.date.today())
        if dates[-1] > report.data_end:
            raise BacktestError(f"Backtest date {dates[-1]} is after the end of the data ({report.data_end})")
        # every date in one pass; point in time per date (features at D read rows up to D only)
        features = feature_build.build_features(
            wh, dates, report, event_types=dict(model.event_types), labels=settings.labels
        )
        labels = feature_build.build_labels(wh, dates, report, settings.labels)
    outcomes = _outcomes(settings, model.predict_proba(features), features, labels)
    named = outcomes.assign(model_name=settings.model_name, model_version=MODEL_VERSION)
    performance = monitor_metrics.flag(
        monitor_metrics.slice_metrics(named),
        {(settings.model_name, MODEL_VERSION): result.metrics.get("roc_auc")},
        settings.monitor_auc_drop,
        settings.monitor_confidence,
    )
    run_id = None
    if tracking:
        from models import tracking_live

        params = {
            "model_name": settings.model_name,
            "train_as_of": train_as_of,
            "dates": ",".join(str(d) for d in dates),
            "horizon_days": settings.horizon_days,
            "grace_days": settings.grace_days,
            "snapshot_cadence": settings.snapshot_cadence,
            "test_window": ",".join(result.split.windows()["test"]),
        }
        run_id = tracking_live.log_backtest(settings.experiment, params, performance, result.metrics)
    return BacktestOutcome(train_as_of, dates, result, outcomes, performance, run_id)


def _outcomes(settings: Settings, prob: np.ndarray, features: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    scored = pd.DataFrame(
        {
            "account_id": features["account_id"].astype(str).to_numpy(),
            "as_of_date": features["as_of_date"].to_numpy(),
            "churn_probability": prob,
            "risk_tier": risk_tier(prob, settings.tiers.high, settings.tiers.medium),
            "arr": annual_value(features),
            "segment": features["segment"].to_numpy() if "segment" in features else None,
        }
    )
    out = scored.merge(labels, on=["account_id", "as_of_date"], how="left", validate="one_to_one")
    known = out["mature"].fillna(False).astype(bool)
    out["churned"] = out["churned"].astype("float64").where(known)
    out["outcome"] = np.where(~known, "pending", np.where(out["churned"] == 1, "churned", "retained"))
    return out.drop(columns=["mature"])
