"""What changed since the previous score, on hand-made two-date data with
known answers: which topic moved, both values of its measure, and the cases
that must not be compared."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from models.changes import Previous, change_reasons

TOPICS = ["users", "ticket_backlog", "nps", "renewal", "profile", "lifecycle"]
EARLIER = dt.date(2026, 11, 23)


def previous(rows: dict[str, tuple[str, float, dict[str, tuple[float, str | None]]]], when=EARLIER) -> Previous:
    """account -> (model_version, probability, topic -> (contribution, measure_value)); the
    measure feature's own contribution is the topic's (as if it were the topic's only feature)."""
    scores = pd.DataFrame(
        [
            {"account_id": a, "as_of_date": pd.Timestamp(when), "model_version": v, "churn_probability": p}
            for a, (v, p, _) in rows.items()
        ]
    )
    topics = pd.DataFrame(
        [
            {"account_id": a, "topic": t, "contribution": c, "measure_value": m, "measure_contribution": c}
            for a, (_, _, by_topic) in rows.items()
            for t, (c, m) in by_topic.items()
        ],
        columns=["account_id", "topic", "contribution", "measure_value", "measure_contribution"],
    )
    return Previous(scores, topics)


def today(rows, topics, increasing):
    return [f"today's {t} reason ({'up' if up else 'down'})" for t, up in zip(topics, increasing)]


BEFORE = {
    "users": (0.0, "28"),
    "ticket_backlog": (0.0, "0"),
    "nps": (0.25, "7"),
    "renewal": (0.125, "52"),
    "profile": (0.5, None),
    "lifecycle": (0.0, "adoption"),
}


def run(prev: Previous, sums, measures, ids=("A1",), prob=(0.52,), version="3", own=None):
    """Today's (sums, measures) per account, each row ending with the lifecycle
    topic (0.0, "adoption") unless given; ``own``: the measures' own
    contributions (default: the topic sums)."""
    sums = [row if len(row) == len(TOPICS) else [*row, 0.0] for row in sums]
    measures = [row if len(row) == len(TOPICS) else [*row, "adoption"] for row in measures]
    return change_reasons(
        np.asarray(ids, dtype=object),
        np.asarray(prob, dtype=float),
        TOPICS,
        np.asarray(sums, dtype=float),
        np.asarray(measures, dtype=object),
        np.asarray(sums if own is None else own, dtype=float),
        version,
        prev,
        today,
    )


def test_names_the_topics_that_moved_most_with_both_values():
    prev = previous({"A1": ("3", 0.21, BEFORE)})
    # users +0.75, backlog +0.5, nps -0.0625, renewal +0.015625 (below the threshold), profile unchanged
    got = run(prev, [[0.75, 0.5, 0.1875, 0.140625, 0.5]], [["9", "2", "7", "45", None]])
    assert got[0] == (
        "Since 2026-11-23 (risk 21% -> 52%): active users in the last 30 days down from 28 to 9 (raises risk); "
        "open support tickets up from 0 to 2 (raises risk)"
    )


def test_a_topic_that_moved_the_risk_down_says_so():
    prev = previous({"A1": ("3", 0.40, BEFORE)})
    got = run(prev, [[-0.5, 0.0, 0.25, 0.125, 0.5]], [["40", "0", "7", "52", None]], prob=(0.2,))
    assert (
        got[0] == "Since 2026-11-23 (risk 40% -> 20%): active users in the last 30 days up from 28 to 40 (lowers risk)"
    )


def test_a_topic_whose_measure_did_not_move_is_told_by_todays_reason():
    prev = previous({"A1": ("3", 0.21, BEFORE)})
    got = run(prev, [[0.0, 0.0, 0.75, 0.125, 0.5]], [["28", "0", "7", "52", None]])
    assert got[0] == "Since 2026-11-23 (risk 21% -> 52%): today's nps reason (up) (raises risk)"


def test_nothing_moved():
    prev = previous({"A1": ("3", 0.21, BEFORE)})
    got = run(prev, [[0.0, 0.0, 0.25, 0.125, 0.5]], [["28", "0", "7", "45", None]], prob=(0.21,))
    assert got[0] == "Since 2026-11-23 (risk 21% -> 21%): no notable change"


def test_another_model_version_is_not_compared():
    prev = previous({"A1": ("2", 0.21, BEFORE)})
    got = run(prev, [[0.75, 0.5, 0.25, 0.125, 0.5]], [["9", "2", "7", "45", None]])
    assert got[0] == (
        "Last scored on 2026-11-23 by model version 2 (now 3): scores of different versions are not compared"
    )


def test_no_earlier_score_no_text_and_accounts_are_matched_by_id():
    prev = previous({"A2": ("3", 0.21, BEFORE)})
    sums = [[0.0, 0.0, 0.25, 0.125, 0.5], [0.75, 0.0, 0.25, 0.125, 0.5]]
    got = run(
        prev, sums, [["28", "0", "7", "52", None], ["9", "0", "7", "52", None]], ids=("A1", "A2"), prob=(0.1, 0.5)
    )
    assert got[0] is None
    assert got[1].startswith("Since 2026-11-23 (risk 21% -> 50%): active users in the last 30 days down from 28 to 9")
    assert run(None, sums[:1], [["28", "0", "7", "52", None]])[0] is None


def test_an_earlier_score_without_topic_contributions_says_so():
    prev = previous({"A1": ("3", 0.21, {})})
    got = run(prev, [[0.75, 0.5, 0.25, 0.125, 0.5]], [["9", "2", "7", "45", None]])
    assert got[0] == "Scored on 2026-11-23 without per-topic contributions: changes cannot be compared"


def test_a_measure_that_became_known_or_a_category_says_changed():
    before = {**BEFORE, "nps": (0.25, None)}
    prev = previous({"A1": ("3", 0.21, before)})
    got = run(prev, [[0.0, 0.0, 1.0, 0.125, 0.5]], [["28", "0", "3", "52", None]])
    assert "latest NPS changed from unknown to 3.0 (raises risk)" in got[0]


def test_a_measure_that_moved_against_the_risk_is_not_told_as_the_cause():
    """Features used went up, yet the topic raised the risk (another of its
    features did it): today's reason tells the topic, not "up from 6 to 7"."""
    prev = previous({"A1": ("3", 0.21, BEFORE)})
    own = [[-0.25, 0.0, 0.25, 0.125, 0.5, 0.0]]  # active users' own contribution fell...
    got = run(prev, [[0.75, 0.0, 0.25, 0.125, 0.5]], [["40", "0", "7", "52", None]], own=own)  # ...the topic rose
    assert got[0] == "Since 2026-11-23 (risk 21% -> 52%): today's users reason (up) (raises risk)"


def test_context_counts_only_when_its_measure_changed():
    prev = previous({"A1": ("3", 0.21, BEFORE)})
    # the profile's attribution shifted by 1.0 (interactions), nothing about the account changed: not told
    shifted = run(prev, [[0.125, 0.0, 0.25, 0.125, 1.5]], [["26", "0", "7", "52", None]])
    assert shifted[0] == (
        "Since 2026-11-23 (risk 21% -> 52%): active users in the last 30 days down from 28 to 26 (raises risk)"
    )
    # the account entered its renewal window: told, with both stages
    moved = run(prev, [[0.0, 0.0, 0.25, 0.125, 0.5, 0.5]], [["28", "0", "7", "52", None, "renewal_window"]])
    assert moved[0] == (
        "Since 2026-11-23 (risk 21% -> 52%): lifecycle stage changed from adoption to renewal window (raises risk)"
    )


def test_clauses_by_topic_match_the_row_by_row_clause():
    """The topic-by-topic _clauses tells exactly what _clause tells each pair
    (None where _clause falls back to today's reason): every topic of the
    catalog, numbers that format the same or not, categories, missing values."""
    from features import catalog
    from models.changes import _clause, _clauses

    rng = np.random.default_rng(7)
    names = sorted(catalog.TOPICS)
    pool = np.array(["0", "1", "1.04", "1.4", "9", "28", "47.5", "0.005", "0.5", "1200", "adoption", "renewal"], object)
    n = 3000
    topics = rng.integers(0, len(names), n)
    old, new = pool[rng.integers(0, len(pool), n)], pool[rng.integers(0, len(pool), n)]
    old[rng.random(n) < 0.1], new[rng.random(n) < 0.1] = None, np.nan
    numeric = np.array([_is_number(v) for v in old]) & np.array([_is_number(v) for v in new])
    for i in np.flatnonzero(~numeric):  # text values only where the measure is a category (as stored)
        spec = catalog.topic(names[topics[i]])
        if spec.measure and catalog.get(spec.measure).unit != "category":
            old[i], new[i] = (v if _is_number(v) else None for v in (old[i], new[i]))
    got = _clauses(names, topics, old, new)
    for i in range(n):
        expected = _clause(names[topics[i]], old[i], new[i], "TODAY")
        assert (got[i] if got[i] is not None else "TODAY") == expected


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def test_previous_topics_from_arrow_equal_the_pivot_of_the_rows():
    """Previous places the topic rows (a frame, or the Arrow table the warehouse
    gives) like DataFrame.pivot: same cells, missing ones NaN."""
    import pyarrow as pa

    rng = np.random.default_rng(3)
    rows = pd.DataFrame(
        [
            {
                "account_id": f"A{a}",
                "topic": t,
                "contribution": rng.normal(),
                "measure_value": rng.choice(["1", "x", None]),
            }
            for a in range(40)
            for t in TOPICS
            if rng.random() < 0.7
        ]
    )
    rows["measure_contribution"] = rng.normal(size=len(rows))
    scores = pd.DataFrame({"account_id": ["A1"], "as_of_date": [pd.Timestamp(EARLIER)], "model_version": ["3"]})
    empty = pa.Table.from_pandas(rows.iloc[:0].astype(object), preserve_index=False)  # null-typed columns
    assert Previous(scores.assign(churn_probability=0.5), empty).contribution.empty
    for topics in (rows, pa.Table.from_pandas(rows, preserve_index=False)):
        prev = Previous(scores.assign(churn_probability=0.5), topics)
        for got, value in ((prev.contribution, "contribution"), (prev.measure, "measure_value")):
            expected = rows.pivot(index="account_id", columns="topic", values=value)
            got = got.reindex(index=expected.index, columns=expected.columns).to_numpy(dtype=object)
            assert pd.isna(got).tolist() == pd.isna(expected.to_numpy(dtype=object)).tolist()
            same = ~pd.isna(got)
            assert got[same].tolist() == expected.to_numpy(dtype=object)[same].tolist()
