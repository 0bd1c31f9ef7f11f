"""Churn labels (features.build.build_labels / build_training_set) and
snapshot_dates, with known answers.

Snapshot T = 2024-03-01; default horizon 90 days -> T + 90 = 2024-05-30;
default grace 30 days. A subscription's end_date is the first day NOT covered,
so the churn day of an account that never renews is its last end_date.
The data (one login on 2024-06-29 12:00) ends on 2024-06-30, so a snapshot is
mature when T + 90 + 30 <= 2024-06-30, i.e. up to T = 2024-03-02.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from features.build import KEY, LabelConfig, LabelError, build_labels, build_training_set, snapshot_dates
from tests import factories as f
from tests.features.data import row, stage

T = dt.date(2024, 3, 1)
DATA_END = dt.date(2024, 6, 30)

SUBSCRIPTIONS = {
    # account: [(start, end)]                               churned, churn_date (defaults)
    "on_time": [("2024-01-01", "2024-04-01"), ("2024-04-01", "2025-04-01")],  # 0, 2025-04-01
    "late_29": [("2024-01-01", "2024-04-01"), ("2024-04-30", "2025-04-30")],  # gap 29 < 30: 0
    "gap_30": [("2024-01-01", "2024-04-01"), ("2024-05-01", None)],  # gap 30: 1 on 04-01
    "never_renewed": [("2024-01-01", "2024-04-01")],  # 1, 2024-04-01
    "churn_at_horizon": [("2024-01-01", "2024-05-30")],  # T+90: 1
    "churn_after_horizon": [("2024-01-01", "2024-05-31")],  # T+91: 0
    "churn_next_day": [("2024-01-01", "2024-03-02")],  # T+1: 1
    "open_ended": [("2024-01-01", None)],  # 0, never
    "reactivated": [("2022-01-01", "2022-06-01"), ("2024-01-01", "2024-04-01")],  # 1, 2024-04-01
    "addon_ends": [("2024-01-01", "2024-07-01"), ("2024-02-01", "2024-03-15")],  # 0, 2024-07-01
    "early_renewal": [("2024-01-01", "2024-04-01"), ("2024-03-15", "2025-03-15")],  # overlap: 0
    "gone_before_T": [("2024-01-01", "2024-02-01")],  # not active at T
}

EXPECTED_DEFAULT = {  # account: (churned, churn_date)
    "on_time": (0, "2025-04-01"),
    "late_29": (0, "2025-04-30"),
    "gap_30": (1, "2024-04-01"),
    "never_renewed": (1, "2024-04-01"),
    "churn_at_horizon": (1, "2024-05-30"),
    "churn_after_horizon": (0, "2024-05-31"),
    "churn_next_day": (1, "2024-03-02"),
    "open_ended": (0, None),
    "reactivated": (1, "2024-04-01"),
    "addon_ends": (0, "2024-07-01"),
    "early_renewal": (0, "2025-03-15"),
}


def label_tables() -> dict[str, pd.DataFrame]:
    ids = list(SUBSCRIPTIONS)
    subs = [
        (f"{a}-{i}", a, start, end, 10) for a, spans in SUBSCRIPTIONS.items() for i, (start, end) in enumerate(spans)
    ]
    return dict(
        accounts=f.accounts(*ids, created_at="2021-06-01"),
        subscriptions=f.subscriptions(subs),
        usage_events=f.events([("on_time", "2024-06-29 12:00", "login", "u1")]),
    )


@pytest.fixture
def report(duckdb_wh):
    return stage(duckdb_wh, DATA_END, **label_tables())


def as_expected(labels: pd.DataFrame) -> dict:
    return {
        r.account_id: (r.churned, None if pd.isna(r.churn_date) else str(r.churn_date.date()))
        for r in labels.itertuples()
    }


def test_default_labels_known_answers(wh):
    report = stage(wh, DATA_END, **label_tables())
    assert report.data_end == DATA_END
    labels = build_labels(wh, [T], report)
    assert list(labels.columns) == ["account_id", "as_of_date", "churn_date", "churned", "mature"]
    assert as_expected(labels) == EXPECTED_DEFAULT  # "gone_before_T" is not active at T: no label
    assert labels["mature"].all()
    assert not labels.duplicated(KEY).any()


def test_maturity_needs_horizon_plus_grace_days_of_data(duckdb_wh, report):
    labels = build_labels(duckdb_wh, [dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)], report)
    mature = labels.groupby("as_of_date")["mature"].agg(["min", "max"])
    # 03-01 + 120 = 06-29 and 03-02 + 120 = 06-30 are on or before the end; 03-03 + 120 = 07-01 is not
    assert mature.to_dict("index") == {
        pd.Timestamp("2024-03-01"): {"min": True, "max": True},
        pd.Timestamp("2024-03-02"): {"min": True, "max": True},
        pd.Timestamp("2024-03-03"): {"min": False, "max": False},
    }
    # the horizon moves with T: churn on 05-31 is outside (T, T+90] for 03-01 but inside for 03-02
    assert row(labels, "churn_after_horizon", dt.date(2024, 3, 1))["churned"] == 0
    assert row(labels, "churn_after_horizon", dt.date(2024, 3, 2))["churned"] == 1
    # ended on 03-02: not active on 03-02, so no label that day
    assert "churn_next_day" not in set(labels.loc[labels["as_of_date"] == pd.Timestamp("2024-03-02"), "account_id"])


@pytest.mark.parametrize(
    "horizon, account, churned",
    [
        (31, "never_renewed", 1),  # churn on 04-01 = T + 31: inside
        (30, "never_renewed", 0),  # T + 30 = 03-31: outside
        (30, "churn_next_day", 1),
        (1, "churn_next_day", 1),  # the shortest horizon still sees the next day
        (180, "churn_after_horizon", 1),
        (180, "addon_ends", 1),  # 07-01 = T + 122
    ],
)
def test_configurable_horizon(duckdb_wh, report, horizon, account, churned):
    labels = build_labels(duckdb_wh, [T], report, LabelConfig(horizon_days=horizon))
    assert row(labels, account)["churned"] == churned


@pytest.mark.parametrize(
    "grace, account, churned, churn_date",
    [
        (60, "gap_30", 0, None),  # a 30-day gap is bridged by a 60-day grace: never churns
        (31, "gap_30", 0, None),
        (29, "late_29", 1, "2024-04-01"),  # a 29-day gap is churn when grace is 29
        (29, "on_time", 0, "2025-04-01"),
        (0, "on_time", 0, "2025-04-01"),  # back-to-back renewal: no gap at all, never churn
        (0, "early_renewal", 0, "2025-03-15"),  # overlapping renewal: no gap either
        (0, "late_29", 1, "2024-04-01"),
    ],
)
def test_configurable_grace(duckdb_wh, report, grace, account, churned, churn_date):
    labels = build_labels(duckdb_wh, [T], report, LabelConfig(grace_days=grace))
    got = row(labels, account)
    assert got["churned"] == churned
    assert (None if pd.isna(got["churn_date"]) else str(got["churn_date"].date())) == churn_date


def test_grace_and_horizon_move_maturity(duckdb_wh, report):
    # 03-03 + 30 + 0 = 04-02 <= 06-30: mature with a 30-day horizon and no grace
    labels = build_labels(duckdb_wh, [dt.date(2024, 3, 3)], report, LabelConfig(horizon_days=30, grace_days=0))
    assert labels["mature"].all()
    # 03-01 + 90 + 31 = 06-30: still mature; + 32 = 07-01: not
    assert build_labels(duckdb_wh, [T], report, LabelConfig(grace_days=31))["mature"].all()
    assert not build_labels(duckdb_wh, [T], report, LabelConfig(grace_days=32))["mature"].any()


def test_label_config_rejects_nonsense():
    with pytest.raises(ValueError):
        LabelConfig(horizon_days=0)
    with pytest.raises(ValueError):
        LabelConfig(grace_days=-1)
    assert LabelConfig(horizon_days=90, grace_days=30).matures_by(T) == dt.date(2024, 6, 29)


def test_training_set_keeps_only_mature_snapshots(duckdb_wh, report):
    frame = build_training_set(duckdb_wh, report, dt.date(2024, 2, 26), dt.date(2024, 3, 4), cadence="1d")
    # snapshots 02-26 .. 03-04; mature up to 03-02
    assert sorted(frame["as_of_date"].unique()) == list(pd.date_range("2024-02-26", "2024-03-02"))
    assert frame["mature"].all()
    assert {"events_30d", "mrr", "churned", "churn_date"} <= set(frame.columns)
    assert not frame.duplicated(KEY).any()
    # the labels are those of build_labels
    at_t = frame[frame["as_of_date"] == pd.Timestamp(T)]
    assert as_expected(at_t) == EXPECTED_DEFAULT

    everything = build_training_set(
        duckdb_wh, report, dt.date(2024, 2, 26), dt.date(2024, 3, 4), cadence="1d", mature_only=False
    )
    assert len(everything) > len(frame) and not everything["mature"].all()


def test_training_set_without_a_mature_snapshot_is_an_error(duckdb_wh, report):
    with pytest.raises(LabelError, match="No snapshot between 2024-03-03 and 2024-04-01 has a mature label"):
        build_training_set(duckdb_wh, report, dt.date(2024, 3, 3), dt.date(2024, 4, 1), cadence="weekly")


@pytest.mark.parametrize(
    "start, end, cadence, expected",
    [
        # monthly, anchored on the end date, month ends clipped (not drifting)
        ("2024-01-01", "2024-03-31", "monthly", ["2024-01-31", "2024-02-29", "2024-03-31"]),
        ("2024-02-15", "2024-05-15", "monthly", ["2024-02-15", "2024-03-15", "2024-04-15", "2024-05-15"]),
        (
            "2023-12-01",
            "2024-05-31",
            "monthly",
            ["2023-12-31", "2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31"],
        ),
        ("2024-02-10", "2024-03-01", "weekly", ["2024-02-16", "2024-02-23", "2024-03-01"]),
        ("2024-02-10", "2024-03-01", "10d", ["2024-02-10", "2024-02-20", "2024-03-01"]),
        ("2024-02-28", "2024-03-01", "1d", ["2024-02-28", "2024-02-29", "2024-03-01"]),
        ("2024-03-01", "2024-03-01", "monthly", ["2024-03-01"]),
        ("2024-02-25", "2024-03-01", "weekly", ["2024-03-01"]),
    ],
)
def test_snapshot_dates(start, end, cadence, expected):
    got = snapshot_dates(dt.date.fromisoformat(start), dt.date.fromisoformat(end), cadence)
    assert got == [dt.date.fromisoformat(d) for d in expected]


@pytest.mark.parametrize("cadence", ["yearly", "0d", "d", "-7d", "1.5d", ""])
def test_snapshot_dates_rejects_unknown_cadences(cadence):
    with pytest.raises(ValueError, match="cadence"):
        snapshot_dates(dt.date(2024, 1, 1), dt.date(2024, 3, 1), cadence)


def test_snapshot_dates_rejects_start_after_end():
    with pytest.raises(ValueError, match="after end"):
        snapshot_dates(dt.date(2024, 3, 2), dt.date(2024, 3, 1))
