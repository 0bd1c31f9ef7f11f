"""Support: ticket volume, backlog, resolution time and satisfaction.

Reads ``support_tickets`` (optional: the family is off when the table is
absent or has no usable rows) and the contract family's ``_churn_contract``
(seats). A ticket counts from ``created_at``; it is open at the as-of date
unless resolved at or before the cutoff.
"""

from __future__ import annotations

from features.families.base import Family, Feature, Topic

PRIORITY, CSAT, SEATS = "support_tickets.priority", "support_tickets.satisfaction", "subscriptions.seats"

#: grain: one row per (account_id, as_of_date) of the spine
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
         AVG(satisfaction) FILTER (WHERE resolved_at > cutoff - INTERVAL 90 DAY) AS csat_avg_90d,
         COUNT(*) FILTER (WHERE resolved_at > cutoff - INTERVAL 90 DAY AND satisfaction <= 2) AS low_csat_90d
  FROM visible GROUP BY 1, 2, 3
), resolved AS (
  SELECT account_id, as_of_date, EPOCH(resolved_at - created_at) / 3600.0 AS hours
  FROM visible
  WHERE resolved_at > cutoff - INTERVAL 90 DAY
), ranked AS (
  SELECT account_id, as_of_date, hours,
         ROW_NUMBER() OVER (PARTITION BY account_id, as_of_date ORDER BY hours) AS position,
         COUNT(*) OVER (PARTITION BY account_id, as_of_date) AS n
  FROM resolved
), resolution AS (
  -- the median as the mean of the middle one or two values: a sort, where a
  -- holistic MEDIAN keeps every group's values in the hash table (and spills)
  SELECT account_id, as_of_date, AVG(hours) AS median_resolution_hours_90d
  FROM ranked
  WHERE position IN (FLOOR((n + 1) / 2.0), FLOOR(n / 2.0) + 1)
  GROUP BY 1, 2
)
SELECT s.account_id, s.as_of_date,
       COALESCE(g.tickets_30d, 0) AS tickets_30d,
       COALESCE(g.tickets_90d, 0) AS tickets_90d,
       COALESCE(g.tickets_high_urgent_90d, 0) AS tickets_high_urgent_90d,
       COALESCE(g.open_tickets, 0) AS open_tickets,
       COALESCE(g.open_urgent_tickets, 0) AS open_urgent_tickets,
       EPOCH(s.cutoff - g.oldest_open) / 86400.0 AS oldest_open_ticket_age_days,
       r.median_resolution_hours_90d,
       g.csat_avg_90d,
       COALESCE(g.low_csat_90d, 0) AS low_csat_90d,
       CAST(COALESCE(g.tickets_90d, 0) AS DOUBLE) / NULLIF(c.seats, 0) AS tickets_per_seat_90d
FROM _churn_spine AS s
LEFT JOIN agg AS g ON g.account_id = s.account_id AND g.as_of_date = s.as_of_date
LEFT JOIN resolution AS r ON r.account_id = s.account_id AND r.as_of_date = s.as_of_date
LEFT JOIN _churn_contract AS c ON c.account_id = s.account_id AND c.as_of_date = s.as_of_date
"""

_UNKNOWN_PRIORITY = "High/urgent tickets unknown: the support tickets have no priority"
_UNKNOWN_CSAT = "Support satisfaction unknown: the support tickets have no CSAT rating"
BACKLOG, VOLUME, EXPERIENCE = "ticket_backlog", "ticket_volume", "support_experience"

FAMILY = Family(
    name="support",
    title="Support",
    order=40,
    tables=("support_tickets",),
    sql=SUPPORT_FEATURES,
    area="support",
    window_table="support_tickets",
    topics=(
        Topic(
            VOLUME,
            "support tickets in the last 30 days",
            measure="tickets_30d",
            action="Review the recent tickets with support, find the root cause and follow up with the customer",
        ),
        Topic(
            BACKLOG,
            "open support tickets",
            measure="open_tickets",
            action="Escalate the open tickets with support and follow up with the customer until they are solved",
        ),
        Topic(
            EXPERIENCE,
            "average support satisfaction",
            measure="csat_avg_90d",
            action="Go through the poorly rated tickets with the support lead and follow up with the customer",
        ),
    ),
    unknown_inputs={PRIORITY: ("tickets_high_urgent_90d", _UNKNOWN_PRIORITY), CSAT: ("low_csat_90d", _UNKNOWN_CSAT)},
    features=(
        Feature(
            "tickets_30d",
            "Support tickets opened in the last 30 days",
            "count",
            "{value} support ticket{s} opened in the last 30 days",
            topic=VOLUME,
            window=30,
            zero_template="No support ticket in the last 30 days",
        ),
        Feature(
            "tickets_90d",
            "Support tickets opened in the last 90 days",
            "count",
            "{value} support ticket{s} opened in the last 90 days",
            topic=VOLUME,
            window=90,
            zero_template="No support ticket in the last 90 days",
        ),
        Feature(
            "tickets_high_urgent_90d",
            "High or urgent tickets opened in the last 90 days",
            "count",
            "{value} high/urgent ticket{s} in the last 90 days",
            topic=VOLUME,
            window=90,
            missing_template=_UNKNOWN_PRIORITY,
            needs=(PRIORITY,),
        ),
        Feature(
            "open_tickets",
            "Tickets open at as-of (created, not yet resolved)",
            "count",
            "{value} support ticket{s} still open",
            topic=BACKLOG,
            window=365,
            zero_template="No support ticket open",
        ),
        Feature(
            "open_urgent_tickets",
            "High or urgent tickets open at as-of",
            "count",
            "{value} high/urgent ticket{s} open, the oldest for {oldest_open_ticket_age_days:.0f} days",
            topic=BACKLOG,
            window=365,
            missing_template=_UNKNOWN_PRIORITY,
            needs=(PRIORITY,),
        ),
        Feature(
            "oldest_open_ticket_age_days",
            "Age in days of the oldest ticket open at as-of",
            "days",
            "Oldest open support ticket waiting {value}",
            topic=BACKLOG,
            window=365,
            missing_template="No support ticket open",
        ),
        Feature(
            "median_resolution_hours_90d",
            "Median hours to resolve tickets resolved in the last 90 days",
            "hours",
            "Tickets took a median {value} to resolve over the last 90 days",
            topic=EXPERIENCE,
            window=90,
            missing_template="No support ticket resolved in the last 90 days",
        ),
        Feature(
            "csat_avg_90d",
            "Average CSAT (1-5) of tickets resolved in the last 90 days",
            "score",
            "Average support satisfaction {value} out of 5 over the last 90 days",
            topic=EXPERIENCE,
            window=90,
            missing_template="No support satisfaction rating in the last 90 days",
            needs=(CSAT,),
        ),
        Feature(
            "low_csat_90d",
            "Tickets resolved in the last 90 days rated CSAT 1 or 2",
            "count",
            "{value} poorly rated support ticket{s} (CSAT 1-2) in the last 90 days",
            topic=EXPERIENCE,
            window=90,
            missing_template=_UNKNOWN_CSAT,
            needs=(CSAT,),
        ),
        Feature(
            "tickets_per_seat_90d",
            "Tickets opened in the last 90 days per licensed seat",
            "per_seat",
            "{value} tickets per seat in the last 90 days",
            topic=VOLUME,
            window=90,
            missing_template="Seat count unknown",
            needs=(SEATS,),
        ),
    ),
)
