"""Issue #11 item 5: a feature whose input column is NULL in every kept row is
unknown (NaN), not zero, and its reason says so ("No active users" next to
"2,935 -> 1,147 events" was the bug)."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd

from features import catalog
from features.build import build_features
from models.explain import explain
from tests.features.data import row, stage
from tests.features.test_features import VALIDATE_AS_OF, T, rich_tables

USER_FEATURES = [
    "active_users_7d",
    "active_users_30d",
    "active_users_90d",
    "active_users_prev_30d",
    "events_per_active_user_30d",
    "seat_utilization_30d",
    "active_users_trend_30d",
]


def test_all_null_user_id_makes_active_user_features_unknown(wh):
    tables = rich_tables()
    tables["usage_events"] = tables["usage_events"].assign(user_id=None)
    report = stage(wh, VALIDATE_AS_OF, **tables)
    assert report.null_columns == {"usage_events": ["user_id"]}

    frame = build_features(wh, [T], report)
    for name in USER_FEATURES:
        assert frame[name].isna().all(), name
    a = row(frame, "A")
    assert a["events_30d"] == 8 and a["active_days_30d"] == 2  # the events still count
    assert a["usage_login_per_seat_30d"] == 0.3
    assert a["tickets_high_urgent_90d"] == 2  # other inputs are untouched


def test_all_null_priority_and_satisfaction_make_their_features_unknown(wh):
    tables = rich_tables()
    tables["support_tickets"] = tables["support_tickets"].assign(priority=None, satisfaction=None)
    report = stage(wh, VALIDATE_AS_OF, **tables)
    frame = build_features(wh, [T], report)
    for name in ("tickets_high_urgent_90d", "open_urgent_tickets", "csat_avg_90d", "low_csat_90d"):
        assert frame[name].isna().all(), name
    a = row(frame, "A")
    assert (a["tickets_90d"], a["open_tickets"], a["median_resolution_hours_90d"]) == (4, 2, 24.0)


def test_every_feature_declares_existing_contract_columns():
    from features.contract import INPUT_TABLES

    columns = {f"{t}.{c}" for t, spec in INPUT_TABLES.items() for c in spec.column_names}
    for feature in catalog.FEATURES:
        assert set(feature.needs) <= columns, feature.name
    assert "usage_events.user_id" in catalog.get("seat_utilization_30d").needs
    assert "subscriptions.seats" in catalog.get("seat_utilization_30d").needs
    assert catalog.get("usage_login_per_seat_30d").needs == ("subscriptions.seats",)
    assert catalog.get("events_30d").needs == ()


def test_reasons_of_unknown_features_say_unknown(wh):
    tables = rich_tables()
    tables["usage_events"] = tables["usage_events"].assign(user_id=None)
    report = stage(wh, VALIDATE_AS_OF, **tables)
    frame = build_features(wh, [T], report)
    # every user feature is the (only) reason of its own row
    features = USER_FEATURES
    account = frame[frame["account_id"] == "A"]
    rows = pd.concat([account] * len(features), ignore_index=True)
    contributions = pd.DataFrame(np.eye(len(features)), columns=features)
    reasons = explain(contributions, rows, features, n_risk=1, n_protective=0)
    assert list(reasons["feature"]) == features
    for feature, text in zip(reasons["feature"], reasons["reason"]):
        assert "unknown" in text.lower(), (feature, text)
        assert not re.search(r"\bno active users\b", text, re.IGNORECASE), (feature, text)
        assert "nan" not in text.lower().split(), (feature, text)
    # with user ids present, no users at all is still "No active users"
    assert (
        catalog.render_reason(
            "events_per_active_user_30d", {"events_per_active_user_30d": float("nan"), "active_users_30d": 0.0}
        )
        == "No active users in the last 30 days"
    )


def test_a_column_first_filled_after_an_as_of_is_unknown_at_that_as_of(wh):
    """Point in time: at 2024-05-01 no visible event had a user id yet (they are
    recorded from 05-10 on), so active users at 05-01 are unknown, not 0; at
    06-01 they are counted. Rows after an as-of never change a feature at it."""
    tables = rich_tables()
    usage = tables["usage_events"]
    tables["usage_events"] = usage.assign(
        user_id=usage["user_id"].where(usage["event_time"] >= pd.Timestamp("2024-05-10"))
    )
    report = stage(wh, VALIDATE_AS_OF, **tables)
    assert report.null_columns == {}
    early, late = dt.date(2024, 5, 1), T
    frame = build_features(wh, [early, late], report)
    assert pd.isna(row(frame, "A", early)["active_users_30d"])
    assert row(frame, "A", early)["events_90d"] == 18  # 4 + 6 + 8 (04-20, 04-15, 03-10)
    assert row(frame, "A", late)["active_users_30d"] == 3
    # the same answer from a build at the early date alone
    assert pd.isna(row(build_features(wh, [early], report), "A")["active_users_30d"])
