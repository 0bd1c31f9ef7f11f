"""Score accounts and explain every one: the rows of ``churn_scores``,
``churn_risk_reasons`` and ``churn_topic_contributions`` (see
docs/data-contract.md), chunk by chunk so memory stays bounded however many
accounts there are.

Each account gets its calibrated probability and tier, its reasons with the
playbook's next step (:mod:`models.explain`, :mod:`models.playbook`), its
health by area and context (:mod:`models.health`), and what changed since
its previous score (:mod:`models.changes`). All of it comes from one set of
exact TreeSHAP values per partition.

Pure: frames in (model, features, previous scores), frames out. Reading the
previous scores and writing the results is :mod:`pipeline.outputs`' job."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from models import health
from models.changes import Previous, change_reasons
from models.drift import drift_report
from models.explain import INCREASES, Topics, explain, join_by_row, render_topics
from models.playbook import ACCOUNT_REVIEW, default_playbook
from models.train import ChurnModel

log = logging.getLogger(__name__)

SCORE_COLUMNS = [
    "account_id",
    "as_of_date",
    "churn_probability",
    "churn_probability_change",
    "risk_tier",
    "risk_rank",
    "mrr",
    "arr_at_risk",
    "renewal_date",
    "days_to_renewal",
    "top_reasons",
    "model_name",
    "model_version",
    "scored_at",
    "account_name",
    "segment",
    "csm_owner",
    "lifecycle_stage",
    health.BASE_COLUMN,
    *health.AREA_COLUMNS,
    *health.STATUS_COLUMNS,
    "context",
    "change_reasons",
    "next_action",
]
REASON_COLUMNS = [
    "account_id",
    "as_of_date",
    "model_name",
    "model_version",
    "rank",
    "feature",
    "feature_group",
    "feature_value",
    "contribution",
    "direction",
    "reason",
    "topic",
    "suggested_action",
]
TOPIC_COLUMNS = [
    "account_id",
    "as_of_date",
    "model_name",
    "model_version",
    "topic",
    "area",
    "contribution",
    "measure_value",
    "measure_contribution",
]


@dataclass(frozen=True)
class ScoringSpec:
    model_name: str
    model_version: str
    high: float = 0.5  # probability >= high -> "high"
    medium: float = 0.2  # probability >= medium -> "medium", else "low"
    n_risk: int = 3
    n_protective: int = 1
    chunk_rows: int = 50_000
    #: topic -> suggested action (:func:`models.playbook.build_playbook`); None = the defaults
    playbook: Mapping[str, str] | None = None
    areas: health.AreaThresholds = field(default_factory=health.AreaThresholds)
    n_changes: int = 2  # topics told in change_reasons

    def actions(self) -> Mapping[str, str]:
        return default_playbook() if self.playbook is None else self.playbook


@dataclass(frozen=True)
class Explained:
    """One partition's explanations (``row`` is relative to the partition)."""

    reasons: pd.DataFrame  # ranked reasons with their suggested actions
    topics: pd.DataFrame  # row x topic: exact sums and measure values
    per_row: pd.DataFrame  # risk_base, risk_<area>, context, change_reasons: one row per account


def risk_tier(prob: np.ndarray, high: float, medium: float) -> np.ndarray:
    return np.where(prob >= high, "high", np.where(prob >= medium, "medium", "low"))


def explain_partition(
    model: ChurnModel, chunk: pd.DataFrame, spec: ScoringSpec, previous: Previous | None = None
) -> Explained:
    """The heavy part of scoring, independent per partition: SHAP
    contributions, then the reasons, health by area, context and what changed
    since ``previous``, all from them."""
    contributions = model.contributions(chunk)
    features = model.features
    values = contributions[features].to_numpy()
    event_types = getattr(model, "event_types", None)
    reasons = explain(
        contributions, chunk, features, spec.n_risk, spec.n_protective, event_types=event_types, playbook=spec.actions()
    )
    per_row = health.area_sums(values, features, contributions["base_value"].to_numpy())
    per_row["context"] = health.context_text(values, features, chunk, event_types)
    topics = health.topic_frame(values, features, chunk)
    names = Topics.for_features(features).names
    k = len(names)
    raw = contributions.sum(axis=1).to_numpy()
    probability = model.calibrator(1.0 / (1.0 + np.exp(-raw)))  # = predict_proba, from the same values

    def describe(rows, topic_names, increasing):
        return render_topics(values, features, chunk, rows, topic_names, increasing, event_types)

    per_row["change_reasons"] = change_reasons(
        chunk["account_id"].astype("string").to_numpy(),
        probability,
        names,
        topics["contribution"].to_numpy(dtype=float).reshape(-1, k) if k else np.zeros((len(chunk), 0)),
        topics["measure_value"].to_numpy(dtype=object).reshape(-1, k) if k else np.zeros((len(chunk), 0), object),
        topics["measure_contribution"].to_numpy(dtype=float).reshape(-1, k) if k else np.zeros((len(chunk), 0)),
        spec.model_version,
        previous,
        describe,
        spec.n_changes,
    )
    return Explained(reasons, topics, per_row)


