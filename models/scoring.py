"""Score accounts and explain every one: the rows of ``churn_scores`` and
``churn_risk_reasons`` (see docs/data-contract.md), chunk by chunk so memory
stays bounded however many accounts there are.

Pure: frames in (model, features, previous scores), frames out. Reading the
previous scores and writing the results is :mod:`pipeline.outputs`' job."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from models.drift import drift_report
from models.explain import INCREASES, explain
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


def risk_tier(prob: np.ndarray, high: float, medium: float) -> np.ndarray:
    return np.where(prob >= high, "high", np.where(prob >= medium, "medium", "low"))


def explain_partition(model: ChurnModel, chunk: pd.DataFrame, spec: ScoringSpec) -> pd.DataFrame:
    """The heavy part of scoring, independent per partition: SHAP contributions
    and plain-language reasons (``row`` is relative to the partition)."""
    return explain(
        model.contributions(chunk),
        chunk,
        model.features,
        spec.n_risk,
        spec.n_protective,
        event_types=getattr(model, "event_types", None),
    )


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


def drift(model: ChurnModel, features: pd.DataFrame, version: str) -> pd.DataFrame:
    """PSI of the features and the score against the model's training profile
    (an empty profile, from an older model, checks nothing)."""
    reference = getattr(model, "reference", None) or {}
    if not reference:
        log.warning("Champion v%s has no training profile: drift is not checked (retrain to enable)", version)
    return drift_report(reference, model.matrix(features), model.predict_proba(features))


def score(
    model: ChurnModel,
    features: pd.DataFrame,
    spec: ScoringSpec,
    scored_at: dt.datetime,
    previous: pd.DataFrame | None = None,
    mapper: Mapper | None = None,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Yield (scores, reasons) chunks for every row of ``features``.

    The BI columns account_name, segment and csm_owner come from ``features``
    (the validated account rows the features were built from); ``previous``
    holds the last earlier probability per account_id (column
    ``churn_probability``) to compute the change. ``mapper(fn, parts)``
    runs :func:`explain_partition` over the partitions, e.g. on a Dask
    cluster; by default partitions are explained lazily one by one, so memory
    stays bounded by the partition size."""
    prob = model.predict_proba(features)
    order = np.argsort(-prob, kind="stable")
    rank = np.empty(len(prob), dtype=np.int64)
    rank[order] = np.arange(1, len(prob) + 1)
    base = _base_scores(features, prob, rank, spec, scored_at, previous)
    parts = partitions(features, spec.chunk_rows)
    explain_one = partial(explain_partition, model, spec=spec)
    explained = mapper(explain_one, parts) if mapper else map(explain_one, parts)
    start = 0
    for chunk, reasons in zip(parts, explained):
        scores = base.iloc[start : start + len(chunk)].copy()
        start += len(chunk)
        risk = reasons[reasons["direction"] == INCREASES]
        text = risk.groupby("row", sort=True)["reason"].agg("; ".join)
        top = pd.Series(pd.NA, index=range(len(chunk)), dtype="string")
        top.loc[text.index] = text.to_numpy()
        scores["top_reasons"] = top.to_numpy()
        yield scores[SCORE_COLUMNS], _reason_rows(reasons, chunk, spec)


def collect(chunks: Iterable[tuple[pd.DataFrame, pd.DataFrame]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The chunks of :func:`score` as one (scores, reasons) pair (in memory)."""
    parts = list(chunks)
    return (pd.concat([p[0] for p in parts], ignore_index=True), pd.concat([p[1] for p in parts], ignore_index=True))


#: columns copied from the validated account rows for BI tools
ACCOUNT_COLUMNS = ("account_name", "segment", "csm_owner")


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
    if previous is not None and len(previous):
        prev = previous.set_index(previous["account_id"].astype("string"))["churn_probability"]
        out["churn_probability_change"] = out["churn_probability"] - out["account_id"].map(prev).astype(float)
    else:
        out["churn_probability_change"] = np.nan
    for col in ("risk_tier", "model_name", "model_version", "account_name", "segment", "csm_owner"):
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
        }
    )
    for col in ("model_name", "model_version"):
        out[col] = out[col].astype("string")
    return out[REASON_COLUMNS]
