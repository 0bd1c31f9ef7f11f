"""The usage family's SQL: the span rollups (temp tables) and the usage
statement over them (see :mod:`features.families.usage`)."""

from __future__ import annotations

from collections.abc import Mapping

from features.event_types import EVENT_TYPE_KINDS, PER_SEAT, PER_USER, SHARE, TREND
from features.sql import WINDOW_DAYS

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
