"""Issue #11 item 7: per-event-type column names are unique, valid on every
engine and stable, and reasons show the original event type.

Before: '登录' and 'エクスポート' both became ``usage_blank_per_seat_30d`` (read
as "'blank x' used 0.14 times per seat"), and on PostgreSQL a name past 63
bytes was silently truncated, so training worked and every later score failed.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from features import catalog
from features.build import EVENT_TYPES_ATTR, build_features
from features.event_types import event_type_columns as _event_type_columns
from models.explain import explain
from tests import factories as f
from tests.features.data import row, stage
from tests.features.test_features import T, rich_tables

VALID = re.compile(r"[a-z0-9_]+")
LONG = "Workspace » Reports » Scheduled export of the quarterly revenue dashboard"  # 73 characters
CJK = ["登录", "エクスポート"]


def _valid(name: str) -> bool:
    return bool(VALID.fullmatch(name)) and len(name.encode()) <= 63


def test_non_ascii_event_types_get_distinct_valid_names():
    names = [catalog.event_type_feature_name(t) for t in CJK]
    assert len(set(names)) == 2
    assert all(_valid(n) for n in names), names
    assert all(n.startswith(catalog.EVENT_TYPE_PREFIX) and n.endswith(catalog.EVENT_TYPE_SUFFIX) for n in names)


def test_names_are_stable():
    # the same type gives the same name whatever else exists and in any process
    # (a hash of the type itself, not Python's salted hash() nor a position)
    alone = _event_type_columns(["登录"])
    with_others = _event_type_columns(["エクスポート", "Report Created", "report-created", "登录"])
    assert with_others[-1] == alone[0]
    assert _event_type_columns(["report-created"]) == [with_others[2]]
    assert catalog.event_type_feature_name("登录") == "usage_type__1e2df9c3_per_seat_30d"
    assert catalog.event_type_feature_name("Report Created") == "usage_report_created__bef97751_per_seat_30d"
    # a type that is already a clean identifier is its own name (synthetic data, old models)
    assert catalog.event_type_feature_name("report_created") == "usage_report_created_per_seat_30d"


@pytest.mark.parametrize("event_type", [LONG, "x" * 70, "a" * 44, "a" * 45, "__a", "a__b", "a_", "Login", ""])
def test_every_name_is_valid_and_differs_from_every_clean_name(event_type):
    name = catalog.event_type_feature_name(event_type)
    assert _valid(name), name
    # a name that is not the type itself carries a hash after a double underscore, which a
    # clean type (lower-case words joined by single underscores) never contains
    body = name[len(catalog.EVENT_TYPE_PREFIX) : -len(catalog.EVENT_TYPE_SUFFIX)]
    assert body == event_type or "__" in body


def test_long_event_type_round_trips_on_the_engine(wh):
    tables = rich_tables()
    tables["usage_events"] = pd.concat(
        [tables["usage_events"], f.events([("A", "2024-05-30", LONG, "u1", 3), ("A", "2024-05-30", "登录", "u1", 2)])],
        ignore_index=True,
    )
    report = stage(wh, T, **tables)
    frame = build_features(wh, [T], report)
    long_name = catalog.event_type_feature_name(LONG)
    assert len(long_name.encode()) <= 63
    assert row(frame, "A")[long_name] == 0.3  # 3 events, 10 seats: the engine kept the name
    assert frame.attrs[EVENT_TYPES_ATTR][long_name] == LONG

    # a table with that column: created, read back by the same name
    wh.write_table("long_names", frame[["account_id", long_name]])
    back = wh.read_table("long_names")
    assert list(back.columns) == ["account_id", long_name]
    assert wh.query(f"SELECT {wh.quote(long_name)} AS v FROM long_names WHERE account_id = 'A'")["v"][0] == 0.3


def test_reasons_show_the_original_event_type(duckdb_wh):
    tables = rich_tables()
    tables["usage_events"] = pd.concat(
        [
            tables["usage_events"],
            f.events(
                [
                    ("A", "2024-05-30", LONG, "u1", 3),
                    ("A", "2024-05-30", "登录", "u1", 2),
                    ("A", "2024-05-30", "{weird} type", "u1", 1),
                ]
            ),
        ],
        ignore_index=True,
    )
    report = stage(duckdb_wh, T, **tables)
    frame = build_features(duckdb_wh, [T], report, event_types=[LONG, "登录", "{weird} type", "エクスポート"])
    columns = [catalog.event_type_feature_name(t) for t in (LONG, "登录", "{weird} type", "エクスポート")]
    a = frame[frame["account_id"] == "A"].reset_index(drop=True)
    rows = pd.concat([a] * len(columns), ignore_index=True)
    contributions = pd.DataFrame(np.eye(len(columns)), columns=columns)
    mapping = frame.attrs[EVENT_TYPES_ATTR]

    # the model's mapping passed explicitly (chunks of a frame need not keep attrs)
    chunk = rows.copy()
    chunk.attrs = {}
    reasons = explain(contributions, chunk, columns, n_risk=1, n_protective=0, event_types=mapping)
    assert list(reasons["reason"]) == [
        f"'{LONG}' used 0.30 times per seat in the last 30 days",
        "'登录' used 0.20 times per seat in the last 30 days",
        "'{weird} type' used 0.10 times per seat in the last 30 days",
        "'エクスポート' not used in the last 30 days",
    ]
    # or read from the frame's attrs
    with_attrs = explain(contributions, rows, columns, n_risk=1, n_protective=0)
    assert list(with_attrs["reason"]) == list(reasons["reason"])
    assert catalog.get(columns[1], mapping).description == "Events of type '登录' in the last 30 days per licensed seat"
    # a type written as an identifier reads as words: a reason never shows an identifier
    assert (
        catalog.render_reason(
            "usage_dashboard_view_per_seat_30d",
            {"usage_dashboard_view_per_seat_30d": 0.5},
            {"usage_dashboard_view_per_seat_30d": "dashboard_view"},
        )
        == "'dashboard view' used 0.50 times per seat in the last 30 days"
    )


def test_a_models_column_names_are_kept_when_given_as_a_mapping(duckdb_wh):
    """A model trained before the naming change carries its own names: building
    with its column -> event type mapping keeps them."""
    report = stage(duckdb_wh, T, **rich_tables())
    old = {"usage_report_created_per_seat_30d": "Report Created", "usage_login_per_seat_30d": "login"}
    frame = build_features(duckdb_wh, [T], report, event_types=old)
    assert [c for c in frame.columns if c.endswith("_per_seat_30d")] == list(old)
    assert old.items() <= frame.attrs[EVENT_TYPES_ATTR].items()
    # the other kinds of column are built for the same types, named as new columns are
    assert frame.attrs[EVENT_TYPES_ATTR]["usage_login_per_user_30d"] == "login"
    assert row(frame, "A")["usage_report_created_per_seat_30d"] == 0.5
    with pytest.raises(ValueError, match="not a valid column name"):
        build_features(duckdb_wh, [T], report, event_types={'usage_"x"_per_seat_30d': "x"})
