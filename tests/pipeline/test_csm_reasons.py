"""What a CSM reads, end to end on generated data scored on two dates a week
apart: a next action for every high-risk account, what changed for every
account whose risk moved, health by area that adds up, and per-topic
contributions kept for the next run; on DuckDB and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features import catalog
from models import health
from pipeline import steps
from tests.pipeline.churn_data import END, mlflow_restored, read, run_churn

WEEK_BEFORE = END - dt.timedelta(days=7)


@pytest.fixture(scope="module")
def two_dates(trained_env, tmp_path_factory):
    """The trained warehouse scored a week before END, then END again."""
    settings = trained_env.copy(tmp_path_factory.mktemp("csm"))
    with mlflow_restored():
        steps.score_accounts(settings, WEEK_BEFORE)
        steps.score_accounts(settings, END)
    scores = read(settings, f"SELECT * FROM churn_scores WHERE as_of_date = DATE '{END}'")
    before = read(settings, f"SELECT * FROM churn_scores WHERE as_of_date = DATE '{WEEK_BEFORE}'")
    return settings, scores, before


def test_every_high_risk_account_has_a_next_action(two_dates):
    _, scores, _ = two_dates
    high = scores[scores["risk_tier"] == "high"]
    assert len(high) > 0
    assert high["next_action"].notna().all()
    assert (high["next_action"].str.len() > 10).all()


def test_change_reasons_for_every_account_whose_risk_moved(two_dates):
    _, scores, before = two_dates
    both = scores.merge(before[["account_id", "churn_probability"]], on="account_id", suffixes=("", "_before"))
    moved = both[(both["churn_probability"] - both["churn_probability_before"]).abs() >= 0.05]
    assert len(moved) > 0
    assert moved["change_reasons"].notna().all()
    assert moved["change_reasons"].str.startswith(f"Since {WEEK_BEFORE.isoformat()} (risk ").all()
    assert (~moved["change_reasons"].str.endswith("no notable change")).all()
    # every account scored on both dates says something; a new account says nothing
    assert both["change_reasons"].notna().all()
    new = scores[~scores["account_id"].isin(before["account_id"])]
    assert new["change_reasons"].isna().all()


def test_change_reasons_name_the_topic_whose_contribution_moved_most(two_dates):
    settings, scores, _ = two_dates
    topics = read(
        settings,
        "SELECT account_id, as_of_date, topic, contribution, measure_value, measure_contribution "
        "FROM churn_topic_contributions "
        f"WHERE as_of_date IN (DATE '{WEEK_BEFORE}', DATE '{END}')",
    )
    topics["when"] = np.where(topics["as_of_date"].dt.date == END, "now", "before")
    values = ["contribution", "measure_value", "measure_contribution"]
    wide = topics.pivot(index=["account_id", "topic"], columns="when", values=values)
    signed = wide[("contribution", "now")] - wide[("contribution", "before")]
    # a context topic counts only when its measure changed
    context = wide.index.get_level_values("topic").map(lambda t: catalog.topic(t).context).to_numpy(bool)
    same = (wide[("measure_value", "now")].fillna("-") == wide[("measure_value", "before")].fillna("-")).to_numpy()
    delta = signed.abs()[~(context & same)].dropna()
    strongest = delta.groupby(level=0).idxmax().map(lambda key: key[1])
    changed = scores.set_index("account_id")["change_reasons"]
    checked = 0
    for account, topic in strongest.items():
        spec = catalog.topic(topic)
        old, new = (
            wide.loc[(account, topic), ("measure_value", "before")],
            wide.loc[(account, topic), ("measure_value", "now")],
        )
        if delta[(account, topic)] < 0.05 or not spec.measure or pd.isna(old) or pd.isna(new):
            continue
        own = (
            wide.loc[(account, topic), ("measure_contribution", "now")]
            - wide.loc[(account, topic), ("measure_contribution", "before")]
        )
        if not own * signed[(account, topic)] > 0:
            continue  # another feature of the topic moved the risk: told by today's reason
        unit = catalog.get(spec.measure).unit
        if unit == "category" or catalog.format_value(float(old), unit) == catalog.format_value(float(new), unit):
            continue
        first = changed[account].split(": ", 1)[1].split("; ")[0]
        # the topic that moved the risk most is told first, with its measure's two values
        direction = "up" if float(new) > float(old) else "down"
        expected = (
            f"{spec.label} {direction} from {catalog.format_value(float(old), unit)} "
            f"to {catalog.format_value(float(new), unit)} ("
        )
        assert first.startswith(expected), (account, topic, changed[account])
        checked += 1
    assert checked > 20


def test_areas_add_up_and_the_topics_are_kept_for_the_next_run(two_dates, trained_env):
    settings, scores, _ = two_dates
    model = trained_env.model
    frame, _ = steps.feature_matrix(settings, END, dict(model.event_types))
    raw = model.booster.predict(model.matrix(frame), raw_score=True)
    total = scores.set_index("account_id")[["risk_base", *health.AREA_COLUMNS]].sum(axis=1)
    got = total.reindex(frame["account_id"].astype(str)).to_numpy()
    np.testing.assert_allclose(got, raw, rtol=0, atol=1e-6)
    kept = read(settings, f"SELECT COUNT(*) AS n FROM churn_topic_contributions WHERE as_of_date = DATE '{END}'")
    topics = {catalog.get(f).topic for f in model.features}
    assert kept["n"].iloc[0] == len(scores) * len(topics)
    reasons = read(settings, f"SELECT * FROM churn_risk_reasons WHERE as_of_date = DATE '{END}'")
    assert not reasons["feature"].map(lambda f: catalog.get(f, model.event_types).is_context).any()
    risk = reasons[reasons["direction"] == "increases_risk"]
    assert risk["suggested_action"].notna().all()
    assert reasons.loc[reasons["direction"] == "decreases_risk", "suggested_action"].isna().all()


def test_the_cli_shows_owner_stage_scorecard_change_and_next_step(two_dates, prefect_api_url, tmp_path):
    """`churn score` (the real console script) prints, under each of the
    riskiest accounts, what a CSM needs to act."""
    settings, scores, _ = two_dates
    done = run_churn(settings, ["score", "--as-of", str(END), "--top", "3"], prefect_api_url, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    text = " ".join(done.stdout.split())  # the console may wrap long lines
    top = scores.sort_values("risk_rank").head(3)
    for row in top.itertuples():
        assert f"{row.account_id} " in text
        assert f"| {row.lifecycle_stage.replace('_', ' ')} | usage {row.usage_status}" in text
        assert f"Next: {' '.join(row.next_action.split())}" in text
        assert f"Changed: {' '.join(row.change_reasons.split())}" in text
        assert f"{' '.join(row.context.split())}" in text
