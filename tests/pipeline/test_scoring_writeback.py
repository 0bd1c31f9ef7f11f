"""Writing scores back: one set of rows per date and model however often a date
is rescored, history kept with the change in probability, all or nothing when
the write fails, a latest view, clear errors without a champion or with inputs
the champion cannot use, and the same scores on DuckDB and PostgreSQL."""

from __future__ import annotations

import os
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest

from features import catalog
from models.tracking import NoChampionError
from pipeline import steps
from pipeline.steps import SchemaMismatchError
from pipeline.warehouse import Warehouse
from tests.pipeline.churn_data import (
    EARLIER,
    END,
    assert_same_scores,
    assert_same_tables,
    mlflow_restored,
    read,
    settings_for,
    snapshot,
)

KEY = ["account_id", "as_of_date", "model_name"]


@pytest.fixture(autouse=True)
def _mlflow_state():
    with mlflow_restored():
        yield


def key_counts(settings, table: str) -> pd.Series:
    keys = KEY + (["rank"] if table == "churn_risk_reasons" else [])
    return read(settings, f"SELECT COUNT(*) AS n FROM {table} GROUP BY {', '.join(keys)}")["n"]


def test_rescoring_a_date_replaces_its_rows(trained_env, tmp_path):
    settings = trained_env.copy(tmp_path)
    before = snapshot(settings)
    steps.score_accounts(settings, END)
    steps.score_accounts(settings, END)
    for table in ("churn_scores", "churn_risk_reasons"):
        assert (key_counts(settings, table) == 1).all(), table
        assert len(read(settings, f"SELECT * FROM {table}")) == len(before[table]), table
    scores = read(
        settings,
        f"SELECT COUNT(*) AS n, COUNT(DISTINCT account_id) AS d FROM churn_scores WHERE as_of_date = DATE '{END}'",
    ).iloc[0]
    assert scores["n"] == scores["d"] == len(before["churn_scores"].query("as_of_date == @pd.Timestamp(@END)"))
    # one set of reason rows per scored account and date: ranks 1..k without gaps
    ranks = read(
        settings,
        "SELECT account_id, as_of_date, MAX(rank) AS top, COUNT(*) AS n "
        "FROM churn_risk_reasons GROUP BY account_id, as_of_date",
    )
    assert (ranks["top"] == ranks["n"]).all()
    # same inputs, same model: the rescored rows equal the first ones (scored_at aside)
    after = snapshot(settings)
    for table in ("churn_scores", "churn_risk_reasons"):
        drop = ["scored_at"] if table == "churn_scores" else []
        pd.testing.assert_frame_equal(after[table].drop(columns=drop), before[table].drop(columns=drop))


def test_history_is_kept_with_the_change_in_probability(trained_env):
    settings = trained_env.settings
    dates = read(settings, "SELECT DISTINCT as_of_date FROM churn_scores ORDER BY 1")["as_of_date"]
    assert [d.date() for d in dates] == [EARLIER, END]
    earlier = read(
        settings, f"SELECT account_id, churn_probability FROM churn_scores WHERE as_of_date = DATE '{EARLIER}'"
    )
    now = read(
        settings,
        f"SELECT account_id, churn_probability, churn_probability_change FROM churn_scores "
        f"WHERE as_of_date = DATE '{END}'",
    )
    both = now.merge(earlier, on="account_id", how="left", suffixes=("", "_earlier"))
    seen = both["churn_probability_earlier"].notna()
    assert seen.mean() > 0.8
    np.testing.assert_allclose(
        both.loc[seen, "churn_probability_change"],
        both.loc[seen, "churn_probability"] - both.loc[seen, "churn_probability_earlier"],
        rtol=0,
        atol=1e-12,
    )
    assert both.loc[~seen, "churn_probability_change"].isna().all()  # new accounts have no change
    first = read(settings, f"SELECT churn_probability_change FROM churn_scores WHERE as_of_date = DATE '{EARLIER}'")
    assert first["churn_probability_change"].isna().all()  # nothing before the first date
    reasons = read(settings, "SELECT DISTINCT as_of_date FROM churn_risk_reasons ORDER BY 1")["as_of_date"]
    assert [d.date() for d in reasons] == [EARLIER, END]


def test_latest_view_holds_the_latest_scored_date_only(trained_env):
    """One row per account scored on the model's latest date; an account scored
    earlier but not then (churned, in grace) is not shown with a stale risk."""
    settings = trained_env.settings
    latest = read(settings, "SELECT * FROM churn_scores_latest")
    assert latest["account_id"].is_unique
    assert set(latest["as_of_date"].dt.date) == {END}
    on_end = read(settings, f"SELECT account_id FROM churn_scores WHERE as_of_date = DATE '{END}'")
    assert set(latest["account_id"]) == set(on_end["account_id"])
    only_earlier = read(
        settings,
        f"""SELECT account_id FROM churn_scores WHERE as_of_date = DATE '{EARLIER}'
                                      EXCEPT SELECT account_id FROM churn_scores WHERE as_of_date = DATE '{END}'""",
    )
    assert len(only_earlier) > 0  # the generated data has accounts that churned between the dates
    assert not set(only_earlier["account_id"]) & set(latest["account_id"])


