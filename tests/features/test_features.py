"""Known-answer tests of every feature in features/catalog.py.

As-of date T = 2024-06-01, so the cutoff is 2024-06-01 00:00:00 and
  T-7d  = 2024-05-25 00:00   T-30d = 2024-05-02 00:00   T-60d = 2024-04-02 00:00
  T-90d = 2024-03-03 00:00   T-365d = 2023-06-02 00:00
A usage event at time t falls in the day bucket ceil(t) (midnight counts as its
own day), and a "30d" window is (cutoff - 30 days, cutoff].

Unless a test says otherwise the data is validated as of T + 1 day, so the
staged views DO contain the rows dated after the cutoff: the features at T must
still ignore them.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from features import catalog
from features.build import KEY, AsOfError, build_features, snapshot_dates
from features.event_types import EVENT_TYPE_KINDS, PER_SEAT, PER_USER, SHARE, TREND
from features.families import FAMILIES
from features.staging import ContractError, validate
from tests import factories as f
from tests.conftest import load
from tests.features.data import ENGINES, EVENT_TYPES, engine_warehouse, random_tables, row, stage, with_history

T = dt.date(2024, 6, 1)
VALIDATE_AS_OF = dt.date(2024, 6, 2)


# -- one rich account (A) and one quiet account (B) ------------------------------
def rich_tables() -> dict[str, pd.DataFrame]:
    accounts = pd.concat(
        [
            f.accounts("A", created_at="2024-01-01", segment="Enterprise", industry="Retail", region="AMER"),
            f.accounts("B", created_at="2024-05-01"),  # SMB / Software / EMEA
        ],
        ignore_index=True,
    )
    subscriptions = f.subscriptions(
        [
            # (id, account, start, end, mrr, seats, auto_renew, plan)
            ("sA1", "A", "2024-01-01", "2024-04-01", 80, 8, True, "Growth"),
            ("sA2", "A", "2024-04-01", "2025-04-01", 100, 10, False, "Scale"),
            ("sB1", "B", "2024-05-01", None, 50, 5, None, "Starter"),
        ]
    )
    usage = f.events(
        [
            # (account, time, type, user, quantity)        bucket   days back
            ("A", "2024-05-31 12:00", "login", "u1"),  # 06-01    0   quantity NULL = 1
            ("A", "2024-05-31 13:00", "Report Created", "u2", 5),  # 06-01    0
            ("A", "2024-05-20 09:00", "login", "u3", 2),  # 05-21   11
            ("A", "2024-04-20 09:00", "login", "u3", 4),  # 04-21   41  (prev 30)
            ("A", "2024-04-15 09:00", "export", "u4", 6),  # 04-16   46  (prev 30)
            ("A", "2024-03-10 09:00", "login", "u5", 8),  # 03-11   82  (90d only)
            ("A", "2024-01-15 09:00", "login", "u6", 50),  # older than 90 days
            ("A", "2023-05-15 09:00", "login", "u6", 1),  # a year back: the data's first row (honest windows)
            ("A", "2024-06-01 00:00:01", "login", "u9", 100),  # after the cutoff
        ]
    )
    tickets = f.tickets(
        [
            # (id, account, created, resolved, priority, CSAT)
            ("tA1", "A", "2024-05-20 00:00", "2024-05-21 12:00", "high", 2),  # 36 h
            ("tA2", "A", "2024-04-01 00:00", "2024-04-01 12:00", "normal", 5),  # 12 h; 61 days ago
            ("tA3", "A", "2024-05-25 00:00", None, " Urgent ", None),  # open
            ("tA4", "A", "2024-05-30 00:00", "2024-06-02 00:00", "low", 1),  # resolved after T: open at T
            ("tA5", "A", "2024-01-10 00:00", "2024-01-11 00:00", "urgent", 1),  # older than 90 days
            ("tA0", "A", "2023-05-10 00:00", "2023-05-11 00:00", "low", 4),  # a year back: the data's first row
            ("tA6", "A", "2024-06-01 00:00:01", None, "urgent"),  # after the cutoff
        ]
    )
    nps = f.nps(
        [
            ("A", "2024-05-20 00:00", 3),
            ("A", "2024-05-01 00:00", 9),  # within 30 days of the latest response
            ("A", "2024-03-01 00:00", 10),
            ("A", "2023-05-01 00:00", 0),  # older than 365 days
            ("A", "2024-06-01 00:00:01", 0),  # after the cutoff
        ]
    )
    return dict(
        accounts=accounts, subscriptions=subscriptions, usage_events=usage, support_tickets=tickets, nps_responses=nps
    )


NAN = float("nan")
#: "Report Created" is not a clean identifier: its column carries a hash of the type
REPORT_CREATED = catalog.event_type_feature_name("Report Created")


def kind_columns(kind: str, login, report_created, export) -> dict:
    """The columns of one kind for the three event types of the rich tables."""
    names = [catalog.event_type_feature_name(t, kind) for t in ("login", "Report Created", "export")]
    return dict(zip(names, (login, report_created, export)))


EXPECTED_A = {
    # -- usage: 30d = 1+5+2 = 8; prev 30d = 4+6 = 10; 90d = 8+10+8 = 26; 7d = 1+5 = 6
    "events_7d": 6,
    "events_30d": 8,
    "events_90d": 26,
    "events_prev_30d": 10,
    "active_users_7d": 2,  # u1 u2
    "active_users_30d": 3,  # u1 u2 u3
    "active_users_90d": 5,  # u1..u5
    "active_users_prev_30d": 2,  # u3 u4
    "active_days_30d": 2,  # buckets 06-01, 05-21
    "active_days_90d": 5,  # + 04-21, 04-16, 03-11
    "events_per_active_user_30d": 8 / 3,
    "event_types_used_30d": 2,  # login, Report Created
    "seat_utilization_30d": 3 / 10,
    "events_trend_30d": 8 / 10,
    "active_users_trend_30d": 3 / 2,
    "days_since_last_activity": 11 / 24,  # 05-31 13:00 -> 06-01 00:00
    "usage_login_per_seat_30d": 3 / 10,  # 1 + 2 logins, 10 seats
    REPORT_CREATED: 5 / 10,
    "usage_export_per_seat_30d": 0.0,  # exports only in the previous 30 days
    # per active user (3), against the 30 days before (login 4, export 6), share of the 30 days' 8 events
    **kind_columns(PER_USER, 3 / 3, 5 / 3, 0.0),
    **kind_columns(TREND, 3 / 4, NAN, 0.0),  # nothing to compare Report Created with
    **kind_columns(SHARE, 3 / 8, 5 / 8, 0.0),
    "events_trend_90d": 8 / ((26 - 8) / 2),  # against the monthly average of days 31-90
    "active_days_trend_90d": 2 / ((5 - 2) / 2),
    "active_users_7d_of_30d": 2 / 3,
    # -- support (tA1..tA4 in 90 days; tA3 and tA4 open at T)
    "tickets_30d": 3,  # tA1 tA3 tA4
    "tickets_90d": 4,  # + tA2
    "tickets_high_urgent_90d": 2,  # tA1 high, tA3 " Urgent "
    "open_tickets": 2,  # tA3, tA4 (resolved only after T)
    "open_urgent_tickets": 1,  # tA3
    "oldest_open_ticket_age_days": 7.0,  # tA3 opened 05-25
    "median_resolution_hours_90d": 24.0,  # median(36, 12)
    "csat_avg_90d": 3.5,  # (2 + 5) / 2; tA4's 1 is not known at T
    "low_csat_90d": 1,  # tA1
    "tickets_per_seat_90d": 0.4,  # 4 / 10
    # -- sentiment: 365d = {3, 9, 10}; latest 05-20, within 30 days of it {3, 9}
    "nps_latest": 6.0,
    "nps_avg_365d": 22 / 3,
    "nps_detractor_share_365d": 1 / 3,
    "nps_responses_365d": 3,
    "days_since_last_nps": 12.0,
    # -- contract: sA1 (80, 8 seats) until 04-01, then sA2 (100, 10 seats) for a year
    "tenure_days": 152,  # 2024-01-01 -> 2024-06-01
    "mrr": 100,
    "mrr_change_90d": 20,  # at T-90d (03-03) sA1 was running
    "seats": 10,
    "seats_change_90d": 2,
    "renewal_date": pd.Timestamp("2025-04-01"),
    "days_to_renewal": 304,
    "contract_term_months": 12,  # 365 / 30.4375 = 11.99
    "billing_term": "annual",
    "is_auto_renew": 0,
    "plan": "Scale",
    "prior_renewals": 1,  # sA1 ended on 04-01
    "lifecycle_stage": "adoption",
    "segment": "Enterprise",
    "industry": "Retail",
    "region": "AMER",
    # context, not features
    "account_name": "Account A",
    "csm_owner": "Dana",
}

EXPECTED_B = {
    # no usage, tickets or NPS at all: zero counts, missing averages and ratios
    "events_7d": 0,
    "events_30d": 0,
    "events_90d": 0,
    "events_prev_30d": 0,
    "active_users_7d": 0,
    "active_users_30d": 0,
    "active_users_90d": 0,
    "active_users_prev_30d": 0,
    "active_days_30d": 0,
    "active_days_90d": 0,
    "events_per_active_user_30d": NAN,
    "event_types_used_30d": 0,
    "seat_utilization_30d": 0.0,  # 0 active users of 5 seats
    "events_trend_30d": NAN,
    "active_users_trend_30d": NAN,
    "days_since_last_activity": NAN,
    "usage_login_per_seat_30d": 0.0,
    REPORT_CREATED: 0.0,
    "usage_export_per_seat_30d": 0.0,
    **kind_columns(PER_USER, NAN, NAN, NAN),  # no active users
    **kind_columns(TREND, NAN, NAN, NAN),
    **kind_columns(SHARE, NAN, NAN, NAN),  # no events
    "events_trend_90d": NAN,
    "active_days_trend_90d": NAN,
    "active_users_7d_of_30d": NAN,
    "tickets_30d": 0,
    "tickets_90d": 0,
    "tickets_high_urgent_90d": 0,
    "open_tickets": 0,
    "open_urgent_tickets": 0,
    "oldest_open_ticket_age_days": NAN,
    "median_resolution_hours_90d": NAN,
    "csat_avg_90d": NAN,
    "low_csat_90d": 0,
    "tickets_per_seat_90d": 0.0,
    "nps_latest": NAN,
    "nps_avg_365d": NAN,
    "nps_detractor_share_365d": NAN,
    "nps_responses_365d": 0,
    "days_since_last_nps": NAN,
    # open-ended, started 31 days ago
    "tenure_days": 31,
    "mrr": 50,
    "mrr_change_90d": 50,  # not a customer 90 days ago
    "seats": 5,
    "seats_change_90d": 5,
    "renewal_date": pd.NaT,
    "days_to_renewal": NAN,
    "contract_term_months": NAN,
    "billing_term": "open_ended",
    "is_auto_renew": NAN,
    "plan": "Starter",
    "prior_renewals": 0,
    "lifecycle_stage": "onboarding",
    "segment": "SMB",
    "industry": "Software",
    "region": "EMEA",
    "account_name": "Account B",
    "csm_owner": "Dana",
}


def assert_values(actual: pd.Series, expected: dict) -> None:
    wrong = {}
    for name, want in expected.items():
        got = actual[name]
        if isinstance(want, str):
            ok = got == want
        elif want is pd.NaT or (isinstance(want, float) and math.isnan(want)):
            ok = pd.isna(got)
        elif isinstance(want, pd.Timestamp):
            ok = got == want
        else:
            ok = not pd.isna(got) and math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-12)
        if not ok:
            wrong[name] = (got, want)
    assert not wrong, f"(got, expected) per feature: {wrong}"


@pytest.fixture(scope="module", params=ENGINES)
def rich_matrix(request):
    with engine_warehouse(request.param) as wh:
        report = stage(wh, VALIDATE_AS_OF, **rich_tables())
        return build_features(wh, [T], report)


def test_every_catalog_feature_has_a_known_answer():
    # every feature of the families these tables feed (a family of another table has its own tests)
    tables = set(rich_tables())
    names = {feature.name for family in FAMILIES if set(family.tables) <= tables for feature in family.features}
    assert names <= set(EXPECTED_A) and names <= set(EXPECTED_B)
    columns = {n for n in EXPECTED_A if n.startswith(catalog.EVENT_TYPE_PREFIX)}
    types = ("login", "Report Created", "export")
    assert columns == {catalog.event_type_feature_name(t, kind) for t in types for kind in EVENT_TYPE_KINDS}


def test_known_answers_rich_account(rich_matrix):
    assert_values(row(rich_matrix, "A"), EXPECTED_A)


def test_known_answers_account_without_activity(rich_matrix):
    assert_values(row(rich_matrix, "B"), EXPECTED_B)


def test_matrix_shape_and_dtypes(rich_matrix):
    assert rich_matrix["account_id"].tolist() == ["A", "B"]
    assert (rich_matrix["as_of_date"] == pd.Timestamp(T)).all()
    expected_columns = set(KEY) | set(EXPECTED_A)
    assert set(rich_matrix.columns) == expected_columns
    for name in catalog.categorical_names():
        assert pd.api.types.is_string_dtype(rich_matrix[name]), name


# -- window boundaries -------------------------------------------------------------
CUTOFF = pd.Timestamp(T)
SEC = pd.Timedelta(seconds=1)
DAY = pd.Timedelta(days=1)

# account -> (event time, expected usage counts and ticket counts)
#   columns: events 7d, 30d, prev 30d, 90d | active days 30d, 90d | tickets 30d, 90d
BOUNDARY = {
    "at_cutoff": (CUTOFF, (1, 1, 0, 1, 1, 1, 1, 1)),
    "cutoff_plus_1s": (CUTOFF + SEC, (0, 0, 0, 0, 0, 0, 0, 0)),
    "minus_7d": (CUTOFF - 7 * DAY, (0, 1, 0, 1, 1, 1, 1, 1)),
    "minus_7d_plus_1s": (CUTOFF - 7 * DAY + SEC, (1, 1, 0, 1, 1, 1, 1, 1)),
    "minus_30d": (CUTOFF - 30 * DAY, (0, 0, 1, 1, 0, 1, 0, 1)),
    "minus_30d_plus_1s": (CUTOFF - 30 * DAY + SEC, (0, 1, 0, 1, 1, 1, 1, 1)),
    "minus_60d": (CUTOFF - 60 * DAY, (0, 0, 0, 1, 0, 1, 0, 1)),
    "minus_60d_plus_1s": (CUTOFF - 60 * DAY + SEC, (0, 0, 1, 1, 0, 1, 0, 1)),
    "minus_90d": (CUTOFF - 90 * DAY, (0, 0, 0, 0, 0, 0, 0, 0)),
    "minus_90d_plus_1s": (CUTOFF - 90 * DAY + SEC, (0, 0, 0, 1, 0, 1, 0, 1)),
}
BOUNDARY_COLUMNS = [
    "events_7d",
    "events_30d",
    "events_prev_30d",
    "events_90d",
    "active_days_30d",
    "active_days_90d",
    "tickets_30d",
    "tickets_90d",
]


def boundary_tables() -> dict[str, pd.DataFrame]:
    ids = list(BOUNDARY) + ["nps_minus_365d", "nps_minus_365d_plus_1s"]
    accounts = f.accounts(*ids, created_at="2023-01-01")
    subscriptions = f.subscriptions([(f"s-{a}", a, "2023-01-01", None, 10) for a in ids])
    usage = f.events([(a, str(when), "login", f"user-{a}") for a, (when, _) in BOUNDARY.items()])
    tickets = f.tickets([(f"t-{a}", a, str(when), None, "low") for a, (when, _) in BOUNDARY.items()])
    nps = f.nps(
        [("nps_minus_365d", str(CUTOFF - 365 * DAY), 5), ("nps_minus_365d_plus_1s", str(CUTOFF - 365 * DAY + SEC), 5)]
    )
    return dict(
        accounts=accounts, subscriptions=subscriptions, usage_events=usage, support_tickets=tickets, nps_responses=nps
    )


@pytest.fixture(scope="module", params=ENGINES)
def boundary_matrix(request):
    with engine_warehouse(request.param) as wh:
        report = stage(wh, VALIDATE_AS_OF, **with_history(boundary_tables()))
        return build_features(wh, [T], report).set_index("account_id")


def test_window_boundaries(boundary_matrix):
    actual = boundary_matrix.loc[list(BOUNDARY), BOUNDARY_COLUMNS]
    expected = pd.DataFrame(
        [counts for _, counts in BOUNDARY.values()], index=list(BOUNDARY), columns=BOUNDARY_COLUMNS, dtype="float64"
    )
    expected.index.name = "account_id"
    pd.testing.assert_frame_equal(actual, expected)


def test_active_user_window_boundaries(boundary_matrix):
    # one user per account: the user windows follow the event windows exactly
    users = boundary_matrix[["active_users_7d", "active_users_30d", "active_users_prev_30d", "active_users_90d"]]
    events = boundary_matrix[["events_7d", "events_30d", "events_prev_30d", "events_90d"]]
    assert users.loc[list(BOUNDARY)].to_numpy().tolist() == events.loc[list(BOUNDARY)].to_numpy().tolist()


def test_days_since_last_activity_looks_back_over_all_history(boundary_matrix):
    days = boundary_matrix["days_since_last_activity"]
    assert days["at_cutoff"] == 0.0
    assert days["minus_7d_plus_1s"] == pytest.approx(7 - 1 / 86400)
    assert days["minus_90d"] == 90.0  # outside every window, still the latest activity
    assert pd.isna(days["cutoff_plus_1s"])  # its only event is after the cutoff


def test_days_since_last_activity_over_snapshots_with_quiet_and_returning_accounts(wh):
    """The history before every window is read only for the accounts quiet in
    the first snapshot's windows: an account quiet then and active later, one
    quiet throughout and one active from the start all get the plain answer."""
    tables = rich_tables()
    tables["usage_events"] = f.events(
        [
            ("A", "2023-12-01 12:00", "login", "u1"),  # A: long before, then back before T
            ("A", "2024-05-20 00:00", "login", "u1"),
            ("B", "2024-01-15 06:00", "login", "u2"),  # B: once, long before, then quiet
            ("B", "2024-05-02 00:00", "login", "u2", 0.0),  # a zero-quantity event still is activity
        ]
    )
    dates = [dt.date(2024, 5, 1), dt.date(2024, 5, 15), T]
    report = stage(wh, VALIDATE_AS_OF, **with_history(tables))
    matrix = build_features(wh, dates, report)
    a = {d: row(matrix, "A", d)["days_since_last_activity"] for d in dates}
    assert a[dates[0]] == pytest.approx((pd.Timestamp("2024-05-01") - pd.Timestamp("2023-12-01 12:00")).days + 0.5)
    assert a[dates[1]] == pytest.approx(a[dates[0]] + 14)
    assert a[T] == 12.0  # 05-20 00:00 -> 06-01 00:00
    b = {d: row(matrix, "B", d)["days_since_last_activity"] for d in dates if d >= dt.date(2024, 5, 1)}
    assert b[dates[1]] == 13.0 and b[T] == 30.0  # the zero-quantity event of 05-02


def test_nps_365d_boundary(boundary_matrix):
    assert boundary_matrix.loc["nps_minus_365d", "nps_responses_365d"] == 0
    assert pd.isna(boundary_matrix.loc["nps_minus_365d", "nps_avg_365d"])
    assert boundary_matrix.loc["nps_minus_365d", "nps_latest"] == 5  # latest is not windowed on T
    assert boundary_matrix.loc["nps_minus_365d", "days_since_last_nps"] == 365
    assert boundary_matrix.loc["nps_minus_365d_plus_1s", "nps_responses_365d"] == 1
    assert boundary_matrix.loc["nps_minus_365d_plus_1s", "nps_avg_365d"] == 5


def test_nps_latest_averages_the_30_days_up_to_the_latest_response(duckdb_wh):
    tables = rich_tables()
    tables["nps_responses"] = f.nps(
        [
            ("A", "2024-05-20 00:00", 2),
            ("A", "2024-04-20 00:00:01", 4),  # 30 days minus a second before the latest: included
            ("A", "2024-04-20 00:00", 9),  # exactly 30 days before: excluded
        ]
    )
    report = stage(duckdb_wh, VALIDATE_AS_OF, **with_history(tables))
    a = row(build_features(duckdb_wh, [T], report), "A")
    assert a["nps_latest"] == 3.0  # (2 + 4) / 2
    assert a["nps_avg_365d"] == 5.0  # (2 + 4 + 9) / 3
    assert a["nps_detractor_share_365d"] == pytest.approx(2 / 3)


def test_support_window_edges_and_resolution(duckdb_wh):
    tables = rich_tables()
    tables["support_tickets"] = f.tickets(
        [
            # resolved exactly at the cutoff: resolved, counts for CSAT and resolution time
            ("t1", "A", "2024-05-31 00:00", "2024-06-01 00:00", "HIGH", 1),
            # resolved exactly 90 days before the cutoff: outside the 90-day resolution window
            ("t2", "A", "2024-03-01 00:00", "2024-03-03 00:00", "low", 5),
            # resolved 90 days minus a second before: inside
            ("t3", "A", "2024-03-01 00:00", "2024-03-03 00:00:01", "low", 4),
            ("t4", "A", "2024-05-01 00:00", None, None),  # open, no priority
        ]
    )
    report = stage(duckdb_wh, VALIDATE_AS_OF, **with_history(tables))
    a = row(build_features(duckdb_wh, [T], report), "A")
    assert a["open_tickets"] == 1 and a["open_urgent_tickets"] == 0
    assert a["oldest_open_ticket_age_days"] == 31.0
    assert a["tickets_high_urgent_90d"] == 1  # "HIGH" counts, whatever the case
    assert a["csat_avg_90d"] == 2.5  # (1 + 4) / 2
    assert a["low_csat_90d"] == 1
    assert a["median_resolution_hours_90d"] == pytest.approx((24 + 48 + 1 / 3600) / 2)
    assert a["tickets_90d"] == 2  # t1, t4; t2 and t3 were opened before T-90d (03-03)


def test_median_resolution_is_numpys_median_for_odd_even_and_tied_counts(wh):
    """The median is taken by rank (middle one or two values), not by a
    holistic aggregate: it must equal NumPy's for any count, ties included."""
    rng = np.random.default_rng(7)
    tables = rich_tables()
    rows, expected = [], {}
    for account in ("A", "B"):
        hours = list(rng.choice([1.0, 2.5, 2.5, 7.0, 30.0, 48.25, 100.0], size=5 if account == "A" else 6))
        expected[account] = float(np.median(hours))
        for i, h in enumerate(hours):
            created = pd.Timestamp("2024-05-10") + pd.Timedelta(hours=i)
            resolved = created + pd.Timedelta(hours=h)
            rows.append((f"{account}{i}", account, str(created), str(resolved), "low", 3))
    tables["support_tickets"] = f.tickets(rows)
    report = stage(wh, VALIDATE_AS_OF, **with_history(tables))
    matrix = build_features(wh, [T], report)
    for account, median in expected.items():
        assert row(matrix, account)["median_resolution_hours_90d"] == pytest.approx(median, abs=1e-9)


