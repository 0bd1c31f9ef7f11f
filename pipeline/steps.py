"""Plain functions for each pipeline step, shared by the CLI and the Prefect
flows. Each opens what it needs from the settings and calls the libraries."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from features import build as feature_build
from features.build import LabelError
from features.contract import INPUT_TABLES
from features.sql import WINDOW_DAYS
from features.staging import ValidationReport, validate
from models import tracking
from models.tracking import LoggedRun
from models.train import TrainConfig, TrainingResult, train_and_evaluate
from pipeline.settings import Settings
from pipeline.synthetic import GeneratorConfig, generate
from pipeline.warehouse import Warehouse, redact_url

log = logging.getLogger(__name__)

STAGING_SUFFIX = "__churn_new"


@dataclass
class GenerateResult:
    rows: dict[str, int]
    report: ValidationReport


def open_warehouse(settings: Settings) -> Warehouse:
    return Warehouse(settings.warehouse)


def generate_data(
    settings: Settings,
    config: GeneratorConfig,
    on_chunk: Callable[[int], None] | None = None,
) -> GenerateResult:
    """Generate synthetic data into the warehouse, then validate it.

    Chunks go to staging tables; the contract tables are replaced in one
    transaction at the end, so a failure leaves the previous data intact.
    """
    names = settings.table_names
    rows: dict[str, int] = {}
    with open_warehouse(settings) as wh:
        for logical in INPUT_TABLES:
            wh.drop(names.physical(logical) + STAGING_SUFFIX)
        try:
            for table, chunk in generate(config):
                staging = names.physical(table) + STAGING_SUFFIX
                wh.write_table(staging, chunk, mode="append")
                rows[table] = rows.get(table, 0) + len(chunk)
                if on_chunk and table == "accounts":
                    on_chunk(len(chunk))
            wh.publish({names.physical(t) + STAGING_SUFFIX: names.physical(t) for t in rows})
        finally:
            for logical in INPUT_TABLES:
                wh.drop(names.physical(logical) + STAGING_SUFFIX)
        end = config.end_date or dt.date.today()
        report = validate(wh, end, names, settings.max_bad_share)
    return GenerateResult(rows, report)


def validate_inputs(wh: Warehouse, settings: Settings, as_of: dt.date) -> ValidationReport:
    """Validate the contract tables as of a date and stage them."""
    return validate(wh, as_of, settings.table_names, settings.max_bad_share)


def feature_matrix(settings: Settings, as_of: dt.date) -> tuple[pd.DataFrame, ValidationReport]:
    """Validate, then build the feature matrix for one as-of date."""
    with open_warehouse(settings) as wh:
        report = validate_inputs(wh, settings, as_of)
        frame = feature_build.build_features(
            wh, [as_of], report, max_event_types=settings.max_event_types, labels=settings.labels
        )
    return frame, report


def training_set(
    settings: Settings,
    start: dt.date | None,
    end: dt.date,
    extra_event_types: Sequence[str] = (),
) -> tuple[pd.DataFrame, ValidationReport]:
    """Validate as of ``end``, then build the mature snapshots between the
    dates. ``start=None`` starts where 90 days of usage history exist."""
    with open_warehouse(settings) as wh:
        report = validate_inputs(wh, settings, end)
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
            wh, report, start, last_mature, settings.snapshot_cadence, settings.labels,
            max_event_types=settings.max_event_types, extra_event_types=extra_event_types,
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


def train_model(settings: Settings, as_of: dt.date, config: TrainConfig | None = None,
                start: dt.date | None = None) -> TrainOutcome:
    """Build the training set up to ``as_of`` (mature labels only), train,
    evaluate, log to MLflow, register and apply the champion gate."""
    tracking.configure(settings.tracking_uri, settings.experiment)
    current = tracking.champion_or_none(settings.model_name)
    extra = list(current[1].event_types.values()) if current else []
    frame, report = training_set(settings, start, as_of, extra_event_types=extra)
    result = train_and_evaluate(frame, config or TrainConfig(), settings.horizon_days)
    families = sorted(feature_build.families(report))
    run = tracking.log_training(
        result, settings.model_name,
        params={"as_of": str(as_of), "grace_days": settings.grace_days,
                "snapshot_cadence": settings.snapshot_cadence, "warehouse": redact_url(settings.warehouse)},
        gate_metric=settings.gate_metric, gate_margin=settings.gate_margin, families=families,
    )
    return TrainOutcome(result, run, report, len(frame))
