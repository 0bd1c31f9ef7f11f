"""Staging layer: check the input tables against the contract, count bad rows
by rule, and expose clean, typed views (grain: one row per source row kept).

`validate` runs before any work. It stops with a :class:`ContractError` when a
required table or column is missing or a column cannot be cast, and with a
:class:`DataQualityError` when too many rows break a rule. Otherwise it returns
a :class:`ValidationReport` and leaves temporary views ``stg_<table>`` that
hold only the rows that passed, typed as the contract says. Every later query
reads those views, never the raw tables.

The rules themselves, as SQL, are in :mod:`features.staging_rules`; the report
and the errors in :mod:`features.staging_report`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

import pandas as pd

from features.contract import INPUT_TABLES, Rule, TableNames, TableSpec
from features.engine import SqlEngine
from features.sql import as_of_cutoff
from features.staging_report import (
    ContractError,
    DataQualityError,
    RuleCount,
    TableStatus,
    ValidationReport,
    null_column_message,
)
from features.staging_rules import (
    PARAMS_TABLE,
    check_columns,
    content_hash_sql,
    filters,
    flagged_sql,
    table_rules,
)

__all__ = [
    "ContractError",
    "DataQualityError",
    "RuleCount",
    "TableStatus",
    "ValidationReport",
    "as_of_cutoff",
    "null_column_message",
    "restage",
    "staged",
    "utc_now",
    "validate",
]

log = logging.getLogger(__name__)


def staged(table: str) -> str:
    """Name of the staged (clean, typed) view of a logical input table."""
    return f"stg_{table}"


def utc_now() -> dt.datetime:
    """The current time as a naive UTC timestamp, like every staged timestamp
    (the host's time zone plays no part)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def validate(
    engine: SqlEngine,
    as_of: dt.date,
    names: TableNames | None = None,
    max_bad_share: float = 0.05,
    tables: Iterable[str] | None = None,
) -> ValidationReport:
    """Check the inputs, count bad rows by rule, create the ``stg_*`` views.

    ``as_of`` is the latest date the run looks at; rows timestamped after it
    are set aside (counted, not an error).
    """
    names = names or TableNames()
    report = ValidationReport(as_of=as_of, max_bad_share=max_bad_share)
    for logical in INPUT_TABLES:  # views depend on the params table: drop them first
        engine.drop(staged(logical), "VIEW")
    report.checked_at = utc_now()
    _write_params(engine, as_of, report.checked_at)
    wanted = list(tables) if tables is not None else list(INPUT_TABLES)
    for logical in wanted:
        spec = INPUT_TABLES[logical]
        physical = names.physical(logical)
        if not engine.table_exists(physical):
            if spec.required:
                raise ContractError(f"Required table '{physical}' ({logical}) is missing from the warehouse")
            report.tables[logical] = TableStatus(logical, physical, present=False, content_hash="absent")
            continue
        types = check_columns(engine, spec, physical)
        status = report.tables[logical] = _count_and_stage(engine, spec, names, report, types)
        if spec.required and status.rows == 0:  # before the bad-row check: others' rows all orphans
            _raise_unusable(status, as_of)
    _raise_on_bad(report)
    for logical, status in report.tables.items():
        if INPUT_TABLES[logical].required and status.kept == 0:
            _raise_unusable(status, as_of)
    for family, why in report.families_off.items():
        log.warning("Feature family %s is off: %s", family, why)
    for table, columns in report.null_columns.items():
        for column in columns:
            log.warning("%s", null_column_message(table, column))
    return report


def _write_params(engine: SqlEngine, as_of: dt.date, now: dt.datetime) -> None:
    engine.write_table(
        PARAMS_TABLE,
        pd.DataFrame({"cutoff": [pd.Timestamp(as_of_cutoff(as_of))], "now": [pd.Timestamp(now)]}),
        temporary=True,
    )


def restage(engine: SqlEngine, report: ValidationReport, names: TableNames | None = None) -> None:
    """Recreate, in this connection, the ``stg_*`` views of an earlier
    :func:`validate` (same as-of, same "now"), without counting again: the
    views are lazy, so this costs a few catalog reads. The caller must know
    the data is unchanged (e.g. by comparing fingerprints)."""
    names = names or TableNames()
    if report.as_of is None or report.checked_at is None:
        raise ValueError("restage needs the report of a validate() run")
    for logical in INPUT_TABLES:
        engine.drop(staged(logical), "VIEW")
    _write_params(engine, report.as_of, report.checked_at)
    for logical, status in report.tables.items():
        if status.present:
            spec = INPUT_TABLES[logical]
            _create_view(engine, spec, flagged_sql(engine, spec, names, engine.column_types(status.physical)))


