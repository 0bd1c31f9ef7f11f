"""The track-record output tables: their schema, the outcome of every scored
account, and their replacement. The only module with SQL over these tables
(:mod:`pipeline.outputs` has the scores').

Grain: ``churn_outcomes`` has one row per (account_id, as_of_date,
model_name) of ``churn_scores``; ``churn_model_performance`` one row per
(as_of_date, model_name, model_version, slice) of the mature dates.

The outcome is the contract's churn label (:func:`features.sql.label_select`,
the one implementation training uses) of each scored account at its as-of
date, from the staged subscriptions. A scored date is mature once
``as_of_date + horizon_days + grace_days`` is on or before the date the
monitor knows the data up to; until then its rows are ``pending``, and a row
whose account no subscription covers at its date any more (the rows were
deleted since) is ``unknown``. Neither counts in the metrics.

Both tables are replaced together in one transaction on every run, the way
:func:`pipeline.outputs.replace_date` replaces a date: readers see the old
rows or the new, never a mix; concurrent runs take turns (an advisory lock on
PostgreSQL, the file lock on DuckDB); tables are created once, with explicit
types, so the hot path runs no DDL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandas as pd

from features import sql
from features.build import LabelConfig
from features.contract import TableNames
from pipeline import outputs
from pipeline.outputs import as_stored
from pipeline.warehouse import Warehouse

OUTCOMES_SCHEMA: dict[str, str] = {
    "account_id": "VARCHAR",
    "as_of_date": "DATE",
    "model_name": "VARCHAR",
    "model_version": "VARCHAR",
    "churn_probability": "DOUBLE",
    "risk_tier": "VARCHAR",
    "arr": "DOUBLE",
    "segment": "VARCHAR",
    "outcome": "VARCHAR",
    "churned": "BIGINT",
    "churn_date": "DATE",
    "matures_on": "DATE",
    "monitored_as_of": "DATE",
}
PERFORMANCE_SCHEMA: dict[str, str] = {
    "as_of_date": "DATE",
    "model_name": "VARCHAR",
    "model_version": "VARCHAR",
    "slice": "VARCHAR",
    "accounts": "BIGINT",
    "churned": "BIGINT",
    "observed_rate": "DOUBLE",
    "mean_probability": "DOUBLE",
    "roc_auc": "DOUBLE",
    "pr_auc": "DOUBLE",
    "brier": "DOUBLE",
    "ece": "DOUBLE",
    "lift_top10": "DOUBLE",
    "recall_top10": "DOUBLE",
    "arr_churned": "DOUBLE",
    "arr_captured_top10": "DOUBLE",
    "test_roc_auc": "DOUBLE",
    "alert": "BOOLEAN",
    "alert_reason": "VARCHAR",
    "monitored_as_of": "DATE",
}
#: the columns the metrics read (mature rows only)
LABELLED_COLUMNS = ["as_of_date", "model_name", "model_version", "churn_probability", "risk_tier", "arr", "segment"]


def schemas(names: TableNames) -> dict[str, dict[str, str]]:
    return {names.churn_outcomes: OUTCOMES_SCHEMA, names.churn_model_performance: PERFORMANCE_SCHEMA}


def prepare(wh: Warehouse, names: TableNames) -> None:
    """Create the tables when missing and add the columns a newer version
    writes (under a lock, so concurrent first runs never race); nothing when
    they are ready."""
    wanted = schemas(names)
    if all(wh.table_exists(t) and not set(s) - set(wh.column_types(t)) for t, s in wanted.items()):
        return
    with wh.transaction():
        wh.lock(f"churn-outputs:{names.churn_outcomes}")
        outputs.create_or_extend(wh, wanted)


def outcomes_select(wh: Warehouse, names: TableNames) -> str:
    """Every scored row with its outcome (``$known_by``: the data is known up
    to that date; ``$horizon_days``, ``$maturity_days``, ``$grace_days``).
    Needs the staged views of a validation in this connection."""
    rows = f"""SELECT account_id, as_of_date, model_name, model_version, churn_probability, risk_tier,
       12 * mrr AS arr, segment,
       CAST(as_of_date + CAST($horizon_days AS INTEGER) AS DATE) AS horizon_end,
       CAST(as_of_date + CAST($maturity_days AS INTEGER) AS DATE) AS matures_on
