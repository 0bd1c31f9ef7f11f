"""Build feature matrices, labels and training sets inside the warehouse.

The functions here write three small run tables (snapshot dates and their
look-back calendars), create the usage rollups once, run the family SQL of
:mod:`features.sql` and bring back one row per (account_id, as_of_date).
Raw events never leave the engine.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from features import catalog, sql
from features.engine import SqlEngine
from features.staging import ValidationReport, as_of_cutoff

log = logging.getLogger(__name__)

KEY = ["account_id", "as_of_date"]
RUN_TABLES = (
    "_churn_snapshots",
    "_churn_segments",
    "_churn_segment_window",
    "_churn_segment_next",
    "_churn_spine",
    "_churn_contract",
    "_churn_usage_segment_type",
    "_churn_usage_segment_user",
    "_churn_usage_segment_days",
    "_churn_usage_last",
)
#: look-back window edges (days before as-of) of the usage features
WINDOW_EDGES = (0, 7, 30, 60, sql.WINDOW_DAYS)
#: ``DataFrame.attrs`` key: per-event-type column -> the raw event type it counts
EVENT_TYPES_ATTR = "event_types"
#: per-event-type columns asked for: event types, or column -> event type
EventTypes = Sequence[str] | Mapping[str, str]
#: columns carried along with the features but not model inputs (the account's
#: name and CSM from the validated account rows, for the scores)
CONTEXT_COLUMNS = ["renewal_date", "account_name", "csm_owner"]
#: context columns that hold text
TEXT_CONTEXT_COLUMNS = ("account_name", "csm_owner")


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
        raise AsOfError(
            f"As-of date {first} is before any data: the first account was created on "
            f"{report.data_start}."
        )
    if report.data_end is None:
        raise AsOfError("The usage, ticket and NPS tables hold no usable rows: there is no data to build features from.")
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
    """Feature families the available tables can feed."""
    out = {"contract", "account", "usage"}
    if "support_tickets" in report.available:
        out.add("support")
    if "nps_responses" in report.available:
        out.add("sentiment")
    return out


def _write_run_tables(engine: SqlEngine, as_of_dates: Sequence[dt.date], labels: LabelConfig,
                      data_end: dt.date | None) -> None:
    dates = sorted(set(as_of_dates))
    snaps = pd.DataFrame({
        "as_of_date": pd.to_datetime(dates),
        "cutoff": pd.to_datetime([as_of_cutoff(d) for d in dates]),
        "horizon_end": pd.to_datetime([d + dt.timedelta(days=labels.horizon_days) for d in dates]),
        "mature": [data_end is not None and labels.matures_by(d) <= data_end for d in dates],
    })
    segments, segment_window, segment_next = _segments(dates)
    date32 = pd.ArrowDtype(pa.date32())
    for frame in (snaps, segments, segment_window, segment_next):
        for col in ("as_of_date", "day", "horizon_end"):
            if col in frame:
                frame[col] = pd.to_datetime(frame[col]).astype(date32)
    engine.write_table("_churn_snapshots", snaps, temporary=True)
    engine.write_table("_churn_segments", segments, temporary=True)
    engine.write_table("_churn_segment_window", segment_window, temporary=True)
    engine.write_table("_churn_segment_next", segment_next, temporary=True)


def _segments(dates: Sequence[dt.date]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Cut the days of all look-back windows at every window edge.

    Segment ``j`` holds the days in ``(edges[j-1], edges[j]]``; a window
    ``(T - L, T]`` is exactly the segments with ``edges[j-1] >= T - L`` and
    ``edges[j] <= T``. Returns (day -> segment, segment x snapshot window
    flags, segment -> first snapshot on or after its end)."""
    edges = sorted({d - dt.timedelta(days=k) for d in dates for k in WINDOW_EDGES})
    days = [
        (edges[j - 1] + dt.timedelta(days=k), j)
        for j in range(1, len(edges))
        for k in range(1, (edges[j] - edges[j - 1]).days + 1)
    ]
    rows = []
    for d in dates:
        for j in range(1, len(edges)):
            lo, hi = edges[j - 1], edges[j]
            if hi <= d and lo >= d - dt.timedelta(days=sql.WINDOW_DAYS):
                rows.append((j, d, lo >= d - dt.timedelta(days=7), lo >= d - dt.timedelta(days=30),
                             lo >= d - dt.timedelta(days=60) and hi <= d - dt.timedelta(days=30)))
    segments = pd.DataFrame(days, columns=["day", "segment"]).astype({"segment": "int32"})
    window = pd.DataFrame(rows, columns=["segment", "as_of_date", "in_7d", "in_30d", "in_prev_30d"])
    following = pd.DataFrame(
        [(j, min(d for d in dates if d >= edges[j])) for j in range(1, len(edges))],
        columns=["segment", "as_of_date"],
    )
    return segments, window.astype({"segment": "int32"}), following.astype({"segment": "int32"})


def _create_temp(engine: SqlEngine, name: str, select: str, params: dict | None = None) -> None:
    engine.drop(name)
    engine.execute(f"CREATE TEMP TABLE {name} AS {select}", params)


def _drop_run_tables(engine: SqlEngine) -> None:
    for name in reversed(RUN_TABLES):
        engine.drop(name)


def _prepare(engine: SqlEngine, as_of_dates: Sequence[dt.date], report: ValidationReport,
             labels: LabelConfig) -> None:
    if not as_of_dates:
        raise ValueError("No as-of dates given")
    check_as_of(report, as_of_dates)
    _drop_run_tables(engine)
    _write_run_tables(engine, as_of_dates, labels, report.data_end)
    _create_temp(engine, "_churn_spine", sql.SPINE)
    _create_temp(engine, "_churn_contract", sql.CONTRACT_FEATURES)


