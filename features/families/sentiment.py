"""Sentiment: NPS level, share of detractors and how recent the latest response is.

Reads ``nps_responses`` (optional: the family is off when the table is absent
or has no usable rows).
"""

from __future__ import annotations

from features.families.base import Family, Feature, Topic

#: grain: one row per (account_id, as_of_date) of the spine
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

NPS = "nps"

FAMILY = Family(
    name="sentiment",
    title="Sentiment",
    order=50,
    tables=("nps_responses",),
    sql=SENTIMENT_FEATURES,
    area="sentiment",
    topics=(
        Topic(
            NPS,
            "latest NPS",
            measure="nps_latest",
            action="Call the detractors, hear what went wrong and close the loop on their feedback",
        ),
    ),
    features=(
        Feature(
            "nps_latest",
            "Average NPS of responses within 30 days of the latest response",
            "score",
            "Latest NPS {value} out of 10",
            topic=NPS,
            missing_template="No NPS response yet",
        ),
        Feature(
            "nps_avg_365d",
            "Average NPS over the last 365 days",
            "score",
            "Average NPS {value} over the last year",
            topic=NPS,
            missing_template="No NPS response in the last year",
        ),
        Feature(
            "nps_detractor_share_365d",
            "Share of NPS responses scoring 0-6 in the last 365 days",
            "share",
            "{value} of NPS responses in the last year were detractors",
            topic=NPS,
            missing_template="No NPS response in the last year",
        ),
        Feature(
            "nps_responses_365d",
            "NPS responses in the last 365 days",
            "count",
            "{value} NPS response{s} in the last year",
            topic=NPS,
            zero_template="No NPS response in the last year",
        ),
        Feature(
            "days_since_last_nps",
            "Days since the latest NPS response",
            "days",
            "No NPS response for {value}",
            topic=NPS,
            missing_template="No NPS response yet",
        ),
    ),
)
