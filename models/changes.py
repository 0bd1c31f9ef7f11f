"""What changed since an account's previous score, in plain words.

For an account scored earlier by the same model version, the difference of
each topic's contribution between the two dates is exact (both are sums of
TreeSHAP values of one model), so the topics that moved the risk most are
known. Each is told with its measure's two values ("active users in the last
30 days down from 28 to 9 (raises risk)") when the measure is what moved the
risk (its own contribution moved the same way); otherwise (another feature
of the topic did it) it is told by today's reason for the topic. Scores by
another model version are not compared: their contributions are on another
scale, and the text says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features import catalog
from models.explain import MIN_CONTRIBUTION, join_by_row

#: (rows, topics, increasing) -> today's reason text of each topic in that direction
Describe = Callable[[np.ndarray, list[str], np.ndarray], list[str]]


@dataclass
class Previous:
    """Each account's latest earlier score by the model: ``scores`` (account_id,
    as_of_date, model_version, churn_probability) and ``topics`` (account_id,
    topic, contribution, measure_value, measure_contribution) of that date."""

    scores: pd.DataFrame
    topics: pd.DataFrame | pa.Table = field(
        default_factory=lambda: pd.DataFrame(
            columns=["account_id", "topic", "contribution", "measure_value", "measure_contribution"]
        )
    )

    def __post_init__(self) -> None:
        self.scores = self.scores.set_index(self.scores["account_id"].astype("string"))
        self.contribution, self.measure, self.measure_contribution = _pivots(self.topics)


_TOPIC_VALUES = (("contribution", float), ("measure_value", object), ("measure_contribution", float))


def _pivots(topics: pd.DataFrame | pa.Table) -> list[pd.DataFrame]:
    """account_id x topic frames of each of ``_TOPIC_VALUES`` (missing: NaN or
    None; a column the table lacks: all NaN), from a frame or an Arrow table
    (a million rows: placed with NumPy, not ``DataFrame.pivot``)."""
    names = topics.column_names if isinstance(topics, pa.Table) else list(topics.columns)

    def column(name: str) -> np.ndarray:
        values = topics.column(name) if isinstance(topics, pa.Table) else topics[name]
        return np.asarray(
            values.to_numpy(), dtype=object if name in ("account_id", "topic", "measure_value") else float
        )

    if isinstance(topics, pa.Table):  # text columns encoded by Arrow: Python strings only for distinct values
        (row, ids), (col, topic_names) = (_encode(topics.column(c)) for c in ("account_id", "topic"))
    else:
        row, ids = pd.factorize(pd.array(column("account_id"), dtype="string"))
        col, topic_names = pd.factorize(column("topic"))
    keep = (row >= 0) & (col >= 0)
    index = pd.Index(pd.array(ids, dtype="string"), name="account_id")
    columns = pd.Index(np.asarray(topic_names, dtype=object), name="topic")
    out = []
    for name, kind in _TOPIC_VALUES:
        matrix = np.full((len(index), len(columns)), None if kind is object else np.nan, dtype=kind)
        if name in names:
            matrix[row[keep], col[keep]] = column(name)[keep]
        out.append(pd.DataFrame(matrix, index=index, columns=columns, dtype=kind))  # object stays object
    return out


def _encode(values: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(code of each value, -1 for a null; the distinct values), like ``pd.factorize``."""
    if not len(values) or pa.types.is_null(values.type):  # nothing to encode (an empty result)
        return np.full(len(values), -1, dtype=np.int64), np.empty(0, dtype=object)
    encoded = pc.dictionary_encode(values).combine_chunks()
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, encoded.dictionary.to_numpy(zero_copy_only=False)


