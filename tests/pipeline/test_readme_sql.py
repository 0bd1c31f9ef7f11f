"""The BI queries printed in the README run as-is against scored output
tables, on DuckDB and on PostgreSQL, and answer the questions they promise:
six over the scores, and the two "Does the score work?" queries over the
track-record tables of a monitored copy (an older date scored, then `churn
monitor`); the README's configuration example loads and names the playbook's
topics."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pytest

from features import catalog
from pipeline import steps
from pipeline.settings import load_settings
from pipeline.warehouse import Warehouse
from tests.pipeline.churn_data import END, mlflow_restored

README = Path(__file__).resolve().parents[2] / "README.md"
WEEK_BEFORE = END - dt.timedelta(days=7)
TITLES = (
    "per CSM owner",
    "by segment and tier",
    "common risk reasons",
    "jumped",
    "renewal window at high risk",
    "usage area turned at-risk this week",
    "ARR lost by risk tier",
    "Live AUC by scored date and model version",
)
#: the queries over churn_scores (the rest read the track-record tables)
SCORE_QUERIES = 6


def readme_queries() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.S)
    return [b.strip().rstrip(";") for b in blocks]


def test_readme_has_the_eight_bi_queries():
    titles = [q.splitlines()[0] for q in readme_queries()]
    assert len(titles) == len(TITLES)
    for words, title in zip(TITLES, titles):
        assert words in title, (words, titles)


@pytest.fixture(scope="module")
def week_apart(trained_env, tmp_path_factory):
    """The trained warehouse (scored a month before END and on END) scored a
    week before END, then END again: the latest date has a score a week
    earlier to compare with, and its change_reasons are about that week."""
    settings = trained_env.copy(tmp_path_factory.mktemp("readme-sql"))
    with mlflow_restored():
        steps.score_accounts(settings, WEEK_BEFORE)
        steps.score_accounts(settings, END)
    return settings


def _dates(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    return frame.assign(**{c: pd.to_datetime(frame[c]).dt.date for c in columns})


def _check(wh: Warehouse, high: float) -> None:
    top, by_tier, reasons, jumped, renewal, usage = (wh.query(q) for q in readme_queries()[:SCORE_QUERIES])
    assert len(top) > 0 and top.groupby("csm_owner", dropna=False).size().max() <= 5
    assert {"account_id", "risk_tier", "arr_at_risk", "top_reasons"} <= set(top.columns)
    latest = wh.query("SELECT COUNT(*) AS n, SUM(arr_at_risk) AS arr FROM churn_scores_latest").iloc[0]
    assert by_tier["accounts"].sum() == latest["n"]
    assert by_tier["arr_at_risk"].sum() == pytest.approx(latest["arr"], rel=1e-6, abs=len(by_tier))
    assert len(reasons) > 0 and (reasons["accounts"].diff().dropna() <= 0).all()
    # no stale account: every row is from the latest scored date, renewal still ahead
    newest = wh.scalar("SELECT MAX(as_of_date) FROM churn_scores")
    shown = wh.query("SELECT account_id, as_of_date, renewal_date FROM churn_scores_latest")
    assert (shown["as_of_date"] == newest).all()
    assert (shown["renewal_date"].isna() | (shown["renewal_date"] > shown["as_of_date"])).all()
    assert set(top["account_id"]) <= set(shown["account_id"])

    scores = _dates(wh.query("SELECT * FROM churn_scores"), "as_of_date")
    now = scores[scores["as_of_date"] == END].set_index("account_id")
    before = scores[scores["as_of_date"] == WEEK_BEFORE].set_index("account_id")
    both = now.join(before, rsuffix="_before", how="inner")
    _check_jumped(wh, _dates(jumped, "week_ago_date"), both)
    _check_renewal(renewal, now, high)
    _check_usage(_dates(usage, "week_ago_date"), both)


def _check_jumped(wh: Warehouse, jumped: pd.DataFrame, both: pd.DataFrame) -> None:
    """Query 4: exactly the accounts up 10 points or more since the score a week
    earlier, biggest jump first, with the topics that moved most and the words."""
    assert {"account_id", "week_ago", "now", "topics_moved", "change_reasons"} <= set(jumped.columns)
    rise = both["churn_probability"] - both["churn_probability_before"]
    assert len(jumped) > 0
    assert set(jumped["account_id"]) == set(rise[rise >= 0.10].index)
    assert list(jumped["account_id"]) == list(rise.loc[jumped["account_id"]].sort_values(ascending=False).index)
    assert (jumped["week_ago_date"] == WEEK_BEFORE).all()
    assert jumped["change_reasons"].str.startswith(f"Since {WEEK_BEFORE.isoformat()} (risk ").all()
    # the first topic listed is the one whose exact contribution moved most
    topics = _dates(
        wh.query("SELECT account_id, as_of_date, topic, contribution FROM churn_topic_contributions"), "as_of_date"
    )
    wide = topics.pivot_table(index=["account_id", "topic"], columns="as_of_date", values="contribution")
    delta = (wide[END] - wide[WEEK_BEFORE]).dropna()
    for account, listed in zip(jumped["account_id"], jumped["topics_moved"]):
        moved = delta.loc[account]
        parts = listed.split(", ")
        assert 1 <= len(parts) <= 3, listed
        first, change = parts[0].rsplit(" ", 1)
        assert abs(moved[first]) == pytest.approx(moved.abs().max()), (account, listed)
        assert float(change) == pytest.approx(moved[first], abs=0.006), (account, listed)


def _check_renewal(renewal: pd.DataFrame, now: pd.DataFrame, high: float) -> None:
    """Query 5: every high-risk account in its renewal window (or renewing
    within 90 days), each with a next action, grouped by CSM owner."""
    window = (now["lifecycle_stage"] == "renewal_window") | (now["days_to_renewal"] <= 90)
    expected = now[(now["risk_tier"] == "high") & window]
    assert len(renewal) > 0
    assert sorted(renewal["account_id"]) == sorted(expected.index)
    assert renewal["next_action"].notna().all() and (renewal["next_action"].str.len() > 10).all()
    assert (renewal["days_to_renewal"] <= 90).all()
    assert (renewal["probability"].astype(float) >= round(high, 2)).all()
    owners = renewal["csm_owner"].fillna("\uffff").tolist()  # NULL owners last, as both engines sort them
    assert owners == sorted(owners)


def _check_usage(usage: pd.DataFrame, both: pd.DataFrame) -> None:
    """Query 6: exactly the accounts whose usage area is at risk now and was not
    a week earlier (same model version)."""
    turned = (both["usage_status"] == "at risk") & (both["usage_status_before"] != "at risk")
    turned &= both["usage_status_before"].notna() & (both["model_version"] == both["model_version_before"])
    assert len(usage) > 0
    assert sorted(usage["account_id"]) == sorted(both.index[turned])
    assert (usage["usage_now"] == "at risk").all() and (usage["usage_before"] != "at risk").all()
    assert usage["usage_before"].notna().all() and (usage["week_ago_date"] == WEEK_BEFORE).all()
    assert (usage["usage_change"].astype(float) > 0).all()  # an area that turned at risk took on risk


@pytest.fixture(scope="module")
def monitored(trained_env, tmp_path_factory):
    """A copy of the trained warehouse with a date scored 150 days before the
    end (mature by then) and the monitor run: both track-record tables filled
    and published to the copy's read copy."""
    from pipeline.monitor import run_monitor

    settings = trained_env.copy(tmp_path_factory.mktemp("readme-monitored"))
    with mlflow_restored():
        steps.score_accounts(settings, END - dt.timedelta(days=150))
    outcome = run_monitor(settings, END, test_auc={(settings.model_name, trained_env.version): 0.8}, tracking=False)
    assert len(outcome.overall) == 1
    return settings


