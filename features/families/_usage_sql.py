"""The usage family's SQL: the span rollups (temp tables) and the usage
statement over them (see :mod:`features.families.usage`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from features.event_types import EVENT_TYPE_KINDS, PER_SEAT, PER_USER, SHARE, TREND
from features.families._usage_spans import DAY_WINDOWS, DAYS_PER_BLOCK
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

#: one row per (account, user, chunk): the user's windows (see
#: :func:`features.families._usage_spans.day_bits`)
USER_MASKS = f"""
SELECT e.account_id, g.chunk, BIT_OR(g.mask) AS mask
FROM stg_usage_events AS e
JOIN _churn_day_bits AS g ON g.day = {BUCKET}
WHERE e.event_time > $window_start AND e.event_time <= $window_end
  AND e.user_id IS NOT NULL
GROUP BY e.account_id, e.user_id, g.chunk
"""


def user_masks(day_masks: Sequence[int] | None = None) -> str:
    """:data:`USER_MASKS`; given ``day_masks`` (a build of one chunk: the mask
    of day ``$first_day + k`` at ``k``), each event's mask is looked up by its
    day in that list instead of joined: no hash join per event."""
    if day_masks is None:
        return USER_MASKS
    masks = ", ".join(str(m) for m in day_masks)
    return f"""
SELECT e.account_id, 0 AS chunk,
       BIT_OR((CAST([{masks}] AS BIGINT[]))[DATE_DIFF('day', $first_day, {BUCKET}) + 1]) AS mask
FROM stg_usage_events AS e
WHERE e.event_time > $window_start AND e.event_time <= $window_end
  AND e.user_id IS NOT NULL
GROUP BY e.account_id, e.user_id
"""


#: one row per (account, block of days): the account's active days as a
#: bitmap (see :func:`features.families._usage_spans.day_blocks`). A day is
#: active when its events add up to more than 0: quantities are never negative
#: (staging), so when one of its events has a positive quantity
DAY_BLOCKS = f"""
SELECT account_id, CAST(FLOOR(day / {float(DAYS_PER_BLOCK)}) AS INTEGER) AS block,
       BIT_OR(CAST(1 AS BIGINT) << CAST(day % {DAYS_PER_BLOCK} AS INTEGER)) AS mask
FROM (SELECT e.account_id, DATE_DIFF('day', $first_day, {BUCKET}) AS day
      FROM stg_usage_events AS e
      WHERE e.event_time > $window_start AND e.event_time <= $window_end
        AND COALESCE(e.quantity, 1) > 0) AS d
GROUP BY 1, 2
"""

#: the steps of a population count of a non-negative BIGINT by halves (SWAR):
#: every engine's integer arithmetic, no overflow, no engine-specific function
_POPCOUNT_STEPS = (
    "{x} - (({x} >> 1) & 6148914691236517205)",  # 0x5555...: bits per 2-bit pair
    "({x} & 3689348814741910323) + (({x} >> 2) & 3689348814741910323)",  # 0x3333...: per nibble
    "({x} + ({x} >> 4)) & 1085102592571150095",  # 0x0F0F...: per byte
    "{x} + ({x} >> 8)",
    "{x} + ({x} >> 16)",
    "({x} + ({x} >> 32)) & 127",  # the low byte holds the total (<= 63)
)


def day_counts() -> str:
    """Active days per (account_id, as_of_date) in each of ``DAY_WINDOWS``:
    the set bits of each block's bitmap AND the window's mask, summed."""
    names = [name for name, _ in DAY_WINDOWS]
    masks = [f"b.mask & w.mask_{name.removeprefix('active_days_')} AS {name}" for name in names]
    select = f"""SELECT b.account_id, w.as_of_date, {", ".join(masks)}
