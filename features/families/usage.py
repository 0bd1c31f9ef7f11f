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
12-snapshot build costs about one scan, not twelve.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pandas as pd

from features.event_types import (
    EVENT_TYPE_KINDS,
    EVENT_TYPES_ATTR,
    PER_SEAT,
    PER_USER,
    SHARE,
    TREND,
    checked_columns,
    event_type_columns,
)
from features.families._usage_event_types import FEATURE_USAGE, PER_EVENT_TYPE_KINDS, SEATS
from features.families._usage_spans import SPAN_TABLES, spans
from features.families.base import (
    BuildRequest,
    Family,
    Feature,
    Topic,
    create_temp,
    write_run_table,
)
from features.sql import WINDOW_DAYS, as_of_cutoff

USER_ID = "usage_events.user_id"

#: day bucket of an event (see the module docstring)
BUCKET = "CAST(event_time - INTERVAL 1 MICROSECOND AS DATE) + 1"

# -- usage rollups (temp tables) -------------------------------------------
# The explicit time range is implied by the join (spans cover exactly
# those days) but lets the engine discard rows at the scan, before bucketing.
_SPANNED = f"""FROM stg_usage_events AS e
JOIN _churn_spans AS g ON g.day = {BUCKET}
WHERE e.event_time > $window_start AND e.event_time <= $window_end"""

USAGE_SPAN_TYPE = f"""
SELECT e.account_id, g.span, e.event_type, SUM(COALESCE(e.quantity, 1)) AS events,
       MAX(e.event_time) AS last_time
{_SPANNED}
GROUP BY 1, 2, 3
"""

USAGE_SPAN_USER = f"""
SELECT DISTINCT e.account_id, e.user_id, g.span
{_SPANNED}
  AND e.user_id IS NOT NULL
"""

USAGE_SPAN_DAYS = f"""
SELECT account_id, span, COUNT(*) AS active_days
FROM (SELECT e.account_id, g.span, g.day
      {_SPANNED}
      GROUP BY 1, 2, 3
      HAVING SUM(COALESCE(e.quantity, 1)) > 0) AS d
GROUP BY 1, 2
"""

# Latest event per account, as of the first snapshot whose cutoff sees it:
# events before all windows from one cheap pass, later ones from the span
# rollup; "days since last activity" at T is then a max over rows <= T.
USAGE_LAST = f"""
SELECT account_id, as_of_date, MAX(last_time) AS last_time
FROM (
  SELECT t.account_id, n.as_of_date, t.last_time
  FROM _churn_usage_span_type AS t
  JOIN _churn_span_next AS n ON n.span = t.span
  UNION ALL
  SELECT account_id, (SELECT MIN(as_of_date) FROM _churn_snapshots) AS as_of_date, MAX(event_time)
  FROM stg_usage_events
  WHERE event_time <= (SELECT MIN(cutoff) FROM _churn_snapshots) - INTERVAL {WINDOW_DAYS} DAY
  GROUP BY 1
) AS x
GROUP BY 1, 2
"""

TOP_EVENT_TYPES = """
SELECT event_type, SUM(events) AS events
FROM _churn_usage_span_type
GROUP BY 1
ORDER BY 2 DESC, 1
LIMIT $limit
"""


#: each kind of per-event-type column from the type's 30-day count ``t`` and
#: its count in the 30 days before ``p`` (both never NULL)
_PER_TYPE = {
    PER_SEAT: "CAST({t} AS DOUBLE) / NULLIF(c.seats, 0)",
    PER_USER: "CAST({t} AS DOUBLE) / NULLIF(u.active_users_30d, 0)",
    TREND: "CAST({t} AS DOUBLE) / NULLIF({p}, 0)",
    SHARE: "CAST({t} AS DOUBLE) / NULLIF(v.events_30d, 0)",
}


