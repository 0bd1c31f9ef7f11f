"""The output tables BI tools read: their schema, the previous scores a run
compares with, the replace of one scored date, the latest view and (on
DuckDB) the read copy. The only module with SQL over these tables.

Grain: ``churn_scores`` has one row per (account_id, as_of_date, model_name);
``churn_risk_reasons`` one row per (account_id, as_of_date, model_name, rank);
``churn_topic_contributions`` one row per (account_id, as_of_date,
model_name, topic): what the next run compares with to say what changed.
``<churn_scores>_latest`` shows the rows of the latest scored date of each
model, so an account that is no longer scored (churned, in grace) drops out
instead of lingering with last week's risk.

Concurrency, the way operators and BI tools hit it:

- Two runs writing the same date serialise on a lock per (table, model,
  date); the second replaces the first's rows, never adds to them.
- Tables and the view are created once, under a lock, with explicit types;
  afterwards the hot path runs no DDL at all, so an idle BI transaction never
  stalls a run (and a run never queues dashboards behind a DDL lock).
- DuckDB allows one writing process per file, so BI tools read a published
  copy (``<warehouse>.outputs.duckdb``) that is replaced atomically after
  every commit: readers never block the job and the job never blocks readers.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from features.contract import TableNames
from models.changes import Previous
from models.health import AREA_COLUMNS, BASE_COLUMN, STATUS_COLUMNS
from pipeline.warehouse import Warehouse, read_copy_path

log = logging.getLogger(__name__)

LATEST_VIEW_SUFFIX = "_latest"
#: bump when the view's SELECT changes: runs compare it to the view's comment
#: and replace the view only when they differ (no DDL on the hot path)
LATEST_VIEW_VERSION = "churn-pipeline latest view v2: the latest scored date of each model"

#: column -> SQL type (DuckDB dialect, transpiled for other engines)
SCORES_SCHEMA: dict[str, str] = {
    "account_id": "VARCHAR",
    "as_of_date": "DATE",
    "churn_probability": "DOUBLE",
    "churn_probability_change": "DOUBLE",
    "risk_tier": "VARCHAR",
    "risk_rank": "BIGINT",
    "mrr": "DOUBLE",
    "arr_at_risk": "DOUBLE",
    "renewal_date": "DATE",
    "days_to_renewal": "DOUBLE",
    "top_reasons": "VARCHAR",
    "model_name": "VARCHAR",
    "model_version": "VARCHAR",
    "scored_at": "TIMESTAMP",
    "account_name": "VARCHAR",
    "segment": "VARCHAR",
    "csm_owner": "VARCHAR",
    "lifecycle_stage": "VARCHAR",
    BASE_COLUMN: "DOUBLE",
    **{column: "DOUBLE" for column in AREA_COLUMNS},
    **{column: "VARCHAR" for column in STATUS_COLUMNS},
    "context": "VARCHAR",
    "change_reasons": "VARCHAR",
    "next_action": "VARCHAR",
}
REASONS_SCHEMA: dict[str, str] = {
    "account_id": "VARCHAR",
    "as_of_date": "DATE",
    "model_name": "VARCHAR",
    "model_version": "VARCHAR",
    "rank": "BIGINT",
    "feature": "VARCHAR",
    "feature_group": "VARCHAR",
    "feature_value": "VARCHAR",
    "contribution": "DOUBLE",
    "direction": "VARCHAR",
    "reason": "VARCHAR",
    "topic": "VARCHAR",
    "suggested_action": "VARCHAR",
}
TOPICS_SCHEMA: dict[str, str] = {
    "account_id": "VARCHAR",
    "as_of_date": "DATE",
    "model_name": "VARCHAR",
    "model_version": "VARCHAR",
    "topic": "VARCHAR",
    "area": "VARCHAR",
    "contribution": "DOUBLE",
    "measure_value": "VARCHAR",
    "measure_contribution": "DOUBLE",
}

#: (scores, reasons, topics) chunks, as :func:`models.scoring.score` yields them
ScoreChunks = Iterable[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]


def schemas(names: TableNames) -> dict[str, dict[str, str]]:
    """Every output table of a scoring run, with its columns' SQL types."""
    return {
        names.churn_scores: SCORES_SCHEMA,
        names.churn_risk_reasons: REASONS_SCHEMA,
        names.churn_topic_contributions: TOPICS_SCHEMA,
    }