def _check_track_record(wh: Warehouse) -> None:
    by_tier, live = (wh.query(q) for q in readme_queries()[SCORE_QUERIES:])
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


def test_track_record_queries_on_duckdb_and_its_read_copy(monitored):
    import duckdb

    with Warehouse(monitored.warehouse) as wh:
        _check_track_record(wh)
    conn = duckdb.connect(str(monitored.data_dir / "warehouse.outputs.duckdb"), read_only=True)
    try:
        results = [conn.execute(query).fetchall() for query in readme_queries()]
        assert results[SCORE_QUERIES] and results[SCORE_QUERIES + 1]  # the track record reached the read copy
    finally:
        conn.close()


def test_queries_on_duckdb(week_apart):
    with Warehouse(week_apart.warehouse) as wh:
        _check(wh, week_apart.tiers.high)


def test_queries_on_the_duckdb_read_copy(week_apart):
    """BI tools open the published copy of a DuckDB warehouse's outputs
    (read-only); the same queries run there and give the same rows."""
    import duckdb

    copy = week_apart.data_dir / "warehouse.outputs.duckdb"
    assert copy.exists()
    conn = duckdb.connect(str(copy), read_only=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert {"churn_scores", "churn_risk_reasons", "churn_topic_contributions", "churn_scores_latest"} <= tables
        with Warehouse(week_apart.warehouse) as wh:
            for query in readme_queries()[:SCORE_QUERIES]:  # this copy has no track record
                assert len(conn.execute(query).fetchall()) == len(wh.query(query)), query.splitlines()[0]
    finally:
        conn.close()


@pytest.mark.postgres
def test_queries_on_postgres(week_apart, pg_wh):
    """Copy the scored tables to PostgreSQL, recreate the latest view the way
    the pipeline does, and run the same text."""
    from pipeline import outputs

    names = week_apart.tables
    with Warehouse(week_apart.warehouse) as source:
        outputs.prepare(pg_wh, names)
        for table, schema in outputs.schemas(names).items():
            pg_wh.write_table(table, outputs.as_stored(source.read_table(table), schema), mode="append")
    _check(pg_wh, week_apart.tiers.high)


@pytest.mark.postgres
def test_track_record_queries_on_postgres(monitored, pg_wh):
    """The track-record tables copied to PostgreSQL: the same text runs there."""
    from pipeline import monitor_tables, outputs

    names = monitored.tables
    with Warehouse(monitored.warehouse) as source:
        monitor_tables.prepare(pg_wh, names)
        for table, schema in (
            (names.churn_outcomes, monitor_tables.OUTCOMES_SCHEMA),
            (names.churn_model_performance, monitor_tables.PERFORMANCE_SCHEMA),
        ):
            pg_wh.write_table(table, outputs.as_stored(source.read_table(table), schema), mode="append")
    _check_track_record(pg_wh)


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end, text.index(start))]


