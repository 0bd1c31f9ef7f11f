"""The playbook: a default action for every driver topic, overrides from
churn.toml checked, the onboarding play, and actions on the reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import catalog
from models.explain import explain
from models.playbook import ACCOUNT_REVIEW, ONBOARDING, PlaybookError, actions, build_playbook, default_playbook
from pipeline.settings import SettingsError, load_settings


def test_every_driver_topic_has_a_default_action_and_no_context_topic_has_one():
    playbook = default_playbook()
    for name, topic in catalog.TOPICS.items():
        if topic.context:
            assert name not in playbook, name
        else:
            assert playbook[name].strip(), name
    assert playbook[ONBOARDING] and playbook[ACCOUNT_REVIEW]


def test_overrides_replace_the_default_of_their_topic_only():
    playbook = build_playbook({"nps": "Call the sponsor"})
    assert playbook["nps"] == "Call the sponsor"
    assert playbook["users"] == default_playbook()["users"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"adoptoin": "x"}, "unknown topic(s) ['adoptoin']"),
        ({"industry": "x"}, "unknown topic(s) ['industry']"),  # a feature, not a topic
        ({"profile": "x"}, "context topic(s) ['profile']"),
        ({"nps": "  "}, "empty action(s) for ['nps']"),
    ],
)
def test_bad_overrides_are_a_clear_error(overrides, message):
    with pytest.raises(PlaybookError) as caught:
        build_playbook(overrides)
    assert message in str(caught.value)
    assert "users" in str(caught.value)  # the valid names are listed


def test_churn_toml_playbook_is_validated(tmp_path):
    config = tmp_path / "churn.toml"
    config.write_text('[churn.playbook]\nusers = "Book a usage review"\nadoptoin = "Typo"\n')
    with pytest.raises(SettingsError, match=r"unknown topic\(s\) \['adoptoin'\]"):
        load_settings(config, env={})
    config.write_text('[churn.playbook]\nusers = "Book a usage review"\n')
    settings = load_settings(config, env={})
    assert settings.actions["users"] == "Book a usage review"
    assert settings.actions["nps"] == default_playbook()["nps"]


def test_usage_reasons_of_an_account_in_onboarding_get_the_onboarding_play():
    playbook = default_playbook()
    got = actions(
        np.array(["users", "users", "nps", "activity"]),
        np.array(["onboarding", "adoption", "onboarding", "onboarding"]),
        playbook,
    )
    assert list(got) == [playbook[ONBOARDING], playbook["users"], playbook["nps"], playbook[ONBOARDING]]


def test_risk_reasons_carry_the_action_and_protective_factors_none():
    features = ["active_users_30d", "open_tickets", "nps_latest"]
    contributions = pd.DataFrame([[0.5, 0.25, -0.5]], columns=features)
    frame = pd.DataFrame(
        [{"active_users_30d": 3.0, "open_tickets": 4.0, "nps_latest": 9.0, "lifecycle_stage": "adoption"}]
    )
    got = explain(contributions, frame, features, playbook=build_playbook({"ticket_backlog": "Escalate now"}))
    by_topic = got.set_index("topic")["suggested_action"]
    assert by_topic["users"] == default_playbook()["users"]
    assert by_topic["ticket_backlog"] == "Escalate now"
    assert pd.isna(by_topic["nps"])
