"""Issue #11 item 5: an empty required table stops the run, naming the table
and the as-of date; a contract column that is NULL in every kept row is
reported (and logged), instead of silently reading as "nothing happened"."""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd
import pytest

from features.staging import ContractError, validate
from tests import factories as f
from tests.conftest import load
from tests.features.data import stage
from tests.features.test_staging import AS_OF, clean_tables


@pytest.mark.parametrize("table", ["accounts", "subscriptions", "usage_events"])
def test_an_empty_required_table_is_a_contract_error(wh, table):
    tables = clean_tables()
    tables[table] = tables[table].iloc[:0]  # typed, no rows
    load(wh, **tables)
    with pytest.raises(ContractError, match=f"'{table}' \\({table}\\) has no usable rows .*2024-06-01"):
        validate(wh, AS_OF)


def test_usage_only_after_the_as_of_is_a_contract_error(wh):
    tables = clean_tables()
    tables["usage_events"] = f.events([("a1", "2024-06-01 00:00:01", "login", "u1")])
    load(wh, **tables)
    with pytest.raises(ContractError, match=r"usage_events.*no usable rows as of 2024-06-01"):
        validate(wh, AS_OF)
    # a later as-of sees the row: fine
    assert validate(wh, dt.date(2024, 6, 2)).tables["usage_events"].kept == 1


def test_all_null_columns_are_reported(wh, caplog):
    tables = clean_tables()
    tables["usage_events"] = tables["usage_events"].assign(user_id=None)
    tables["support_tickets"] = tables["support_tickets"].assign(priority=None, satisfaction=None)
    # one ticket with a priority, but after the as-of: the kept rows have none
    late = f.tickets([("t9", "a1", "2024-06-05", None, "urgent")])
    tables["support_tickets"] = pd.concat([tables["support_tickets"], late], ignore_index=True)
    with caplog.at_level(logging.WARNING, logger="features.staging"):
        report = stage(wh, AS_OF, **tables)

    assert report.null_columns == {
        "usage_events": ["user_id"],
        "support_tickets": ["priority", "satisfaction"],
    }
    assert report.to_dict()["null_columns"] == report.null_columns
    markdown = report.to_markdown()
    assert "usage_events.user_id" in markdown and "active_users_30d" in markdown
    assert "support_tickets.priority" in markdown
    assert any("usage_events.user_id" in r.getMessage() for r in caplog.records)


def test_partly_null_columns_are_not_reported(wh):
    # clean_tables has NULL quantities and a NULL resolved_at next to filled ones
    report = stage(wh, AS_OF, **clean_tables())
    assert report.null_columns == {}
    assert "NULL in every" not in report.to_markdown()