def test_the_configuration_example_loads(tmp_path):
    """The README's churn.toml example is valid: the areas and the playbook
    overrides it shows are what the settings hold."""
    text = README.read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    config = tmp_path / "churn.toml"
    config.write_text(blocks[0])
    settings = load_settings(config_file=config, env={}, data_dir=tmp_path)
    assert settings.areas.at_risk > 0 and settings.areas.healthy > 0
    assert settings.playbook, "the example overrides some actions"
    for topic, action in settings.playbook.items():
        assert settings.actions[topic] == action


def test_the_readme_names_every_playbook_topic():
    """The driver and context topics the configuration section lists are the
    catalog's (a new topic must be documented where the playbook is)."""
    text = README.read_text()
    drivers = re.findall(r"`(\w+)`", _section(text, "maps a *driver* topic (", ")"))
    context = re.findall(r"`(\w+)`", _section(text, "a context topic (", ":"))
    assert sorted(drivers) == sorted(t.name for t in catalog.TOPICS.values() if not t.context)
    assert sorted(context) == sorted(t.name for t in catalog.TOPICS.values() if t.context)


def _copy_to(wh: Warehouse, settings, tables: dict[str, dict[str, str]], prepare) -> None:
    """The outputs of a DuckDB run copied into ``wh`` through the pipeline's own table set-up."""
    with Warehouse(settings.warehouse) as source:
        prepare(wh, settings.tables)
        for table, schema in tables.items():
            wh.write_table(table, outputs_as_stored(source.read_table(table), schema), mode="append")


def outputs_as_stored(frame: pd.DataFrame, schema: dict[str, str]) -> pd.DataFrame:
    from pipeline import outputs

    return outputs.as_stored(frame, schema)


@pytest.mark.spark
def test_queries_on_spark(week_apart, spark_wh):
    """The scored tables in Spark (partitioned as the pipeline makes them): the same text runs as Spark SQL."""
    from pipeline import outputs

    _copy_to(spark_wh, week_apart, outputs.schemas(week_apart.tables), outputs.prepare)
    _check(spark_wh, week_apart.tiers.high)


@pytest.mark.spark
def test_track_record_queries_on_spark(monitored, spark_wh):
    from pipeline import monitor_tables

    _copy_to(spark_wh, monitored, monitor_tables.schemas(monitored.tables), monitor_tables.prepare)
    _check_track_record(spark_wh)
