"""Plain functions for each pipeline step, shared by the CLI and the Prefect
flows. Each opens what it needs from the settings and calls the libraries."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import pandas as pd

from features import build as feature_build
from features.build import LabelError
from features.sql import WINDOW_DAYS
from features.staging import ValidationReport, restage, validate
from models import scoring, tracking
from models.changes import Previous
from models.scoring import Mapper, SchemaMismatchError  # noqa: F401  (raised by write_scores)
from models.tracking import LoggedRun
from models.train import ChurnModel, TrainConfig, TrainingResult, train_and_evaluate
from pipeline import outputs
from pipeline.settings import Settings
from pipeline.warehouse import Warehouse, redact_url

log = logging.getLogger(__name__)


def open_warehouse(settings: Settings, create: bool = False) -> Warehouse:
    """Open the warehouse. Only ``create=True`` (``churn generate``) may start
    a new DuckDB file; every other step refuses a missing one."""
    return Warehouse(settings.warehouse, create=create, lock_wait_seconds=settings.lock_wait_seconds)


def validate_inputs(wh: Warehouse, settings: Settings, as_of: dt.date) -> ValidationReport:
    """Validate the contract tables as of a date and stage them."""
    return validate(wh, as_of, settings.tables, settings.max_bad_share)


def validation_report(settings: Settings, as_of: dt.date) -> ValidationReport:
    """Validate the inputs as of a date (raises when the data breaks the contract)."""
    with open_warehouse(settings) as wh:
        return validate_inputs(wh, settings, as_of)


def _stage(wh: Warehouse, settings: Settings, as_of: dt.date, report: ValidationReport | None) -> ValidationReport:
    """Stage the inputs in this connection (the stg_ views live per connection):
    validate, or, given the ``report`` of this run's validation as of the same
    date, re-create its views without scanning the data again."""
    if report is None or report.as_of != as_of:
        return validate_inputs(wh, settings, as_of)
    restage(wh, report, settings.tables)  # the views again, without the counting scan
    return report


def feature_matrix(
    settings: Settings,
    as_of: dt.date,
    event_types: Mapping[str, str] | Sequence[str] | None = None,
    report: ValidationReport | None = None,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Validate as of the date, then build the features of every active account.
    ``event_types`` fixes the per-event-type columns (a model's column -> event
    type mapping, so its column names are kept; or raw types); by default the
    most used types are taken. ``report``: see :func:`_stage`."""
    with open_warehouse(settings) as wh:
        report = _stage(wh, settings, as_of, report)
        frame = feature_build.build_features(
            wh,
            [as_of],
            report,
            event_types=_event_types(event_types),
            max_event_types=settings.max_event_types,
            labels=settings.labels,
        )
    return frame, report


def _event_types(event_types):
    if event_types is None:
        return None
    return dict(event_types) if isinstance(event_types, Mapping) else list(event_types)


