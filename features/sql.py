"""Feature definitions as SQL (DuckDB dialect; transpiled for other engines).

Grain of every statement's result: one row per (account_id, as_of_date).
Inputs are the staged views (``stg_*``) and small run tables written by
:mod:`features.build`:

- ``_churn_snapshots(as_of_date, cutoff, horizon_end, mature)``: the snapshot
  dates; ``cutoff`` is the as-of timestamp (date 00:00): rows at or before it
  are visible.
- ``_churn_segments(day, segment)`` and ``_churn_segment_window(segment,
  as_of_date, in_7d, in_30d, in_prev_30d)``: the days of all look-back windows
  cut at every window edge (T, T-7, T-30, T-60, T-90 of every snapshot T), so
  each window is a union of whole segments.
- ``_churn_segment_next(segment, as_of_date)``: each segment mapped to the
  first snapshot that sees it (for "days since last activity").

Usage is bucketed by *day*: bucket ``d`` holds the events in
``(d-1 00:00, d 00:00]``, so "bucket <= as-of date" is exactly
"event_time <= cutoff". Events are aggregated once per account and segment
(one pass over the raw events for any number of snapshots); each snapshot's
7/30/60/90-day windows then add up a handful of segment rows instead of
re-reading events. A monthly 12-snapshot build therefore costs about one scan,
not twelve.
"""

from __future__ import annotations

WINDOW_DAYS = 90  # the longest look-back window of the usage features

BUCKET = "CAST(event_time - INTERVAL 1 MICROSECOND AS DATE) + 1"

# -- usage rollups (temp tables) -------------------------------------------
# The explicit time range is implied by the join (segments cover exactly
# those days) but lets the engine discard rows at the scan, before bucketing.
_SEGMENTED = f"""FROM stg_usage_events AS e
JOIN _churn_segments AS g ON g.day = {BUCKET}
WHERE e.event_time > $window_start AND e.event_time <= $window_end"""

USAGE_SEGMENT_TYPE = f"""
SELECT e.account_id, g.segment, e.event_type, SUM(COALESCE(e.quantity, 1)) AS events,
       MAX(e.event_time) AS last_time
{_SEGMENTED}
GROUP BY 1, 2, 3
"""

USAGE_SEGMENT_USER = f"""
SELECT DISTINCT e.account_id, e.user_id, g.segment
{_SEGMENTED}
  AND e.user_id IS NOT NULL
"""

USAGE_SEGMENT_DAYS = f"""
SELECT account_id, segment, COUNT(*) AS active_days
FROM (SELECT e.account_id, g.segment, g.day
      {_SEGMENTED}
      GROUP BY 1, 2, 3
      HAVING SUM(COALESCE(e.quantity, 1)) > 0) AS d
GROUP BY 1, 2
"""

# Latest event per account, as of the first snapshot whose cutoff sees it:
# events before all windows from one cheap pass, later ones from the segment
# rollup; "days since last activity" at T is then a max over rows <= T.
USAGE_LAST = f"""
SELECT account_id, as_of_date, MAX(last_time) AS last_time
FROM (
  SELECT t.account_id, n.as_of_date, t.last_time
  FROM _churn_usage_segment_type AS t
  JOIN _churn_segment_next AS n ON n.segment = t.segment
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
FROM _churn_usage_segment_type
GROUP BY 1
ORDER BY 2 DESC, 1
LIMIT $limit
"""

# -- the spine: accounts active on each snapshot date -----------------------
SPINE = """
SELECT DISTINCT s.as_of_date, s.cutoff, sub.account_id
FROM _churn_snapshots AS s
JOIN stg_subscriptions AS sub
  ON sub.start_date <= s.as_of_date
 AND (sub.end_date IS NULL OR sub.end_date > s.as_of_date)
JOIN stg_accounts AS a ON a.account_id = sub.account_id
"""


