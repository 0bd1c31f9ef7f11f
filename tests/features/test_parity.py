"""DuckDB and PostgreSQL give the same validation report, feature matrix,
labels and training set on the same multi-account, multi-snapshot data.

The data is the seeded random set of tests/features/data.py (renewals on time,
late and never, overlapping add-ons, events at midnight bucket edges, open and
late-resolved tickets, NPS) plus a few rows that break rules.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from features.build import LabelConfig, build_features, build_labels, build_training_set, snapshot_dates
from features.event_types import EVENT_TYPE_KINDS
from features.staging import validate
from tests import factories as f
from tests.conftest import load
from tests.features.data import engine_warehouse, random_tables

pytestmark = pytest.mark.postgres

END = dt.date(2024, 6, 15)
DATES = snapshot_dates(dt.date(2023, 9, 1), END, "monthly")


def dirty_tables() -> dict[str, pd.DataFrame]:
    tables = random_tables(seed=11, n_accounts=12)
    bad = {
        "usage_events": f.events([("nobody", "2024-05-01", "login", "u1"), ("acc01", "2024-05-01", "login", "u1", -2)]),
        "support_tickets": f.tickets(
            [
                ("t0", "acc02", "2024-05-05", None, "low"),  # duplicate key
                ("tz", "acc02", "2024-05-05", "2024-05-04", "low", 9),
            ]
        ),
        "nps_responses": f.nps([("acc03", "2024-05-05", 11)]),
        "subscriptions": f.subscriptions([("sz", "acc04", "2024-05-05", "2024-05-01", -1)]),
    }
    for name, rows in bad.items():
        tables[name] = pd.concat([tables[name], rows], ignore_index=True)
    return tables


@pytest.fixture(scope="module")
def both():
    """(report, warehouse) for DuckDB and PostgreSQL, loaded with the same data."""
    tables = dirty_tables()
    with engine_warehouse("duckdb") as duck, engine_warehouse("postgres") as pg:
        out = {}
        for name, wh in (("duckdb", duck), ("postgres", pg)):
            load(wh, **tables)
            out[name] = (validate(wh, END, max_bad_share=0.5), wh)
        yield out


def _engine_neutral(report: dict) -> dict:
    """A report's dict without the content hashes: each engine hashes rows with
    its own function, so the fingerprint is compared within one engine only."""
    out = {k: v for k, v in report.items() if k != "fingerprint"}
    out["tables"] = {t: {k: v for k, v in s.items() if k != "content_hash"} for t, s in report["tables"].items()}
    return out


def test_validation_reports_match(both):
    (duck, _), (pg, _) = both["duckdb"], both["postgres"]
    assert _engine_neutral(pg.to_dict()) == _engine_neutral(duck.to_dict())
    assert {(r.table, r.rule) for r in duck.problems()} >= {
        ("usage_events", "orphan_account"),
        ("usage_events", "negative_quantity"),
        ("support_tickets", "duplicate_key"),
        ("support_tickets", "resolved_before_created"),
        ("support_tickets", "csat_out_of_range"),
        ("nps_responses", "nps_out_of_range"),
        ("subscriptions", "end_before_start"),
        ("subscriptions", "negative_mrr"),
    }


def _assert_same(pg: pd.DataFrame, duck: pd.DataFrame) -> None:
    assert list(pg.columns) == list(duck.columns)
    pd.testing.assert_frame_equal(pg, duck, check_dtype=False, rtol=1e-9)


def test_feature_matrix_and_labels_match(both):
    frames = {name: build_features(wh, DATES, report, with_labels=True) for name, (report, wh) in both.items()}
    _assert_same(frames["postgres"], frames["duckdb"])
    duck = frames["duckdb"]
    # not vacuous: many rows, several snapshots, every family populated, both label values
    assert len(duck) > 50 and duck["as_of_date"].nunique() == len(DATES)
    for column in ("events_30d", "tickets_90d", "nps_responses_365d", "mrr", "prior_renewals"):
        assert duck[column].sum() > 0, column
    assert set(duck["churned"]) == {0, 1}
    assert len([c for c in duck.columns if c.startswith("usage_")]) == 4 * len(EVENT_TYPE_KINDS)


def test_labels_with_other_settings_match(both):
    config = LabelConfig(horizon_days=45, grace_days=0)
    frames = {name: build_labels(wh, DATES, report, config) for name, (report, wh) in both.items()}
    _assert_same(frames["postgres"], frames["duckdb"])
    assert frames["duckdb"]["churned"].sum() > 0


def test_training_sets_match(both):
    frames = {
        name: build_training_set(wh, report, dt.date(2023, 9, 1), END, cadence="monthly", max_event_types=2)
        for name, (report, wh) in both.items()
    }
    _assert_same(frames["postgres"], frames["duckdb"])
    assert frames["duckdb"]["mature"].all() and len(frames["duckdb"]) > 20
