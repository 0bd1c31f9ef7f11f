"""The churn decision: what is observable at the start of a month, and the
probability of churning at a period end that follows from it (`CHURN_DRIVERS`,
docs/synthetic-data.md "The true churn drivers").

The signals are read from months m-1 and m-2 of the activity and support
simulations; nothing here draws random numbers.
"""

from __future__ import annotations

import numpy as np

from pipeline.synthetic.accounts import Accounts, State
from pipeline.synthetic.activity import Activity
from pipeline.synthetic.draws import sigmoid
from pipeline.synthetic.params import CHURN_DRIVERS, NPS_LOOKBACK_DAYS
from pipeline.synthetic.support import Support
from pipeline.synthetic.timeline import SECONDS_PER_DAY


def churn_probabilities(
    m: int, start: int, accounts: Accounts, state: State, activity: Activity, support: Support
) -> tuple[np.ndarray, np.ndarray]:
    """P(churn) per account at a monthly period end and at an annual renewal."""
    observed = signals(m, start, accounts, state, activity, support)
    return (
        sigmoid(churn_logit(observed, state, accounts.segment, at_renewal=False)),
        sigmoid(churn_logit(observed, state, accounts.segment, at_renewal=True)),
    )


def signals(
    m: int, start: int, accounts: Accounts, state: State, activity: Activity, support: Support
) -> dict[str, np.ndarray]:
    """Observable drivers at the start of month m (from months m-1 and m-2)."""
    days1, days2 = activity.covered_days[m - 1], activity.covered_days[m - 2]
    rate1 = activity.active_user_days[m - 1] * 30.0 / np.maximum(days1, 1)
    rate2 = activity.active_user_days[m - 2] * 30.0 / np.maximum(days2, 1)
    valid = (days1 >= 14) & (days2 >= 14)
    decline = np.where(valid, np.clip(1.0 - (rate1 + 1.0) / (rate2 + 1.0), 0.0, 1.0), 0.0)
    utilisation = np.where(days1 >= 20, activity.active_users[m - 1] / np.maximum(state.seats, 1.0), 0.5)
    return {
        "usage_decline": decline,
        "low_seat_utilisation": np.clip((0.3 - utilisation) / 0.3, 0.0, 1.0),
        "open_urgent_tickets": np.minimum(_open_urgent(support, start, len(accounts)), 2),
        **_nps_signals(support, start, len(accounts)),
        "tenure_days": start - accounts.created_day,
    }


def _open_urgent(support: Support, day: int, n: int) -> np.ndarray:
    acc = support.urgent.column("acc", np.int64)
    created = support.urgent.column("created", np.int64)
    resolved = support.urgent.column("resolved", np.int64)
    t = day * SECONDS_PER_DAY
    is_open = (created < t) & (resolved >= t)
    return np.bincount(acc[is_open], minlength=n)


def _nps_signals(support: Support, day: int, n: int) -> dict[str, np.ndarray]:
    acc = support.nps.column("acc", np.int64)
    when = support.nps.column("second", np.int64)
    score = support.nps.column("score", np.float64)
    t = day * SECONDS_PER_DAY
    recent = (when < t) & (when >= t - NPS_LOOKBACK_DAYS * SECONDS_PER_DAY)
    count = np.bincount(acc[recent], minlength=n)
    total = np.bincount(acc[recent], weights=score[recent], minlength=n)
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return {
        "nps_detractor": (count > 0) & (mean <= 6),
        "nps_promoter": (count > 0) & (mean >= 9),
    }


def churn_logit(signals: dict[str, np.ndarray], state: State, segment: np.ndarray, at_renewal: bool) -> np.ndarray:
    """Log-odds of churning at a period end (monthly plan, or annual renewal)."""
    c, seg = CHURN_DRIVERS, segment
    tenure = signals["tenure_days"]
    logit = (
        (c["base_annual_renewal"] if at_renewal else c["base_monthly_contract"])
        + c["usage_decline"] * signals["usage_decline"]
        + c["low_seat_utilisation"] * signals["low_seat_utilisation"]
        + c["open_urgent_tickets"] * signals["open_urgent_tickets"]
        + c["nps_detractor"] * signals["nps_detractor"]
        + c["nps_promoter"] * signals["nps_promoter"]
        + c["tenure_under_6_months"] * (tenure < 183)
        + c["tenure_6_to_12_months"] * ((tenure >= 183) & (tenure < 365))
        + c["latent_health"] * state.health
        + c["segment_mid_market"] * (seg == 1)
        + c["segment_enterprise"] * (seg == 2)
    )
    if at_renewal:
        logit = logit + c["no_auto_renew_at_renewal"] * ~state.auto_renew
    return logit
