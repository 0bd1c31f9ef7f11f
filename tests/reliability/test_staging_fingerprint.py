"""Issue #11 item 1: the feature cache key must see in-place updates.

Row counts and latest timestamps do not change when a value is updated in
place (``UPDATE subscriptions SET mrr = mrr * 10``); the validation report's
content fingerprint (a hash of every row's typed columns, per table) does.
"""

from __future__ import annotations

import datetime as dt

from features.contract import INPUT_TABLES
from features.staging import staged, validate
from tests.conftest import load
from tests.features.test_staging import AS_OF, clean_tables


def test_in_place_update_changes_the_fingerprint(wh):
    load(wh, **clean_tables())
    before = validate(wh, AS_OF)
    again = validate(wh, AS_OF)
    assert before.fingerprint == again.fingerprint  # same data, same fingerprint
    assert before.tables["subscriptions"].content_hash == again.tables["subscriptions"].content_hash

    wh.execute("UPDATE subscriptions SET mrr = mrr * 10 WHERE subscription_id = 's1'")
    after = validate(wh, AS_OF)
    # counts and latest times are those of before: only the content says it changed
    assert after.tables["subscriptions"].rows == before.tables["subscriptions"].rows
    assert after.tables["subscriptions"].last_time == before.tables["subscriptions"].last_time
    assert after.tables["subscriptions"].content_hash != before.tables["subscriptions"].content_hash
    assert after.tables["accounts"].content_hash == before.tables["accounts"].content_hash
    assert after.fingerprint != before.fingerprint
    assert after.to_dict()["fingerprint"] == after.fingerprint


def test_reloading_the_same_rows_in_another_order_keeps_the_fingerprint(wh):
    # loaded twice, in another row order: the same rows, the same fingerprint
    load(wh, **clean_tables())
    first = validate(wh, AS_OF)
    for name in INPUT_TABLES:  # PostgreSQL will not replace a table a staged view reads
        wh.drop(staged(name), "VIEW")
    load(wh, **{name: frame.iloc[::-1] for name, frame in clean_tables().items()})
    second = validate(wh, AS_OF)
    assert second.fingerprint == first.fingerprint


def test_fingerprint_covers_absent_tables_nulls_and_the_as_of(wh):
    tables = clean_tables()
    del tables["nps_responses"]
    load(wh, **tables)
    report = validate(wh, AS_OF)
    assert report.tables["nps_responses"].content_hash == "absent"
    assert validate(wh, AS_OF + dt.timedelta(days=1)).fingerprint != report.fingerprint

    # NULL is not the empty string
    wh.execute("UPDATE usage_events SET user_id = NULL WHERE user_id = 'u2'")
    with_null = validate(wh, AS_OF)
    wh.execute("UPDATE usage_events SET user_id = '' WHERE user_id IS NULL")
    with_empty = validate(wh, AS_OF)
    assert len({report.fingerprint, with_null.fingerprint, with_empty.fingerprint}) == 3

    # a table that appears changes it too
    load(wh, nps_responses=clean_tables()["nps_responses"])
    assert validate(wh, AS_OF).fingerprint != report.fingerprint
