"""Health by area, the context text and the per-topic contributions a later
run compares with: all from the same exact TreeSHAP values as the reasons.

- ``risk_<area>``: the sum of the contributions (log-odds) of the features in
  each area (usage, support, sentiment, contract, context; see
  ``Feature.area``). With the model's base value (``risk_base``) they add up
  to the raw log-odds of the account. An area with no feature in the model
  (its family off: an optional table was absent when it was trained) is
  missing, not 0.
- ``<area>_status``: ``at risk`` / ``neutral`` / ``healthy`` by thresholds in
  log-odds (:class:`AreaThresholds`), for a BI scorecard.
- ``context``: who the account is, in words: every context topic that moves
  the risk by at least the reason threshold, strongest first ("Context: Still
  in its first contract period (never renewed) raises risk; Healthcare
  industry lowers risk").
- the topic frame: one row per account and topic, with the topic's exact sum
  and the value of its measure (``Topic.measure``), kept so that the next run
  can say what changed (:mod:`models.changes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import catalog
from models.explain import MIN_CONTRIBUTION, Topics, join_by_row, render_topics

AREAS = catalog.AREAS
AT_RISK, NEUTRAL, HEALTHY = "at risk", "neutral", "healthy"
BASE_COLUMN = "risk_base"


def area_column(area: str) -> str:
    return f"risk_{area}"


def status_column(area: str) -> str:
    return f"{area}_status"


AREA_COLUMNS = [area_column(a) for a in AREAS]
STATUS_COLUMNS = [status_column(a) for a in AREAS]


@dataclass(frozen=True)
class AreaThresholds:
    """An area is ``at risk`` when it adds at least ``at_risk`` log-odds to the
    account's risk, ``healthy`` when it takes off at least ``healthy``. The
    default 0.4 is about ln 1.5: the area alone raises (or lowers) the odds of
    churn by half or more. Any smaller and nearly every area of a risky
    account reads "at risk", which tells a CSM nothing."""

    at_risk: float = 0.4
    healthy: float = 0.4


def area_sums(values: np.ndarray, features: list[str], base: np.ndarray) -> pd.DataFrame:
    """``risk_base`` and one ``risk_<area>`` column per area: exact sums of
    the contributions (NaN for an area with no feature in the model)."""
    areas = np.array([catalog.get(f).area for f in features], dtype=object)
    out = {BASE_COLUMN: np.asarray(base, dtype=float)}
    for area in AREAS:
        cols = np.flatnonzero(areas == area)
        out[area_column(area)] = values[:, cols].sum(axis=1) if len(cols) else np.full(len(values), np.nan)
    return pd.DataFrame(out)


def statuses(sums: pd.DataFrame, thresholds: AreaThresholds) -> pd.DataFrame:
    """``<area>_status`` for each ``risk_<area>`` column (missing stays missing)."""
    out = {}
    for area in AREAS:
        value = sums[area_column(area)].to_numpy(dtype=float)
        text = np.where(value >= thresholds.at_risk, AT_RISK, np.where(value <= -thresholds.healthy, HEALTHY, NEUTRAL))
        out[status_column(area)] = pd.array(np.where(np.isnan(value), None, text), dtype="string")
    return pd.DataFrame(out)


def context_text(
    values: np.ndarray,
    features: list[str],
    frame: pd.DataFrame,
    event_types: Mapping[str, str] | None = None,
    min_contribution: float = MIN_CONTRIBUTION,
) -> np.ndarray:
    """One text per row: the context topics that move the risk, strongest
    first, each with its direction; "Context: no notable effect" when none
    does; None when the model has no context feature."""
    topics = Topics.for_features(features)
    context = np.flatnonzero(topics.context)
    out = np.full(len(values), None, dtype=object)
    if not len(context) or not len(values):
        return out
    sums = topics.sums(values)[:, context]
    order = np.argsort(-np.abs(sums), axis=1, kind="stable")
    rows, ranks = np.nonzero(np.abs(np.take_along_axis(sums, order, axis=1)) >= min_contribution)
    picked = order[rows, ranks]
    contrib = sums[rows, picked]
    texts = render_topics(
        values, features, frame, rows, [topics.names[context[p]] for p in picked], contrib > 0, event_types
    )
    clauses = np.asarray(texts, dtype=object) + np.where(contrib > 0, " raises risk", " lowers risk").astype(object)
    joined = join_by_row(rows, clauses, len(values))
    told = joined != None  # noqa: E711 - elementwise on an object array
    out[:] = "Context: no notable effect"
    out[told] = "Context: " + joined[told]
    return out


def scorecard(row: Mapping[str, object]) -> str:
    """The health areas of one scored account as a CSM scans them: "usage at
    risk, support neutral, ..." (areas the model does not have are left out)."""
    parts = [
        f"{area} {row.get(status_column(area))}" for area in AREAS if isinstance(row.get(status_column(area)), str)
    ]
    return ", ".join(parts) or "no area scores"


def topic_frame(values: np.ndarray, features: list[str], frame: pd.DataFrame) -> pd.DataFrame:
    """Long frame, one row per (row, topic of the model): ``row, topic, area,
    contribution`` (the exact sum), ``measure_value`` (the topic's measure
    in the row, as text; None when the topic has none or it is missing) and
    ``measure_contribution`` (the measure feature's own contribution; NaN
    when the model does not use it)."""
    topics = Topics.for_features(features)
    n, k = len(values), len(topics.names)
    if not n or not k:
        columns = ["row", "topic", "area", "contribution", "measure_value", "measure_contribution"]
        return pd.DataFrame({c: [] for c in columns})
    sums = topics.sums(values)
    measures, own = [], []
    for name in topics.names:
        measure = catalog.topic(name).measure
        measures.append(_as_text(frame[measure]) if measure and measure in frame else np.full(n, None, object))
        own.append(values[:, features.index(measure)] if measure in features else np.full(n, np.nan))
    # text columns stay object (not inferred as str): the writer converts them once
    return pd.DataFrame(
        {
            "row": np.repeat(np.arange(n), k),
            "topic": pd.Series(np.tile(np.asarray(topics.names, dtype=object), n), dtype=object),
            "area": pd.Series(np.tile(np.asarray(topics.areas, dtype=object), n), dtype=object),
            "contribution": sums.reshape(-1),
            "measure_value": pd.Series(np.column_stack(measures).reshape(-1), dtype=object),
            "measure_contribution": np.column_stack(own).reshape(-1),
        }
    )


def _as_text(column: pd.Series) -> np.ndarray:
    """Values as stored text: numbers with 10 significant digits, None for missing."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        numbers = column.to_numpy(dtype=float, na_value=np.nan)
        bits, inverse = np.unique(numbers.view(np.int64), return_inverse=True)  # each distinct value once
        texts = np.char.mod("%.10g", bits.view(np.float64)).astype(object)[inverse.reshape(-1)]
        return np.where(np.isnan(numbers), None, texts).astype(object)
    values = column.to_numpy(dtype=object)
    missing = pd.isna(values)
    return np.where(missing, None, values.astype(str)).astype(object)