def usage_features(event_types: list[str], type_columns: list[str]) -> str:
    """Usage features; ``event_types`` are bound as $et_<i>, their columns named
    ``type_columns`` (already safe identifiers from the catalog)."""
    per_type = "".join(
        f",\n       SUM(events) FILTER (WHERE event_type = $et_{i}) AS \"{col}\""
        for i, col in enumerate(type_columns)
    )
    per_type_out = "".join(
        f",\n       COALESCE(t.\"{col}\", 0) / NULLIF(c.seats, 0) AS \"{col}\"" for col in type_columns
    )
    del event_types  # bound by the caller as parameters, never pasted
    return f"""
WITH volume AS (
  SELECT t.account_id, w.as_of_date,
         SUM(t.events) FILTER (WHERE w.in_7d) AS events_7d,
         SUM(t.events) FILTER (WHERE w.in_30d) AS events_30d,
         SUM(t.events) AS events_90d,
         SUM(t.events) FILTER (WHERE w.in_prev_30d) AS events_prev_30d
  FROM _churn_usage_segment_type AS t
  JOIN _churn_segment_window AS w ON w.segment = t.segment
  GROUP BY 1, 2
), days AS (
  SELECT d.account_id, w.as_of_date,
         SUM(d.active_days) FILTER (WHERE w.in_30d) AS active_days_30d,
         SUM(d.active_days) AS active_days_90d
  FROM _churn_usage_segment_days AS d
  JOIN _churn_segment_window AS w ON w.segment = d.segment
  GROUP BY 1, 2
), type_window AS (
  SELECT t.account_id, w.as_of_date, t.event_type, SUM(t.events) AS events
  FROM _churn_usage_segment_type AS t
  JOIN _churn_segment_window AS w ON w.segment = t.segment
  WHERE w.in_30d
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
  FROM _churn_usage_segment_user AS u
  JOIN _churn_segment_window AS w ON w.segment = u.segment
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
       EPOCH(s.cutoff - la.last_time) / 86400.0 AS days_since_last_activity{per_type_out}
FROM _churn_spine AS s
LEFT JOIN volume AS v ON v.account_id = s.account_id AND v.as_of_date = s.as_of_date
LEFT JOIN days AS d ON d.account_id = s.account_id AND d.as_of_date = s.as_of_date
LEFT JOIN users AS u ON u.account_id = s.account_id AND u.as_of_date = s.as_of_date
LEFT JOIN types AS t ON t.account_id = s.account_id AND t.as_of_date = s.as_of_date
LEFT JOIN last_activity AS la ON la.account_id = s.account_id AND la.as_of_date = s.as_of_date
LEFT JOIN _churn_contract AS c ON c.account_id = s.account_id AND c.as_of_date = s.as_of_date
"""


CONTRACT_FEATURES = """
WITH covering AS (
  SELECT s.account_id, s.as_of_date, sub.subscription_id, sub.start_date, sub.end_date,
         sub.mrr, sub.seats, sub.plan, sub.auto_renew,
         ROW_NUMBER() OVER (PARTITION BY s.account_id, s.as_of_date
                            ORDER BY sub.start_date DESC, sub.mrr DESC, sub.subscription_id) AS rn
  FROM _churn_spine AS s
  JOIN stg_subscriptions AS sub
    ON sub.account_id = s.account_id
   AND sub.start_date <= s.as_of_date
   AND (sub.end_date IS NULL OR sub.end_date > s.as_of_date)
), now AS (
  SELECT account_id, as_of_date,
         SUM(mrr) AS mrr, SUM(seats) AS seats, MIN(end_date) AS renewal_date
  FROM covering GROUP BY 1, 2
), current_sub AS (
  SELECT * FROM covering WHERE rn = 1
), before AS (
  SELECT s.account_id, s.as_of_date, SUM(sub.mrr) AS mrr, SUM(sub.seats) AS seats
  FROM _churn_spine AS s
  JOIN stg_subscriptions AS sub
    ON sub.account_id = s.account_id
   AND sub.start_date <= s.as_of_date - 90
   AND (sub.end_date IS NULL OR sub.end_date > s.as_of_date - 90)
  GROUP BY 1, 2
), history AS (
  SELECT s.account_id, s.as_of_date, COUNT(*) AS prior_renewals
  FROM _churn_spine AS s
  JOIN stg_subscriptions AS sub
    ON sub.account_id = s.account_id AND sub.end_date <= s.as_of_date
  GROUP BY 1, 2
), base AS (
  SELECT s.account_id, s.as_of_date,
         GREATEST(DATE_DIFF('day', CAST(a.created_at AS DATE), s.as_of_date), 0) AS tenure_days,
         n.mrr,
         n.mrr - COALESCE(b.mrr, 0) AS mrr_change_90d,
         n.seats,
         n.seats - COALESCE(b.seats, 0) AS seats_change_90d,
         n.renewal_date,
         DATE_DIFF('day', s.as_of_date, n.renewal_date) AS days_to_renewal,
         DATE_DIFF('day', cs.start_date, cs.end_date) AS term_days,
         CASE WHEN cs.auto_renew IS NULL THEN NULL WHEN cs.auto_renew THEN 1 ELSE 0 END AS is_auto_renew,
         cs.plan,
         COALESCE(h.prior_renewals, 0) AS prior_renewals,
         a.segment, a.industry, a.region, a.account_name, a.csm_owner
  FROM _churn_spine AS s
  JOIN stg_accounts AS a ON a.account_id = s.account_id
  JOIN now AS n ON n.account_id = s.account_id AND n.as_of_date = s.as_of_date
  JOIN current_sub AS cs ON cs.account_id = s.account_id AND cs.as_of_date = s.as_of_date
  LEFT JOIN before AS b ON b.account_id = s.account_id AND b.as_of_date = s.as_of_date
  LEFT JOIN history AS h ON h.account_id = s.account_id AND h.as_of_date = s.as_of_date
)
SELECT account_id, as_of_date, tenure_days, mrr, mrr_change_90d, seats, seats_change_90d,
       renewal_date, days_to_renewal,
       ROUND(term_days / 30.4375) AS contract_term_months,
       CASE WHEN term_days IS NULL THEN 'open_ended'
            WHEN term_days <= 45 THEN 'monthly'
            WHEN term_days <= 100 THEN 'quarterly'
            WHEN term_days <= 400 THEN 'annual'
            ELSE 'multi_year' END AS billing_term,
       is_auto_renew, plan, prior_renewals,
       CASE WHEN tenure_days < 90 THEN 'onboarding'
            WHEN days_to_renewal <= 90 THEN 'renewal_window'
            ELSE 'adoption' END AS lifecycle_stage,
       segment, industry, region,
       account_name, csm_owner  -- context for the scores (build.CONTEXT_COLUMNS), not features
FROM base
"""