def _score_parts(settings, env):
    frame, report = steps.feature_matrix(settings, END, dict(env.model.event_types))
    assert len(frame) > 250  # several chunks of 100
    return frame, report


def _write_failing_after(settings, env, frame, report, n: int) -> None:
    """Write the date in chunks of 100 accounts with a fault after ``n`` of them."""
    steps.write_scores(settings, END, env.version, env.model, frame, report, mapper=failing_after(n), chunk_rows=100)


def failing_after(n: int):
    """A mapper (see models.scoring.Mapper) that explains ``n`` partitions,
    then fails: a fault in the middle of the write."""

    def mapper(explain_one, parts):
        for i, part in enumerate(parts):
            if i >= n:
                raise RuntimeError("injected fault during the write")
            yield explain_one(part)

    return mapper


def test_a_fault_mid_write_keeps_the_previous_rows(trained_env, tmp_path):
    settings = trained_env.copy(tmp_path)
    frame, report = _score_parts(settings, trained_env)
    before = snapshot(settings)
    with pytest.raises(RuntimeError, match="injected fault"):
        _write_failing_after(settings, trained_env, frame, report, 1)
    assert_same_tables(before, snapshot(settings))
    # a later chunk fails: earlier chunks were already written inside the transaction
    with pytest.raises(RuntimeError, match="injected fault"):
        _write_failing_after(settings, trained_env, frame, report, 2)
    assert_same_tables(before, snapshot(settings))


def test_a_fault_on_the_first_write_leaves_no_table(trained_env, tmp_path):
    settings = trained_env.copy(tmp_path)
    with Warehouse(settings.warehouse) as wh:
        for name in ("churn_scores_latest",):
            wh.drop(name, kind="VIEW")
        for name in ("churn_scores", "churn_risk_reasons"):
            wh.drop(name)
    frame, report = _score_parts(settings, trained_env)
    before = snapshot(settings)
    with pytest.raises(RuntimeError, match="injected fault"):
        _write_failing_after(settings, trained_env, frame, report, 1)
    assert_same_tables(before, snapshot(settings))


def test_chunked_write_equals_a_single_chunk(trained_env, tmp_path):
    settings = trained_env.copy(tmp_path)
    frame, report = _score_parts(settings, trained_env)
    before = snapshot(settings)
    outcome = steps.write_scores(settings, END, trained_env.version, trained_env.model, frame, report, chunk_rows=100)
    after = snapshot(settings)
    for table in ("churn_scores", "churn_risk_reasons"):
        drop = ["scored_at"] if table == "churn_scores" else []
        pd.testing.assert_frame_equal(after[table].drop(columns=drop), before[table].drop(columns=drop))
    assert outcome.accounts == len(frame)
    assert list(outcome.top["risk_rank"]) == list(range(1, 11))


def test_no_champion_says_to_run_churn_train(trained_env, tmp_path):
    settings = trained_env.copy(tmp_path, model_name="churn-never-trained")
    before = snapshot(settings)
    with pytest.raises(NoChampionError, match="churn train"):
        steps.score_accounts(settings, END)
    assert_same_tables(before, snapshot(settings))


@pytest.mark.parametrize(("table", "family"), [("support_tickets", "support"), ("nps_responses", "sentiment")])
def test_inputs_the_champion_cannot_use_write_nothing(trained_env, tmp_path, table, family):
    settings = trained_env.copy(tmp_path)
    needed = [f for f in trained_env.model.features if catalog.get(f).family == family]
    assert needed, f"the champion uses no {family} feature"
    with Warehouse(settings.warehouse) as wh:
        wh.drop(table)
    before = snapshot(settings)
    with pytest.raises(SchemaMismatchError) as err:
        steps.score_accounts(settings, END)
    for name in needed:
        assert name in str(err.value)
    assert_same_tables(before, snapshot(settings))


# -- DuckDB and PostgreSQL give the same scores ------------------------------------------
@pytest.mark.postgres
def test_postgres_scores_equal_duckdb_scores(trained_env, pg_wh, tmp_path):
    """The generated inputs copied into a fresh PostgreSQL schema and scored with
    the same champion give the rows the DuckDB run wrote."""
    schema = pg_wh.scalar("SELECT current_schema()")
    with Warehouse(trained_env.settings.warehouse) as duck:
        for table in ("accounts", "subscriptions", "usage_events", "support_tickets", "nps_responses"):
            pg_wh.write_table(table, duck.read_table(table))
    base = os.environ["CHURN_TEST_POSTGRES_URL"]
    options = quote(f"-csearch_path={schema} -cjit=off")
    url = f"{base}{'&' if '?' in base else '?'}options={options}"
    settings = settings_for(tmp_path, warehouse_url=url, mlflow_tracking_uri=trained_env.settings.tracking_uri)
    outcome = steps.score_accounts(settings, END)

    assert_same_scores(settings, trained_env.settings, END, outcome.accounts)
    # the write-back contract holds on PostgreSQL too: rescoring replaces, the view has one row per account
    steps.score_accounts(settings, END)
    assert (key_counts(settings, "churn_scores") == 1).all()
    assert (key_counts(settings, "churn_risk_reasons") == 1).all()
    latest = read(settings, "SELECT account_id FROM churn_scores_latest")
    assert latest["account_id"].is_unique and len(latest) == outcome.accounts
