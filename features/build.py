"""Build feature matrices, labels and training sets inside the warehouse.

The functions here write the snapshot dates and the spine (:mod:`features.sql`),
build every feature family that is on (:mod:`features.families`, in build
order) and bring back one row per (account_id, as_of_date). Raw events never
leave the engine.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import catalog, sql
from features.assemble import KEY, is_in_key_order, normalise_keys, side_by_side
from features.contract import INPUT_TABLES
from features.engine import SqlEngine, unordered
from features.event_types import EVENT_TYPES_ATTR, EventTypes  # noqa: F401 (models read them here)
from features.families import FAMILIES, BuildRequest, Family, by_name, create_temp
from features.families.base import in_key_order, write_run_table
from features.sql import as_of_cutoff
from features.staging_report import ValidationReport

log = logging.getLogger(__name__)

#: the run tables every build writes; each family adds its own (``Family.all_run_tables``)
CORE_RUN_TABLES = ("_churn_snapshots", "_churn_subscriptions", "_churn_spine")
RUN_TABLES = CORE_RUN_TABLES + tuple(t for family in FAMILIES for t in family.all_run_tables)
#: columns carried along with the features but not model inputs (the renewal
#: date, and the account's name and CSM from the validated account rows, for the scores)
CONTEXT_COLUMNS = [column for family in FAMILIES for column in family.context]
#: context columns that hold text
TEXT_CONTEXT_COLUMNS = tuple(c for family in FAMILIES for c, kind in family.context.items() if kind == "text")
_DATE_COLUMNS = {c for family in FAMILIES for c, kind in family.context.items() if kind == "date"} | {"churn_date"}


class AsOfError(ValueError):
    """The as-of date is outside the data."""


class LabelError(ValueError):
    """The labels cannot be built (e.g. no mature snapshot)."""


@dataclass(frozen=True)
class LabelConfig:
    horizon_days: int = 90
    grace_days: int = 30

    def __post_init__(self) -> None:
        if self.horizon_days <= 0 or self.grace_days < 0:
            raise ValueError("horizon_days must be > 0 and grace_days >= 0")

    def matures_by(self, as_of: dt.date) -> dt.date:
        """The date by which a snapshot at ``as_of`` has a known label."""
        return as_of + dt.timedelta(days=self.horizon_days + self.grace_days)


def snapshot_dates(start: dt.date, end: dt.date, cadence: str = "monthly") -> list[dt.date]:
    """Snapshot dates from ``end`` back to ``start`` on a cadence, oldest first.

    ``cadence`` is ``monthly``, ``weekly`` or ``<N>d`` (every N days).
    Anchored on ``end`` so the newest snapshot is always the end date.
    """
    if start > end:
        raise ValueError(f"start {start} is after end {end}")
    if cadence == "monthly":
        offset: pd.DateOffset | pd.Timedelta = pd.DateOffset(months=1)
    elif cadence == "weekly":
        offset = pd.Timedelta(days=7)
    elif cadence.endswith("d") and cadence[:-1].isdigit() and int(cadence[:-1]) > 0:
        offset = pd.Timedelta(days=int(cadence[:-1]))
    else:
        raise ValueError(f"Unknown cadence {cadence!r}: use monthly, weekly or <N>d")
    dates, current, step = [], pd.Timestamp(end), 0
    while current.date() >= start:
        dates.append(current.date())
        step += 1
        current = pd.Timestamp(end) - offset * step
    return sorted(dates)


def check_as_of(report: ValidationReport, as_of_dates: Sequence[dt.date]) -> None:
    """Raise AsOfError when an as-of date is before the data or after its end."""
    first, last = min(as_of_dates), max(as_of_dates)
    if report.data_start and first < report.data_start:
        raise AsOfError(f"As-of date {first} is before any data: the first account was created on {report.data_start}.")
    if report.data_end is None:
        logs = ", ".join(name for name, spec in INPUT_TABLES.items() if spec.event_log)
        raise AsOfError(f"The event tables ({logs}) hold no usable rows: there is no data to build features from.")
    if last > report.data_end:
        raise AsOfError(
            f"As-of date {last} is after the end of the data ({report.data_end}, the day after the "
            f"latest event): features would miss days. Use --as-of {report.data_end} or load newer data."
        )
    if report.as_of is not None and last > report.as_of:
        # the staged views hold no row after the validation as-of: features later would miss them
        raise AsOfError(
            f"As-of date {last} is after the date the inputs were validated as of ({report.as_of}): "
            f"rows after {report.as_of} are not staged. Validate again as of {last} or later."
        )


def families(report: ValidationReport) -> set[str]:
    """Names of the feature families the validated tables can feed."""
    return {family.name for family in families_on(report)}


def families_on(report: ValidationReport) -> list[Family]:
    """The families that are on, in build order."""
    return [family for family in FAMILIES if family.off_reason(report) is None]


def _write_snapshots(
    engine: SqlEngine, as_of_dates: Sequence[dt.date], labels: LabelConfig, data_end: dt.date | None
) -> None:
    dates = sorted(set(as_of_dates))
    snaps = pd.DataFrame(
        {
            "as_of_date": pd.to_datetime(dates),
            "cutoff": pd.to_datetime([as_of_cutoff(d) for d in dates]),
            "horizon_end": pd.to_datetime([d + dt.timedelta(days=labels.horizon_days) for d in dates]),
            "mature": [data_end is not None and labels.matures_by(d) <= data_end for d in dates],
        }
    )
    write_run_table(engine, "_churn_snapshots", snaps)


def _drop_run_tables(engine: SqlEngine) -> None:
    for name in reversed(RUN_TABLES):
        engine.drop(name)


def _prepare(engine: SqlEngine, as_of_dates: Sequence[dt.date], report: ValidationReport, labels: LabelConfig) -> None:
    if not as_of_dates:
        raise ValueError("No as-of dates given")
    check_as_of(report, as_of_dates)
    _drop_run_tables(engine)
    _write_snapshots(engine, as_of_dates, labels, report.data_end)
    create_temp(engine, "_churn_subscriptions", sql.SUBSCRIPTIONS)
    create_temp(engine, "_churn_spine", sql.SPINE)


def build_features(
    engine: SqlEngine,
    as_of_dates: Sequence[dt.date],
    report: ValidationReport,
    event_types: EventTypes | None = None,
    max_event_types: int = 20,
    labels: LabelConfig | None = None,
    with_labels: bool = False,
    extra_event_types: Sequence[str] = (),
) -> pd.DataFrame:
    """Feature matrix (one row per account active on each as-of date).

    ``report`` comes from :func:`features.staging.validate` run with an as-of
    on or after the latest of ``as_of_dates``; it says which families run.
    ``event_types`` fixes the per-event-type columns: a list of event types
    (columns named by ``catalog.event_type_feature_name``) or a trained model's
    column -> event type mapping (``ChurnModel.event_types``: its own column
    names are kept, so a model trained under older names still scores);
    by default the ``max_event_types`` most used types are taken, plus
    ``extra_event_types`` (e.g. the current champion's, so both can be compared).
    With ``with_labels`` the label columns of :func:`build_labels` are added.
    """
    labels = labels or LabelConfig()
    request = BuildRequest(engine, tuple(as_of_dates), event_types, max_event_types, tuple(extra_event_types))
    with unordered(engine):  # every part read below comes back ORDER BY'd
        try:
            _prepare(engine, as_of_dates, report, labels)
            if not engine.scalar("SELECT COUNT(*) FROM _churn_spine"):
                raise AsOfError(
                    f"No account is active on {', '.join(str(d) for d in sorted(set(as_of_dates)))}: "
                    "no subscription covers those dates."
                )
            parts = []
            for family in families_on(report):
                parts.append(family.build(request))
                for name in family.run_tables:  # no later family reads them: give the engine its memory back
                    engine.drop(name)
            if with_labels:
                parts.append(_labels(engine, labels))
        finally:
            _drop_run_tables(engine)
    event_types_used: dict[str, str] = {}
    for part in parts:
        event_types_used.update(part.attrs.get(EVENT_TYPES_ATTR, {}))
    frame = side_by_side(parts)
    frame = _tidy(_truncated_to_missing(_unknown_to_missing(frame, report), report, event_types_used))
    frame.attrs[EVENT_TYPES_ATTR] = event_types_used
    return frame


def _truncated_to_missing(
    frame: pd.DataFrame, report: ValidationReport, event_types: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Honest windows: a feature whose look-back (``Feature.window`` days)
    starts before the first row of its family's ``window_table`` is unknown
    (missing) at that snapshot, not the small count the SQL computes from a
    window the start of the data cut short. Snapshots stay in the training
    set; the model learns what "not known yet" means."""
    starts: dict[str, pd.Timestamp] = {}
    for table, status in report.tables.items():
        if status.present and status.kept and status.first_time is not None:
            starts[table] = pd.Timestamp(status.first_time.date())
    as_of = pd.to_datetime(frame["as_of_date"])
    for column in frame.columns:
        try:
            feature = catalog.get(column, event_types)
        except KeyError:  # keys, labels, context
            continue
        table = by_name(feature.family).window_table if feature.window else ""
        if table not in starts:
            continue
        cut = (as_of - pd.Timedelta(days=feature.window)) < starts[table]
        if cut.any():
            frame[column] = _blanked(frame[column], cut.to_numpy())
    return frame


def _blanked(column: pd.Series, where: np.ndarray) -> pd.Series:
    """``column`` missing where ``where``: numbers stay float64 (NaN), never a
    column of Python objects (a million boxed floats per column of a training
    set cost seconds and hundreds of MB)."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column.astype("float64").where(~where)
    return column.astype(object).where(~where, None)


def _unknown_to_missing(frame: pd.DataFrame, report: ValidationReport) -> pd.DataFrame:
    """Features that need an input column (``catalog.Feature.needs``) that is
    NULL in every kept row visible at the as-of date are unknown: missing, not
    the 0 the SQL computes (no user ids is not "no active users").

    Visible at T means dated at or before T by the table's time column, so a
    column first filled after T leaves the features at T unknown however late
    the data was validated (rows after T never change a feature at T)."""
    first_known: dict[str, pd.Timestamp | None] = {}
    for table, status in report.tables.items():
        if status.present and status.kept:
            for column, first in status.first_known.items():
                first_known[f"{table}.{column}"] = None if first is None else pd.Timestamp(first)
    for column in frame.columns:
        try:
            feature = catalog.get(column)
        except KeyError:  # keys, labels, context
            continue
        unknown = pd.Series(False, index=frame.index)
        for need in feature.needs:
            if need not in first_known:  # table absent or empty: its family is off
                continue
            first = first_known[need]
            unknown |= True if first is None else frame["as_of_date"] < first
        if unknown.any():
            frame[column] = _blanked(frame[column], unknown.to_numpy())
    return frame


def _labels(engine: SqlEngine, labels: LabelConfig) -> pd.DataFrame:
    return engine.query(in_key_order(sql.LABELS), {"grace_days": labels.grace_days})


def build_labels(
    engine: SqlEngine,
    as_of_dates: Sequence[dt.date],
    report: ValidationReport,
    labels: LabelConfig | None = None,
) -> pd.DataFrame:
    """Labels per the contract for accounts active on each as-of date:
    ``churned``, ``churn_date`` (end of the coverage spell, grace gaps
    bridged) and ``mature`` (label known by the end of the data)."""
    labels = labels or LabelConfig()
    try:
        _prepare(engine, as_of_dates, report, labels)
        frame = _labels(engine, labels)
    finally:
        _drop_run_tables(engine)
    return _tidy(normalise_keys(frame))


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Stable order and dtypes: numeric features as float64, categoricals as str."""
    out = frame if is_in_key_order(frame) else frame.sort_values(KEY, kind="stable").reset_index(drop=True)
    for col in out.columns:
        if col in KEY:
            continue
        if col in catalog.categorical_names() or col in TEXT_CONTEXT_COLUMNS:
            out[col] = out[col].astype("string")
        elif col in _DATE_COLUMNS:
            out[col] = pd.to_datetime(out[col]).astype("datetime64[ns]")
        elif col == "mature":
            out[col] = out[col].astype(bool)
        elif col == "churned":
            out[col] = out[col].astype("int64")
        else:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    return out


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The model-input columns of a matrix built here (everything but keys,
    labels and context)."""
    skip = set(KEY) | set(CONTEXT_COLUMNS) | {"churned", "churn_date", "mature"}
    return [c for c in frame.columns if c not in skip]


def build_training_set(
    engine: SqlEngine,
    report: ValidationReport,
    start: dt.date,
    end: dt.date,
    cadence: str = "monthly",
    labels: LabelConfig | None = None,
    max_event_types: int = 20,
    mature_only: bool = True,
    extra_event_types: Sequence[str] = (),
) -> pd.DataFrame:
    """Snapshots on a cadence between ``start`` and ``end`` with features and
    labels, in one pass over the events; immature snapshots dropped."""
    labels = labels or LabelConfig()
    dates = snapshot_dates(start, end, cadence)
    frame = build_features(
        engine,
        dates,
        report,
        max_event_types=max_event_types,
        labels=labels,
        with_labels=True,
        extra_event_types=extra_event_types,
    )
    if mature_only:
        frame = frame[frame["mature"]].reset_index(drop=True)
        if frame.empty:
            raise LabelError(
                f"No snapshot between {start} and {end} has a mature label: a label at T needs data "
                f"until T + {labels.horizon_days} + {labels.grace_days} days (data ends "
                f"{report.data_end}). Use an earlier end date or a longer history."
            )
    return frame


def write_training_set(
    engine: SqlEngine,
    report: ValidationReport,
    start: dt.date,
    end: dt.date,
    path: str | Path,
    cadence: str = "monthly",
    labels: LabelConfig | None = None,
    max_event_types: int = 20,
    mature_only: bool = True,
    extra_event_types: Sequence[str] = (),
    snapshots_per_part: int = 1,
) -> Path:
    """:func:`build_training_set` in bounded memory, written to a Parquet
    dataset (a directory) at ``path``; returns ``path``.

    For training sets too large to hold in pandas (a million accounts over a
    year): the snapshots are built ``snapshots_per_part`` at a time and each
    part is written as ``part-<n>.parquet``, so memory stays that of one
    part. The rows and values are those of :func:`build_training_set` with
    the same arguments (the per-event-type columns are chosen once, over all
    the snapshots); rows are sorted by (account_id, as_of_date) within a part,
    parts are in as-of order. Read it with ``pd.read_parquet(path)`` or any
    Parquet reader. Written atomically: into a temporary directory beside
    ``path``, then renamed over it (an existing dataset at ``path`` is
    replaced)."""
    if snapshots_per_part < 1:
        raise ValueError("snapshots_per_part must be >= 1")
    from features.families.usage import top_event_types

    labels = labels or LabelConfig()
    dates = snapshot_dates(start, end, cadence)
    check_as_of(report, dates)
    event_types = top_event_types(engine, dates, max_event_types, extra_event_types)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir()
    try:
        rows = 0
        for n in range(0, len(dates), snapshots_per_part):
            part = build_features(
                engine, dates[n : n + snapshots_per_part], report, event_types, labels=labels, with_labels=True
            )
            if mature_only:
                part = part[part["mature"]].reset_index(drop=True)
            if len(part) or (n + snapshots_per_part >= len(dates) and not rows):
                _write_parquet(part, tmp / f"part-{n // snapshots_per_part:05d}.parquet")
                rows += len(part)
            del part
        if mature_only and not rows:
            raise LabelError(
                f"No snapshot between {start} and {end} has a mature label: a label at T needs data "
                f"until T + {labels.horizon_days} + {labels.grace_days} days (data ends {report.data_end})."
            )
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _write_parquet(frame: pd.DataFrame, path: Path, rows: int = 100_000) -> None:
    """``frame`` to one Parquet file, ``rows`` at a time: only a slice is ever
    copied to Arrow (a million-account part converted whole doubles its memory)."""
    schema = pa.Schema.from_pandas(frame, preserve_index=False)  # from every row: a slice may be all missing
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, max(len(frame), 1), rows):
            writer.write_table(pa.Table.from_pandas(frame.iloc[start : start + rows], schema, preserve_index=False))


def save_matrix(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a feature matrix or training set to Parquet, atomically: through
    a temporary file of this call's own in the same directory, renamed over
    ``path`` when complete (concurrent saves to one path each succeed, the last
    rename wins) and removed if writing fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique name, not mkstemp: the file is created by the writer with the
    # usual permissions (mkstemp's are owner-only)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
