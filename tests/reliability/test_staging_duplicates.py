"""Issue #11 item 3: which duplicate is kept is a stated rule, not scan order,
and rows with a NULL key are not duplicates of each other.

Rule: among rows with the same key the earliest by the table's time column is
kept; ties are broken by every other contract column in contract order,
ascending, NULLs last (text compared by code point on every engine).
"""

from __future__ import annotations

import pandas as pd
import pytest

from features.contract import INPUT_TABLES
from features.staging_rules import table_rules as _rules
from tests import factories as f
from tests.features.data import stage
from tests.features.test_staging import AS_OF, clean_tables, rule_counts


def _two_copies(first: str | None, second: str | None) -> pd.DataFrame:
    """Account a1 twice, same created_at, differing only in csm_owner; then a2."""
    return pd.concat(
        [
            f.accounts("a1", created_at="2024-01-01", csm_owner=first),
            f.accounts("a1", created_at="2024-01-01", csm_owner=second),
            f.accounts("a2"),
        ],
        ignore_index=True,
    )


# 'Carol' < 'bob' by code point (upper case first), whatever the database collation says
@pytest.mark.parametrize("order", [("bob", "Carol"), ("Carol", "bob")])
def test_tied_duplicates_keep_the_same_copy_whatever_the_load_order(wh, order):
    report = stage(wh, AS_OF, max_bad_share=1.0, **{**clean_tables(), "accounts": _two_copies(*order)})
    assert rule_counts(report) == {("accounts", "duplicate_key"): 1}
    kept = wh.read_table("stg_accounts").set_index("account_id")
    assert kept.loc["a1", "csm_owner"] == "Carol"


@pytest.mark.parametrize("order", [(None, "Zed"), ("Zed", None)])
def test_tied_duplicates_sort_nulls_last(wh, order):
    stage(wh, AS_OF, max_bad_share=1.0, **{**clean_tables(), "accounts": _two_copies(*order)})
    assert wh.read_table("stg_accounts").set_index("account_id").loc["a1", "csm_owner"] == "Zed"


def test_null_keys_are_null_key_rows_never_duplicates(wh):
    tables = clean_tables()
    tables["accounts"] = pd.concat(
        [tables["accounts"], f.accounts("x", "y").assign(account_id=None)], ignore_index=True
    )
    subs = f.subscriptions([("s8", "a1", "2024-02-01", None, 10), ("s9", "a1", "2024-02-01", None, 10)])
    tables["subscriptions"] = pd.concat([tables["subscriptions"], subs.assign(subscription_id=None)], ignore_index=True)
    report = stage(wh, AS_OF, max_bad_share=1.0, **tables)
    assert rule_counts(report) == {("accounts", "null_account_id"): 2, ("subscriptions", "null_subscription_id"): 2}
    assert report.tables["accounts"].bad == 2 and report.tables["subscriptions"].bad == 2


def test_the_rule_is_stated_in_its_description():
    descriptions = {
        spec.name: {r.name: r.description for r in _rules(spec)}["duplicate_key"]
        for spec in INPUT_TABLES.values()
        if spec.key
    }
    assert descriptions["accounts"] == (
        "duplicate account_id (earliest created_at kept, ties by account_name, segment, industry, region, csm_owner)"
    )
    assert descriptions["subscriptions"] == (
        "duplicate subscription_id (earliest start_date kept, ties by account_id, end_date, mrr, plan, "
        "seats, auto_renew)"
    )