FROM _churn_usage_day_blocks AS b
JOIN _churn_day_windows AS w ON w.block = b.block"""
    for step in _POPCOUNT_STEPS:
        counted = ", ".join(f"{step.format(x=f'p.{name}')} AS {name}" for name in names)
        select = f"SELECT p.account_id, p.as_of_date, {counted}\nFROM ({select}) AS p"
    sums = ", ".join(f"CAST(SUM(c.{name}) AS BIGINT) AS {name}" for name in names)
    return f"SELECT c.account_id, c.as_of_date, {sums}\nFROM ({select}) AS c\nGROUP BY 1, 2"


#: each span's bits: its days all fall in the same windows
SPAN_BITS = """
SELECT DISTINCT s.span, b.chunk, b.mask
FROM _churn_spans AS s
JOIN _churn_day_bits AS b ON b.day = s.day
"""

#: one row per (account, event type, chunk): the windows the type was used in.
#: Quantities are never negative (staging), so a window's sum is positive
#: exactly when one of its spans' is
TYPE_MASKS = """
SELECT t.account_id, g.chunk, BIT_OR(g.mask) AS mask
FROM _churn_usage_span_type AS t
JOIN _churn_span_bits AS g ON g.span = t.span
WHERE t.events > 0
GROUP BY t.account_id, t.event_type, g.chunk
"""


def bit_counts(masks: str, positions: int, windows: Sequence[int]) -> str:
    """Per (account_id, chunk): ``n_<bit>``, how many rows of ``masks``
    (account_id, chunk, mask) have the bit set, for the bits of ``windows``
    (indexes into ``BIT_WINDOWS``) at each of ``positions`` snapshots."""
    counts = ",\n       ".join(
        f"COUNT(*) FILTER (WHERE (m.mask & {1 << (4 * pos + w)}) <> 0) AS n_{4 * pos + w}"
        for pos in range(positions)
        for w in windows
    )
    return f"SELECT m.account_id, m.chunk,\n       {counts}\nFROM ({masks}) AS m\nGROUP BY 1, 2"


def _at_snapshot(alias: str, positions: int, window: int) -> str:
    """The count of one window at each snapshot, from its chunk's row ``alias``."""
    whens = " ".join(f"WHEN {pos} THEN {alias}.n_{4 * pos + window}" for pos in range(positions))
    return f"CASE b.pos {whens} END"


# Latest event per account, as of the first snapshot whose cutoff sees it:
# later ones from the span rollup, events before all windows from one pass;
# "days since last activity" at T is then a max over rows <= T. The pass
# before the windows matters only to the accounts of the spine with no event
# in the first snapshot's windows (any later event outdates it): joined to
# those few, the scan of the long history drops the other accounts' rows
# before staging's checks.
USAGE_LAST = f"""
WITH earliest AS (
  SELECT MIN(as_of_date) AS as_of_date, MIN(cutoff) AS cutoff FROM _churn_snapshots
), recent AS (
  SELECT t.account_id, n.as_of_date, t.last_time
  FROM _churn_usage_span_type AS t
  JOIN _churn_span_next AS n ON n.span = t.span
), quiet AS (
  SELECT DISTINCT s.account_id
  FROM _churn_spine AS s
  WHERE NOT EXISTS (
    SELECT 1 FROM recent AS r
    WHERE r.account_id = s.account_id AND r.as_of_date = (SELECT as_of_date FROM earliest)
  )
)
SELECT account_id, as_of_date, MAX(last_time) AS last_time
FROM (
  SELECT account_id, as_of_date, last_time FROM recent
  UNION ALL
  SELECT e.account_id, (SELECT as_of_date FROM earliest) AS as_of_date, MAX(e.event_time) AS last_time
  FROM stg_usage_events AS e
  JOIN quiet AS q ON q.account_id = e.account_id
  WHERE e.event_time <= (SELECT cutoff FROM earliest) - INTERVAL {WINDOW_DAYS} DAY
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

#: the same ranking straight from the events, before any rollup (needs only ``_churn_spans``)
TOP_EVENT_TYPES_FROM_EVENTS = f"""
SELECT e.event_type, SUM(COALESCE(e.quantity, 1)) AS events
{_SPANNED}
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


