"""Scores and reasons written by a real run (generated data, trained champion),
checked against an independent recomputation from the model: probabilities,
tiers, ranks, ARR at risk, and every account's reasons against its SHAP topic
sums."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import catalog
from models.explain import MIN_CONTRIBUTION
from models.playbook import ACCOUNT_REVIEW, default_playbook
from pipeline import steps
from pipeline.warehouse import Warehouse
from tests.pipeline.churn_data import (
    END,
    RAW_NAME,
    Trained,
    check_reasons,
    mlflow_restored,
    read,
    topic_sums,
)
from tests.pipeline.churn_data import trained as build_trained


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Trained:
    return build_trained(tmp_path_factory)  # shared with tests/pipeline (built once per session)


@pytest.fixture(scope="module")
def scored(env: Trained):
    """(features, scores, reasons) of the scoring date, aligned by account."""
    features, _ = steps.feature_matrix(env.settings, END, dict(env.model.event_types))
    features = features.sort_values("account_id", kind="stable").reset_index(drop=True)
    scores = read(env.settings, f"SELECT * FROM churn_scores WHERE as_of_date = DATE '{END}' ORDER BY account_id")
    reasons = read(env.settings, f"SELECT * FROM churn_risk_reasons WHERE as_of_date = DATE '{END}'")
    assert list(scores["account_id"]) == list(features["account_id"].astype(str))
    return features, scores, reasons


def test_contributions_add_up_to_the_raw_margin(env, scored):
    features, _, _ = scored
    model = env.model
    contrib = model.contributions(features)
    margin = model.booster.predict(model.matrix(features), raw_score=True)
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy(), margin, rtol=0, atol=1e-9)
    # the base value is the same for everyone; the uncalibrated probability is the sigmoid of the margin
    assert contrib["base_value"].nunique() == 1
    np.testing.assert_allclose(model.predict_raw(features), 1 / (1 + np.exp(-margin)), rtol=1e-12)


def test_probability_tier_rank_and_arr_at_risk(env, scored):
    features, scores, _ = scored
    p = env.model.predict_proba(features)
    np.testing.assert_allclose(scores["churn_probability"].to_numpy(), p, rtol=0, atol=1e-12)
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(
        scores["arr_at_risk"].to_numpy(), p * 12 * features["mrr"].fillna(0).to_numpy(), rtol=1e-12, atol=1e-9
    )
    np.testing.assert_allclose(scores["mrr"].to_numpy(), features["mrr"].to_numpy(float))
    tiers = env.settings.tiers
    expected = np.where(p >= tiers.high, "high", np.where(p >= tiers.medium, "medium", "low"))
    assert list(scores["risk_tier"]) == list(expected)
    assert set(scores["risk_tier"]) <= {"high", "medium", "low"}
    ranks = scores["risk_rank"].to_numpy()
    assert sorted(ranks) == list(range(1, len(scores) + 1))
    assert scores.loc[ranks == 1, "churn_probability"].iloc[0] == p.max()
    by_rank = scores.sort_values("risk_rank")["churn_probability"].to_numpy()
    assert (np.diff(by_rank) <= 0).all()  # rank 1 = riskiest, never a riskier account ranked lower
    assert (scores["model_name"] == env.settings.model_name).all()
    assert (scores["model_version"] == env.version).all()


def test_reasons_are_the_accounts_shap_topics(env, scored):
    """Sign, rank, exact topic sum and representative feature of every stored
    reason, for every account scored on the date."""
    features, scores, reasons = scored
    assert check_reasons(env.model, features, reasons, scores) == len(scores)
    assert (reasons["model_version"] == env.version).all()
    groups = {catalog.get(f).group for f in reasons["feature"]}
    assert groups <= {"Product usage", "Support", "Contract", "Sentiment", "Account"}


def test_every_account_has_reasons_or_is_explicitly_low_risk(env, scored):
    features, scores, _ = scored
    _, sums = topic_sums(env.model, features)
    sums = sums[[t for t in sums.columns if not catalog.topic(t).context]]  # drivers only
    without = scores["top_reasons"].isna().to_numpy()
    assert without.mean() < 0.2, "most accounts should carry a reason"
    # no reason text: no driver topic pushes the risk up by MIN_CONTRIBUTION
    assert (sums[without].max(axis=1) < MIN_CONTRIBUTION).all()
    assert (sums[~without].max(axis=1) >= MIN_CONTRIBUTION).all()
    assert (scores.loc[~without, "top_reasons"].str.len() > 0).all()
    # ... and its next step is the account review unless it is low risk (no step at all)
    review = default_playbook()[ACCOUNT_REVIEW]
    quiet = scores[without]
    assert (quiet.loc[quiet["risk_tier"] != "low", "next_action"] == review).all()
    assert scores.loc[scores["risk_tier"] == "low", "next_action"].isna().all()
    at_risk = scores[~without & (scores["risk_tier"] != "low")]
    assert len(at_risk) and at_risk["next_action"].notna().all() and (at_risk["next_action"] != review).all()


def test_reason_texts_name_no_raw_feature(scored):
    _, scores, reasons = scored
    for text in pd.concat([reasons["reason"], scores["top_reasons"].dropna()]):
        assert not RAW_NAME.search(text), text
        assert " nan" not in text and "None" not in text and "{" not in text, text


@pytest.fixture(scope="module")
def sparse_accounts(env: Trained, tmp_path_factory):
    """A copy of the warehouse where three active accounts lost every usage row and
    three others every ticket and NPS answer, scored again."""
    settings = env.copy(tmp_path_factory.mktemp("sparse"))
    scores = read(settings, f"SELECT account_id FROM churn_scores WHERE as_of_date = DATE '{END}' ORDER BY risk_rank")
    ids = scores["account_id"].tolist()
    no_usage, no_support = ids[100:103], ids[300:303]
    with Warehouse(settings.warehouse) as wh:
        for table, accounts in (
            ("usage_events", no_usage),
            ("support_tickets", no_support),
            ("nps_responses", no_support),
        ):
            wh.execute(f"DELETE FROM {table} WHERE account_id IN ({', '.join(repr(a) for a in accounts)})")
    with mlflow_restored():
        steps.score_accounts(settings, END)
    features, _ = steps.feature_matrix(settings, END, dict(env.model.event_types))
    return settings, features, no_usage, no_support


def test_accounts_without_usage_or_tickets_are_scored_and_explained(env, sparse_accounts):
    settings, features, no_usage, no_support = sparse_accounts
    features = features.assign(account_id=features["account_id"].astype(str))
    chosen = features[features["account_id"].isin(no_usage + no_support)].reset_index(drop=True)
    assert sorted(chosen["account_id"]) == sorted(no_usage + no_support)
    empty = chosen.set_index("account_id")
    assert (empty.loc[no_usage, "events_90d"].fillna(0) == 0).all()
    assert (empty.loc[no_support, "tickets_90d"].fillna(0) == 0).all()
    ids = ", ".join(repr(a) for a in chosen["account_id"])
    scores = read(
        settings,
        f"SELECT * FROM churn_scores WHERE as_of_date = DATE '{END}' AND account_id IN ({ids}) ORDER BY account_id",
    )
    reasons = read(
        settings, f"SELECT * FROM churn_risk_reasons WHERE as_of_date = DATE '{END}' AND account_id IN ({ids})"
    )
    chosen = chosen.sort_values("account_id").reset_index(drop=True)
    assert list(scores["account_id"]) == list(chosen["account_id"])
    np.testing.assert_allclose(scores["churn_probability"], env.model.predict_proba(chosen), rtol=0, atol=1e-12)
    check_reasons(env.model, chosen, reasons, scores)
    assert reasons.groupby("account_id").size().reindex(chosen["account_id"]).notna().all()
    for text in reasons["reason"]:
        assert not RAW_NAME.search(text) and " nan" not in text, text
    # the whole run stayed consistent: still one row per active account
    total = read(
        settings,
        f"SELECT COUNT(*) AS n, COUNT(DISTINCT account_id) AS d FROM churn_scores WHERE as_of_date = DATE '{END}'",
    ).iloc[0]
    assert total["n"] == total["d"] == len(features)