SUPPORT_FEATURES = """
WITH visible AS (
  SELECT s.account_id, s.as_of_date, s.cutoff, t.created_at, t.satisfaction,
         CASE WHEN t.resolved_at <= s.cutoff THEN t.resolved_at END AS resolved_at,
         LOWER(TRIM(t.priority)) IN ('high', 'urgent') AS is_high
  FROM _churn_spine AS s
  JOIN stg_support_tickets AS t ON t.account_id = s.account_id AND t.created_at <= s.cutoff
), agg AS (
  SELECT account_id, as_of_date, cutoff,
         COUNT(*) FILTER (WHERE created_at > cutoff - INTERVAL 30 DAY) AS tickets_30d,
         COUNT(*) FILTER (WHERE created_at > cutoff - INTERVAL 90 DAY) AS tickets_90d,
         COUNT(*) FILTER (WHERE created_at > cutoff - INTERVAL 90 DAY AND is_high) AS tickets_high_urgent_90d,
         COUNT(*) FILTER (WHERE resolved_at IS NULL) AS open_tickets,
         COUNT(*) FILTER (WHERE resolved_at IS NULL AND is_high) AS open_urgent_tickets,
         MIN(created_at) FILTER (WHERE resolved_at IS NULL) AS oldest_open,
         MEDIAN(EPOCH(resolved_at - created_at) / 3600.0)
           FILTER (WHERE resolved_at > cutoff - INTERVAL 90 DAY) AS median_resolution_hours_90d,
         AVG(satisfaction) FILTER (WHERE resolved_at > cutoff - INTERVAL 90 DAY) AS csat_avg_90d,
         COUNT(*) FILTER (WHERE resolved_at > cutoff - INTERVAL 90 DAY AND satisfaction <= 2) AS low_csat_90d
  FROM visible GROUP BY 1, 2, 3
)
SELECT s.account_id, s.as_of_date,
       COALESCE(g.tickets_30d, 0) AS tickets_30d,
       COALESCE(g.tickets_90d, 0) AS tickets_90d,
       COALESCE(g.tickets_high_urgent_90d, 0) AS tickets_high_urgent_90d,
       COALESCE(g.open_tickets, 0) AS open_tickets,
       COALESCE(g.open_urgent_tickets, 0) AS open_urgent_tickets,
       EPOCH(s.cutoff - g.oldest_open) / 86400.0 AS oldest_open_ticket_age_days,
       g.median_resolution_hours_90d,
       g.csat_avg_90d,
       COALESCE(g.low_csat_90d, 0) AS low_csat_90d,
       CAST(COALESCE(g.tickets_90d, 0) AS DOUBLE) / NULLIF(c.seats, 0) AS tickets_per_seat_90d
FROM _churn_spine AS s
LEFT JOIN agg AS g ON g.account_id = s.account_id AND g.as_of_date = s.as_of_date
LEFT JOIN _churn_contract AS c ON c.account_id = s.account_id AND c.as_of_date = s.as_of_date
"""

