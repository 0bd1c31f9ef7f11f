"""Plain-language reasons from SHAP contributions, for every account.

Contributions are LightGBM's exact TreeSHAP values in log-odds. Features that
tell the same story are summed into a *reason topic* (see
``Feature.topic``, declared in ``features/families/``); SHAP values add up, so each topic's sum is exact.
For each account the strongest risk-increasing topics become its reasons and
the strongest risk-decreasing topic its protective factor. Only *driver*
topics (behaviour and renewal status: something the customer or the CSM can
change) become reasons; *context* topics (who the account is) are summed
into the score's context text instead (:mod:`models.health`). Each reason is
rendered from the catalog template of the topic's most influential feature,
with the account's own values: never a raw feature name. A risk reason
carries the playbook's suggested action (:mod:`models.playbook`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import catalog
from features.build import EVENT_TYPES_ATTR
from features.render import render_reasons
from models import playbook as plays

INCREASES, DECREASES = "increases_risk", "decreases_risk"


@dataclass(frozen=True)
class Topics:
    """Indicator structure mapping model features to reason topics."""

    names: list[str]
    members: list[np.ndarray]  # feature column indices per topic
    areas: list[str]  # the health area of each topic ("context" for context topics)

    @classmethod
    def for_features(cls, features: list[str]) -> Topics:
        by_topic: dict[str, list[int]] = {}
        areas: dict[str, str] = {}
        for i, name in enumerate(features):
            feature = catalog.get(name)
            by_topic.setdefault(feature.topic, []).append(i)
            areas[feature.topic] = feature.area
        return cls(list(by_topic), [np.asarray(v) for v in by_topic.values()], [areas[t] for t in by_topic])

    @property
    def context(self) -> np.ndarray:
        """True for the context topics (never a reason)."""
        return np.array([a == catalog.CONTEXT for a in self.areas], dtype=bool)

    def sums(self, values: np.ndarray) -> np.ndarray:
        """(n x topics) exact sums of contributions per topic."""
        return np.column_stack([values[:, idx].sum(axis=1) for idx in self.members])

    def representative(self, values: np.ndarray, rows: np.ndarray, topics: np.ndarray, increasing: bool) -> np.ndarray:
        """For each (row, topic) pair, the feature index inside the topic that
        pushes hardest in the given direction."""
        out = np.empty(len(rows), dtype=int)
        for k in np.unique(topics):
            sel = topics == k
            idx = self.members[k]
            block = values[np.ix_(rows[sel], idx)]
            pick = block.argmax(axis=1) if increasing else block.argmin(axis=1)
            out[sel] = idx[pick]
        return out


#: topics moving the log-odds less than this are not worth a CSM's attention
MIN_CONTRIBUTION = 0.02


def select_reasons(
    values: np.ndarray,
    features: list[str],
    n_risk: int = 3,
    n_protective: int = 1,
    min_contribution: float = MIN_CONTRIBUTION,
) -> pd.DataFrame:
    """Which reasons each row gets: long frame with ``row, rank, feature_index,
    contribution, direction``; rank 1 = strongest risk reason, the protective
    factor(s) rank after the risk reasons. Only driver topics that push the
    right way by at least ``min_contribution`` log-odds are used (a healthy
    account may have fewer risk reasons; context topics never count)."""
    topics = Topics.for_features(features)
    sums = topics.sums(values) if len(topics.names) else np.zeros((len(values), 0))
    n, k = sums.shape
    parts = []
    drivers = np.where(topics.context, -np.inf, sums)  # a context topic never ranks
    order = np.argsort(-drivers, axis=1, kind="stable")
    rank_offset = np.zeros(n, dtype=int)
    for j in range(min(n_risk, k)):
        t = order[:, j]
        contrib = drivers[np.arange(n), t]
        keep = contrib >= min_contribution
        rows = np.flatnonzero(keep)
        rank_offset[rows] += 1
        parts.append(_reason_rows(values, topics, rows, t[keep], contrib[keep], j + 1, True))
    drivers = np.where(topics.context, np.inf, sums)
    asc = np.argsort(drivers, axis=1, kind="stable")
    for j in range(min(n_protective, k)):
        t = asc[:, j]
        contrib = drivers[np.arange(n), t]
        keep = contrib <= -min_contribution
        rows = np.flatnonzero(keep)
        rank = rank_offset[rows] + 1 + j
        parts.append(_reason_rows(values, topics, rows, t[keep], contrib[keep], rank, False))
    out = pd.concat(parts, ignore_index=True) if parts else _reason_rows(values, topics, [], [], [], 1, True)
    return out.sort_values(["row", "rank"], kind="stable").reset_index(drop=True)


def _reason_rows(values, topics: Topics, rows, topic_idx, contrib, rank, increasing: bool) -> pd.DataFrame:
    feature_idx = topics.representative(values, rows, topic_idx, increasing) if len(rows) else np.empty(0, int)
    return pd.DataFrame(
        {
            "row": rows,
            "rank": rank if np.ndim(rank) else np.full(len(rows), rank),
            "feature_index": feature_idx,
            "topic": [topics.names[t] for t in topic_idx],
            "contribution": contrib,
            "direction": INCREASES if increasing else DECREASES,
        }
    )


def explain(
    contributions: pd.DataFrame,
    frame: pd.DataFrame,
    features: list[str],
    n_risk: int = 3,
    n_protective: int = 1,
    event_types: Mapping[str, str] | None = None,
    playbook: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Reasons for every row of ``frame`` (same index as ``contributions``):
    ``row, rank, topic, feature, feature_group, feature_value, contribution,
    direction, reason, suggested_action`` (the playbook's action for a risk
    reason, None for a protective factor; default: :func:`models.playbook.default_playbook`).

    ``event_types`` maps each per-event-type column to the original event
    type, so reasons name it as the data does ('登录', not a column slug): pass
    the model's (``ChurnModel.event_types``). Without it the frame's
    ``attrs['event_types']`` is used when present (slices and copies of a
    frame may not keep attrs: pass the mapping)."""
    if event_types is None:
        event_types = frame.attrs.get(EVENT_TYPES_ATTR) or {}
    values = contributions[features].to_numpy()
    chosen = select_reasons(values, features, n_risk, n_protective)
    rows = chosen["row"].to_numpy()
    names = np.asarray(features, dtype=object)[chosen["feature_index"].to_numpy()]
    chosen["feature"] = names
    groups = {f: catalog.get(f).group for f in set(names)}
    chosen["feature_group"] = [groups[f] for f in names]
    chosen["feature_value"] = _value_texts(names, rows, frame)
    chosen["reason"] = render_reasons(names, rows, frame, event_types)
    chosen["suggested_action"] = _actions(chosen, frame, playbook)
    return chosen.drop(columns=["feature_index"])