def usage_features(columns: Mapping[str, list[str]]) -> str:
    """The usage statement; grain: one row per (account_id, as_of_date) of the
    spine. ``columns[kind][i]`` (a safe identifier, see
    :mod:`features.event_types`) is the column of that kind for the event type
    bound as ``$et_<i>`` by the caller: event types are parameters, never
    pasted."""
    type_columns = columns[PER_SEAT]
    per_type = "".join(
        f",\n       SUM(events) FILTER (WHERE event_type = $et_{i}) AS t_{i},"
        f"\n       SUM(prev_events) FILTER (WHERE event_type = $et_{i}) AS p_{i}"
        for i in range(len(type_columns))
    )
    per_type_out = "".join(
        f',\n       {_PER_TYPE[kind].format(t=f"COALESCE(t.t_{i}, 0)", p=f"COALESCE(t.p_{i}, 0)")} AS "{col}"'
        for kind in EVENT_TYPE_KINDS
        for i, col in enumerate(columns[kind])
    )
    return f"""
WITH volume AS (
  SELECT t.account_id, w.as_of_date,
         SUM(t.events) FILTER (WHERE w.in_7d) AS events_7d,
         SUM(t.events) FILTER (WHERE w.in_30d) AS events_30d,
         SUM(t.events) AS events_90d,
         SUM(t.events) FILTER (WHERE w.in_prev_30d) AS events_prev_30d
  FROM _churn_usage_span_type AS t
  JOIN _churn_span_window AS w ON w.span = t.span
  GROUP BY 1, 2
), days AS (
  SELECT d.account_id, w.as_of_date,
         SUM(d.active_days) FILTER (WHERE w.in_30d) AS active_days_30d,
         SUM(d.active_days) AS active_days_90d
  FROM _churn_usage_span_days AS d
  JOIN _churn_span_window AS w ON w.span = d.span
  GROUP BY 1, 2
), type_window AS (
  SELECT t.account_id, w.as_of_date, t.event_type,
         SUM(t.events) FILTER (WHERE w.in_30d) AS events,
         SUM(t.events) FILTER (WHERE w.in_prev_30d) AS prev_events
  FROM _churn_usage_span_type AS t
  JOIN _churn_span_window AS w ON w.span = t.span
  WHERE w.in_30d OR w.in_prev_30d
  GROUP BY 1, 2, 3
), types AS (
  SELECT account_id, as_of_date,
         COUNT(*) FILTER (WHERE events > 0) AS event_types_used_30d{per_type}
  FROM type_window GROUP BY 1, 2
), user_window AS (
  SELECT u.account_id, w.as_of_date, u.user_id,
         MAX(CASE WHEN w.in_7d THEN 1 ELSE 0 END) AS in_7d,
         MAX(CASE WHEN w.in_30d THEN 1 ELSE 0 END) AS in_30d,
         MAX(CASE WHEN w.in_prev_30d THEN 1 ELSE 0 END) AS in_prev_30d
  FROM _churn_usage_span_user AS u
  JOIN _churn_span_window AS w ON w.span = u.span
  GROUP BY 1, 2, 3
), users AS (
  SELECT account_id, as_of_date,
         SUM(in_7d) AS active_users_7d,
         SUM(in_30d) AS active_users_30d,
         COUNT(*) AS active_users_90d,
         SUM(in_prev_30d) AS active_users_prev_30d
  FROM user_window GROUP BY 1, 2
), last_activity AS (
  SELECT s.account_id, s.as_of_date, MAX(l.last_time) AS last_time
  FROM _churn_spine AS s
  JOIN _churn_usage_last AS l ON l.account_id = s.account_id AND l.as_of_date <= s.as_of_date
  GROUP BY 1, 2
)
SELECT s.account_id, s.as_of_date,
       COALESCE(v.events_7d, 0) AS events_7d,
       COALESCE(v.events_30d, 0) AS events_30d,
       COALESCE(v.events_90d, 0) AS events_90d,
       COALESCE(v.events_prev_30d, 0) AS events_prev_30d,
       COALESCE(u.active_users_7d, 0) AS active_users_7d,
       COALESCE(u.active_users_30d, 0) AS active_users_30d,
       COALESCE(u.active_users_90d, 0) AS active_users_90d,
       COALESCE(u.active_users_prev_30d, 0) AS active_users_prev_30d,
       COALESCE(d.active_days_30d, 0) AS active_days_30d,
       COALESCE(d.active_days_90d, 0) AS active_days_90d,
       CAST(v.events_30d AS DOUBLE) / NULLIF(u.active_users_30d, 0) AS events_per_active_user_30d,
       COALESCE(t.event_types_used_30d, 0) AS event_types_used_30d,
       CAST(COALESCE(u.active_users_30d, 0) AS DOUBLE) / NULLIF(c.seats, 0) AS seat_utilization_30d,
       CAST(COALESCE(v.events_30d, 0) AS DOUBLE) / NULLIF(v.events_prev_30d, 0) AS events_trend_30d,
       CAST(COALESCE(u.active_users_30d, 0) AS DOUBLE) / NULLIF(u.active_users_prev_30d, 0)
         AS active_users_trend_30d,
       CAST(COALESCE(v.events_30d, 0) AS DOUBLE) / NULLIF((v.events_90d - COALESCE(v.events_30d, 0)) / 2.0, 0)
         AS events_trend_90d,
       CAST(COALESCE(d.active_days_30d, 0) AS DOUBLE)
         / NULLIF((d.active_days_90d - COALESCE(d.active_days_30d, 0)) / 2.0, 0) AS active_days_trend_90d,
       CAST(COALESCE(u.active_users_7d, 0) AS DOUBLE) / NULLIF(u.active_users_30d, 0) AS active_users_7d_of_30d,
       EPOCH(s.cutoff - la.last_time) / 86400.0 AS days_since_last_activity{per_type_out}
FROM _churn_spine AS s
LEFT JOIN volume AS v ON v.account_id = s.account_id AND v.as_of_date = s.as_of_date
LEFT JOIN days AS d ON d.account_id = s.account_id AND d.as_of_date = s.as_of_date
LEFT JOIN users AS u ON u.account_id = s.account_id AND u.as_of_date = s.as_of_date
LEFT JOIN types AS t ON t.account_id = s.account_id AND t.as_of_date = s.as_of_date
LEFT JOIN last_activity AS la ON la.account_id = s.account_id AND la.as_of_date = s.as_of_date
LEFT JOIN _churn_contract AS c ON c.account_id = s.account_id AND c.as_of_date = s.as_of_date
"""


