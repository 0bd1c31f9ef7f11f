"""`churn monitor`: what happened to the accounts we scored, and how well each
model version did on every scored date whose outcome is known.

For every (as_of_date, model_name, model_version) in ``churn_scores`` the
scored accounts are joined, in the engine, with their realised outcome under
the contract's churn definition (the label training uses), then the metrics
of every mature date are computed per slice (all, segment, tier) and alerts
raised where a model stopped working. ``churn_outcomes`` and
``churn_model_performance`` are replaced in one transaction
(:mod:`pipeline.monitor_tables`), published to the DuckDB read copy, and the
live metrics logged to MLflow against each model version.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from models import monitor_metrics
from pipeline import monitor_tables, outputs
from pipeline.settings import Settings
from pipeline.steps import open_warehouse, validate_inputs
from pipeline.warehouse import Warehouse

log = logging.getLogger(__name__)

#: the columns of the track record (one row per mature date and model version)
TRACK_RECORD = [
    "as_of_date",
    "model_version",
    "accounts",
    "churned",
    "roc_auc",
    "lift_top10",
    "mean_probability",
    "observed_rate",
    "alert",
]


class NoScoresError(LookupError):
    """There is nothing to monitor: no scores were written yet."""


class MonitorAlertError(RuntimeError):
    """Raised by ``churn monitor --fail-on-alert`` when a mature date is flagged."""


@dataclass
class MonitorOutcome:
    as_of: dt.date
    known_by: dt.date  # the data is known up to this date (as_of, or the end of the data if earlier)
    counts: pd.DataFrame  # rows per (as_of_date, model_name, model_version, outcome)
    performance: pd.DataFrame
    live_runs: dict[str, str] = field(default_factory=dict)

    @property
    def overall(self) -> pd.DataFrame:
        """The ``all`` slice: one row per mature date and model version."""
        return self.performance[self.performance["slice"] == monitor_metrics.ALL].reset_index(drop=True)

    @property
    def alerts(self) -> pd.DataFrame:
        overall = self.overall
        return overall[overall["alert"].fillna(False).astype(bool)].reset_index(drop=True)

    def track_record(self) -> pd.DataFrame:
        return track_record(self.performance)

    def alert_lines(self) -> list[str]:
        return alert_lines(self.performance)

    def pending(self) -> int:
        return int(self.counts.loc[self.counts["outcome"] == "pending", "accounts"].sum())


def track_record(performance: pd.DataFrame) -> pd.DataFrame:
    """Per mature date and model version: accounts, churned, AUC, lift,
    predicted vs observed churn, alert."""
    overall = performance[performance["slice"] == monitor_metrics.ALL]
    return overall[TRACK_RECORD].sort_values(["as_of_date", "model_version"]).reset_index(drop=True)


def alert_lines(performance: pd.DataFrame) -> list[str]:
    """One line per flagged date: 'YYYY-MM-DD model vN: why'."""
    overall = performance[performance["slice"] == monitor_metrics.ALL]
    flagged = overall[overall["alert"].fillna(False).astype(bool)]
    return [
        f"{pd.Timestamp(r.as_of_date).date()} {r.model_name} v{r.model_version}: {r.alert_reason}"
        for r in flagged.itertuples(index=False)
    ]


def run_monitor(
    settings: Settings,
    as_of: dt.date | None = None,
    test_auc: Mapping[tuple[str, str], float | None] | None = None,
    tracking: bool = True,
) -> MonitorOutcome:
    """Fill the track-record tables as of ``as_of`` (default today), publish
    the read copy and log the live metrics to MLflow.

    ``test_auc`` maps (model_name, model_version) to the test-window AUC at
    training; by default it is read from the MLflow registry. With
    ``tracking=False`` MLflow is neither read nor written (the AUC rule then
    needs ``test_auc``)."""
    as_of = as_of or dt.date.today()
    if tracking:
        _configure_tracking(settings)
    with open_warehouse(settings) as wh:
        outcome = monitor_in(wh, settings, as_of, test_auc, tracking)
        outputs.publish_read_copy(wh, settings.tables)
    if tracking and len(outcome.performance):
        from models import tracking_live

        outcome.live_runs = tracking_live.log_live(settings.experiment, outcome.performance)
    log.info(
        "Monitor as of %s (data known to %s): %d mature date/model rows, %d pending account rows",
        as_of,
        outcome.known_by,
        len(outcome.overall),
        outcome.pending(),
    )
    for line in outcome.alert_lines():
        log.warning("Retraining recommended: %s", line)
    return outcome


def monitor_in(
    wh: Warehouse,
    settings: Settings,
    as_of: dt.date,
    test_auc: Mapping[tuple[str, str], float | None] | None = None,
    tracking: bool = True,
) -> MonitorOutcome:
    """The monitor on an open warehouse: validate the inputs as of ``as_of``
    (the outcomes read the staged subscriptions), then replace both tables."""
    names = settings.tables
    if not wh.table_exists(names.churn_scores):
        raise NoScoresError(f"No scores to monitor: table {names.churn_scores} is missing. Run `churn score`.")
    report = validate_inputs(wh, settings, as_of)
    known_by = min(as_of, report.data_end) if report.data_end else as_of
    if test_auc is None:
        test_auc = _trained_auc(settings, monitor_tables.scored_versions(wh, names)) if tracking else {}

    def performance_of(labelled: pd.DataFrame) -> pd.DataFrame:
        metrics = monitor_metrics.slice_metrics(labelled)
        return monitor_metrics.flag(metrics, test_auc, settings.monitor_auc_drop, settings.monitor_confidence)

    counts, performance = monitor_tables.replace(wh, names, settings.labels, known_by, as_of, performance_of)
    return MonitorOutcome(as_of, known_by, counts, performance)


def _trained_auc(settings: Settings, versions: pd.DataFrame) -> dict[tuple[str, str], float | None]:
    from models import tracking_live

    _configure_tracking(settings)
    out: dict[tuple[str, str], float | None] = {}
    for name, part in versions.groupby("model_name"):
        out.update(tracking_live.trained_auc(str(name), [str(v) for v in part["model_version"]]))
    return out


def _configure_tracking(settings: Settings) -> None:
    """Point MLflow at the settings' store (it must exist: models were trained)."""
    from models import tracking

    tracking.configure(
        settings.tracking_uri, settings.experiment, create=False, timeout_seconds=settings.mlflow_timeout_seconds
    )