# -- contract features ---------------------------------------------------------------
def contract_matrix(wh, subscriptions: list[tuple], created_at: str = "2023-01-01", **created) -> pd.DataFrame:
    """Features at T for accounts defined only by their subscriptions; every
    account has one login at T so the data reaches T."""
    ids = sorted({s[1] for s in subscriptions})
    accounts = pd.concat([f.accounts(a, created_at=created.get(a, created_at)) for a in ids], ignore_index=True)
    tables = dict(
        accounts=accounts,
        subscriptions=f.subscriptions(subscriptions),
        usage_events=f.events([(ids[0], str(CUTOFF), "login", "u1")]),
    )
    report = stage(wh, T, **tables)
    return build_features(wh, [T], report).set_index("account_id")


TERMS = {  # term in days -> (contract_term_months, billing_term)
    31: (1, "monthly"),
    45: (1, "monthly"),
    46: (2, "quarterly"),
    100: (3, "quarterly"),
    101: (3, "annual"),
    365: (12, "annual"),
    400: (13, "annual"),
    401: (13, "multi_year"),
    730: (24, "multi_year"),
}


def test_contract_term_months_and_billing_term(duckdb_wh):
    start = dt.date(2024, 5, 20)
    subs = [(f"s{days}", f"term{days}", str(start), str(start + dt.timedelta(days=days)), 10) for days in TERMS]
    subs.append(("sopen", "open", str(start), None, 10))
    frame = contract_matrix(duckdb_wh, subs)
    for days, (months, term) in TERMS.items():
        assert (frame.loc[f"term{days}", "contract_term_months"], frame.loc[f"term{days}", "billing_term"]) == (
            months,
            term,
        ), days
    assert pd.isna(frame.loc["open", "contract_term_months"])
    assert frame.loc["open", "billing_term"] == "open_ended"


