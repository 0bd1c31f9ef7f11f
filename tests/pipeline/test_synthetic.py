"""Tests for the synthetic data generator (the pipeline/synthetic package).

The mechanics checks recompute churn labels and a usage-decline feature with
plain pandas, independently of the features package.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pipeline.synthetic import (
    CHURN_DRIVERS,
    TABLE_COLUMNS,
    GeneratorConfig,
    generate,
)

END = dt.date(2026, 6, 15)
END_TS = pd.Timestamp(END)
WINDOW_START = END_TS - pd.DateOffset(months=12)
GRACE = pd.Timedelta(days=30)
HORIZON = pd.Timedelta(days=90)

CONTRACT_COLUMNS = {  # docs/data-contract.md, in order
    "accounts": [
        "account_id",
        "created_at",
        "account_name",
        "segment",
        "industry",
        "region",
        "csm_owner",
    ],
    "subscriptions": [
        "subscription_id",
        "account_id",
        "start_date",
        "end_date",
        "mrr",
        "plan",
        "seats",
        "auto_renew",
    ],
    "usage_events": ["account_id", "event_time", "event_type", "user_id", "quantity"],
    "support_tickets": [
        "ticket_id",
        "account_id",
        "created_at",
        "resolved_at",
        "priority",
        "category",
        "satisfaction",
    ],
    "nps_responses": ["account_id", "responded_at", "score", "user_id"],
}
TIME_COLUMNS = {
    "usage_events": "event_time",
    "support_tickets": "created_at",
    "nps_responses": "responded_at",
}


def collect(config: GeneratorConfig) -> dict[str, pd.DataFrame]:
    """All chunks of a run, concatenated per table."""
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLE_COLUMNS}
    for name, frame in generate(config):
        parts[name].append(frame)
    return {name: pd.concat(frames, ignore_index=True) for name, frames in parts.items()}


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame]:
    config = GeneratorConfig(n_accounts=3000, months=12, seed=7, end_date=END, chunk_accounts=1000)
    return collect(config)


@pytest.fixture(scope="module")
def subs(data: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Subscriptions sorted, with the gap to the previous row of the account."""
    s = data["subscriptions"].sort_values(["account_id", "start_date"]).reset_index(drop=True)
    previous = s.groupby("account_id")
    return s.assign(
        gap_days=(s.start_date - previous.end_date.shift()).dt.days,
        previous_mrr=previous.mrr.shift(),
        length_days=(s.end_date - s.start_date).dt.days,
    )


def churn_days(subs: pd.DataFrame) -> pd.DataFrame:
    """(account_id, churn_day): ends of coverage not covered again within the grace period."""
    s = subs.sort_values(["account_id", "start_date"])
    end = s.end_date.fillna(pd.Timestamp("2262-01-01"))
    run_end = end.groupby(s.account_id).cummax()
    next_start = s.groupby("account_id").start_date.shift(-1)
    is_churn = next_start.isna() | (next_start - run_end >= GRACE)
    return pd.DataFrame({"account_id": s.account_id[is_churn], "churn_day": run_end[is_churn]})


# --------------------------------------------------------------------------
# API, determinism
# --------------------------------------------------------------------------


def test_yields_every_table_per_chunk_in_contract_order() -> None:
    config = GeneratorConfig(n_accounts=250, months=3, end_date=END, chunk_accounts=100)
    names = [name for name, _ in generate(config)]
    assert names == list(TABLE_COLUMNS) * 3


def test_same_config_gives_identical_frames() -> None:
    config = GeneratorConfig(n_accounts=300, months=6, seed=3, end_date=END, chunk_accounts=120)
    first, second = collect(config), collect(config)
    for name in TABLE_COLUMNS:
        pd.testing.assert_frame_equal(first[name], second[name])


def test_different_seeds_give_different_data() -> None:
    base = GeneratorConfig(n_accounts=200, months=3, seed=1, end_date=END)
    other = GeneratorConfig(n_accounts=200, months=3, seed=2, end_date=END)
    a, b = collect(base), collect(other)
    assert not a["accounts"].equals(b["accounts"])
    assert not a["usage_events"].equals(b["usage_events"])


