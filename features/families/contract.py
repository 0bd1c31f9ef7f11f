"""Contract and revenue: tenure, MRR, seats, renewal, term, plan.

Reads ``subscriptions`` and ``accounts`` (both required, so always on). Built
first: its rows are kept as ``_churn_contract`` for the families that divide
by the seat count (usage, support).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from features.families.base import Family, Feature, Topic, is_missing

SEATS = "subscriptions.seats"

#: grain: one row per (account_id, as_of_date) of the spine. The current
#: subscription is the latest started of those covering the as-of date.
CONTRACT_FEATURES = """
WITH covering AS (
  SELECT s.account_id, s.as_of_date, sub.subscription_id, sub.start_date, sub.end_date,
         sub.mrr, sub.seats, sub.plan, sub.auto_renew,
         ROW_NUMBER() OVER (PARTITION BY s.account_id, s.as_of_date
                            ORDER BY sub.start_date DESC, sub.mrr DESC, sub.subscription_id) AS rn
  FROM _churn_spine AS s
  JOIN _churn_subscriptions AS sub
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
  JOIN _churn_subscriptions AS sub
    ON sub.account_id = s.account_id
   AND sub.start_date <= s.as_of_date - 90
   AND (sub.end_date IS NULL OR sub.end_date > s.as_of_date - 90)
  GROUP BY 1, 2
), history AS (
  SELECT s.account_id, s.as_of_date, COUNT(*) AS prior_renewals
  FROM _churn_spine AS s
  JOIN _churn_subscriptions AS sub
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
         COALESCE(h.prior_renewals, 0) AS prior_renewals
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
            ELSE 'adoption' END AS lifecycle_stage
FROM base
"""


def _auto_renew_fields(row: Mapping[str, Any]) -> dict[str, str]:
    """``{auto_renew_words}`` ("on" / "off" / "unknown") and ``{auto_renew_note}``."""
    auto = row.get("is_auto_renew")
    if is_missing(auto):
        return {"auto_renew_words": "unknown", "auto_renew_note": ""}
    return {
        "auto_renew_words": "on" if auto else "off",
        "auto_renew_note": ", auto-renew on" if auto else ", auto-renew off",
    }


#: drivers: the renewal's status and a shrinking contract; context: who the account is
RENEWAL, CONTRACTION = "renewal", "contraction"
TENURE, SIZE, TERM, LIFECYCLE = "tenure", "size", "term", "lifecycle"
TOPICS = (
    Topic(
        RENEWAL,
        "days to renewal",
        measure="days_to_renewal",
        action="Start the renewal conversation: confirm the value delivered and the renewal plan",
    ),
    Topic(
        CONTRACTION,
        "MRR change over 90 days",
        measure="mrr_change_90d",
        action="Ask what drove the downgrade and agree a plan to win the seats back before renewal",
    ),
    Topic(TENURE, "earlier contract periods", measure="prior_renewals", context=True),
    Topic(SIZE, "MRR", measure="mrr", context=True),
    Topic(TERM, "contract term", measure="contract_term_months", context=True),
    Topic(LIFECYCLE, "lifecycle stage", measure="lifecycle_stage", context=True),
)

FAMILY = Family(
    name="contract",
    title="Contract",
    order=10,
    tables=("subscriptions", "accounts"),
    sql=CONTRACT_FEATURES,
    topics=TOPICS,
    area="contract",
    window_table="subscriptions",
    keep_as="_churn_contract",
    context={"renewal_date": "date"},
    reason_fields=_auto_renew_fields,
    features=(
        Feature("tenure_days", "Days since the account was created", "days", "Customer for {value}", topic=TENURE),
        Feature(
            "mrr",
            "Current MRR: sum over subscriptions covering as-of",
            "currency",
            "Current MRR {value}",
            topic=SIZE,
        ),
        Feature(
            "mrr_change_90d",
            "MRR now minus MRR 90 days earlier (expansion > 0, contraction < 0)",
            "currency",
            "MRR changed by {value} in the last 90 days",
            topic=CONTRACTION,
            window=90,
        ),
        Feature(
            "seats",
            "Licensed seats now: sum over subscriptions covering as-of",
            "count",
            "{value} licensed seat{s}",
            topic=SIZE,
            missing_template="Seat count unknown",
            needs=(SEATS,),
        ),
        Feature(
            "seats_change_90d",
            "Seats now minus seats 90 days earlier",
            "count",
            "Seats changed by {value} in the last 90 days",
            topic=CONTRACTION,
            window=90,
            missing_template="Seat count unknown",
            needs=(SEATS,),
        ),
        Feature(
            "days_to_renewal",
            "Days until the current subscription ends (missing if open-ended)",
            "days",
            "Renewal in {value}{auto_renew_note}",
            topic=RENEWAL,
            missing_template="No fixed renewal date (open-ended subscription)",
        ),
        Feature(
            "contract_term_months",
            "Length of the current subscription term in months (missing if open-ended)",
            "months",
            "{value}-month contract",
            topic=TERM,
            missing_template="Open-ended subscription",
        ),
        Feature(
            "billing_term",
            "Current term: monthly / quarterly / annual / multi_year / open_ended",
            "category",
            "Billing term: {value}",
            topic=TERM,
        ),
        Feature(
            "is_auto_renew",
            "1 if the current subscription renews automatically, 0 if not",
            "flag",
            "Auto-renew is {auto_renew_words}",
            topic=RENEWAL,
            missing_template="Auto-renew setting unknown",
        ),
        Feature("plan", "Plan of the current subscription", "category", "On the {value} plan", topic=SIZE),
        Feature(
            "prior_renewals",
            "Earlier subscription periods that ended on or before as-of",
            "count",
            "{value} earlier contract period{s}",
            topic=TENURE,
            zero_template="Still in its first contract period (never renewed)",
        ),
        Feature(
            "lifecycle_stage",
            "onboarding (first 90 days), renewal_window (90 days before renewal) or adoption",
            "category",
            "In the {value} stage",
            topic=LIFECYCLE,
        ),
    ),
)