def test_lifecycle_stage_and_days_to_renewal(wh):
    frame = contract_matrix(
        wh,
        [
            ("s1", "new", "2024-03-04", "2024-06-15", 10),  # tenure 89, renewal in 14 days
            ("s2", "tenure90", "2024-03-03", "2025-06-01", 10),  # tenure 90
            ("s3", "renew90", "2023-01-01", "2024-08-30", 10),  # renewal in exactly 90 days
            ("s4", "renew91", "2023-01-01", "2024-08-31", 10),
            ("s5", "open", "2023-01-01", None, 10),
        ],
        new="2024-03-04",
        tenure90="2024-03-03",
    )
    # created 2023-01-01 unless said otherwise: 365 + 152 = 517 days before T
    assert frame["tenure_days"].to_dict() == {"new": 89, "open": 517, "renew90": 517, "renew91": 517, "tenure90": 90}
    assert frame["days_to_renewal"].fillna(-1).to_dict() == {
        "new": 14,
        "open": -1,
        "renew90": 90,
        "renew91": 91,
        "tenure90": 365,
    }
    assert frame["lifecycle_stage"].to_dict() == {
        "new": "onboarding",  # tenure < 90 wins over a renewal in 14 days
        "tenure90": "adoption",
        "renew90": "renewal_window",  # days_to_renewal <= 90
        "renew91": "adoption",
        "open": "adoption",  # no renewal date
    }


