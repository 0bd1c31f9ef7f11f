"""Account profile: segment, industry, region, plus the account's name and CSM
as context for the scores (never model inputs).

Reads ``accounts`` (required, so always on).
"""

from __future__ import annotations

from features.families.base import Family, Feature, Topic

#: grain: one row per (account_id, as_of_date) of the spine (accounts are
#: unique after staging)
ACCOUNT_FEATURES = """
SELECT s.account_id, s.as_of_date, a.segment, a.industry, a.region,
       a.account_name, a.csm_owner  -- context for the scores, not features
FROM _churn_spine AS s
JOIN stg_accounts AS a ON a.account_id = s.account_id
"""

PROFILE = "profile"

FAMILY = Family(
    name="account",
    title="Account",
    order=20,
    tables=("accounts",),
    sql=ACCOUNT_FEATURES,
    topics=(Topic(PROFILE, "profile", context=True),),
    context={"account_name": "text", "csm_owner": "text"},
    features=(
        Feature("segment", "Customer segment", "category", "{value} segment", topic=PROFILE),
        Feature("industry", "Industry", "category", "{value} industry", topic=PROFILE),
        Feature("region", "Region", "category", "{value} region", topic=PROFILE),
    ),
)