def _create_view(engine: SqlEngine, spec: TableSpec, flagged: str) -> None:
    any_bad, any_ignored = filters(spec)
    engine.execute(
        f"CREATE TEMP VIEW {staged(spec.name)} AS SELECT {', '.join(spec.column_names)} FROM ({flagged}) AS f "
        f"WHERE NOT ({any_bad} OR {any_ignored})"
    )


#: how many keys of offending rows the report shows per rule
SAMPLE_KEYS = 3


def _samples(engine: SqlEngine, spec: TableSpec, flagged: str, rule: Rule) -> list[str]:
    """A few keys of the rows that break ``rule``, in a stable order."""
    key = list(spec.key) or ["account_id", spec.time_column]
    columns = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" for c in key)
    frame = engine.query(
        f"SELECT {columns} FROM ({flagged}) AS f WHERE _r_{rule.name} ORDER BY {', '.join(key)} LIMIT {SAMPLE_KEYS}"
    )
    return [" / ".join("NULL" if pd.isna(v) else str(v) for v in row) for row in frame.itertuples(index=False)]


def _count_and_stage(
    engine: SqlEngine, spec: TableSpec, names: TableNames, report: ValidationReport, types: dict[str, str]
) -> TableStatus:
    rules = table_rules(spec)
    flagged = flagged_sql(engine, spec, names, types)
    any_bad, any_ignored = filters(spec)
    counts = ",\n  ".join(f"COUNT(*) FILTER (WHERE _r_{r.name}) AS {r.name}" for r in rules)
    time_col = spec.time_column
    nullable = [c.name for c in spec.columns if c.nullable]
    first_known = "".join(
        f",\n  MIN({time_col}) FILTER (WHERE NOT ({any_bad} OR {any_ignored}) AND {c} IS NOT NULL) AS _first_known_{c}"
        for c in nullable
    )
    row = engine.query(
        f"""SELECT COUNT(*) AS _total,
  MIN({time_col}) FILTER (WHERE NOT ({any_bad})) AS _first_time,
  MAX({time_col}) FILTER (WHERE NOT ({any_bad})) AS _last_time,
  COUNT(*) FILTER (WHERE {any_bad}) AS _bad,
  COUNT(*) FILTER (WHERE NOT ({any_bad}) AND ({any_ignored})) AS _ignored,
  {content_hash_sql(engine, spec)} AS _content_hash,
  {counts}{first_known}
FROM ({flagged}) AS f"""
    ).iloc[0]
    for rule in rules:
        count = int(row[rule.name])
        samples = _samples(engine, spec, flagged, rule) if count and rule.integrity else []
        report.rules.append(RuleCount(spec.name, rule.name, rule.description, count, rule.integrity, samples))
    status = TableStatus(
        spec.name,
        names.physical(spec.name),
        present=True,
        rows=int(row["_total"]),
        bad=int(row["_bad"]),
        ignored=int(row["_ignored"]),
        first_time=_to_datetime(row["_first_time"]),
        last_time=_to_datetime(row["_last_time"]),
        content_hash=str(row["_content_hash"]),
    )
    status.kept = status.rows - status.bad - status.ignored
    status.first_known = {c: _to_datetime(row[f"_first_known_{c}"]) for c in nullable}
    if status.kept:
        status.null_columns = [c for c, first in status.first_known.items() if first is None]
    _create_view(engine, spec, flagged)
    return status


def _raise_unusable(status: TableStatus, as_of: dt.date) -> None:
    """A required table without a usable row: every feature built from it
    would read as "nothing happened", so stop."""
    detail = (
        "it is empty"
        if status.rows == 0
        else f"of its {status.rows:,} rows {status.bad:,} break a rule and {status.ignored:,} are dated after it"
    )
    raise ContractError(
        f"Table '{status.physical}' ({status.table}) has no usable rows as of {as_of}: {detail}. "
        "Load the data, or validate as of a date the data covers."
    )


def _raise_on_bad(report: ValidationReport) -> None:
    over = [s for s in report.tables.values() if s.present and s.bad_share > report.max_bad_share]
    if over:
        detail = "; ".join(f"{s.table}: {s.bad:,} of {s.rows:,} rows ({s.bad_share:.1%})" for s in over)
        raise DataQualityError(
            f"Too many bad rows (limit {report.max_bad_share:.1%} per table): {detail}. "
            "See the validation report for the rules they break.",
            report,
        )


def _to_datetime(value: object) -> dt.datetime | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).to_pydatetime()