def test_overlapping_subscriptions_sum_mrr_and_seats(wh):
    frame = contract_matrix(
        wh,
        [
            # base: 2024-01-01 -> 2025-01-01, 100 MRR, 10 seats, auto-renew, Growth
            ("base", "acme", "2024-01-01", "2025-01-01", 100, 10, True, "Growth"),
            # add-on from 05-15 to 07-15 (61 days), 30 MRR, 5 seats, no auto-renew
            ("addon", "acme", "2024-05-15", "2024-07-15", 30, 5, False, "Add-on"),
            # ended before T: not summed
            ("old", "acme", "2023-01-01", "2024-01-01", 70, 7),
        ],
        acme="2023-01-01",
    )
    acme = frame.loc["acme"]
    assert (acme["mrr"], acme["seats"]) == (130, 15)
    assert (acme["mrr_change_90d"], acme["seats_change_90d"]) == (30, 5)  # at 03-03 only the base ran
    assert acme["renewal_date"] == pd.Timestamp("2024-07-15")  # the earliest end among the running ones
    assert acme["days_to_renewal"] == 44
    # the current subscription is the one that started last: the add-on
    assert (acme["plan"], acme["is_auto_renew"], acme["contract_term_months"], acme["billing_term"]) == (
        "Add-on",
        0,
        2,
        "quarterly",
    )
    assert acme["prior_renewals"] == 1  # "old" ended on 2024-01-01
    assert acme["lifecycle_stage"] == "renewal_window"