def latest_view(names: TableNames) -> str:
    return names.churn_scores + LATEST_VIEW_SUFFIX


def latest_view_sql(wh: Warehouse, scores_table: str) -> str:
    """Every row of the latest scored date of each model."""
    table = wh.quote(scores_table)
    return (
        f"SELECT s.* FROM {table} AS s "
        f"JOIN (SELECT model_name, MAX(as_of_date) AS latest_date FROM {table} GROUP BY model_name) AS l "
        "ON l.model_name = s.model_name AND l.latest_date = s.as_of_date"
    )


def prepare(wh: Warehouse, names: TableNames) -> None:
    """Create the output tables and the latest view when missing, add columns a
    newer version writes, and replace the view only when its version changed.
    Runs inside the write transaction (a failed first run leaves no table);
    concurrent first runs take turns (a lock), so they never race on CREATE."""
    wanted = schemas(names)
    view = latest_view(names)
    if _ready(wh, wanted, view):
        return  # the hot path: catalog reads only, no DDL, no lock
    with wh.transaction():
        wh.lock(f"churn-outputs:{names.churn_scores}")
        create_or_extend(wh, wanted)
        if wh.view_comment(view) != LATEST_VIEW_VERSION:
            wh.create_view(view, latest_view_sql(wh, names.churn_scores), LATEST_VIEW_VERSION)


#: the columns a scoring run replaces rows by (Spark stores the outputs by them)
PARTITION_BY = ("as_of_date", "model_name")


def create_or_extend(wh: Warehouse, wanted: dict[str, dict[str, str]]) -> None:
    """Create each table (explicit column types) or add the columns a newer
    version writes. Call it inside a transaction, under the tables' lock."""
    for table, schema in wanted.items():
        if not wh.table_exists(table):
            wh.create_table(table, schema, partition_by=PARTITION_BY)
        else:
            have = set(wh.column_types(table))
            wh.add_columns(table, {c: t for c, t in schema.items() if c not in have})


def _ready(wh: Warehouse, wanted: dict[str, dict[str, str]], view: str) -> bool:
    for table, schema in wanted.items():
        if not wh.table_exists(table) or set(schema) - set(wh.column_types(table)):
            return False
    return wh.view_comment(view) == LATEST_VIEW_VERSION


def previous_scores(wh: Warehouse, names: TableNames, model_name: str, as_of: dt.date) -> Previous | None:
    """Each account's latest score by the model before ``as_of`` (date,
    version, probability) and the topic contributions of that score, for the
    probability change and change_reasons; None before any run."""
    table = names.churn_scores
    if not wh.table_exists(table):
        return None
    latest = f"""SELECT account_id, as_of_date, model_version, churn_probability FROM (
              SELECT account_id, as_of_date, model_version, churn_probability,
                     ROW_NUMBER() OVER (PARTITION BY account_id ORDER BY as_of_date DESC) AS rn
              FROM {wh.quote(table)}
              WHERE model_name = $model_name AND as_of_date < $as_of) AS p
            WHERE rn = 1"""
    params = {"model_name": model_name, "as_of": as_of}
    scores = wh.query(latest, params)
    if not wh.table_exists(names.churn_topic_contributions):
        return Previous(scores)
    # the topic rows of each account's latest score (none for an older score), as
    # Arrow: a row per account and topic, too many to make Python strings of
    topics = wh.query_arrow(
        f"""SELECT t.account_id, t.topic, t.contribution, t.measure_value, t.measure_contribution
            FROM ({latest}) AS p
            JOIN {wh.quote(names.churn_topic_contributions)} AS t
              ON t.model_name = $model_name AND t.account_id = p.account_id
             AND t.as_of_date = p.as_of_date AND t.model_version = p.model_version""",
        params,
    )
    return Previous(scores, topics)


