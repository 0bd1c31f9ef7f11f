"""Validation and staging (features.staging.validate) on tiny hand-made tables.

Every rule gets one bad row added to an otherwise clean data set; the row is
marked "BAD" in a free-text column so we can check it is the one dropped.
As-of date everywhere: 2024-06-01, i.e. cutoff 2024-06-01 00:00:00.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from features import catalog
from features.build import build_features
from features.contract import INPUT_TABLES, TableNames
from features.families import FAMILIES
from features.staging import ContractError, DataQualityError, validate
from tests import factories as f
from tests.conftest import load
from tests.features.data import stage, with_history

AS_OF = dt.date(2024, 6, 1)
NOW_PLUS_1D = pd.Timestamp(dt.datetime.now() + dt.timedelta(days=1)).floor("s")

#: free-text column used to mark the bad row in each table
MARK = {
    "accounts": "account_name",
    "subscriptions": "plan",
    "usage_events": "user_id",
    "support_tickets": "category",
    "nps_responses": "user_id",
}


def clean_tables() -> dict[str, pd.DataFrame]:
    """Two accounts, every table clean; includes the edge values of the ranges
    (CSAT 1 and 5, NPS 0 and 10, quantity 0, end_date == start_date)."""
    return {
        "accounts": f.accounts("a1", "a2"),
        "subscriptions": f.subscriptions(
            [
                ("s1", "a1", "2024-01-01", "2025-01-01", 100, 10),
                ("s2", "a2", "2024-01-01", None, 0, 0),  # mrr 0 and seats 0 are allowed
                ("s3", "a2", "2023-06-01", "2023-06-01", 10),  # zero-length: end == start is allowed
            ]
        ),
        "usage_events": f.events(
            [
                ("a1", "2024-05-01 10:00", "login", "u1"),
                ("a2", "2024-05-02 10:00", "login", "u2", 0),
                ("a1", "2024-06-01 00:00", "report", "u1", 2),  # exactly at the cutoff: visible
            ]
        ),
        "support_tickets": f.tickets(
            [
                ("t1", "a1", "2024-05-01", "2024-05-02", "high", 1),
                ("t2", "a2", "2024-05-03", None, "low", 5),
                ("t3", "a2", "2024-05-04", "2024-05-04", "low"),  # resolved the moment it was created
            ]
        ),
        "nps_responses": f.nps([("a1", "2024-05-01", 0), ("a2", "2024-05-02", 10)]),
    }


def with_bad_row(table: str, frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    tables = clean_tables()
    frame = frame.copy()
    frame[MARK[table]] = "BAD"
    tables[table] = pd.concat([tables[table], frame], ignore_index=True)
    return tables


def rule_counts(report) -> dict[tuple[str, str], int]:
    return {(r.table, r.rule): r.rows for r in report.problems()}


def _families_off(report) -> dict[str, str]:
    """report.families_off for the families of the tables these tests load
    (a family of a table that clean_tables() does not hold is off here too)."""
    loaded = {family.title for family in FAMILIES if set(family.tables) <= set(clean_tables())}
    return {family: why for family, why in report.families_off.items() if family in loaded}


def test_clean_tables_break_no_rule(wh):
    report = stage(wh, AS_OF, **clean_tables())
    assert rule_counts(report) == {}
    for name in clean_tables():
        status = report.tables[name]
        assert status.present and status.bad == 0 and status.ignored == 0, name
        assert status.kept == status.rows == len(clean_tables()[name])
    assert "No row broke a rule." in report.to_markdown()


def _acc(**kw):
    return f.accounts("a1").assign(**kw)


def _sub(**kw):
    return f.subscriptions([("s9", "a1", "2024-02-01", "2024-03-01", 10)]).assign(**kw)


def _ev(**kw):
    return f.events([("a1", "2024-05-05", "login", "u9")]).assign(**kw)


def _tk(**kw):
    return f.tickets([("t9", "a1", "2024-05-05", "2024-05-06", "low", 3)]).assign(**kw)


def _nps(**kw):
    return f.nps([("a1", "2024-05-05", 7)]).assign(**kw)


# (table, bad row, {rule: rows}) - one bad row per case
RULE_CASES = {
    "accounts: null key": ("accounts", _acc(account_id=None), {"null_account_id": 1}),
    "accounts: null created_at": ("accounts", _acc(account_id="a9", created_at=pd.NaT), {"null_created_at": 1}),
    # a1 again, created later than the first a1: the later one is the duplicate
    "accounts: duplicate key": ("accounts", _acc(created_at=pd.Timestamp("2024-02-01")), {"duplicate_key": 1}),
    "subscriptions: null key": ("subscriptions", _sub(subscription_id=None), {"null_subscription_id": 1}),
    "subscriptions: null account": ("subscriptions", _sub(account_id=None), {"null_account_id": 1}),
    "subscriptions: null start": ("subscriptions", _sub(start_date=pd.NaT), {"null_start_date": 1}),
    "subscriptions: null mrr": ("subscriptions", _sub(mrr=None), {"null_mrr": 1}),
    "subscriptions: duplicate key": ("subscriptions", _sub(subscription_id="s1"), {"duplicate_key": 1}),
    "subscriptions: orphan account": ("subscriptions", _sub(account_id="nobody"), {"orphan_account": 1}),
    "subscriptions: end before start": (
        "subscriptions",
        _sub(end_date=pd.Timestamp("2024-01-31")),
        {"end_before_start": 1},
    ),
    "subscriptions: negative mrr": ("subscriptions", _sub(mrr=-0.01), {"negative_mrr": 1}),
    "subscriptions: negative seats": ("subscriptions", _sub(seats=-1.0), {"negative_seats": 1}),
    "usage: null account": ("usage_events", _ev(account_id=None), {"null_account_id": 1}),
    "usage: null time": ("usage_events", _ev(event_time=pd.NaT), {"null_event_time": 1}),
    "usage: null type": ("usage_events", _ev(event_type=None), {"null_event_type": 1}),
    "usage: orphan account": ("usage_events", _ev(account_id="nobody"), {"orphan_account": 1}),
    "usage: negative quantity": ("usage_events", _ev(quantity=-1.0), {"negative_quantity": 1}),
    # later than now is an error; it is also after the as-of, but counted bad, not ignored
    "usage: in the future": ("usage_events", _ev(event_time=NOW_PLUS_1D), {"in_the_future": 1, "after_as_of": 1}),
    "tickets: null key": ("support_tickets", _tk(ticket_id=None), {"null_ticket_id": 1}),
    "tickets: duplicate key": (
        "support_tickets",
        _tk(ticket_id="t1", created_at=pd.Timestamp("2024-05-05")),
        {"duplicate_key": 1},
    ),
    "tickets: orphan account": ("support_tickets", _tk(account_id="nobody"), {"orphan_account": 1}),
    "tickets: resolved before created": (
        "support_tickets",
        _tk(resolved_at=pd.Timestamp("2024-05-04 23:59:59")),
        {"resolved_before_created": 1},
    ),
    "tickets: CSAT 0": ("support_tickets", _tk(satisfaction=0.0), {"csat_out_of_range": 1}),
    "tickets: CSAT 5.5": ("support_tickets", _tk(satisfaction=5.5), {"csat_out_of_range": 1}),
    "tickets: in the future": (
        "support_tickets",
        _tk(created_at=NOW_PLUS_1D, resolved_at=pd.NaT),
        {"in_the_future": 1, "after_as_of": 1},
    ),
    "nps: null score": ("nps_responses", _nps(score=None), {"null_score": 1}),
    "nps: orphan account": ("nps_responses", _nps(account_id="nobody"), {"orphan_account": 1}),
    "nps: score -1": ("nps_responses", _nps(score=-1), {"nps_out_of_range": 1}),
    "nps: score 11": ("nps_responses", _nps(score=11), {"nps_out_of_range": 1}),
    "nps: in the future": ("nps_responses", _nps(responded_at=NOW_PLUS_1D), {"in_the_future": 1, "after_as_of": 1}),
}


@pytest.mark.parametrize("case", list(RULE_CASES))
def test_each_rule_drops_and_counts_its_bad_row(duckdb_wh, case):
    table, bad, expected_rules = RULE_CASES[case]
    report = stage(duckdb_wh, AS_OF, max_bad_share=1.0, **with_bad_row(table, bad))

    assert rule_counts(report) == {(table, rule): n for rule, n in expected_rules.items()}
    status = report.tables[table]
    clean_rows = len(clean_tables()[table])
    assert (status.rows, status.bad, status.ignored, status.kept) == (clean_rows + 1, 1, 0, clean_rows)
    staged = duckdb_wh.read_table(f"stg_{table}")
    assert len(staged) == clean_rows
    assert "BAD" not in set(staged[MARK[table]].dropna())


def test_all_rules_at_once(wh):
    """Every bad row of RULE_CASES in one data set, on both engines: the counts
    per rule add up and every bad row is dropped (the per-rule test runs on DuckDB)."""
    tables = clean_tables()
    expected: dict[tuple[str, str], int] = {}
    bad_rows: dict[str, int] = {}
    for i, (table, bad, rules) in enumerate(RULE_CASES.values()):
        bad = bad.copy()
        key = INPUT_TABLES[table].key
        if key and not {f"null_{key[0]}", "duplicate_key"} & set(rules):
            bad[key[0]] = f"bad-{i}"  # unique, so cases do not become each other's duplicates
        bad[MARK[table]] = "BAD"
        tables[table] = pd.concat([tables[table], bad], ignore_index=True)
        for rule, n in rules.items():
            expected[(table, rule)] = expected.get((table, rule), 0) + n
        bad_rows[table] = bad_rows.get(table, 0) + 1
    report = stage(wh, AS_OF, max_bad_share=1.0, **tables)

    assert rule_counts(report) == expected
    for table in clean_tables():
        status = report.tables[table]
        assert status.bad == bad_rows[table], table
        assert status.kept == len(clean_tables()[table]), table
        staged = wh.read_table(f"stg_{table}")
        assert len(staged) == status.kept
        assert "BAD" not in set(staged[MARK[table]].dropna())


def test_duplicate_key_keeps_the_earliest_row_whatever_the_row_order(wh):
    accounts = pd.concat(
        [
            f.accounts("a1", created_at="2024-03-01").assign(account_name="second"),
            f.accounts("a1", created_at="2024-01-01").assign(account_name="first"),  # earlier, listed last
            f.accounts("a2"),
        ],
        ignore_index=True,
    )
    tables = {**clean_tables(), "accounts": accounts}
    report = stage(wh, AS_OF, max_bad_share=1.0, **tables)
    assert rule_counts(report) == {("accounts", "duplicate_key"): 1}
    staged = wh.read_table("stg_accounts").set_index("account_id")
    assert staged.loc["a1", "account_name"] == "first"
    assert staged.loc["a1", "created_at"] == pd.Timestamp("2024-01-01")


def test_rows_after_the_as_of_are_ignored_not_bad(wh):
    # at the cutoff (2024-06-01 00:00:00) is visible; one second later is set aside
    tables = clean_tables()
    tables["usage_events"] = f.events(
        [
            ("a1", "2024-06-01 00:00:00", "login", "at-cutoff"),
            ("a1", "2024-06-01 00:00:01", "login", "after"),
            ("a2", "2024-07-01", "login", "after"),
        ]
    )
    tables["support_tickets"] = f.tickets([("t1", "a1", "2024-06-02", None, "low")])
    tables["nps_responses"] = f.nps([("a1", "2024-06-01 00:00:01", 5)])
    report = stage(wh, AS_OF, max_bad_share=0.0, **tables)  # limit 0: any bad row would raise

    usage = report.tables["usage_events"]
    assert (usage.rows, usage.bad, usage.ignored, usage.kept) == (3, 0, 2, 1)
    assert rule_counts(report) == {
        ("usage_events", "after_as_of"): 2,
        ("support_tickets", "after_as_of"): 1,
        ("nps_responses", "after_as_of"): 1,
    }
    assert not [r for r in report.rules if r.rule == "after_as_of" and r.integrity]
    assert wh.read_table("stg_usage_events")["user_id"].tolist() == ["at-cutoff"]
    # optional tables whose rows are all after the as-of have nothing usable at the as-of
    assert _families_off(report) == {
        "Support": "support_tickets has no usable rows",
        "Sentiment": "nps_responses has no usable rows",
    }
    # ...but the end of the data still counts them: latest clean time 2024-07-01 00:00 -> 2024-07-01
    assert report.data_end == dt.date(2024, 7, 1)


@pytest.mark.parametrize(
    "latest_nps, data_end",
    [
        # latest clean timestamp: usage 2024-05-10 00:00:01 -> its day bucket (ceil to midnight) 2024-05-11
        ("2024-05-10 00:00:00", dt.date(2024, 5, 11)),
        # a timestamp exactly at midnight is its own bucket: 2024-05-12 00:00 -> 2024-05-12
        ("2024-05-12 00:00:00", dt.date(2024, 5, 12)),
        ("2024-05-12 00:00:00.000001", dt.date(2024, 5, 13)),
    ],
)
def test_data_start_and_data_end(wh, latest_nps, data_end):
    tables = clean_tables()
    tables["accounts"] = pd.concat(
        [f.accounts("a1", created_at="2023-03-05 17:00"), f.accounts("a2", created_at="2023-04-01")], ignore_index=True
    )
    # the future event is bad: it does not move the end of the data
    tables["usage_events"] = f.events(
        [("a1", "2024-05-10 00:00:01", "login", "u1"), ("a1", str(NOW_PLUS_1D), "login", "u1")]
    )
    tables["support_tickets"] = f.tickets([("t1", "a1", "2024-05-09 23:00", None, "low")])
    tables["nps_responses"] = f.nps([("a1", latest_nps, 5)])
    report = stage(wh, AS_OF, max_bad_share=1.0, **tables)
    assert report.data_start == dt.date(2023, 3, 5)
    assert report.data_end == data_end


@pytest.mark.parametrize("missing", [name for name, spec in INPUT_TABLES.items() if spec.required])
def test_missing_required_table_is_a_contract_error_naming_it(wh, missing):
    tables = {k: v for k, v in clean_tables().items() if k != missing}
    load(wh, **tables)
    with pytest.raises(ContractError, match=f"Required table '{missing}'"):
        validate(wh, AS_OF)


def test_missing_table_error_names_the_physical_table(wh):
    tables = clean_tables()
    tables["product_events_daily"] = tables.pop("usage_events")
    load(wh, **tables)
    names = TableNames(usage_events="product_events_dly")  # a typo in the mapping
    with pytest.raises(ContractError, match=r"'product_events_dly' \(usage_events\) is missing"):
        validate(wh, AS_OF, names)
    # the right mapping works
    report = validate(wh, AS_OF, TableNames(usage_events="product_events_daily"))
    assert report.tables["usage_events"].physical == "product_events_daily"
    assert report.tables["usage_events"].kept == 3


def test_missing_column_is_a_contract_error_naming_table_and_column(wh):
    tables = clean_tables()
    tables["usage_events"] = tables["usage_events"].drop(columns=["event_type"])
    load(wh, **tables)
    with pytest.raises(ContractError, match=r"'usage_events'.*missing required column\(s\): event_type"):
        validate(wh, AS_OF)


def test_missing_column_error_points_at_a_differently_cased_column(wh):
    tables = clean_tables()
    tables["nps_responses"] = tables["nps_responses"].rename(columns={"score": "Score"})
    load(wh, **tables)
    with pytest.raises(ContractError, match=r"'nps_responses'.*score.*differently-cased Score"):
        validate(wh, AS_OF)


CAST_CASES = {
    "text in a timestamp": ("usage_events", "event_time", ["2024-05-01 10:00", "abc", "2024-06-01"]),
    "text in a numeric": ("subscriptions", "mrr", ["100", "x", "0"]),
    "text in a date": ("subscriptions", "start_date", ["2024-01-01", "soon", "2023-06-01"]),
    "text in an integer": ("nps_responses", "score", ["0", "ten"]),
}


@pytest.mark.parametrize("case", list(CAST_CASES))
def test_a_column_that_cannot_be_cast_is_a_contract_error(wh, case):
    table, column, values = CAST_CASES[case]
    tables = clean_tables()
    tables[table] = tables[table].assign(**{column: values})
    load(wh, **tables)
    with pytest.raises(ContractError, match=f"Column '{column}' of table '{table}'.*cannot be cast"):
        validate(wh, AS_OF)


def test_text_columns_that_cast_cleanly_are_accepted(wh):
    tables = clean_tables()
    tables["usage_events"] = tables["usage_events"].assign(
        event_time=["2024-05-01 10:00:00", "2024-05-02 10:00:00", "2024-06-01 00:00:00"],
        quantity=["1", None, "2.5"],
    )
    report = stage(wh, AS_OF, **tables)
    staged = wh.read_table("stg_usage_events").sort_values("event_time")
    assert staged["event_time"].tolist() == [
        pd.Timestamp("2024-05-01 10:00"),
        pd.Timestamp("2024-05-02 10:00"),
        pd.Timestamp("2024-06-01"),
    ]
    assert staged["quantity"].tolist()[::2] == [1.0, 2.5]
    assert report.tables["usage_events"].kept == 3


def test_integer_account_ids_are_accepted_and_read_as_text(wh):
    tables = clean_tables()
    tables["accounts"] = tables["accounts"].assign(account_id=[1, 2])
    tables["subscriptions"] = tables["subscriptions"].assign(account_id=[1, 2, 2])
    # usage ids as integers too, except one as text: '2' must still match account 2
    tables["usage_events"] = tables["usage_events"].assign(account_id=pd.Series([1, 2, 1]))
    tables["support_tickets"] = tables["support_tickets"].assign(account_id=["1", "2", "2"])
    tables["nps_responses"] = tables["nps_responses"].assign(account_id=[1, 2])
    report = stage(wh, AS_OF, **with_history(tables))
    assert rule_counts(report) == {}
    assert sorted(wh.read_table("stg_accounts")["account_id"]) == ["1", "2", "999999"]  # + the history account

    frame = build_features(wh, [AS_OF], report)
    assert frame["account_id"].tolist() == ["1", "2"]
    # account 1: events 2024-05-01 (1) and at the cutoff (2) -> 3 events in 90 days
    assert frame.set_index("account_id").loc["1", "events_90d"] == 3.0


def _family_columns(family: str) -> set[str]:
    return {feature.name for feature in catalog.FEATURES if feature.family == family}


def test_absent_optional_tables_switch_their_families_off(wh):
    tables = {k: v for k, v in clean_tables().items() if k not in ("support_tickets", "nps_responses")}
    report = stage(wh, AS_OF, **tables)
    assert _families_off(report) == {
        "Support": "support_tickets is absent",
        "Sentiment": "nps_responses is absent",
    }
    assert not report.tables["support_tickets"].present
    assert "Feature family **Support** is off: support_tickets is absent." in report.to_markdown()

    columns = set(build_features(wh, [AS_OF], report).columns)
    assert not columns & (_family_columns("support") | _family_columns("sentiment"))
    assert _family_columns("usage") | _family_columns("contract") | _family_columns("account") <= columns


def test_empty_optional_tables_switch_their_families_off(wh):
    tables = clean_tables()
    tables["support_tickets"] = tables["support_tickets"].iloc[:0]  # typed, no rows
    tables["nps_responses"] = tables["nps_responses"].iloc[:0]
    report = stage(wh, AS_OF, **tables)
    assert _families_off(report) == {
        "Support": "support_tickets has no usable rows",
        "Sentiment": "nps_responses has no usable rows",
    }
    columns = set(build_features(wh, [AS_OF], report).columns)
    assert not columns & (_family_columns("support") | _family_columns("sentiment"))


def test_one_optional_table_present_switches_only_the_other_off(wh):
    tables = {k: v for k, v in clean_tables().items() if k != "nps_responses"}
    report = stage(wh, AS_OF, **tables)
    assert _families_off(report) == {"Sentiment": "nps_responses is absent"}
    columns = set(build_features(wh, [AS_OF], report).columns)
    assert _family_columns("support") <= columns
    assert not columns & _family_columns("sentiment")


def test_too_many_bad_rows_is_a_data_quality_error(wh):
    # 10 usage rows, 1 with a negative quantity: a bad share of 10%
    tables = clean_tables()
    tables["usage_events"] = f.events(
        [("a1", f"2024-05-{d:02d} 10:00", "login", "u1") for d in range(1, 10)]
        + [("a1", "2024-05-20", "login", "u1", -3)]
    )
    load(wh, **tables)
    with pytest.raises(DataQualityError, match=r"usage_events: 1 of 10 rows \(10.0%\)") as err:
        validate(wh, AS_OF, max_bad_share=0.05)
    assert err.value.report.tables["usage_events"].bad == 1
    assert {(r.table, r.rule): r.rows for r in err.value.report.problems()} == {
        ("usage_events", "negative_quantity"): 1
    }
    # exactly at the limit is allowed
    report = validate(wh, AS_OF, max_bad_share=0.10)
    assert report.tables["usage_events"].kept == 9


def test_staged_views_hold_exactly_the_kept_rows_typed_as_the_contract(wh):
    tables = clean_tables()
    tables["usage_events"] = f.events(
        [
            ("a1", "2024-05-01 10:00:00.250", "login", "u1"),  # kept
            ("a2", "2024-05-02 11:00", "export", None, 4),  # kept
            ("a1", "2024-06-01 00:00:00", "login", "u2", 0),  # kept: at the cutoff
            ("nobody", "2024-05-03", "login", "u1"),  # orphan
            ("a1", "2024-05-04", "login", "u1", -1),  # negative quantity
            ("a1", "2024-06-01 00:00:01", "login", "u1"),  # after the as-of
        ]
    ).assign(source_system="crm")  # extra columns are allowed and dropped
    report = stage(wh, AS_OF, max_bad_share=1.0, **tables)
    assert report.tables["usage_events"].kept == 3

    staged = wh.read_table("stg_usage_events").sort_values("event_time").reset_index(drop=True)
    assert list(staged.columns) == list(INPUT_TABLES["usage_events"].column_names)
    expected = pd.DataFrame(
        {
            "account_id": ["a1", "a2", "a1"],
            "event_time": pd.to_datetime(
                ["2024-05-01 10:00:00.250", "2024-05-02 11:00", "2024-06-01"], format="ISO8601"
            ),
            "event_type": ["login", "export", "login"],
            "user_id": ["u1", None, "u2"],
            "quantity": [None, 4.0, 0.0],
        }
    )
    pd.testing.assert_frame_equal(staged, expected, check_dtype=False)
    # the other staged views are there too, with the contract's columns only
    for name in tables:
        assert list(wh.read_table(f"stg_{name}").columns) == list(INPUT_TABLES[name].column_names)


def test_accounts_without_usable_rows_is_a_contract_error(wh):
    tables = clean_tables()
    tables["accounts"] = f.accounts("a1", "a2").assign(created_at=pd.NaT)
    load(wh, **tables)
    with pytest.raises(ContractError, match="accounts.*no usable rows"):
        validate(wh, AS_OF, max_bad_share=1.0)