def test_mrr_and_seats_change_90d(wh):
    frame = contract_matrix(
        wh,
        [
            ("u1", "upsell", "2023-06-01", "2024-04-01", 80, 8),
            ("u2", "upsell", "2024-04-01", "2025-04-01", 100, 12),
            ("d1", "downsell", "2023-06-01", "2024-04-01", 100, 10),
            ("d2", "downsell", "2024-04-01", "2025-04-01", 60, 6),
            ("n1", "since_t90", "2024-03-03", None, 50, 5),  # running on T-90d itself
            ("n2", "since_t89", "2024-03-04", None, 50, 5),  # started a day later
        ],
    )
    assert frame["mrr_change_90d"].to_dict() == {"downsell": -40, "since_t89": 50, "since_t90": 0, "upsell": 20}
    assert frame["seats_change_90d"].to_dict() == {"downsell": -4, "since_t89": 5, "since_t90": 0, "upsell": 4}


def test_prior_renewals_counts_periods_ended_on_or_before_T(duckdb_wh):
    frame = contract_matrix(
        duckdb_wh,
        [
            ("r1", "three_terms", "2022-01-01", "2023-01-01", 10),
            ("r2", "three_terms", "2023-01-01", "2024-01-01", 10),
            ("r3", "three_terms", "2024-01-01", "2025-01-01", 10),
            ("f1", "first_term", "2024-01-01", "2025-01-01", 10),
            ("f2", "first_term", "2025-01-01", "2026-01-01", 10),  # signed renewal, not yet ended
            ("e1", "addon_ended_at_T", "2024-01-01", "2025-01-01", 10),
            ("e2", "addon_ended_at_T", "2024-03-01", "2024-06-01", 10),  # end_date == T: ended
        ],
    )
    assert frame["prior_renewals"].to_dict() == {"addon_ended_at_T": 1, "first_term": 0, "three_terms": 2}