def _actions(chosen: pd.DataFrame, frame: pd.DataFrame, playbook: Mapping[str, str] | None) -> np.ndarray:
    """The playbook's action for each risk reason; None for protective factors."""
    playbook = plays.default_playbook() if playbook is None else playbook
    out = np.full(len(chosen), None, dtype=object)
    risk = (chosen["direction"] == INCREASES).to_numpy()
    stages = frame["lifecycle_stage"].to_numpy(dtype=object) if "lifecycle_stage" in frame else None
    rows = chosen["row"].to_numpy()[risk]
    out[risk] = plays.actions(chosen["topic"].to_numpy()[risk], None if stages is None else stages[rows], playbook)
    return out


def render_topics(
    values: np.ndarray,
    features: list[str],
    frame: pd.DataFrame,
    rows: np.ndarray,
    topic_names: list[str],
    increasing: np.ndarray,
    event_types: Mapping[str, str] | None = None,
) -> list[str]:
    """For each (row, topic, direction): the reason text of the topic's feature
    pushing hardest that way, with the row's values (e.g. for the context
    text and for what changed)."""
    topics = Topics.for_features(features)
    index = {name: i for i, name in enumerate(topics.names)}
    topic_idx = np.asarray([index[t] for t in topic_names], dtype=int)
    rows = np.asarray(rows, dtype=int)
    increasing = np.asarray(increasing, dtype=bool)
    picked = np.empty(len(rows), dtype=int)
    for up in (True, False):
        sel = increasing == up
        if sel.any():
            picked[sel] = topics.representative(values, rows[sel], topic_idx[sel], up)
    if event_types is None:
        event_types = frame.attrs.get(EVENT_TYPES_ATTR) or {}
    names = np.asarray(features, dtype=object)[picked]
    return render_reasons(names, rows, frame, event_types).tolist()


def join_by_row(rows: np.ndarray, texts: np.ndarray, n: int, sep: str = "; ") -> np.ndarray:
    """Each of ``n`` rows' texts joined with ``sep`` in their order (None for a
    row without any), one position at a time instead of one row at a time."""
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    rows, texts = rows[order], np.asarray(texts, dtype=object)[order]
    out = np.full(n, None, dtype=object)
    if not len(rows):
        return out
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    position = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
    for p in range(int(position.max()) + 1):
        at = position == p
        out[rows[at]] = texts[at] if p == 0 else out[rows[at]] + sep + texts[at]
    return out


def _value_texts(names: np.ndarray, rows: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
    """Each (feature, row)'s value as stored text, one column at a time."""
    out = np.full(len(rows), None, dtype=object)
    for name in pd.unique(names) if len(names) else []:
        if name in frame.columns:
            sel = np.flatnonzero(names == name)
            if frame[name].dtype == np.float64:  # each distinct value (by its bits) told once
                bits, inverse = np.unique(frame[name].to_numpy()[rows[sel]].view(np.int64), return_inverse=True)
                texts = np.empty(len(bits), dtype=object)
                texts[:] = [_value_text(v) for v in bits.view(np.float64).tolist()]
                out[sel] = texts[inverse.reshape(-1)]
            else:
                out[sel] = [_value_text(v) for v in frame[name].iloc[rows[sel]].tolist()]
    return out


def _value_text(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return str(value)