def _usage(engine: SqlEngine, as_of_dates: Sequence[dt.date], event_types: EventTypes | None,
           max_event_types: int, extra_event_types: Sequence[str] = ()) -> pd.DataFrame:
    window = {"window_start": as_of_cutoff(min(as_of_dates)) - dt.timedelta(days=sql.WINDOW_DAYS),
              "window_end": as_of_cutoff(max(as_of_dates))}
    _create_temp(engine, "_churn_usage_segment_type", sql.USAGE_SEGMENT_TYPE, window)
    _create_temp(engine, "_churn_usage_segment_user", sql.USAGE_SEGMENT_USER, window)
    _create_temp(engine, "_churn_usage_segment_days", sql.USAGE_SEGMENT_DAYS, window)
    _create_temp(engine, "_churn_usage_last", sql.USAGE_LAST)
    if event_types is None:
        top = engine.query(sql.TOP_EVENT_TYPES, {"limit": max_event_types})
        event_types = [str(t) for t in top["event_type"]]
        event_types += [t for t in extra_event_types if t not in event_types]
    if isinstance(event_types, Mapping):  # a model's own column names
        columns, event_types = _checked_columns(event_types)
    else:
        event_types = list(dict.fromkeys(event_types))  # each type once
        columns = _event_type_columns(event_types)
    params = {f"et_{i}": t for i, t in enumerate(event_types)}
    frame = engine.query(sql.usage_features(list(event_types), columns), params)
    frame.attrs[EVENT_TYPES_ATTR] = dict(zip(columns, event_types))
    return frame


def _event_type_columns(event_types: Sequence[str]) -> list[str]:
    """Column names of the event types: each from its own type alone (see
    ``catalog.event_type_feature_name``), so the same type always gets the
    same column whichever other types are built with it."""
    columns = [catalog.event_type_feature_name(t) for t in event_types]
    seen: dict[str, str] = {}
    for name, event_type in zip(columns, event_types):
        if name in seen and seen[name] != event_type:  # a hash collision: never silently merge
            raise ValueError(f"Event types {seen[name]!r} and {event_type!r} map to the same column {name}")
        seen[name] = event_type
    return columns


def _checked_columns(event_types: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(columns, event types) of a column -> event type mapping (a trained
    model's), refusing names an engine would not keep as they are."""
    for name in event_types:
        if not (catalog.SAFE_COLUMN.fullmatch(name) and name.startswith(catalog.EVENT_TYPE_PREFIX)
                and name.endswith(catalog.EVENT_TYPE_SUFFIX)):
            raise ValueError(f"{name!r} is not a valid column name for a per-event-type feature "
                             f"(ASCII a-z, 0-9 and _, at most {catalog.MAX_COLUMN_BYTES} bytes)")
    return list(event_types), [str(t) for t in event_types.values()]


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
    try:
        _prepare(engine, as_of_dates, report, labels)
        on = families(report)
        frame = engine.query("SELECT * FROM _churn_contract")
        if frame.empty:
            raise AsOfError(
                f"No account is active on {', '.join(str(d) for d in sorted(set(as_of_dates)))}: "
                "no subscription covers those dates."
            )
        parts = [_usage(engine, as_of_dates, event_types, max_event_types, extra_event_types)]
        if "support" in on:
            parts.append(engine.query(sql.SUPPORT_FEATURES))
        if "sentiment" in on:
            parts.append(engine.query(sql.SENTIMENT_FEATURES))
        if with_labels:
            parts.append(_labels(engine, labels))
    finally:
        _drop_run_tables(engine)
    event_types_used = parts[0].attrs[EVENT_TYPES_ATTR]
    for part in parts:
        frame = frame.merge(_normalise_keys(part), on=KEY, how="left", validate="one_to_one")
    frame = _tidy(_unknown_to_missing(_normalise_keys(frame), report))
    frame.attrs[EVENT_TYPES_ATTR] = event_types_used
    return frame


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
            frame[column] = frame[column].astype(object).where(~unknown, None)
    return frame


def _labels(engine: SqlEngine, labels: LabelConfig) -> pd.DataFrame:
    return engine.query(sql.LABELS, {"grace_days": labels.grace_days})


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
    return _tidy(_normalise_keys(frame))


def _normalise_keys(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["account_id"] = out["account_id"].astype(str)
    out["as_of_date"] = pd.to_datetime(out["as_of_date"]).dt.normalize().astype("datetime64[ns]")
    return out


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Stable order and dtypes: numeric features as float64, categoricals as str."""
    out = frame.sort_values(KEY, kind="stable").reset_index(drop=True)
    for col in out.columns:
        if col in KEY:
            continue
        if col in catalog.categorical_names() or col in TEXT_CONTEXT_COLUMNS:
            out[col] = out[col].astype("string")
        elif col == "renewal_date" or col == "churn_date":
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
    frame = build_features(engine, dates, report, max_event_types=max_event_types,
                           labels=labels, with_labels=True, extra_event_types=extra_event_types)
    if mature_only:
        frame = frame[frame["mature"]].reset_index(drop=True)
        if frame.empty:
            raise LabelError(
                f"No snapshot between {start} and {end} has a mature label: a label at T needs data "
                f"until T + {labels.horizon_days} + {labels.grace_days} days (data ends "
                f"{report.data_end}). Use an earlier end date or a longer history."
            )
    return frame


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


def load_matrix(path: str | Path) -> pd.DataFrame:
    return pd.read_parquet(path)