def test_seats_missing_makes_per_seat_features_missing(duckdb_wh):
    subs = f.subscriptions([("s1", "a", "2024-01-01", None, 10)]).assign(seats=None)
    tables = dict(
        accounts=f.accounts("a"),
        subscriptions=subs,
        usage_events=f.events([("a", str(CUTOFF), "login", "u1")]),
        support_tickets=f.tickets([("t1", "a", "2024-05-01", None, "low")]),
    )
    report = stage(duckdb_wh, T, **with_history(tables))
    a = row(build_features(duckdb_wh, [T], report), "a")
    assert a["events_30d"] == 1 and a["tickets_90d"] == 1
    for name in (
        "seats",
        "seats_change_90d",
        "seat_utilization_30d",
        "tickets_per_seat_90d",
        "usage_login_per_seat_30d",
    ):
        assert pd.isna(a[name]), name


def test_only_accounts_active_at_T_are_in_the_matrix(wh):
    frame = contract_matrix(
        wh,
        [
            ("s1", "ended_at_T", "2024-01-01", "2024-06-01", 10),  # end is exclusive: not covered on T
            ("s2", "ends_T_plus_1", "2024-01-01", "2024-06-02", 10),
            ("s3", "starts_at_T", "2024-06-01", None, 10),
            ("s4", "starts_T_plus_1", "2024-06-02", None, 10),
            ("s5", "in_a_gap", "2024-01-01", "2024-05-01", 10),
            ("s6", "in_a_gap", "2024-06-15", "2025-06-15", 10),
        ],
    )
    assert sorted(frame.index) == ["ends_T_plus_1", "starts_at_T"]


def test_accounts_without_subscriptions_are_not_in_the_matrix(duckdb_wh):
    tables = rich_tables()
    tables["accounts"] = pd.concat([tables["accounts"], f.accounts("prospect")], ignore_index=True)
    report = stage(duckdb_wh, VALIDATE_AS_OF, **tables)
    assert build_features(duckdb_wh, [T], report)["account_id"].tolist() == ["A", "B"]


# -- as-of checks ----------------------------------------------------------------------
def test_as_of_before_the_data_is_an_error(wh):
    # the first account was created on 2024-01-01 (one usage row predates it, so
    # validation as of 2023-12-31 finds usable usage rows and passes)
    tables = rich_tables()
    tables["usage_events"] = pd.concat(
        [tables["usage_events"], f.events([("A", "2023-12-20", "login", "u1")])], ignore_index=True
    )
    report = stage(wh, dt.date(2023, 12, 31), **tables)
    with pytest.raises(
        AsOfError, match="As-of date 2023-12-31 is before any data: the first account was created on 2024-01-01"
    ):
        build_features(wh, [dt.date(2023, 12, 31)], report)