SENTIMENT_FEATURES = """
WITH visible AS (
  SELECT s.account_id, s.as_of_date, s.cutoff, n.responded_at, n.score
  FROM _churn_spine AS s
  JOIN stg_nps_responses AS n ON n.account_id = s.account_id AND n.responded_at <= s.cutoff
), latest AS (
  SELECT account_id, as_of_date, MAX(responded_at) AS last_time FROM visible GROUP BY 1, 2
), agg AS (
  SELECT v.account_id, v.as_of_date,
         AVG(v.score) FILTER (WHERE v.responded_at > l.last_time - INTERVAL 30 DAY) AS nps_latest,
         AVG(v.score) FILTER (WHERE v.responded_at > v.cutoff - INTERVAL 365 DAY) AS nps_avg_365d,
         AVG(CASE WHEN v.score <= 6 THEN 1.0 ELSE 0.0 END)
           FILTER (WHERE v.responded_at > v.cutoff - INTERVAL 365 DAY) AS nps_detractor_share_365d,
         COUNT(*) FILTER (WHERE v.responded_at > v.cutoff - INTERVAL 365 DAY) AS nps_responses_365d,
         EPOCH(MAX(v.cutoff) - MAX(l.last_time)) / 86400.0 AS days_since_last_nps
  FROM visible AS v
  JOIN latest AS l ON l.account_id = v.account_id AND l.as_of_date = v.as_of_date
  GROUP BY 1, 2
)
SELECT s.account_id, s.as_of_date, g.nps_latest, g.nps_avg_365d, g.nps_detractor_share_365d,
       COALESCE(g.nps_responses_365d, 0) AS nps_responses_365d, g.days_since_last_nps
FROM _churn_spine AS s
LEFT JOIN agg AS g ON g.account_id = s.account_id AND g.as_of_date = s.as_of_date
"""

# -- labels --------------------------------------------------------------------
COVERAGE_SPELLS = """
WITH subs AS (
  SELECT account_id, start_date, COALESCE(end_date, DATE '9999-12-31') AS end_date
  FROM stg_subscriptions
  WHERE end_date IS NULL OR end_date > start_date
), ordered AS (
  SELECT *, MAX(end_date) OVER (PARTITION BY account_id ORDER BY start_date, end_date
                                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
  FROM subs
), flagged AS (
  -- a new spell starts after a real gap (start after the previous end) of at least
  -- grace_days; back-to-back or overlapping coverage never starts one, even with grace 0
  SELECT *, CASE WHEN prev_end IS NULL
                   OR (start_date > prev_end AND start_date - prev_end >= $grace_days)
                 THEN 1 ELSE 0 END AS new_spell
  FROM ordered
), numbered AS (
  SELECT *, SUM(new_spell) OVER (PARTITION BY account_id ORDER BY start_date, end_date
                                 ROWS UNBOUNDED PRECEDING) AS spell
  FROM flagged
)
SELECT account_id, spell, MIN(start_date) AS spell_start, MAX(end_date) AS spell_end
FROM numbered GROUP BY 1, 2
"""

LABELS = f"""
WITH spells AS ({COVERAGE_SPELLS})
SELECT s.account_id, s.as_of_date,
       CASE WHEN sp.spell_end < DATE '9999-12-31' THEN sp.spell_end END AS churn_date,
       CASE WHEN sp.spell_end > s.as_of_date AND sp.spell_end <= s.horizon_end THEN 1 ELSE 0 END AS churned,
       s.mature
FROM (SELECT sp.account_id, sn.as_of_date, sn.horizon_end, sn.mature
      FROM _churn_spine AS sp JOIN _churn_snapshots AS sn ON sn.as_of_date = sp.as_of_date) AS s
JOIN spells AS sp
  ON sp.account_id = s.account_id AND sp.spell_start <= s.as_of_date AND sp.spell_end > s.as_of_date
"""