def usage_features(columns: Mapping[str, list[str]], positions: int) -> str:
    """The usage statement; grain: one row per (account_id, as_of_date) of the
    spine. ``columns[kind][i]`` (a safe identifier, see
    :mod:`features.event_types`) is the column of that kind for the event type
    bound as ``$et_<i>`` by the caller: event types are parameters, never
    pasted. ``positions``: snapshots per chunk of the bit masks (see
    :func:`features.families._usage_spans.day_bits`)."""
    type_columns = columns[PER_SEAT]
    per_type = "".join(
        f",\n         SUM(t.events) FILTER (WHERE w.in_30d AND t.event_type = $et_{i}) AS t_{i},"
        f"\n         SUM(t.events) FILTER (WHERE w.in_prev_30d AND t.event_type = $et_{i}) AS p_{i}"
        for i in range(len(type_columns))
    )
    per_type_out = "".join(
        f',\n       {_PER_TYPE[kind].format(t=f"COALESCE(v.t_{i}, 0)", p=f"COALESCE(v.p_{i}, 0)")} AS "{col}"'
        for kind in EVENT_TYPE_KINDS
        for i, col in enumerate(columns[kind])
    )
    return f"""
WITH volume AS (
  SELECT t.account_id, w.as_of_date,
         SUM(t.events) FILTER (WHERE w.in_7d) AS events_7d,
         SUM(t.events) FILTER (WHERE w.in_30d) AS events_30d,
         SUM(t.events) AS events_90d,
         SUM(t.events) FILTER (WHERE w.in_prev_30d) AS events_prev_30d{per_type}
  FROM _churn_usage_span_type AS t
  JOIN _churn_span_window AS w ON w.span = t.span
  GROUP BY 1, 2
), types AS (
  SELECT x.account_id, b.as_of_date, {_at_snapshot("x", positions, 1)} AS event_types_used_30d
  FROM _churn_usage_types AS x
  JOIN _churn_snapshot_bits AS b ON b.chunk = x.chunk
), users AS (
  SELECT x.account_id, b.as_of_date,
         {_at_snapshot("x", positions, 0)} AS active_users_7d,
         {_at_snapshot("x", positions, 1)} AS active_users_30d,
         {_at_snapshot("x", positions, 2)} AS active_users_90d,
         {_at_snapshot("x", positions, 3)} AS active_users_prev_30d
  FROM _churn_usage_users AS x
  JOIN _churn_snapshot_bits AS b ON b.chunk = x.chunk
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
LEFT JOIN _churn_usage_days AS d ON d.account_id = s.account_id AND d.as_of_date = s.as_of_date
LEFT JOIN users AS u ON u.account_id = s.account_id AND u.as_of_date = s.as_of_date
LEFT JOIN types AS t ON t.account_id = s.account_id AND t.as_of_date = s.as_of_date
LEFT JOIN last_activity AS la ON la.account_id = s.account_id AND la.as_of_date = s.as_of_date
LEFT JOIN _churn_contract AS c ON c.account_id = s.account_id AND c.as_of_date = s.as_of_date
"""


def rollups(positions: int, day_masks: Sequence[int] | None = None) -> dict[str, str]:
    """The usage rollups (temp tables, in build order) for ``positions``
    snapshots per chunk (``day_masks``: see :func:`user_masks`); bound with the
    overall ``$window_start`` and ``$window_end`` and the bitmaps' ``$first_day``."""
    return {
        "_churn_usage_span_type": USAGE_SPAN_TYPE,
        "_churn_usage_users": bit_counts(user_masks(day_masks), positions, range(4)),
        "_churn_usage_day_blocks": DAY_BLOCKS,
        "_churn_usage_days": day_counts(),
        "_churn_span_bits": SPAN_BITS,
        "_churn_usage_types": bit_counts(TYPE_MASKS, positions, (1,)),
    }


ROLLUP_TABLES = (
    "_churn_usage_span_type",
    "_churn_usage_users",
    "_churn_usage_day_blocks",
    "_churn_usage_days",
    "_churn_span_bits",
    "_churn_usage_types",
)
