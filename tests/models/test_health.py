"""Drivers vs context, health by area and the context text: hand-made
contributions with known answers (binary fractions, so sums are exact), a
property over random contributions, and the trained model's own values."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features import catalog
from features.families import FAMILIES
from models import health
from models.explain import DECREASES, INCREASES, select_reasons
from models.scoring import ScoringSpec, collect, score
from models.train import LABEL, TrainConfig, TrainingResult, fit_model, split_out_of_time

CONTEXT_FEATURES = {
    "segment",
    "industry",
    "region",
    "plan",
    "billing_term",
    "contract_term_months",
    "mrr",
    "seats",
    "tenure_days",
    "prior_renewals",
    "lifecycle_stage",
}


def test_the_context_features_are_exactly_who_the_account_is():
    assert {f.name for f in catalog.FEATURES if f.is_context} == CONTEXT_FEATURES
    drivers = {f.area for f in catalog.FEATURES if not f.is_context}
    assert drivers == set(catalog.DRIVER_AREAS)
    # a topic never mixes drivers and context: the area is the topic's
    for name, topic in catalog.TOPICS.items():
        areas = {f.area for f in catalog.FEATURES if f.topic == name}
        assert len(areas) == 1, name
        assert (areas == {catalog.CONTEXT}) == topic.context, name
    # the contract drivers: renewal timing, auto-renew, MRR and seat changes
    contract = {f.name for f in catalog.FEATURES if f.area == "contract"}
    assert contract == {"days_to_renewal", "is_auto_renew", "mrr_change_90d", "seats_change_90d"}


def test_per_event_type_features_are_usage_drivers():
    feature = catalog.get(catalog.event_type_feature_name("Report Created"), {})
    assert feature.area == "usage" and not feature.is_context


ALL = [f.name for f in catalog.FEATURES]


def test_no_context_feature_is_ever_a_reason_or_protective_factor():
    """Property: over random contributions where context often dominates,
    every reason comes from a driver topic."""
    rng = np.random.default_rng(0)
    context = np.array([catalog.get(f).is_context for f in ALL])
    values = rng.normal(0, 0.3, size=(2000, len(ALL)))
    values[:, context] *= rng.choice([1.0, 10.0], size=(2000, 1))  # half the rows: context is 10x stronger
    chosen = select_reasons(values, ALL, n_risk=3, n_protective=2)
    assert len(chosen) > 2000  # reasons were found
    picked = np.asarray(ALL)[chosen["feature_index"]]
    assert not any(catalog.get(f).is_context for f in picked)
    assert not any(catalog.topic(t).context for t in chosen["topic"])


def test_an_account_whose_risk_is_all_context_gets_no_reason():
    values = np.zeros((1, len(ALL)))
    values[0, ALL.index("industry")] = 2.0
    values[0, ALL.index("tenure_days")] = -1.5
    assert select_reasons(values, ALL).empty


FEATURES = ["events_30d", "tickets_30d", "nps_latest", "days_to_renewal", "industry", "prior_renewals"]
VALUES = np.array(
    [
        [0.5, 0.25, -0.125, 0.0625, 0.375, -0.25],
        [-0.5, 0.0, 0.0, -0.25, 0.0, 0.0],
    ]
)
BASE = np.array([-2.5, -2.5])


def test_area_sums_are_exact_and_add_up_with_the_base_value():
    sums = health.area_sums(VALUES, FEATURES, BASE)
    assert list(sums.columns) == ["risk_base", *health.AREA_COLUMNS]
    first = sums.iloc[0]
    assert first["risk_usage"] == 0.5
    assert first["risk_support"] == 0.25
    assert first["risk_sentiment"] == -0.125
    assert first["risk_contract"] == 0.0625
    assert first["risk_context"] == 0.375 - 0.25
    total = sums.sum(axis=1).to_numpy()
    np.testing.assert_array_equal(total, BASE + VALUES.sum(axis=1))


def test_an_area_without_features_in_the_model_is_missing_not_zero():
    sums = health.area_sums(VALUES[:, [0, 3]], ["events_30d", "days_to_renewal"], BASE)
    assert sums[["risk_support", "risk_sentiment", "risk_context"]].isna().all().all()
    assert sums["risk_usage"].notna().all()
    status = health.statuses(sums, health.AreaThresholds(0.1, 0.1))
    assert status["support_status"].isna().all() and status["sentiment_status"].isna().all()
    assert list(status["usage_status"]) == ["at risk", "healthy"]


def test_status_thresholds():
    sums = pd.DataFrame({c: [0.2, 0.1, 0.0999, -0.0999, -0.1, np.nan] for c in health.AREA_COLUMNS})
    status = health.statuses(sums, health.AreaThresholds(at_risk=0.1, healthy=0.1))
    assert list(status["usage_status"].fillna("missing")) == [
        "at risk",
        "at risk",
        "neutral",
        "neutral",
        "healthy",
        "missing",
    ]
    stricter = health.statuses(sums, health.AreaThresholds(at_risk=0.15, healthy=0.05))
    assert list(stricter["usage_status"])[:5] == ["at risk", "neutral", "neutral", "healthy", "healthy"]


def test_context_text_names_each_context_topic_with_its_direction():
    frame = pd.DataFrame(
        [
            {"industry": "Healthcare", "prior_renewals": 0, "events_30d": 10},
            {"industry": "Software", "prior_renewals": 3, "events_30d": 10},
        ]
    )
    texts = health.context_text(VALUES, FEATURES, frame)
    # strongest first: industry 0.375 up, then the first contract period 0.25 down
    assert (
        texts[0]
        == "Context: Healthcare industry raises risk; Still in its first contract period (never renewed) lowers risk"
    )
    assert texts[1] == "Context: no notable effect"
    assert health.context_text(VALUES[:, :1], FEATURES[:1], frame)[0] is None  # no context feature in the model


def test_topic_frame_holds_every_topic_with_its_exact_sum_and_measure():
    frame = pd.DataFrame([{"events_30d": 120.0, "tickets_30d": 2, "nps_latest": np.nan, "days_to_renewal": 45}] * 2)
    frame["industry"], frame["prior_renewals"] = "Retail", 1
    got = health.topic_frame(VALUES, FEATURES, frame)
    assert len(got) == 2 * 6
    first = got[got["row"] == 0].set_index("topic")
    assert first.loc["activity", "contribution"] == 0.5
    assert first.loc["activity", "measure_value"] == "120"
    assert first.loc["activity", "area"] == "usage"
    assert pd.isna(first.loc["nps", "measure_value"])  # missing stays missing
    assert pd.isna(first.loc["profile", "measure_value"])  # the profile topic has no measure
    assert first.loc["tenure", "area"] == "context"


# -- the trained model: area sums + base value = the raw log-odds ----------------------
def test_area_sums_and_base_value_add_up_to_the_raw_log_odds(trained: TrainingResult):
    frame = trained.split.test.head(600)
    spec = ScoringSpec("m", "1", chunk_rows=250)
    scores, _, topics = collect(score(trained.model, frame, spec, dt.datetime(2026, 1, 1)))
    raw = trained.model.booster.predict(trained.model.matrix(frame), raw_score=True)
    total = scores[["risk_base", *health.AREA_COLUMNS]].sum(axis=1).to_numpy()
    np.testing.assert_allclose(total, raw, rtol=0, atol=1e-6)
    # the stored topic contributions add up to the same areas
    by_area = topics.pivot_table(index="account_id", columns="area", values="contribution", aggfunc="sum")
    by_area = by_area.reindex(scores["account_id"])
    for area in catalog.AREAS:
        np.testing.assert_allclose(by_area[area].to_numpy(), scores[f"risk_{area}"].to_numpy(), atol=1e-9)
    assert scores["context"].str.startswith("Context: ").all()
    assert scores[health.STATUS_COLUMNS].notna().all().all()


@pytest.fixture(scope="module")
def without_optional(training_frame: pd.DataFrame):
    """A small model trained as if support tickets and NPS were absent (their
    families off: no column of theirs in the frame)."""
    dropped = [f.name for family in FAMILIES if family.name in ("support", "sentiment") for f in family.features]
    frame = training_frame.drop(columns=[c for c in dropped if c in training_frame])
    config = TrainConfig(n_estimators=40)
    split = split_out_of_time(frame, config, horizon_days=90)
    return fit_model(split, config), split.test.head(300)


def test_absent_optional_tables_give_null_areas(without_optional):
    model, frame = without_optional
    scores, reasons, topics = collect(score(model, frame, ScoringSpec("m", "1"), dt.datetime(2026, 1, 1)))
    for area in ("support", "sentiment"):
        assert scores[f"risk_{area}"].isna().all(), area
        assert scores[f"{area}_status"].isna().all(), area
    for area in ("usage", "contract", "context"):
        assert scores[f"risk_{area}"].notna().all(), area
    assert set(topics["area"]) == {"usage", "contract", "context"}
    assert set(reasons["direction"]) <= {INCREASES, DECREASES}
    assert LABEL not in model.features