def replace_date(
    wh: Warehouse,
    names: TableNames,
    model_name: str,
    as_of: dt.date,
    chunks: ScoreChunks,
    on_chunk: Callable[[pd.DataFrame, pd.DataFrame], None] | None = None,
) -> None:
    """Replace the model's rows for ``as_of`` with ``chunks`` of (scores,
    reasons, topics) in one transaction: all or nothing, and writers of the
    same date take turns, each replacing (never adding to) what the other
    wrote. ``on_chunk`` sees each chunk's (scores, reasons) after it is
    written (e.g. to keep the top)."""
    where = {"as_of_date": as_of, "model_name": model_name}
    tables = schemas(names)
    if not wh.transactional:
        _replace_partitions(wh, names, where, chunks, on_chunk)
        return
    with wh.transaction():
        prepare(wh, names)
        for table in tables:
            wh.lock(_write_lock(table, where))
        for table in tables:
            wh.delete_where(table, where)
        for chunk in chunks:
            for (table, schema), frame in zip(tables.items(), chunk):
                wh.write_table(table, as_stored(frame, schema), mode="append")
            if on_chunk is not None:
                on_chunk(chunk[0], chunk[1])


def _write_lock(table: str, where: dict[str, Any]) -> str:
    """The lock writers of one table, model and date take turns on."""
    return f"churn-write:{table}:{where['model_name']}:{where['as_of_date'].isoformat()}"


def _replace_partitions(
    wh: Warehouse,
    names: TableNames,
    where: dict[str, Any],
    chunks: ScoreChunks,
    on_chunk: Callable[[pd.DataFrame, pd.DataFrame], None] | None,
) -> None:
    """Without transactions (Spark): every chunk goes to a staging table
    first; only when all are there is each output's (date, model) partition
    replaced by its staged rows, topics and reasons before scores (the
    latest view reads scores). A failure while scoring or staging leaves
    every output as it was; each partition is swapped whole by the engine."""
    tables = schemas(names)
    run = uuid.uuid4().hex[:8]
    staged = {table: f"_churn_stage_{i}_{run}" for i, table in enumerate(tables)}
    try:
        for chunk in chunks:
            for (table, schema), frame in zip(tables.items(), chunk):
                wh.write_table(staged[table], as_stored(frame, schema), mode="append")
            if on_chunk is not None:
                on_chunk(chunk[0], chunk[1])
        with wh.transaction():  # groups the locks: writers of this date take turns
            for table in tables:
                wh.lock(_write_lock(table, where))
            prepare(wh, names)
            for table in reversed(list(tables)):
                wh.replace_partition(table, staged[table] if wh.table_exists(staged[table]) else None, where)
    finally:
        for stage in staged.values():
            wh.drop(stage)


def as_stored(frame: pd.DataFrame, schema: dict[str, str]) -> pd.DataFrame:
    """Date columns as SQL DATEs (not timestamps) in the warehouse."""
    out = frame.copy()
    for col, sql_type in schema.items():
        if sql_type == "DATE" and col in out:
            out[col] = pd.to_datetime(out[col]).astype(pd.ArrowDtype(pa.date32()))
    return out


def read_copy(wh: Warehouse) -> Path | None:
    """Where BI tools read the outputs: the published copy of a DuckDB file
    warehouse (None for a server, which readers share with the writer)."""
    return read_copy_path(wh.path) if wh.path is not None else None


def publish_read_copy(wh: Warehouse, names: TableNames) -> Path | None:
    """DuckDB file warehouse: publish the output tables and the latest view to
    the read copy (atomically replaced; only the (model, date) partitions that
    changed since the last copy are written again). Nothing to do on a server."""
    target = read_copy(wh)
    if target is None or not wh.table_exists(names.churn_scores):
        return None
    published = (*schemas(names), names.churn_outcomes, names.churn_model_performance)
    tables = [t for t in published if wh.table_exists(t)]
    # the scored tables are replaced a (model, date) at a time: only the changed ones are copied again
    partitions = {table: ("model_name", "as_of_date") for table in schemas(names)}
    wh.publish_copy(target, tables, {latest_view(names): latest_view_sql(wh, names.churn_scores)}, partitions)
    log.info("Published the outputs for BI tools to %s", target)
    return target