FROM {wh.quote(names.churn_scores)}"""
    keep = ("model_name", "model_version", "churn_probability", "risk_tier", "arr", "segment", "matures_on")
    labelled = sql.label_select(rows, keep=keep, outer=True)
    mature = "l.matures_on <= $known_by"
    return f"""SELECT l.account_id, l.as_of_date, l.model_name, l.model_version, l.churn_probability,
       l.risk_tier, l.arr, l.segment,
       CASE WHEN NOT ({mature}) THEN 'pending' WHEN NOT l.covered THEN 'unknown'
            WHEN l.churned = 1 THEN 'churned' ELSE 'retained' END AS outcome,
       CASE WHEN {mature} AND l.covered THEN l.churned END AS churned,
       CASE WHEN {mature} AND l.covered AND l.churned = 1 THEN l.churn_date END AS churn_date,
       l.matures_on,
       CAST($monitored_as_of AS DATE) AS monitored_as_of
FROM ({labelled}) AS l"""


def replace(
    wh: Warehouse,
    names: TableNames,
    labels: LabelConfig,
    known_by: dt.date,
    monitored_as_of: dt.date,
    performance_of: Callable[[pd.DataFrame], pd.DataFrame],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """In one transaction: replace ``churn_outcomes`` with every scored row's
    outcome (computed in the engine, never leaving it), read the mature rows
    back, compute their performance (``performance_of``) and replace
    ``churn_model_performance`` with it. Returns (outcome counts per date and
    model version, performance)."""
    params = {
        "horizon_days": labels.horizon_days,
        "maturity_days": labels.horizon_days + labels.grace_days,
        "grace_days": labels.grace_days,
        "known_by": known_by,
        "monitored_as_of": monitored_as_of,
    }
    outcomes, performance = (wh.quote(t) for t in (names.churn_outcomes, names.churn_model_performance))
    with wh.transaction():
        prepare(wh, names)
        for table in (names.churn_outcomes, names.churn_model_performance):
            wh.lock(f"churn-write:{table}")
        wh.replace_rows(names.churn_outcomes, OUTCOMES_SCHEMA, outcomes_select(wh, names), params)
        labelled = wh.query(
            f"SELECT {', '.join(LABELLED_COLUMNS)}, CAST(churned AS DOUBLE) AS churned "
            f"FROM {outcomes} WHERE churned IS NOT NULL"
        )
        frame = performance_of(labelled).assign(monitored_as_of=pd.Timestamp(monitored_as_of))
        stored = as_stored(frame.reindex(columns=list(PERFORMANCE_SCHEMA)), PERFORMANCE_SCHEMA)
        if not wh.transactional:  # Spark: the new rows beside the table, then swapped in
            wh.write_table(names.churn_model_performance, stored, mode="replace")
        else:
            wh.execute(f"DELETE FROM {performance}")
            if len(frame):
                wh.write_table(names.churn_model_performance, stored, mode="append")
        counts = wh.query(
            f"""SELECT as_of_date, model_name, model_version, outcome, COUNT(*) AS accounts
            FROM {outcomes} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"""
        )
    return counts, frame


def read_performance(wh: Warehouse, names: TableNames) -> pd.DataFrame:
    """The stored performance rows (empty before the first monitor run)."""
    if not wh.table_exists(names.churn_model_performance):
        return pd.DataFrame(columns=list(PERFORMANCE_SCHEMA))
    return wh.query(
        f"SELECT * FROM {wh.quote(names.churn_model_performance)} ORDER BY as_of_date, model_name, model_version, slice"
    )


def scored_versions(wh: Warehouse, names: TableNames) -> pd.DataFrame:
    """Every (model_name, model_version) with rows in ``churn_scores``."""
    return wh.query(f"SELECT DISTINCT model_name, model_version FROM {wh.quote(names.churn_scores)} ORDER BY 1, 2")