def training_set(
    settings: Settings,
    start: dt.date | None,
    end: dt.date,
    extra_event_types: Sequence[str] = (),
    report: ValidationReport | None = None,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Validate as of ``end``, then build the mature snapshots between the
    dates. ``start=None`` starts where 90 days of usage history exist.
    ``report``: see :func:`_stage`."""
    with open_warehouse(settings) as wh:
        report = _stage(wh, settings, end, report)
        if start is None:
            start = first_full_window(report)
        last_mature = end - dt.timedelta(days=settings.horizon_days + settings.grace_days)
        if last_mature < start:
            raise LabelError(
                f"No mature snapshot: labels at T need data until T + {settings.horizon_days} + "
                f"{settings.grace_days} days, and the usage history starts {start - dt.timedelta(days=WINDOW_DAYS)}. "
                "Use a longer history (e.g. `churn generate --months 24`)."
            )
        frame = feature_build.build_training_set(
            wh,
            report,
            start,
            last_mature,
            settings.snapshot_cadence,
            settings.labels,
            max_event_types=settings.max_event_types,
            extra_event_types=extra_event_types,
        )
    return frame, report


def first_full_window(report: ValidationReport) -> dt.date:
    """The first as-of date with a full 90-day usage look-back."""
    usage = report.tables["usage_events"]
    first = usage.first_time.date() if usage.first_time else report.data_start
    return first + dt.timedelta(days=WINDOW_DAYS)


@dataclass
class TrainOutcome:
    result: TrainingResult
    run: LoggedRun
    report: ValidationReport
    rows: int


def champion_event_types(settings: Settings) -> list[str]:
    """Raw event types the current champion uses (empty without a champion)."""
    tracking.configure(
        settings.tracking_uri, settings.experiment, create=True, timeout_seconds=settings.mlflow_timeout_seconds
    )
    current = tracking.champion_or_none(settings.model_name)
    return list(current[1].event_types.values()) if current else []


def fit_and_log(
    settings: Settings, frame: pd.DataFrame, report: ValidationReport, as_of: dt.date, config: TrainConfig | None = None
) -> TrainOutcome:
    """Train and evaluate on a training set, log to MLflow, register, gate."""
    tracking.configure(
        settings.tracking_uri, settings.experiment, create=True, timeout_seconds=settings.mlflow_timeout_seconds
    )
    result = train_and_evaluate(frame, config or TrainConfig(), settings.horizon_days, settings.grace_days)
    run = tracking.log_training(
        result,
        settings.model_name,
        params={
            "as_of": str(as_of),
            "grace_days": settings.grace_days,
            "snapshot_cadence": settings.snapshot_cadence,
            "warehouse": redact_url(settings.warehouse),
        },
        gate_metric=settings.gate_metric,
        gate_margin=settings.gate_margin,
        families=sorted(feature_build.families(report)),
    )
    return TrainOutcome(result, run, report, len(frame))


def train_model(
    settings: Settings, as_of: dt.date, config: TrainConfig | None = None, start: dt.date | None = None
) -> TrainOutcome:
    """Build the training set up to ``as_of`` (mature labels only), train,
    evaluate, log to MLflow, register and apply the champion gate."""
    frame, report = training_set(settings, start, as_of, extra_event_types=champion_event_types(settings))
    return fit_and_log(settings, frame, report, as_of, config)


# -- scoring ----------------------------------------------------------------------
@dataclass
class ScoreOutcome:
    as_of: dt.date
    model_version: str
    accounts: int
    reasons: int
    top: pd.DataFrame  # the riskiest accounts, with their reasons
    drift: pd.DataFrame
    report: ValidationReport
    seconds: dict[str, float]

    @property
    def drifted(self) -> list[str]:
        return self.drift.loc[self.drift["drifted"], "column"].tolist()


def load_champion(settings: Settings) -> tuple[str, ChurnModel]:
    """(version, model) of the champion; NoChampionError says to run `churn train`."""
    tracking.configure(
        settings.tracking_uri, settings.experiment, create=False, timeout_seconds=settings.mlflow_timeout_seconds
    )
    return tracking.load_model(settings.model_name)


def scoring_spec(settings: Settings, version: str, chunk_rows: int = 50_000) -> scoring.ScoringSpec:
    return scoring.ScoringSpec(
        settings.model_name,
        version,
        settings.tiers.high,
        settings.tiers.medium,
        chunk_rows=chunk_rows,
        playbook=settings.actions,
        areas=settings.areas.thresholds,
    )


def write_scores(
    settings: Settings,
    as_of: dt.date,
    version: str,
    model: ChurnModel,
    frame: pd.DataFrame,
    report: ValidationReport,
    top_n: int = 10,
    chunk_rows: int = 50_000,
    mapper: Mapper | None = None,
) -> ScoreOutcome:
    """Score and explain ``frame`` (:func:`models.scoring.score`), replace the
    date's rows for the model in one transaction and publish the read copy BI
    tools open (:mod:`pipeline.outputs`): a rerun never duplicates, a failure
    keeps the old rows, a concurrent run of the same date waits, then
    replaces. Partitions of ``chunk_rows`` accounts are explained one by one,
    or through ``mapper`` (e.g. Prefect tasks on a Dask cluster)."""
    scoring.check_features(model, frame, version)
    seconds: dict[str, float] = {}
    with _timed(seconds, "drift"):
        probability = model.predict_proba(frame)  # once, for the drift check and the scores
        drift = scoring.drift(model, frame, version, probability)
    top = _TopAccounts(top_n)
    names = settings.tables
    with open_warehouse(settings) as wh:
        previous = outputs.previous_scores(wh, names, settings.model_name, as_of)
        with _timed(seconds, "score_explain_write"):
            chunks = scoring.score(
                model,
                frame,
                scoring_spec(settings, version, chunk_rows),
                utc_now(),
                previous,
                mapper=mapper,
                probability=probability,
            )
            outputs.replace_date(wh, names, settings.model_name, as_of, chunks, on_chunk=top.keep)
        with _timed(seconds, "publish"):
            outputs.publish_read_copy(wh, names)
    return ScoreOutcome(as_of, version, len(frame), top.reasons, top.frame(), drift, report, seconds)


@contextmanager
def _timed(seconds: dict[str, float], key: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    seconds[key] = time.perf_counter() - started


@dataclass
class _TopAccounts:
    """The riskiest accounts and the number of reasons, kept as chunks are written."""

    n: int
    reasons: int = 0
    parts: list[pd.DataFrame] = field(default_factory=list)

    def keep(self, scores: pd.DataFrame, reasons: pd.DataFrame) -> None:
        self.reasons += len(reasons)
        self.parts.append(scores[scores["risk_rank"] <= self.n])

    def frame(self) -> pd.DataFrame:
        return pd.concat(self.parts).sort_values("risk_rank") if self.parts else pd.DataFrame()


def score_frame(
    settings: Settings, as_of: dt.date, version: str, model: ChurnModel, previous: Previous | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score and explain every account active on ``as_of`` in memory, point in
    time, WITHOUT writing anything: (scores, reasons) with the output tables'
    columns. For notebooks and analyses; production runs use :func:`score_accounts`."""
    frame, _ = feature_matrix(settings, as_of, dict(model.event_types))
    scores, reasons, _ = scoring.collect(
        scoring.score(model, frame, scoring_spec(settings, version), utc_now(), previous)
    )
    return scores, reasons


def publish_outputs(settings: Settings):
    """(Re)publish the read copy of the output tables that BI tools open (a
    DuckDB file warehouse; nothing to do on a server). Scoring does this after
    every commit; this is for a copy that was deleted or never made."""
    with open_warehouse(settings) as wh:
        return outputs.publish_read_copy(wh, settings.tables)


def utc_now() -> dt.datetime:
    """Now in UTC, without a time zone (every stored timestamp is UTC)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def score_accounts(settings: Settings, as_of: dt.date, top_n: int = 10) -> ScoreOutcome:
    """Score every account active on ``as_of`` with the champion, explain each
    one, and replace that date's rows for the model in one transaction."""
    version, model = load_champion(settings)
    frame, report = feature_matrix(settings, as_of, dict(model.event_types))
    return write_scores(settings, as_of, version, model, frame, report, top_n)