def test_as_of_after_the_end_of_the_data_is_an_error(wh):
    # the latest row is at 2024-06-01 00:00:01, so the data ends on 2024-06-02
    report = stage(wh, dt.date(2024, 6, 3), **rich_tables())
    assert report.data_end == dt.date(2024, 6, 2)
    with pytest.raises(AsOfError, match=r"As-of date 2024-06-03 is after the end of the data \(2024-06-02"):
        build_features(wh, [T, dt.date(2024, 6, 3)], report)
    # the end of the data itself is fine
    assert not build_features(wh, [dt.date(2024, 6, 2)], report).empty


def test_as_of_after_the_validation_as_of_is_an_error(duckdb_wh):
    """Rows after the validation as-of are not staged: building later would
    silently miss them (A's 06-01 00:00:01 login would not count at 06-02)."""
    report = stage(duckdb_wh, T, **rich_tables())
    with pytest.raises(AsOfError, match=r"after the date the inputs were validated as of \(2024-06-01\)"):
        build_features(duckdb_wh, [dt.date(2024, 6, 2)], report)


def test_no_usable_activity_rows_is_an_error(duckdb_wh):
    # usage_events is required: without a usable row validation stops (before, every
    # account scored as "No active users")
    tables = rich_tables()
    tables["usage_events"] = tables["usage_events"].iloc[:0]
    del tables["support_tickets"], tables["nps_responses"]
    with pytest.raises(ContractError, match=r"'usage_events' \(usage_events\) has no usable rows as of 2024-06-01"):
        stage(duckdb_wh, T, **tables)


def test_no_active_account_is_an_error(duckdb_wh):
    tables = dict(
        accounts=f.accounts("a", created_at="2024-01-01"),
        subscriptions=f.subscriptions([("s1", "a", "2024-02-01", None, 10)]),
        usage_events=f.events([("a", "2024-03-01", "login", "u1")]),
    )
    report = stage(duckdb_wh, dt.date(2024, 3, 1), **tables)
    with pytest.raises(AsOfError, match="No account is active on 2024-01-15"):
        build_features(duckdb_wh, [dt.date(2024, 1, 15)], report)


# -- per-event-type columns -----------------------------------------------------------
def test_event_type_columns_by_volume_slugged_and_bound(wh):
    tables = rich_tables()
    weird = "x'); DROP TABLE usage_events; --"
    tables["usage_events"] = f.events(
        [
            ("A", "2024-05-30", "Report Created", "u1", 3),
            ("A", "2024-05-30", "report-created", "u1", 2),  # same slug: kept apart
            ("A", "2024-05-30", weird, "u1", 1),
            ("A", "2024-05-30", "login", "u1", 4),
        ]
    )
    report = stage(wh, T, **with_history(tables))
    frame = build_features(wh, [T], report)
    per_type = [c for c in frame.columns if c.endswith(PER_SEAT)]
    # most used first, ties by name; types with the same slug keep distinct names (each
    # carries a hash of its own type), and the SQL text of the weird one is never run
    assert per_type == [
        "usage_login_per_seat_30d",
        "usage_report_created__bef97751_per_seat_30d",
        "usage_report_created__d24e2dd5_per_seat_30d",
        "usage_x_drop_table_usage_events__535774a4_per_seat_30d",
    ]
    types = ["login", "Report Created", "report-created", weird]
    assert frame.attrs["event_types"] == {
        catalog.event_type_feature_name(t, kind): t for kind in EVENT_TYPE_KINDS for t in types
    }
    a = row(frame, "A")
    assert [a[c] for c in per_type] == [0.4, 0.3, 0.2, 0.1]  # per 10 seats
    assert wh.table_exists("usage_events")
    for column in per_type:
        assert catalog.get(column).family == "usage"


def test_max_event_types_and_fixed_event_types(duckdb_wh):
    report = stage(duckdb_wh, VALIDATE_AS_OF, **rich_tables())
    # by volume up to T: login 1+2+4+8+50 = 65, export 6, Report Created 5
    top1 = build_features(duckdb_wh, [T], report, max_event_types=1)
    assert [c for c in top1.columns if c.startswith("usage_")] == [f"usage_login{kind}" for kind in EVENT_TYPE_KINDS]
    fixed = build_features(duckdb_wh, [T], report, event_types=["export", "never seen"])
    never_seen = catalog.event_type_feature_name("never seen")
    assert [c for c in fixed.columns if c.endswith(PER_SEAT)] == ["usage_export_per_seat_30d", never_seen]
    assert row(fixed, "A")[never_seen] == 0.0


# -- multi-snapshot builds --------------------------------------------------------------
@pytest.fixture(scope="module")
def random_builds():
    """A seeded random data set built once for 9 monthly snapshots and once per
    snapshot (DuckDB)."""
    with engine_warehouse("duckdb") as wh:
        load(wh, **random_tables(seed=7))
        end = dt.date(2024, 6, 15)
        report = validate(wh, end, max_bad_share=1.0)
        # events start on 2023-06-01, more than 90 days before the first snapshot
        dates = snapshot_dates(dt.date(2023, 10, 1), end, "monthly")
        multi = build_features(wh, dates, report, event_types=EVENT_TYPES, with_labels=True)
        singles = [build_features(wh, [d], report, event_types=EVENT_TYPES, with_labels=True) for d in dates]
    return dates, multi, singles


