"""Plain-language reasons from SHAP contributions, for every account.

Contributions are LightGBM's exact TreeSHAP values in log-odds. Features that
tell the same story are summed into a *reason topic* (see
``Feature.topic``, declared in ``features/families/``); SHAP values add up, so each topic's sum is exact.
For each account the strongest risk-increasing topics become its reasons and
the strongest risk-decreasing topic its protective factor. Each reason is
rendered from the catalog template of the topic's most influential feature,
with the account's own values: never a raw feature name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import catalog
from features.build import EVENT_TYPES_ATTR

INCREASES, DECREASES = "increases_risk", "decreases_risk"


@dataclass(frozen=True)
class Topics:
    """Indicator structure mapping model features to reason topics."""

    names: list[str]
    members: list[np.ndarray]  # feature column indices per topic

    @classmethod
    def for_features(cls, features: list[str]) -> Topics:
        by_topic: dict[str, list[int]] = {}
        for i, name in enumerate(features):
            by_topic.setdefault(catalog.get(name).topic, []).append(i)
        return cls(list(by_topic), [np.asarray(v) for v in by_topic.values()])

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
    factor(s) rank after the risk reasons. Only topics that push the right way
    by at least ``min_contribution`` log-odds are used (a healthy account may
    have fewer risk reasons)."""
    topics = Topics.for_features(features)
    sums = topics.sums(values)
    n, k = sums.shape
    parts = []
    order = np.argsort(-sums, axis=1, kind="stable")
    rank_offset = np.zeros(n, dtype=int)
    for j in range(min(n_risk, k)):
        t = order[:, j]
        contrib = sums[np.arange(n), t]
        keep = contrib >= min_contribution
        rows = np.flatnonzero(keep)
        rank_offset[rows] += 1
        parts.append(_reason_rows(values, topics, rows, t[keep], contrib[keep], j + 1, True))
    asc = np.argsort(sums, axis=1, kind="stable")
    for j in range(min(n_protective, k)):
        t = asc[:, j]
        contrib = sums[np.arange(n), t]
        keep = contrib <= -min_contribution
        rows = np.flatnonzero(keep)
        rank = rank_offset[rows] + 1 + j
        parts.append(_reason_rows(values, topics, rows, t[keep], contrib[keep], rank, False))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
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
) -> pd.DataFrame:
    """Reasons for every row of ``frame`` (same index as ``contributions``):
    ``row, rank, feature, feature_group, feature_value, contribution,
    direction, reason``.

    ``event_types`` maps each per-event-type column to the original event
    type, so reasons name it as the data does ('登录', not a column slug): pass
    the model's (``ChurnModel.event_types``). Without it the frame's
    ``attrs['event_types']`` is used when present (slices and copies of a
    frame may not keep attrs: pass the mapping)."""
    if event_types is None:
        event_types = frame.attrs.get(EVENT_TYPES_ATTR) or {}
    values = contributions[features].to_numpy()
    chosen = select_reasons(values, features, n_risk, n_protective)
    records = frame.to_dict("records")
    names = np.asarray(features, dtype=object)[chosen["feature_index"].to_numpy()]
    chosen["feature"] = names
    chosen["feature_group"] = [catalog.get(f).group for f in names]
    chosen["feature_value"] = [_value_text(records[r].get(f)) for r, f in zip(chosen["row"], names)]
    chosen["reason"] = [catalog.render_reason(f, records[r], event_types) for r, f in zip(chosen["row"], names)]
    return chosen.drop(columns=["feature_index"])


def _value_text(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return str(value)