def change_reasons(
    account_ids: np.ndarray,
    probability: np.ndarray,
    topic_names: list[str],
    sums: np.ndarray,
    measures: np.ndarray,
    measure_contributions: np.ndarray,
    model_version: str,
    previous: Previous | None,
    describe: Describe,
    n_changes: int = 2,
    min_change: float = MIN_CONTRIBUTION,
) -> np.ndarray:
    """One text per account (None without an earlier score): the ``n_changes``
    topics whose contribution moved most (by at least ``min_change``
    log-odds) since the previous score, with both values of their measure.
    ``sums``, ``measures`` and ``measure_contributions`` (the measure
    feature's own contribution) are (accounts x topics), in ``topic_names`` order."""
    out = np.full(len(account_ids), None, dtype=object)
    if previous is None or previous.scores.empty or not len(account_ids):
        return out
    ids = pd.Index(pd.array(account_ids, dtype="string"))
    prev = previous.scores.reindex(ids)
    has = prev["as_of_date"].notna().to_numpy()
    same = has & (prev["model_version"].astype("string") == str(model_version)).fillna(False).to_numpy()
    dates = _dates(prev["as_of_date"])
    for row in np.flatnonzero(has & ~same):
        out[row] = (
            f"Last scored on {dates[row]} by model version {prev['model_version'].iloc[row]} "
            f"(now {model_version}): scores of different versions are not compared"
        )
    before = previous.contribution.reindex(index=ids, columns=topic_names).to_numpy(dtype=float)
    measured = previous.measure.reindex(index=ids, columns=topic_names).to_numpy(dtype=object)
    own_before = previous.measure_contribution.reindex(index=ids, columns=topic_names).to_numpy(dtype=float)
    delta = sums - before  # NaN where the earlier date kept no contribution for the topic
    # the measure moved the risk the way the topic did: its two values tell the change
    own_moved = (measure_contributions - own_before) * delta > 0
    stored = same & ~np.isnan(before).all(axis=1)
    for row in np.flatnonzero(same & ~stored):
        out[row] = f"Scored on {dates[row]} without per-topic contributions: changes cannot be compared"
    rows = np.flatnonzero(stored)
    if not len(rows):
        return out
    # a context topic (who the account is) counts only when its measure changed
    # (a new lifecycle stage, say): its attribution shifting alone is no change
    context = np.array([catalog.topic(t).context for t in topic_names], dtype=bool)
    old, new = measured[rows][:, context], measures[rows][:, context]
    still = (pd.isna(old) & pd.isna(new)) | np.asarray(old == new, dtype=bool)  # both missing counts as the same
    eligible = np.ones((len(rows), len(topic_names)), dtype=bool)
    eligible[:, context] = ~still
    magnitude = np.where(np.isnan(delta[rows]) | ~eligible, -1.0, np.abs(delta[rows]))
    order = np.argsort(-magnitude, axis=1, kind="stable")[:, :n_changes]
    moved = np.take_along_axis(magnitude, order, axis=1) >= min_change
    pair_rows, pair_rank = np.nonzero(moved)
    picked_rows = rows[pair_rows]
    picked_topics = order[pair_rows, pair_rank]
    up = delta[picked_rows, picked_topics] > 0
    # the measure's two values where they tell the change; today's reason for the rest
    texts = np.full(len(picked_rows), None, dtype=object)
    told = np.flatnonzero(own_moved[picked_rows, picked_topics])
    if len(told):
        rt, tt = picked_rows[told], picked_topics[told]
        texts[told] = _clauses(topic_names, tt, measured[rt, tt], measures[rt, tt])
    today = np.flatnonzero(texts == None)  # noqa: E711 - elementwise on an object array
    if len(today):
        texts[today] = describe(picked_rows[today], [topic_names[t] for t in picked_topics[today]], up[today])
    clauses = texts + np.where(up, " (raises risk)", " (lowers risk)").astype(object)
    joined = join_by_row(picked_rows, clauses, len(account_ids))
    old_prob = prev["churn_probability"].to_numpy(dtype=float)
    out[rows] = [
        f"Since {dates[row]} (risk {_percent(old_prob[row])} -> {_percent(probability[row])}): "
        + ("no notable change" if joined[row] is None else joined[row])
        for row in rows
    ]
    return out


def _clause(topic: str, old, new, today: str) -> str:
    """One topic's change: its measure from the old to the new value, or (when
    the measure did not move) today's reason for the topic."""
    spec = catalog.topic(topic)
    old, new = (None if pd.isna(v) else v for v in (old, new))
    if not spec.measure or old == new:
        return today
    unit = catalog.get(spec.measure).unit
    if unit == "category" or old is None or new is None:
        return f"{spec.label} changed from {_show(old, unit)} to {_show(new, unit)}"
    a, b = float(old), float(new)
    if catalog.format_value(a, unit) == catalog.format_value(b, unit):
        return today  # the measure did not move (as shown): another feature of the topic did
    before, now = catalog.format_value(a, unit), catalog.format_value(b, unit)
    return f"{spec.label} {'up' if b > a else 'down'} from {before} to {now}"


def _clauses(topic_names: list[str], topics: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """:func:`_clause` for many (topic, old, new) pairs, topic by topic, each
    distinct value formatted once; None where :func:`_clause` would return
    today's reason (the caller renders those)."""
    out = np.full(len(topics), None, dtype=object)
    old_gone, new_gone = pd.isna(old), pd.isna(new)
    for t in np.unique(topics):
        spec = catalog.topic(topic_names[t])
        if not spec.measure:
            continue
        unit = catalog.get(spec.measure).unit
        shown: dict[tuple[type, object], str] = {}

        def show(value, unit=unit, shown=shown) -> str:
            key = (type(value), value)
            if key not in shown:
                shown[key] = _show(value, unit)
            return shown[key]

        for i in np.flatnonzero(topics == t):
            a = None if old_gone[i] else old[i]
            b = None if new_gone[i] else new[i]
            if a == b:
                continue
            if unit == "category" or a is None or b is None:
                out[i] = f"{spec.label} changed from {show(a)} to {show(b)}"
                continue
            before, now = show(a), show(b)  # = format_value(float(value), unit)
            if before != now:
                out[i] = f"{spec.label} {'up' if float(b) > float(a) else 'down'} from {before} to {now}"
    return out


def _dates(values: pd.Series) -> np.ndarray:
    """:func:`_date` of each value, each distinct date formatted once."""
    codes, uniques = pd.factorize(values)
    texts = np.array([*(_date(u) for u in uniques), None], dtype=object)
    return texts[codes]  # a missing date (code -1) takes the trailing None


def _percent(p: float) -> str:
    """A probability as a CSM reads it: 52%, or 0.4% below 10%."""
    return f"{p:.0%}" if p >= 0.095 else f"{p:.1%}"


def _show(value, unit: str) -> str:
    if value is None:
        return "unknown"
    if unit == "category":
        return catalog.format_value(value, unit)
    return catalog.format_value(float(value), unit)


def _date(value) -> str | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).date().isoformat()
