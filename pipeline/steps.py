"""Plain functions for each pipeline step, shared by the CLI and the Prefect
flows. Each opens what it needs from the settings and calls the libraries."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from features import build as feature_build
from features.contract import INPUT_TABLES
from features.staging import ValidationReport, validate
from pipeline.settings import Settings
from pipeline.synthetic import GeneratorConfig, generate
from pipeline.warehouse import Warehouse

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
    settings: Settings, start: dt.date, end: dt.date
) -> tuple[pd.DataFrame, ValidationReport]:
    """Validate as of ``end``, then build the mature snapshots between the dates."""
    with open_warehouse(settings) as wh:
        report = validate_inputs(wh, settings, end)
        frame = feature_build.build_training_set(
            wh, report, start, end, settings.snapshot_cadence, settings.labels,
            max_event_types=settings.max_event_types,
        )
    return frame, report