def test_grain_is_unique_on_a_multi_snapshot_build(random_builds):
    dates, multi, _ = random_builds
    assert not multi.duplicated(KEY).any()
    assert sorted(multi["as_of_date"].unique()) == [pd.Timestamp(d) for d in dates]
    assert len(multi) > 5 * len(dates)  # a real test: most accounts are active most months


def test_multi_snapshot_build_equals_single_snapshot_builds(random_builds):
    _, multi, singles = random_builds
    expected = pd.concat(singles, ignore_index=True).sort_values(KEY, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(multi, expected)
    # not vacuous: the usage windows are populated
    assert multi["events_30d"].sum() > 0 and multi["days_since_last_activity"].notna().any()


def test_active_days_equal_a_naive_count_over_many_blocks_of_days(wh):
    """Active days come from per-account bitmaps of 63 days: over snapshots
    spanning several blocks, with events at midnight (bucket edges) and
    zero-quantity days, they equal a plain count of the days whose events add
    up to more than 0."""
    rng = np.random.default_rng(11)
    tables = rich_tables()
    start = pd.Timestamp("2024-01-20")
    times = start + pd.to_timedelta(rng.integers(0, 133 * 24, size=400), unit="h")
    times = times.where(rng.random(400) > 0.2, times.floor("D"))  # a fifth exactly at midnight
    quantity = rng.choice([0.0, 1.0, 3.0], size=400, p=[0.3, 0.5, 0.2])
    accounts = rng.choice(["A", "B"], size=400)
    tables["usage_events"] = f.events(
        [(a, str(t), "login", f"u-{a}", q) for a, t, q in zip(accounts, times, quantity, strict=True)]
    )
    dates = [dt.date(2024, 3, 10), dt.date(2024, 4, 20), T]
    report = stage(wh, VALIDATE_AS_OF, **with_history(tables))
    matrix = build_features(wh, dates, report)
    events = tables["usage_events"]
    bucket = (events["event_time"] - pd.Timedelta(microseconds=1)).dt.floor("D") + pd.Timedelta(days=1)
    per_day = events.assign(day=bucket).groupby(["account_id", "day"])["quantity"].sum()
    active = per_day[per_day > 0].reset_index()
    checked = 0
    for _, got in matrix[matrix["account_id"].isin(["A", "B"])].iterrows():
        for name, days in (("active_days_30d", 30), ("active_days_90d", 90)):
            mine = active[active["account_id"] == got["account_id"]]["day"]
            lo, hi = got["as_of_date"] - pd.Timedelta(days=days), got["as_of_date"]
            expected = int(((mine > lo) & (mine <= hi)).sum())
            assert got[name] == expected, (got["account_id"], got["as_of_date"], name)
            checked += expected > 0
    assert checked >= 6  # not vacuous


# -- honest windows: a window that starts before the data is unknown --------------------
def test_a_window_that_starts_before_the_tables_first_row_is_unknown(duckdb_wh):
    """The rule (Feature.window): unknown when as-of - window < the first row of
    the family's table. Usage starts 2024-01-15 and tickets 2024-01-10 here; NPS
    2023-05-01 (rich_tables without its year-old rows)."""
    tables = rich_tables()
    tables["usage_events"] = tables["usage_events"][tables["usage_events"]["event_time"] >= "2024-01-01"]
    tables["support_tickets"] = tables["support_tickets"][tables["support_tickets"]["created_at"] >= "2024-01-01"]
    report = stage(duckdb_wh, VALIDATE_AS_OF, **tables)
    early = dt.date(2024, 3, 1)  # 90 days back is 2023-12-02: before usage and tickets start
    frame = build_features(duckdb_wh, [early, T], report)
    before, after = row(frame, "A", early), row(frame, "A", T)
    for name in ("events_90d", "active_users_90d", "active_days_90d", "tickets_90d", "csat_avg_90d"):
        assert pd.isna(before[name]), name  # 90-day windows cut short by the data's start
        assert not pd.isna(after[name]), name  # 2024-06-01 - 90 = 2024-03-03: complete
    assert before["events_30d"] == 0 and before["tickets_30d"] == 0  # 30 days back: complete, truly zero
    for name in ("days_since_last_activity", "open_tickets", "oldest_open_ticket_age_days"):
        assert pd.isna(after[name]), name  # they need a year of history: not there yet at T
    # NPS has more than a year of history at T: its 365-day features are known
    assert after["nps_responses_365d"] == 3 and after["nps_avg_365d"] == pytest.approx(22 / 3)
    # the boundary: a window starting exactly on the first row's day is complete
    start = pd.Timestamp(report.tables["usage_events"].first_time).date()
    exact = build_features(duckdb_wh, [start + dt.timedelta(days=30)], report)
    assert exact["events_30d"].notna().all() and exact["events_90d"].isna().all()


def test_every_windowed_feature_declares_a_window_table():
    from features.families import FAMILIES

    for family in FAMILIES:
        windowed = [f.name for f in family.features if f.window]
        assert not windowed or family.window_table in family.tables, family.name
    assert catalog.get("events_90d").window == 90 and catalog.get("nps_avg_365d").window == 365
    assert catalog.get("usage_login_per_seat_30d").window == 30
    assert catalog.get("tenure_days").window == 0  # not a window: never cut
