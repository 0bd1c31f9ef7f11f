"""Reasons from SHAP contributions on hand-made matrices with known answers
(values are binary fractions, so every topic sum is exact), and the catalog's
reason sentences on known values."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from features import catalog
from models.explain import DECREASES, INCREASES, MIN_CONTRIBUTION, explain, select_reasons

# driver topics: activity = events_*, users = active_users_30d + active_users_7d,
# renewal = days_to_renewal + is_auto_renew, nps, ticket_backlog (open_tickets),
# ticket_volume (tickets_30d); context topics never become reasons (see the end)
FEATURES = [
    "events_30d",
    "active_users_30d",
    "days_to_renewal",
    "nps_latest",
    "open_tickets",
    "events_7d",
    "active_users_7d",
    "is_auto_renew",
    "tickets_30d",
]


def matrix(*rows: dict[str, float]) -> np.ndarray:
    return np.array([[row.get(f, 0.0) for f in FEATURES] for row in rows], dtype=float)


VALUES = matrix(
    # 0: three risk topics + a fourth one cut by n_risk; the ticket backlog most protective
    {
        "events_30d": 0.5,
        "events_7d": 0.25,  # activity  0.75
        "active_users_30d": -0.125,
        "active_users_7d": 0.625,  # users     0.5
        "days_to_renewal": 1.0,
        "is_auto_renew": 0.125,  # renewal   1.125
        "nps_latest": -0.5,
        "open_tickets": -0.75,
        "tickets_30d": 0.25,
    },  # nps -0.5, ticket_backlog -0.75, ticket_volume 0.25
    # 1: healthy: no topic reaches +MIN_CONTRIBUTION, one protective factor
    {"events_30d": 0.015, "tickets_30d": 0.0078125, "open_tickets": -0.5},
    # 2: two features each below the threshold, their topic above it
    {"events_30d": 0.015, "events_7d": 0.015, "nps_latest": -0.01},
    # 3: nothing moves: no reason at all
    {},
    # 4: protective topic whose features disagree: the most negative one represents it
    {"active_users_30d": -0.5, "active_users_7d": 0.125, "days_to_renewal": 0.25},
)


@pytest.fixture(scope="module")
def chosen() -> pd.DataFrame:
    return select_reasons(VALUES, FEATURES, n_risk=3, n_protective=1)


def rows_of(chosen: pd.DataFrame, row: int) -> pd.DataFrame:
    return chosen[chosen["row"] == row].sort_values("rank")


def test_risk_reasons_ranked_by_topic_sum_then_the_protective_factor(chosen):
    got = rows_of(chosen, 0)
    assert list(got["topic"]) == ["renewal", "activity", "users", "ticket_backlog"]
    assert list(got["rank"]) == [1, 2, 3, 4]
    assert list(got["direction"]) == [INCREASES, INCREASES, INCREASES, DECREASES]
    # ticket_volume (+0.25) is a fourth risk topic: cut by n_risk=3; nps (-0.5) is not the most protective
    assert "ticket_volume" not in set(got["topic"]) and "nps" not in set(got["topic"])


def test_topic_contribution_is_the_exact_sum_of_its_features(chosen):
    got = rows_of(chosen, 0).set_index("topic")["contribution"]
    assert got["renewal"] == 1.0 + 0.125
    assert got["activity"] == 0.5 + 0.25
    assert got["users"] == -0.125 + 0.625
    assert got["ticket_backlog"] == -0.75
    # a topic sum equals the sum of the values of the topic's features, for every row
    for row in range(len(VALUES)):
        for _, reason in rows_of(chosen, row).iterrows():
            members = [i for i, f in enumerate(FEATURES) if catalog.get(f).topic == reason["topic"]]
            assert reason["contribution"] == VALUES[row, members].sum()


def test_representative_feature_pushes_hardest_in_the_reason_direction(chosen):
    got = rows_of(chosen, 0).set_index("topic")["feature_index"]
    assert FEATURES[got["renewal"]] == "days_to_renewal"
    assert FEATURES[got["activity"]] == "events_30d"
    assert FEATURES[got["users"]] == "active_users_7d"  # +0.625 beats -0.125
    protective = rows_of(chosen, 4).set_index("topic")
    assert FEATURES[protective.loc["users", "feature_index"]] == "active_users_30d"  # -0.5, not +0.125
    assert protective.loc["users", "direction"] == DECREASES


def test_only_topics_past_the_threshold_become_reasons(chosen):
    healthy = rows_of(chosen, 1)
    assert list(healthy["direction"]) == [DECREASES]  # activity 0.015 + ticket volume 0.0078 are too small
    assert list(healthy["rank"]) == [1]  # the protective factor ranks after zero risk reasons
    summed = rows_of(chosen, 2)
    assert list(summed["topic"]) == ["activity"]  # 0.015 + 0.015 >= 0.02; nps -0.01 is too small
    assert summed["contribution"].iloc[0] >= MIN_CONTRIBUTION
    assert rows_of(chosen, 3).empty
    assert (chosen.loc[chosen["direction"] == INCREASES, "contribution"] >= MIN_CONTRIBUTION).all()
    assert (chosen.loc[chosen["direction"] == DECREASES, "contribution"] <= -MIN_CONTRIBUTION).all()


def test_threshold_is_a_parameter():
    got = select_reasons(VALUES[[1]], FEATURES, min_contribution=0.01)
    assert list(got["topic"]) == ["activity", "ticket_backlog"]  # 0.015 + 0 now counts; 0.0078 still not


def test_more_protective_factors_rank_after_all_risk_reasons():
    got = select_reasons(VALUES[[0]], FEATURES, n_risk=2, n_protective=2)
    assert list(got["topic"]) == ["renewal", "activity", "ticket_backlog", "nps"]
    assert list(got["rank"]) == [1, 2, 3, 4]


def test_context_topics_are_never_reasons_however_strong():
    features = [*FEATURES, "tenure_days", "industry", "mrr"]
    values = np.column_stack([VALUES[[0]], [[-3.0, 2.0, 1.5]]])  # context dominates both ways
    got = select_reasons(values, features, n_risk=3, n_protective=1)
    assert list(got["topic"]) == ["renewal", "activity", "users", "ticket_backlog"]  # as without context


# -- explain(): the rows written to churn_risk_reasons -------------------------------------
ACCOUNT = {
    "events_30d": 120.0,
    "events_7d": 10.0,
    "active_users_30d": 5.0,
    "active_users_7d": 2.0,
    "seats": 20.0,
    "days_to_renewal": 45.0,
    "is_auto_renew": 0.0,
    "nps_latest": 3.0,
    "open_tickets": 0.0,
    "tickets_30d": 1.0,
}


def test_explain_renders_plain_sentences_with_the_accounts_values():
    frame = pd.DataFrame([ACCOUNT, ACCOUNT])
    contributions = pd.DataFrame(VALUES[[0, 4]], columns=FEATURES)
    got = explain(contributions, frame, FEATURES)
    first = got[got["row"] == 0].set_index("rank")
    assert first.loc[1, "reason"] == "Renewal in 45 days, auto-renew off"
    assert first.loc[1, "feature_group"] == "Contract"
    assert first.loc[1, "feature_value"] == "45"
    assert first.loc[2, "reason"] == "120 product events in the last 30 days"
    assert first.loc[3, "reason"] == "2 active users in the last 7 days"
    assert first.loc[4, "reason"] == "No support ticket open"
    assert first.loc[4, "direction"] == DECREASES
    second = got[got["row"] == 1].set_index("rank")
    assert second.loc[2, "reason"] == "5 active users in the last 30 days"
    for text in got["reason"]:
        assert not re.search(r"\b[a-z0-9]+_[a-z0-9_]+\b", text), text  # no raw feature names
        assert "nan" not in text.lower().split() and "{" not in text, text


# -- catalog.render_reason on known values ---------------------------------------------
@pytest.mark.parametrize(
    ("feature", "row", "expected"),
    [
        (
            "active_users_trend_30d",
            {"active_users_trend_30d": 27 / 52, "active_users_prev_30d": 52, "active_users_30d": 27},
            "Active users down 48% in the last 30 days (52 -> 27)",
        ),
        (
            "events_trend_30d",
            {"events_trend_30d": 1.12, "events_prev_30d": 1000, "events_30d": 1120},
            "Product events up 12% in the last 30 days (1,000 -> 1,120)",
        ),
        (
            "seat_utilization_30d",
            {"seat_utilization_30d": 0.25, "active_users_30d": 5, "seats": 20},
            "Seat utilisation at 25% (5 of 20 seats active)",
        ),
        ("days_to_renewal", {"days_to_renewal": 45, "is_auto_renew": 0}, "Renewal in 45 days, auto-renew off"),
        ("days_to_renewal", {"days_to_renewal": 45, "is_auto_renew": 1}, "Renewal in 45 days, auto-renew on"),
        ("days_to_renewal", {"days_to_renewal": 45}, "Renewal in 45 days"),
        ("is_auto_renew", {"is_auto_renew": 0}, "Auto-renew is off"),
        (
            "median_resolution_hours_90d",
            {"median_resolution_hours_90d": 72},
            "Tickets took a median 3.0 days to resolve over the last 90 days",
        ),
        (
            "median_resolution_hours_90d",
            {"median_resolution_hours_90d": 5},
            "Tickets took a median 5 hours to resolve over the last 90 days",
        ),
        (
            "open_urgent_tickets",
            {"open_urgent_tickets": 2, "oldest_open_ticket_age_days": 12.4},
            "2 high/urgent tickets open, the oldest for 12 days",
        ),
        ("mrr", {"mrr": 1234.6}, "Current MRR $1,235"),
        (
            "nps_detractor_share_365d",
            {"nps_detractor_share_365d": 0.5},
            "50% of NPS responses in the last year were detractors",
        ),
        ("nps_latest", {"nps_latest": 3}, "Latest NPS 3.0 out of 10"),
        ("lifecycle_stage", {"lifecycle_stage": "renewal_window"}, "In the renewal window stage"),
        ("billing_term", {"billing_term": "multi_year"}, "Billing term: multi year"),
        (
            "usage_report_created_per_seat_30d",
            {"usage_report_created_per_seat_30d": 1.5},
            "'report created' used 1.5 times per seat in the last 30 days",
        ),
    ],
)
def test_render_reason(feature, row, expected):
    assert catalog.render_reason(feature, row) == expected


def test_render_reason_with_a_missing_value_names_no_raw_field():
    text = catalog.render_reason("active_users_trend_30d", {"active_users_trend_30d": math.nan})
    assert not re.search(r"\b[a-z0-9]+_[a-z0-9_]+\b", text), text
