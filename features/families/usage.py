"""Product usage: events, active users and days, breadth, trends, seat
utilisation, recency and per-event-type use, over 7/30/60/90-day windows.

Reads ``usage_events`` (required, so always on) and the contract family's
``_churn_contract`` (seats). Usage is bucketed by *day*: bucket ``d`` holds
the events in ``(d-1 00:00, d 00:00]``, so "bucket <= as-of date" is exactly
"event_time <= cutoff".

The days of all look-back windows are cut into *spans*
(:mod:`features.families._usage_spans`); events are aggregated once per
account and span (one pass over the raw events for any number of snapshots);
each snapshot's windows then add up a handful of span rows: a monthly
12-snapshot build costs about one scan, not twelve. Distinct counts (users,
event types) OR together per-day bit masks of the windows instead
(:func:`features.families._usage_spans.day_bits`); active days are a bitmap
per account and block of 63 days (:func:`features.families._usage_spans.day_blocks`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import pandas as pd

from features.engine import SqlEngine
from features.event_types import (
    EVENT_TYPE_KINDS,
    EVENT_TYPES_ATTR,
    checked_columns,
    event_type_columns,
)
from features.families._usage_event_types import FEATURE_USAGE, PER_EVENT_TYPE_KINDS, SEATS
from features.families._usage_spans import (
    BIT_TABLES,
    DAY_WINDOWS_TABLE,
    SNAPSHOTS_PER_CHUNK,
    SPAN_TABLES,
    day_bits,
    day_blocks,
    first_day,
    spans,
)
from features.families._usage_sql import (
    ROLLUP_TABLES,
    TOP_EVENT_TYPES,
    TOP_EVENT_TYPES_FROM_EVENTS,
    USAGE_LAST,
    rollups,
    usage_features,
)
from features.families.base import (
    KEY_ORDER,
    BuildRequest,
    Family,
    Feature,
    Topic,
    create_temp,
    write_run_table,
)
from features.sql import WINDOW_DAYS, as_of_cutoff

USER_ID = "usage_events.user_id"
#: the usage statement's rows, kept in the engine for a moment (see build_usage)
USAGE_ROWS = "_churn_usage_rows"


def build_usage(request: BuildRequest) -> pd.DataFrame:
    """The spans and rollups, then the usage statement with one column per
    event type (the given ones, or the most used ones plus the extra ones)."""
    engine = request.engine
    dates = sorted(set(request.as_of_dates))
    bits = day_bits(dates)
    for name, frame in zip(SPAN_TABLES + BIT_TABLES, spans(dates) + bits):
        write_run_table(engine, name, frame)
    write_run_table(engine, DAY_WINDOWS_TABLE, day_blocks(dates))
    positions = min(len(dates), SNAPSHOTS_PER_CHUNK)
    params = {**_window(dates), "first_day": first_day(dates)}
    for name, select in rollups(positions, _one_chunk_masks(bits[0], dates)).items():
        create_temp(engine, name, select, params)
    create_temp(engine, "_churn_usage_last", USAGE_LAST)
    event_types = request.event_types
    if event_types is None:
        top = engine.query(TOP_EVENT_TYPES, {"limit": request.max_event_types})
        event_types = _with_extra([str(t) for t in top["event_type"]], request.extra_event_types)
    if isinstance(event_types, Mapping):  # a model's own column names
        event_types, columns = checked_columns(event_types)
    else:
        event_types = list(dict.fromkeys(event_types))  # each type once
        columns = {kind: event_type_columns(event_types, kind) for kind in EVENT_TYPE_KINDS}
    params = {f"et_{i}": t for i, t in enumerate(event_types)}
    # kept in the engine first: the rollups are let go before the rows come to
    # pandas, so the engine's memory and the matrix's are not held at once
    create_temp(engine, USAGE_ROWS, usage_features(columns, positions), params)
    for name in ROLLUP_TABLES + ("_churn_usage_last",):
        engine.drop(name)
    frame = engine.query(f"SELECT * FROM {USAGE_ROWS} {KEY_ORDER}")
    engine.drop(USAGE_ROWS)
    frame.attrs[EVENT_TYPES_ATTR] = {c: t for cols in columns.values() for c, t in zip(cols, event_types)}
    return frame


def _one_chunk_masks(days: pd.DataFrame, dates: Sequence[dt.date]) -> list[int] | None:
    """The day masks of a build of one chunk as a list by day from
    ``first_day`` (0 for a day in no window), or None for several chunks."""
    if len(dates) > SNAPSHOTS_PER_CHUNK:
        return None
    first = first_day(dates)
    masks = [0] * ((max(dates) - first).days + 1)
    for day, mask in zip(days["day"], days["mask"]):
        masks[(day - first).days] = int(mask)
    return masks


def _window(dates: Sequence[dt.date]) -> dict[str, dt.datetime]:
    """The time range every look-back window of ``dates`` lies in."""
    return {
        "window_start": as_of_cutoff(min(dates)) - dt.timedelta(days=WINDOW_DAYS),
        "window_end": as_of_cutoff(max(dates)),
    }


def _with_extra(event_types: list[str], extra: Sequence[str]) -> list[str]:
    return event_types + [t for t in extra if t not in event_types]


def top_event_types(
    engine: SqlEngine, as_of_dates: Sequence[dt.date], limit: int = 20, extra: Sequence[str] = ()
) -> list[str]:
    """The event types a build of ``as_of_dates`` picks by default (the
    ``limit`` most used over all its windows, then ``extra``), without
    building: builds of parts of those dates given this list have the same
    columns as the whole build. Needs the staged views of a validation."""
    dates = sorted(set(as_of_dates))
    write_run_table(engine, SPAN_TABLES[0], spans(dates)[0])
    try:
        top = engine.query(TOP_EVENT_TYPES_FROM_EVENTS, {**_window(dates), "limit": limit})
    finally:
        engine.drop(SPAN_TABLES[0])
    return _with_extra([str(t) for t in top["event_type"]], extra)


_UNKNOWN_USERS = "Active users unknown: the usage data has no user ids"
ACTIVITY, USERS, SEAT_USE, RECENCY = "activity", "users", "seat_use", "recency"
TOPICS = (
    Topic(
        ACTIVITY,
        "product events in the last 30 days",
        measure="events_30d",
        action="Usage review with the champion: find the workflows that stopped and plan to restart them",
    ),
    Topic(
        USERS,
        "active users in the last 30 days",
        measure="active_users_30d",
        action="Usage review with the champion: who stopped using the product, and why",
    ),
    Topic(
        SEAT_USE,
        "seat utilisation",
        measure="seat_utilization_30d",
        action="Offer an enablement session to the teams with unused seats",
    ),
    Topic(
        FEATURE_USAGE,
        "product features used in the last 30 days",
        measure="event_types_used_30d",
        action="Adoption review: show the features that fit their goals and that they do not use yet",
    ),
    Topic(
        RECENCY,
        "days since the last product activity",
        measure="days_since_last_activity",
        action="Reach the champion this week: the account has gone quiet",
    ),
)
_NEEDS_USERS = {"needs": (USER_ID,), "missing_template": _UNKNOWN_USERS}

FAMILY = Family(
    name="usage",
    title="Product usage",
    order=30,
    tables=("usage_events",),
    run=build_usage,
    area="usage",
    window_table="usage_events",
    topics=TOPICS,
    run_tables=(*SPAN_TABLES, *BIT_TABLES, DAY_WINDOWS_TABLE, *ROLLUP_TABLES, "_churn_usage_last", USAGE_ROWS),
    patterns=PER_EVENT_TYPE_KINDS,
    unknown_inputs={USER_ID: ("active_users_30d", _UNKNOWN_USERS)},
    features=(
        # windows end at the as-of cutoff, inclusive
        Feature(
            "events_7d",
            "Usage events (sum of quantity) in the 7 days up to as-of",
            "count",
            "{value} product event{s} in the last 7 days",
            topic=ACTIVITY,
            window=7,
            zero_template="No product events in the last 7 days",
        ),
        Feature(
            "events_30d",
            "Usage events in the 30 days up to as-of",
            "count",
            "{value} product event{s} in the last 30 days",
            topic=ACTIVITY,
            window=30,
            zero_template="No product events in the last 30 days",
        ),
        Feature(
            "events_90d",
            "Usage events in the 90 days up to as-of",
            "count",
            "{value} product event{s} in the last 90 days",
            topic=ACTIVITY,
            window=90,
            zero_template="No product events in the last 90 days",
        ),
        Feature(
            "events_prev_30d",
            "Usage events in the 30 days before the last 30 (days 31-60)",
            "count",
            "{value} product event{s} in the 30 days before last month",
            topic=ACTIVITY,
            window=60,
        ),
        Feature(
            "active_users_7d",
            "Distinct users with an event in the last 7 days",
            "count",
            "{value} active user{s} in the last 7 days",
            topic=USERS,
            window=7,
            zero_template="No active users in the last 7 days",
            **_NEEDS_USERS,
        ),
        Feature(
            "active_users_30d",
            "Distinct users with an event in the last 30 days",
            "count",
            "{value} active user{s} in the last 30 days",
            topic=USERS,
            window=30,
            zero_template="No active users in the last 30 days",
            **_NEEDS_USERS,
        ),
        Feature(
            "active_users_90d",
            "Distinct users with an event in the last 90 days",
            "count",
            "{value} active user{s} in the last 90 days",
            topic=USERS,
            window=90,
            zero_template="No active users in the last 90 days",
            **_NEEDS_USERS,
        ),
        Feature(
            "active_users_prev_30d",
            "Distinct users with an event in days 31-60 before as-of",
            "count",
            "{value} active user{s} in the 30 days before last month",
            topic=USERS,
            window=60,
            **_NEEDS_USERS,
        ),
        Feature(
            "active_days_30d",
            "Days with any usage in the last 30 days",
            "days",
            "Product used on {value} of the last 30",
            topic=ACTIVITY,
            window=30,
        ),
        Feature(
            "active_days_90d",
            "Days with any usage in the last 90 days",
            "days",
            "Product used on {value} of the last 90",
            topic=ACTIVITY,
            window=90,
        ),
        Feature(
            "events_per_active_user_30d",
            "Events per active user in the last 30 days",
            "ratio",
            "{value} events per active user in the last 30 days",
            topic=ACTIVITY,
            window=30,
            missing_template="No active users in the last 30 days",
            needs=(USER_ID,),
        ),
        Feature(
            "event_types_used_30d",
            "Distinct event types used in the last 30 days (breadth)",
            "count",
            "Only {value} product feature{s} used in the last 30 days",
            topic=FEATURE_USAGE,
            window=30,
        ),
        Feature(
            "seat_utilization_30d",
            "Active users in the last 30 days / licensed seats",
            "share",
            "Seat utilisation at {value} ({active_users_30d:.0f} of {seats:.0f} seats active)",
            topic=SEAT_USE,
            window=30,
            missing_template="Seat utilisation unknown: no licensed seats on record",
            needs=(USER_ID, SEATS),
        ),
        Feature(
            "events_trend_30d",
            "Events in the last 30 days / events in the 30 days before",
            "ratio",
            "Product events {change} in the last 30 days ({events_prev_30d:,.0f} -> {events_30d:,.0f})",
            topic=ACTIVITY,
            window=60,
            missing_template="No product events in the 30 days before last month to compare with",
        ),
        Feature(
            "active_users_trend_30d",
            "Active users in the last 30 days / in the 30 days before",
            "ratio",
            "Active users {change} in the last 30 days ({active_users_prev_30d:.0f} -> {active_users_30d:.0f})",
            topic=USERS,
            window=60,
            missing_template="No active users in the 30 days before last month to compare with",
            needs=(USER_ID,),
        ),
        Feature(
            "events_trend_90d",
            "Events in the last 30 days / the monthly average of the 60 days before (days 31-90)",
            "ratio",
            "Product events {change} against the two months before",
            topic=ACTIVITY,
            window=90,
            missing_template="No product events in the two months before last month to compare with",
        ),
        Feature(
            "active_days_trend_90d",
            "Active days in the last 30 days / the monthly average of the 60 days before (days 31-90)",
            "ratio",
            "Days with product use {change} against the two months before ({active_days_30d:.0f} in the last 30)",
            topic=ACTIVITY,
            window=90,
            missing_template="No product use in the two months before last month to compare with",
        ),
        Feature(
            "active_users_7d_of_30d",
            "Active users in the last 7 days / active users in the last 30 days (stickiness)",
            "share",
            "{value} of last month's active users were active in the last 7 days",
            topic=USERS,
            window=30,
            missing_template="No active users in the last 30 days",
            needs=(USER_ID,),
        ),
        Feature(
            "days_since_last_activity",
            "Days since the last usage event (missing if none ever)",
            "days",
            "No product activity for {value}",
            topic=RECENCY,
            window=365,
            missing_template="No product activity on record",
        ),
    ),
)
