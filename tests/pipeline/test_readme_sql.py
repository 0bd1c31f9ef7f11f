"""The BI queries printed in the README run as-is against scored output
tables, on DuckDB and on PostgreSQL, and answer the questions they promise:
the four over the scores, and the two "Does the score work?" queries over
the track-record tables of a monitored copy (an older date scored, then
`churn monitor`)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from pipeline.warehouse import Warehouse

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_queries() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.S)
    return [b.strip().rstrip(";") for b in blocks]


def test_readme_has_the_six_bi_queries():
    titles = [q.splitlines()[0] for q in readme_queries()]
    assert len(titles) == 6
    for words in (
        "per CSM owner",
        "by segment and tier",
        "common risk reasons",
        "jumped",
        "ARR lost by risk tier",
        "Live AUC by scored date and model version",
    ):
        assert any(words in t for t in titles), (words, titles)


@pytest.fixture(scope="module")
def monitored(trained_env, tmp_path_factory):
    """A copy of the trained warehouse with a date scored 150 days before the
    end (mature by then) and the monitor run: both track-record tables filled
    and published to the copy's read copy."""
    from pipeline import steps
    from pipeline.monitor import run_monitor
    from tests.pipeline.churn_data import END, mlflow_restored

    settings = trained_env.copy(tmp_path_factory.mktemp("readme-monitored"))
    with mlflow_restored():
        steps.score_accounts(settings, END - dt.timedelta(days=150))
    outcome = run_monitor(settings, END, test_auc={(settings.model_name, trained_env.version): 0.8}, tracking=False)
    assert len(outcome.overall) == 1
    return settings


def _check_track_record(wh: Warehouse) -> None:
    by_tier, live = (wh.query(q) for q in readme_queries()[4:])
    known = wh.query("SELECT * FROM churn_outcomes WHERE churned IS NOT NULL")
    assert by_tier["scored_accounts"].sum() == len(known) > 0
    assert by_tier["churned"].sum() == known["churned"].sum() > 0
    lost = known.loc[known["churned"] == 1, "arr"].sum()
    assert by_tier["arr_lost"].sum() == pytest.approx(lost, abs=len(by_tier))
    rates = by_tier.set_index("risk_tier")["churn_rate"].astype(float)
    assert rates["high"] > rates["low"]  # the score ranks: the high tier churned more
    performance = wh.query("SELECT * FROM churn_model_performance WHERE slice = 'all'")
    assert len(live) == len(performance) == 1
    assert float(live["live_auc"].iloc[0]) == pytest.approx(performance["roc_auc"].iloc[0], abs=5e-4)
    assert float(live["test_auc"].iloc[0]) == 0.8


def _check(wh: Warehouse) -> None:
    top, by_tier, reasons, jumped = (wh.query(q) for q in readme_queries()[:4])
    assert len(top) > 0 and top.groupby("csm_owner", dropna=False).size().max() <= 5
    assert {"account_id", "risk_tier", "arr_at_risk", "top_reasons"} <= set(top.columns)
    latest = wh.query("SELECT COUNT(*) AS n, SUM(arr_at_risk) AS arr FROM churn_scores_latest").iloc[0]
    assert by_tier["accounts"].sum() == latest["n"]
    assert by_tier["arr_at_risk"].sum() == pytest.approx(latest["arr"], rel=1e-6, abs=len(by_tier))
    assert len(reasons) > 0 and (reasons["accounts"].diff().dropna() <= 0).all()
    assert set(jumped.columns) >= {"account_id", "week_ago", "now", "top_reasons"}
    # no stale account: every row is from the latest scored date, renewal still ahead
    newest = wh.scalar("SELECT MAX(as_of_date) FROM churn_scores")
    shown = wh.query("SELECT account_id, as_of_date, renewal_date FROM churn_scores_latest")
    assert (shown["as_of_date"] == newest).all()
    assert (shown["renewal_date"].isna() | (shown["renewal_date"] > shown["as_of_date"])).all()
    assert set(top["account_id"]) <= set(shown["account_id"])


def test_queries_on_duckdb(trained_env, tmp_path):
    settings = trained_env.copy(tmp_path)
    with Warehouse(settings.warehouse) as wh:
        _check(wh)


def test_track_record_queries_on_duckdb_and_its_read_copy(monitored):
    import duckdb

    with Warehouse(monitored.warehouse) as wh:
        _check_track_record(wh)
    conn = duckdb.connect(str(monitored.data_dir / "warehouse.outputs.duckdb"), read_only=True)
    try:
        results = [conn.execute(query).fetchall() for query in readme_queries()]
        assert results[4] and results[5]  # the track record reached the read copy
    finally:
        conn.close()


def test_queries_on_the_duckdb_read_copy(trained_env):
    """BI tools open the published copy of a DuckDB warehouse's outputs
    (read-only); the same queries run there."""
    import duckdb

    copy = trained_env.root / "warehouse.outputs.duckdb"
    assert copy.exists()
    conn = duckdb.connect(str(copy), read_only=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert {"churn_scores", "churn_risk_reasons", "churn_scores_latest"} <= tables
        for query in readme_queries()[:4]:  # the scores (this copy has no track record)
            conn.execute(query).fetchall()
    finally:
        conn.close()


@pytest.mark.postgres
def test_queries_on_postgres(monitored, pg_wh):
    """Copy the scored and track-record tables to PostgreSQL, recreate the
    latest view the way the pipeline does, and run the same text."""
    from features.contract import TableNames
    from pipeline import monitor_tables, outputs

    names = TableNames()
    with Warehouse(monitored.warehouse) as source:
        outputs.prepare(pg_wh, names)
        monitor_tables.prepare(pg_wh, names)
        for table, schema in (
            (names.churn_scores, outputs.SCORES_SCHEMA),
            (names.churn_risk_reasons, outputs.REASONS_SCHEMA),
            (names.churn_outcomes, monitor_tables.OUTCOMES_SCHEMA),
            (names.churn_model_performance, monitor_tables.PERFORMANCE_SCHEMA),
        ):
            pg_wh.write_table(table, outputs.as_stored(source.read_table(table), schema), mode="append")
    _check(pg_wh)
    _check_track_record(pg_wh)