ROLLUPS = {
    "_churn_usage_span_type": USAGE_SPAN_TYPE,
    "_churn_usage_span_user": USAGE_SPAN_USER,
    "_churn_usage_span_days": USAGE_SPAN_DAYS,
}


def build_usage(request: BuildRequest) -> pd.DataFrame:
    """The spans and rollups, then the usage statement with one column per
    event type (the given ones, or the most used ones plus the extra ones)."""
    engine = request.engine
    for name, frame in zip(SPAN_TABLES, spans(sorted(set(request.as_of_dates)))):
        write_run_table(engine, name, frame)
    window = {
        "window_start": as_of_cutoff(min(request.as_of_dates)) - dt.timedelta(days=WINDOW_DAYS),
        "window_end": as_of_cutoff(max(request.as_of_dates)),
    }
    for name, select in ROLLUPS.items():
        create_temp(engine, name, select, window)
    create_temp(engine, "_churn_usage_last", USAGE_LAST)
    event_types = request.event_types
    if event_types is None:
        top = engine.query(TOP_EVENT_TYPES, {"limit": request.max_event_types})
        event_types = [str(t) for t in top["event_type"]]
        event_types += [t for t in request.extra_event_types if t not in event_types]
    if isinstance(event_types, Mapping):  # a model's own column names
        event_types, columns = checked_columns(event_types)
    else:
        event_types = list(dict.fromkeys(event_types))  # each type once
        columns = {kind: event_type_columns(event_types, kind) for kind in EVENT_TYPE_KINDS}
    params = {f"et_{i}": t for i, t in enumerate(event_types)}
    frame = engine.query(usage_features(columns), params)
    frame.attrs[EVENT_TYPES_ATTR] = {c: t for cols in columns.values() for c, t in zip(cols, event_types)}
    return frame


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
    run_tables=(*SPAN_TABLES, *ROLLUPS, "_churn_usage_last"),
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