def test_a_chunk_does_not_depend_on_the_other_chunks() -> None:
    small = GeneratorConfig(n_accounts=200, months=4, end_date=END, chunk_accounts=100)
    large = GeneratorConfig(n_accounts=300, months=4, end_date=END, chunk_accounts=100)
    a = list(generate(small))
    b = list(generate(large))[: len(a)]
    for (name_a, frame_a), (name_b, frame_b) in zip(a, b, strict=True):
        assert name_a == name_b
        pd.testing.assert_frame_equal(frame_a, frame_b)


def test_end_date_defaults_to_today() -> None:
    tables = collect(GeneratorConfig(n_accounts=30, months=1))
    today = pd.Timestamp(dt.date.today())
    assert tables["usage_events"].event_time.max() < today
    assert tables["usage_events"].event_time.min() >= today - pd.DateOffset(months=1)


@pytest.mark.parametrize("kwargs", [{"n_accounts": 0}, {"months": 0}, {"chunk_accounts": 0}, {"seed": -1}])
def test_rejects_invalid_config(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        GeneratorConfig(**kwargs)


# --------------------------------------------------------------------------
# Contract
# --------------------------------------------------------------------------


def test_columns_are_the_contract_columns_in_order(data: dict[str, pd.DataFrame]) -> None:
    assert {name: list(cols) for name, cols in TABLE_COLUMNS.items()} == CONTRACT_COLUMNS
    for name, columns in CONTRACT_COLUMNS.items():
        assert list(data[name].columns) == columns, name


def test_columns_match_the_features_contract_module() -> None:
    contract = pytest.importorskip("features.contract")
    specs = {
        spec.name: list(spec.column_names) for spec in vars(contract).values() if isinstance(spec, contract.TableSpec)
    }
    for name, columns in CONTRACT_COLUMNS.items():
        if name in specs:
            assert specs[name] == columns, name


def test_dtypes(data: dict[str, pd.DataFrame]) -> None:
    for name, column in [
        ("accounts", "created_at"),
        ("subscriptions", "start_date"),
        ("subscriptions", "end_date"),
        ("usage_events", "event_time"),
        ("support_tickets", "created_at"),
        ("support_tickets", "resolved_at"),
        ("nps_responses", "responded_at"),
    ]:
        assert data[name][column].dtype == np.dtype("datetime64[ns]"), (name, column)
    subs = data["subscriptions"]
    for column in ("start_date", "end_date"):
        dates = subs[column].dropna()
        assert (dates == dates.dt.normalize()).all()
    assert subs.mrr.dtype == np.float64
    assert subs.auto_renew.dtype == bool
    assert str(subs.seats.dtype) == "Int64"
    assert data["usage_events"].quantity.dtype == np.int64
    assert data["nps_responses"].score.dtype == np.int64
    assert data["support_tickets"].satisfaction.dtype == np.float64


def test_column_types_and_nulls_follow_the_contract(data: dict[str, pd.DataFrame]) -> None:
    """The generator types its columns from features.contract, not from its own lists."""
    from features.contract import INPUT_TABLES

    text = pd.Series(["text"]).dtype
    for name in TABLE_COLUMNS:
        spec, frame = INPUT_TABLES[name], data[name]
        for column in spec.columns:
            values = frame[column.name]
            if column.type == "text":
                assert values.dtype == text, (name, column.name)
            elif column.type in ("timestamp", "date"):
                assert values.dtype == np.dtype("datetime64[ns]"), (name, column.name)
            else:
                assert pd.api.types.is_numeric_dtype(values.dtype), (name, column.name)
            if not column.nullable:
                assert values.notna().all(), (name, column.name)


def test_empty_frames_keep_the_column_dtypes(data: dict[str, pd.DataFrame]) -> None:
    """A chunk without rows for a table still has the dtypes of a full chunk."""
    config = GeneratorConfig(n_accounts=1, months=1, seed=0, end_date=dt.date(2026, 3, 31))
    tables = dict(generate(config))
    assert tables["nps_responses"].empty  # no quarterly wave in March
    for name, frame in tables.items():
        assert frame.dtypes.to_dict() == data[name].dtypes.to_dict(), name


def test_keys_are_unique_and_ids_well_formed(data: dict[str, pd.DataFrame]) -> None:
    for name, key in [
        ("accounts", "account_id"),
        ("subscriptions", "subscription_id"),
        ("support_tickets", "ticket_id"),
    ]:
        assert data[name][key].notna().all()
        assert data[name][key].is_unique, name
    assert data["accounts"].account_id.str.fullmatch(r"A\d{6}").all()
    users = data["usage_events"].user_id.dropna()
    assert users.str.fullmatch(r"A\d{6}-U\d{3,}").all()
    assert (users.str[:7] == data["usage_events"].account_id[users.index]).all()


def test_no_orphan_account_ids(data: dict[str, pd.DataFrame]) -> None:
    known = set(data["accounts"].account_id)
    for name in ("subscriptions", "usage_events", "support_tickets", "nps_responses"):
        assert set(data[name].account_id) <= known, name
    assert set(data["subscriptions"].account_id) == known


def test_value_ranges(data: dict[str, pd.DataFrame]) -> None:
    subs = data["subscriptions"]
    bounded = subs.dropna(subset=["end_date"])
    assert (bounded.end_date > bounded.start_date).all()
    assert (subs.mrr > 0).all()
    assert (subs.seats >= 1).all()
    nps = data["nps_responses"].score
    assert nps.between(0, 10).all()
    csat = data["support_tickets"].satisfaction.dropna()
    assert csat.between(1, 5).all() and (csat == csat.round()).all()
    tickets = data["support_tickets"]
    assert tickets.satisfaction[tickets.resolved_at.isna()].isna().all()
    resolved = tickets.dropna(subset=["resolved_at"])
    assert (resolved.resolved_at >= resolved.created_at).all()
    assert set(tickets.priority) == {"low", "normal", "high", "urgent"}
    assert (data["usage_events"].quantity >= 1).all()
    assert data["accounts"].account_id.notna().all()
    assert data["accounts"].created_at.notna().all()


def test_nothing_dated_on_or_after_end_date(data: dict[str, pd.DataFrame]) -> None:
    for name, column in TIME_COLUMNS.items():
        assert data[name][column].max() < END_TS, name
        assert data[name][column].min() >= WINDOW_START, name
    assert data["support_tickets"].resolved_at.max() < END_TS
    assert data["accounts"].created_at.max() < END_TS
    assert data["subscriptions"].start_date.max() < END_TS


def test_no_activity_outside_subscription_coverage(data: dict[str, pd.DataFrame], subs: pd.DataFrame) -> None:
    """Every event lies in a subscription period or at most a grace period after it."""
    periods = subs[["account_id", "start_date", "end_date"]].sort_values("start_date")
    for name, column in TIME_COLUMNS.items():
        events = data[name][["account_id", column]].sort_values(column)
        matched = pd.merge_asof(events, periods, left_on=column, right_on="start_date", by="account_id")
        covered = matched.start_date.notna() & (matched.end_date.isna() | (matched[column] < matched.end_date + GRACE))
        assert covered.all(), f"{name}: {int((~covered).sum())} rows outside coverage"


def test_account_history_and_segments(data: dict[str, pd.DataFrame]) -> None:
    accounts = data["accounts"]
    before = accounts.created_at < WINDOW_START
    assert 0.5 < before.mean() < 0.9
    assert accounts.created_at.min() < WINDOW_START - pd.DateOffset(years=2)
    share = accounts.segment.value_counts(normalize=True)
    assert share["SMB"] == pytest.approx(0.6, abs=0.05)
    assert share["Mid-Market"] == pytest.approx(0.3, abs=0.05)
    assert share["Enterprise"] == pytest.approx(0.1, abs=0.03)
    assert accounts.csm_owner.isna().any() and accounts.csm_owner.notna().any()
    mrr = data["subscriptions"].merge(accounts[["account_id", "segment"]]).groupby("segment").mrr
    assert mrr.median()["SMB"] < mrr.median()["Mid-Market"] < mrr.median()["Enterprise"]


# --------------------------------------------------------------------------
# Mechanics
# --------------------------------------------------------------------------


def test_monthly_annual_and_multi_year_terms_exist(subs: pd.DataFrame) -> None:
    months = (subs.length_days / 30.44).round()
    assert (months == 1).sum() > 100
    assert (months == 12).sum() > 100
    assert (months == 24).sum() > 5


def test_renewals_late_renewals_and_no_ambiguous_gaps(subs: pd.DataFrame) -> None:
    gaps = subs.gap_days.dropna()
    assert (gaps == 0).sum() > 1000  # on-time renewals
    assert gaps.between(1, 29).sum() >= 10  # late renewals within the grace period
    assert not gaps.between(30, 60).any()  # a gap is either a late renewal or a churn
    assert (gaps < 0).sum() == 0  # periods never overlap


def test_expansions_and_downgrades_exist(subs: pd.DataFrame) -> None:
    renewed = subs[subs.gap_days.notna()]
    assert (renewed.mrr > renewed.previous_mrr * 1.08).sum() > 50
    assert (renewed.mrr < renewed.previous_mrr * 0.95).sum() > 50


def test_yearly_churn_rate_is_plausible(data: dict[str, pd.DataFrame], subs: pd.DataFrame) -> None:
    churn = churn_days(subs)
    in_window = churn[(churn.churn_day > WINDOW_START) & (churn.churn_day < END_TS)]
    rate = in_window.account_id.nunique() / len(data["accounts"])
    assert 0.10 <= rate <= 0.30


def test_tickets_and_nps_are_realistic(data: dict[str, pd.DataFrame]) -> None:
    tickets = data["support_tickets"]
    hours = (tickets.resolved_at - tickets.created_at).dt.total_seconds() / 3600
    by_priority = hours.groupby(tickets.priority).median()
    assert by_priority["urgent"] < by_priority["high"] < by_priority["normal"] < by_priority["low"]
    assert tickets.resolved_at.isna().any()
    assert 0.2 < tickets.satisfaction.notna().mean() < 0.8
    nps = data["nps_responses"]
    assert nps.responded_at.dt.month.isin([1, 4, 7, 10]).mean() > 0.6  # quarterly waves
    per_account = nps.groupby("account_id").size()
    assert per_account.median() <= 8 and nps.user_id.notna().all()


def test_usage_has_weekly_seasonality_and_system_rows(data: dict[str, pd.DataFrame]) -> None:
    usage = data["usage_events"]
    weekend = usage.event_time.dt.dayofweek >= 5
    assert weekend.mean() < 0.1
    assert usage.user_id.isna().mean() < 0.1 and usage.user_id.isna().any()
    assert usage.event_type.nunique() >= 6
    per_account_month = len(usage) / len(data["accounts"]) / 12
    assert 15 < per_account_month < 80


def usage_decline_snapshot(data: dict[str, pd.DataFrame], churn: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per active, established account at `as_of`: usage decline and the 90-day churn label.

    Only accounts with at least 10 events in the earlier 30-day window: below
    that, a ratio of counts is mostly noise.
    """
    subs = data["subscriptions"]
    active = subs[(subs.start_date <= as_of) & (subs.end_date.isna() | (subs.end_date > as_of))]
    established = data["accounts"].account_id[data["accounts"].created_at <= as_of - pd.Timedelta(days=90)]
    ids = pd.Index(active.account_id.unique()).intersection(pd.Index(established))
    usage = data["usage_events"]
    age = as_of - usage.event_time
    recent = usage[(age >= pd.Timedelta(0)) & (age < pd.Timedelta(days=30))]
    prior = usage[(age >= pd.Timedelta(days=30)) & (age < pd.Timedelta(days=60))]
    n_recent = recent.groupby("account_id").size().reindex(ids, fill_value=0)
    n_prior = prior.groupby("account_id").size().reindex(ids, fill_value=0)
    upcoming = churn[(churn.churn_day > as_of) & (churn.churn_day <= as_of + HORIZON)]
    table = pd.DataFrame(
        {
            "decline": 1.0 - (n_recent + 1) / (n_prior + 1),
            "churned": ids.isin(upcoming.account_id),
        },
        index=ids,
    )
    return table[n_prior >= 10]


def test_usage_decline_predicts_churn(data: dict[str, pd.DataFrame], subs: pd.DataFrame) -> None:
    """Accounts whose usage fell most in the last 30 days churn clearly more in the next 90."""
    churn = churn_days(subs)
    latest_mature = END_TS - HORIZON - GRACE
    snapshots = [latest_mature - pd.Timedelta(days=30 * k) for k in range(5)]
    table = pd.concat([usage_decline_snapshot(data, churn, t) for t in snapshots])
    decile = pd.qcut(table.decline.rank(method="first"), 10, labels=False)
    rate = table.churned.groupby(decile).mean()
    assert len(table) > 4000
    assert rate[9] > 2 * rate[0]
    assert rate[9] > rate.iloc[:5].mean() + 0.04
    assert rate[9] == rate.max()


def test_documented_drivers_push_the_right_way() -> None:
    risky = ["usage_decline", "low_seat_utilisation", "open_urgent_tickets", "nps_detractor"]
    assert all(CHURN_DRIVERS[name] > 0 for name in risky)
    assert CHURN_DRIVERS["tenure_under_6_months"] > CHURN_DRIVERS["tenure_6_to_12_months"] > 0
    assert CHURN_DRIVERS["nps_promoter"] < 0 and CHURN_DRIVERS["latent_health"] < 0


# --------------------------------------------------------------------------
# Into the warehouse (pipeline.generate)
# --------------------------------------------------------------------------

SMALL = GeneratorConfig(n_accounts=120, months=3, seed=5, end_date=END, chunk_accounts=50)


def test_generate_data_replaces_the_contract_tables(tmp_path) -> None:
    from pipeline.generate import INCOMING_SUFFIX, generate_data
    from pipeline.settings import load_settings
    from pipeline.steps import open_warehouse

    settings = load_settings(env={}, data_dir=tmp_path)
    chunks: list[int] = []
    result = generate_data(settings, SMALL, on_chunk=chunks.append)
    expected = collect(SMALL)
    assert chunks == [50, 50, 20]
    assert result.rows == {name: len(frame) for name, frame in expected.items()}
    assert result.report.as_of == END
    with open_warehouse(settings) as wh:
        for name in TABLE_COLUMNS:
            assert wh.row_count(name) == len(expected[name]), name
            assert not wh.table_exists(name + INCOMING_SUFFIX), name
        ids = wh.read_table("accounts", ["account_id"]).account_id
    assert sorted(ids) == sorted(expected["accounts"].account_id)


def test_a_failed_generation_keeps_the_previous_data(tmp_path, monkeypatch) -> None:
    from pipeline.generate import INCOMING_SUFFIX, generate_data
    from pipeline.settings import load_settings
    from pipeline.steps import open_warehouse

    settings = load_settings(env={}, data_dir=tmp_path)
    before = generate_data(settings, SMALL).rows

    def broken(config: GeneratorConfig):
        yield from list(generate(config))[:7]  # the first chunk and part of the second
        raise RuntimeError("generator failed")

    monkeypatch.setattr("pipeline.synthetic.generate", broken)
    larger = GeneratorConfig(n_accounts=300, months=3, end_date=END, chunk_accounts=100)
    with pytest.raises(RuntimeError, match="generator failed"):
        generate_data(settings, larger)
    with open_warehouse(settings) as wh:
        for name in TABLE_COLUMNS:
            assert wh.row_count(name) == before[name], name
            assert not wh.table_exists(name + INCOMING_SUFFIX), name
