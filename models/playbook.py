"""The playbook: the next step a CSM takes when a driver topic is an
account's risk reason.

Every driver topic declares a default action in its family
(``Topic.action``, listed in docs/features.md); ``[churn.playbook]`` in
churn.toml overrides any of them by topic name. Two plays are not tied to
one topic:

- ``onboarding``: a usage reason of an account still in its onboarding
  stage (``lifecycle_stage``) gets an onboarding check-in instead of a
  usage review;
- ``account_review``: a medium- or high-risk account with no driver reason
  (its risk comes from who it is, not from what it does) gets a review.

Unknown names are an error, as are context topics (who the account is:
nothing to act on) and empty texts.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from features import catalog
from features.families import FAMILIES

ONBOARDING = "onboarding"
ACCOUNT_REVIEW = "account_review"
PLAYS: Mapping[str, str] = {
    ONBOARDING: "Onboarding check-in: confirm the setup is finished and agree the first value milestone",
    ACCOUNT_REVIEW: "Account review with the CS lead: the risk comes from who the account is (see its context), "
    "not from a change in behaviour",
}
#: the usage area: the reasons the onboarding play replaces for accounts in onboarding
ONBOARDING_AREA = "usage"
ONBOARDING_STAGE = "onboarding"


class PlaybookError(ValueError):
    """The playbook names a topic that does not exist, a context topic, or an empty action."""


def default_playbook() -> dict[str, str]:
    """Every driver topic's declared action, plus the two plays."""
    actions = {t.name: t.action for t in catalog.TOPICS.values() if not t.context}
    return {**actions, **PLAYS}


def build_playbook(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The default playbook with ``overrides`` (topic -> action) applied,
    checked: PlaybookError names every bad entry and the valid names."""
    playbook = default_playbook()
    overrides = dict(overrides or {})
    context = sorted(k for k in overrides if k in catalog.TOPICS and catalog.TOPICS[k].context)
    unknown = sorted(k for k in overrides if k not in playbook and k not in context)
    empty = sorted(k for k, v in overrides.items() if not isinstance(v, str) or not v.strip())
    problems = []
    if unknown:
        problems.append(f"unknown topic(s) {unknown}")
    if context:
        problems.append(f"context topic(s) {context} (who the account is: nothing to act on)")
    if empty:
        problems.append(f"empty action(s) for {empty}")
    if problems:
        raise PlaybookError(
            f"[churn.playbook] has {'; '.join(problems)}. The playbook's names are: {', '.join(sorted(playbook))}"
        )
    playbook.update({k: v.strip() for k, v in overrides.items()})
    return playbook


def actions(topics: np.ndarray, stages: np.ndarray | None, playbook: Mapping[str, str]) -> np.ndarray:
    """The suggested action for each (driver topic, account's lifecycle stage)
    pair: the topic's play, or the onboarding play for a usage topic of an
    account in onboarding."""
    topics = np.asarray(topics, dtype=object)
    out = np.array([playbook[t] for t in topics], dtype=object)
    if stages is not None and len(topics):
        usage = np.array([t in _USAGE_TOPICS for t in topics])
        onboarding = usage & (np.asarray(stages, dtype=object) == ONBOARDING_STAGE)
        out[onboarding] = playbook[ONBOARDING]
    return out


_USAGE_TOPICS = frozenset(
    t.name for family in FAMILIES if family.area == ONBOARDING_AREA for t in family.topics if not t.context
)