def partitions(features: pd.DataFrame, rows: int) -> list[pd.DataFrame]:
    return [features.iloc[start : start + rows] for start in range(0, len(features), rows)]


Mapper = Callable[[Callable[..., pd.DataFrame], list[pd.DataFrame]], Iterable[pd.DataFrame]]


class SchemaMismatchError(ValueError):
    """The current data cannot produce features the model needs."""


def check_features(model: ChurnModel, features: pd.DataFrame, version: str) -> None:
    """Raise SchemaMismatchError unless ``features`` holds every column the model needs."""
    missing = [f for f in model.features if f not in features.columns]
    if missing:
        raise SchemaMismatchError(
            f"The data cannot produce {len(missing)} feature(s) the champion v{version} needs: "
            f"{', '.join(missing)}. Restore the input (see the validation report) or retrain."
        )


def drift(
    model: ChurnModel, features: pd.DataFrame, version: str, probability: np.ndarray | None = None
) -> pd.DataFrame:
    """PSI of the features and the score against the model's training profile
    (an empty profile, from an older model, checks nothing). ``probability``:
    ``model.predict_proba(features)`` when the caller already has it."""
    reference = getattr(model, "reference", None) or {}
    if not reference:
        log.warning("Champion v%s has no training profile: drift is not checked (retrain to enable)", version)
    prob = model.predict_proba(features) if probability is None else probability
    return drift_report(reference, model.matrix(features), prob)


def score(
    model: ChurnModel,
    features: pd.DataFrame,
    spec: ScoringSpec,
    scored_at: dt.datetime,
    previous: Previous | None = None,
    mapper: Mapper | None = None,
    probability: np.ndarray | None = None,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """Yield (scores, reasons, topics) chunks for every row of ``features``.

    The BI columns account_name, segment, csm_owner and lifecycle_stage come
    from ``features`` (the validated account rows the features were built
    from); ``previous`` holds each account's latest earlier score by the
    model and its topic contributions, for the probability change and
    change_reasons. ``mapper(fn, parts)``
    runs :func:`explain_partition` over the partitions, e.g. on a Dask
    cluster; by default partitions are explained lazily one by one, so memory
    stays bounded by the partition size. ``probability``: ``model.predict_proba(features)``
    when the caller already has it (the drift check needs it too)."""
    prob = model.predict_proba(features) if probability is None else np.asarray(probability, dtype=float)
    order = np.argsort(-prob, kind="stable")
    rank = np.empty(len(prob), dtype=np.int64)
    rank[order] = np.arange(1, len(prob) + 1)
    base = _base_scores(features, prob, rank, spec, scored_at, previous)
    parts = partitions(features, spec.chunk_rows)
    explain_one = partial(explain_partition, model, spec=spec, previous=previous)
    explained = mapper(explain_one, parts) if mapper else map(explain_one, parts)
    start = 0
    for chunk, result in zip(parts, explained):
        scores = base.iloc[start : start + len(chunk)].copy()
        start += len(chunk)
        reasons = result.reasons
        risk = reasons[reasons["direction"] == INCREASES]
        top = join_by_row(risk["row"].to_numpy(), risk["reason"].to_numpy(dtype=object), len(chunk))
        scores["top_reasons"] = pd.array(top, dtype="string")
        first = risk[risk["rank"] == 1].set_index("row")["suggested_action"]
        scores["next_action"] = _next_action(_per_row(first, len(chunk)), scores["risk_tier"], spec)
        for column in result.per_row.columns:
            scores[column] = result.per_row[column].to_numpy()
        scores = pd.concat([scores, health.statuses(result.per_row, spec.areas).set_index(scores.index)], axis=1)
        for column in ("context", "change_reasons"):
            scores[column] = pd.array(scores[column], dtype="string")
        yield scores[SCORE_COLUMNS], _reason_rows(reasons, chunk, spec), _topic_rows(result.topics, chunk, spec)


def _per_row(values: pd.Series, n: int) -> pd.arrays.StringArray:
    """A per-row text from values indexed by partition row (missing rows: NA)."""
    out = pd.Series(pd.NA, index=range(n), dtype="string")
    out.loc[values.index] = values.to_numpy()
    return out.array


def _next_action(first: pd.arrays.StringArray, tier: pd.Series, spec: ScoringSpec) -> pd.arrays.StringArray:
    """For a medium or high risk account: the strongest risk reason's action,
    or the account review when no driver raises its risk. A low-risk account
    needs no step (its reasons still carry their suggested actions)."""
    out = pd.Series(first, dtype="string")
    at_risk = tier.to_numpy(dtype=object) != "low"
    out[at_risk & out.isna().to_numpy()] = spec.actions()[ACCOUNT_REVIEW]
    out[~at_risk] = pd.NA
    return out.array


def collect(
    chunks: Iterable[tuple[pd.DataFrame, ...]],
) -> tuple[pd.DataFrame, ...]:
    """The chunks of :func:`score` as one (scores, reasons, topics) triple (in memory)."""
    parts = list(chunks)
    return tuple(pd.concat([p[i] for p in parts], ignore_index=True) for i in range(len(parts[0])))


#: columns copied from the validated account rows for BI tools
ACCOUNT_COLUMNS = ("account_name", "segment", "csm_owner", "lifecycle_stage")


def _base_scores(features, prob, rank, spec, scored_at, previous) -> pd.DataFrame:
    mrr = features["mrr"].to_numpy(dtype=float) if "mrr" in features else np.full(len(features), np.nan)
    out = pd.DataFrame(
        {
            "account_id": features["account_id"].astype("string").to_numpy(),
            "as_of_date": pd.to_datetime(features["as_of_date"]).to_numpy(),
            "churn_probability": prob,
            "risk_tier": risk_tier(prob, spec.high, spec.medium),
            "risk_rank": rank,
            "mrr": mrr,
            "arr_at_risk": prob * 12 * np.nan_to_num(mrr),
            "renewal_date": pd.to_datetime(
                features.get("renewal_date", pd.Series(pd.NaT, index=features.index))
            ).to_numpy(),
            "days_to_renewal": features["days_to_renewal"].to_numpy(dtype=float)
            if "days_to_renewal" in features
            else np.nan,
            "model_name": spec.model_name,
            "model_version": str(spec.model_version),
            "scored_at": pd.Timestamp(scored_at),
        }
    )
    for col in ACCOUNT_COLUMNS:
        out[col] = features[col].to_numpy() if col in features else pd.NA
    if previous is not None and len(previous.scores):
        prev = previous.scores["churn_probability"]
        out["churn_probability_change"] = out["churn_probability"] - out["account_id"].map(prev).astype(float)
    else:
        out["churn_probability_change"] = np.nan
    for col in ("risk_tier", "model_name", "model_version", *ACCOUNT_COLUMNS):
        out[col] = out[col].astype("string")
    return out


def _reason_rows(reasons: pd.DataFrame, chunk: pd.DataFrame, spec: ScoringSpec) -> pd.DataFrame:
    rows = reasons["row"].to_numpy()
    out = pd.DataFrame(
        {
            "account_id": chunk["account_id"].astype("string").to_numpy()[rows],
            "as_of_date": pd.to_datetime(chunk["as_of_date"]).to_numpy()[rows],
            "model_name": spec.model_name,
            "model_version": str(spec.model_version),
            "rank": reasons["rank"].to_numpy(dtype=np.int64),
            "feature": reasons["feature"].astype("string").to_numpy(),
            "feature_group": reasons["feature_group"].astype("string").to_numpy(),
            "feature_value": pd.array(reasons["feature_value"], dtype="string"),
            "contribution": reasons["contribution"].to_numpy(dtype=float),
            "direction": reasons["direction"].astype("string").to_numpy(),
            "reason": reasons["reason"].astype("string").to_numpy(),
            "topic": reasons["topic"].astype("string").to_numpy(),
            "suggested_action": pd.array(reasons["suggested_action"], dtype="string"),
        }
    )
    for col in ("model_name", "model_version"):
        out[col] = out[col].astype("string")
    return out[REASON_COLUMNS]


def _topic_rows(topics: pd.DataFrame, chunk: pd.DataFrame, spec: ScoringSpec) -> pd.DataFrame:
    rows = topics["row"].to_numpy(dtype=np.int64)
    out = pd.DataFrame(
        {
            "account_id": chunk["account_id"].astype("string").to_numpy()[rows],
            "as_of_date": pd.to_datetime(chunk["as_of_date"]).to_numpy()[rows],
            "model_name": spec.model_name,
            "model_version": str(spec.model_version),
            "topic": pd.array(topics["topic"], dtype="string"),
            "area": pd.array(topics["area"], dtype="string"),
            "contribution": topics["contribution"].to_numpy(dtype=float),
            "measure_value": pd.array(topics["measure_value"], dtype="string"),
            "measure_contribution": topics["measure_contribution"].to_numpy(dtype=float),
        }
    )
    for col in ("model_name", "model_version"):
        out[col] = out[col].astype("string")
    return out[TOPIC_COLUMNS]
