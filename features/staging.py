"""Staging layer: check the input tables against the contract, count bad rows
by rule, and expose clean, typed views (grain: one row per source row kept).

`validate` runs before any work. It stops with a :class:`ContractError` when a
required table or column is missing or a column cannot be cast, and with a
:class:`DataQualityError` when too many rows break a rule. Otherwise it returns
a :class:`ValidationReport` and leaves temporary views ``stg_<table>`` that
hold only the rows that passed, typed as the contract says. Every later query
reads those views, never the raw tables.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from features import catalog
from features.contract import INPUT_TABLES, Column, TableNames, TableSpec
from features.engine import SqlEngine

log = logging.getLogger(__name__)

#: logical type -> DuckDB-dialect SQL type used to cast it
SQL_TYPES = {
    "text": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
    "numeric": "DOUBLE",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
}

#: engine type names (lower case, prefix match) that need no cast check
_COMPATIBLE = {
    "text": ("",),  # anything casts to text
    "timestamp": ("timestamp", "date"),
    "date": ("date", "timestamp"),
    "numeric": ("integer", "bigint", "smallint", "tinyint", "hugeint", "double", "real", "float",
                "decimal", "numeric", "ubigint", "uinteger", "usmallint", "utinyint"),
    "integer": ("integer", "bigint", "smallint", "tinyint", "hugeint", "ubigint", "uinteger",
                "usmallint", "utinyint"),
    "boolean": ("boolean",),
}

PARAMS_TABLE = "_churn_run_params"


class ContractError(ValueError):
    """The input does not follow the data contract (missing table/column, bad type)."""


class DataQualityError(ValueError):
    """Too many rows break a validation rule; the report says which."""

    def __init__(self, message: str, report: ValidationReport | None = None):
        super().__init__(message)
        self.report = report

    def __reduce__(self):  # picklable across processes (e.g. Dask workers)
        return (type(self), (str(self), self.report))


@dataclass(frozen=True)
class Rule:
    """A row-level check. ``predicate`` is SQL that is TRUE for a bad row."""

    name: str
    description: str
    predicate: str
    integrity: bool = True  # False: the row is set aside but is not an error


def _rules(spec: TableSpec) -> tuple[Rule, ...]:
    rules: list[Rule] = [
        Rule(f"null_{c.name}", f"{c.name} is null", f"{c.name} IS NULL")
        for c in spec.columns
        if not c.nullable
    ]
    if spec.key:
        key = ", ".join(spec.key)
        first, ties = _dedup_order(spec)
        # rows with a NULL key are counted under null_<key> only: they are no one's duplicate
        not_null = " AND ".join(f"{k} IS NOT NULL" for k in spec.key)
        rules.append(Rule(
            "duplicate_key",
            f"duplicate {key} (earliest {first} kept, ties by {', '.join(ties)})",
            f"{not_null} AND _dup_rank > 1",
        ))
    if spec.name != "accounts":
        rules.append(Rule("orphan_account", "account_id not in accounts", "_orphan"))
    rules.extend(_EXTRA_RULES.get(spec.name, ()))
    if spec.name in ("usage_events", "support_tickets", "nps_responses"):
        rules.append(
            Rule("in_the_future", f"{spec.time_column} later than now", f"{spec.time_column} > _now")
        )
        rules.append(
            Rule(
                "after_as_of",
                f"{spec.time_column} after the as-of cutoff (ignored, not an error)",
                f"{spec.time_column} > _cutoff",
                integrity=False,
            )
        )
    return tuple(rules)


def _dedup_order(spec: TableSpec) -> tuple[str, list[str]]:
    """Which of several rows with one key is kept: the earliest by the time
    column, ties broken by every other contract column in contract order."""
    first = spec.time_column or spec.key[0]
    ties = [c for c in spec.column_names if c != first and c not in spec.key]
    return first, ties


_EXTRA_RULES: dict[str, tuple[Rule, ...]] = {
    "subscriptions": (
        Rule("end_before_start", "end_date < start_date", "end_date < start_date"),
        Rule("negative_mrr", "mrr < 0", "mrr < 0"),
        Rule("negative_seats", "seats < 0", "seats < 0"),
    ),
    "usage_events": (Rule("negative_quantity", "quantity < 0", "quantity < 0"),),
    "support_tickets": (
        Rule("resolved_before_created", "resolved_at < created_at", "resolved_at < created_at"),
        Rule("csat_out_of_range", "satisfaction outside 1-5", "satisfaction < 1 OR satisfaction > 5"),
    ),
    "nps_responses": (Rule("nps_out_of_range", "score outside 0-10", "score < 0 OR score > 10"),),
}


@dataclass
class RuleCount:
    table: str
    rule: str
    description: str
    rows: int
    integrity: bool
    #: a few keys of rows that break the rule (the table's key, else account and time)
    samples: list[str] = field(default_factory=list)


@dataclass
class TableStatus:
    table: str
    physical: str
    present: bool
    rows: int = 0
    kept: int = 0
    bad: int = 0
    ignored: int = 0
    first_time: dt.datetime | None = None  # earliest/latest timestamp among clean rows,
    last_time: dt.datetime | None = None  # including rows after the as-of cutoff
    #: order-independent hash of every row's typed contract columns (all rows, kept or
    #: not); "absent" for an absent table. Engine-specific: compare within one engine.
    content_hash: str = ""
    #: nullable column -> the earliest time-column value among the kept rows where
    #: it is not NULL (None: NULL in every kept row). A feature that needs the column
    #: is unknown at an as-of before that time (see features.build).
    first_known: dict[str, dt.datetime | None] = field(default_factory=dict)
    #: nullable contract columns that are NULL in every kept row (none if no row is kept)
    null_columns: list[str] = field(default_factory=list)

    @property
    def bad_share(self) -> float:
        return self.bad / self.rows if self.rows else 0.0


@dataclass
class ValidationReport:
    """What validation found: per table, per rule, and which feature families run."""

    as_of: dt.date | None
    tables: dict[str, TableStatus] = field(default_factory=dict)
    rules: list[RuleCount] = field(default_factory=list)
    max_bad_share: float = 0.05
    #: the UTC time the "in the future" rule compared against (kept to re-stage identically)
    checked_at: dt.datetime | None = None

    @property
    def available(self) -> set[str]:
        """Logical names of the tables that are present and non-empty after staging."""
        return {t for t, s in self.tables.items() if s.present and s.kept > 0}

    @property
    def data_start(self) -> dt.date | None:
        """The first day of the data: the earliest account creation."""
        accounts = self.tables.get("accounts")
        return accounts.first_time.date() if accounts and accounts.first_time else None

    @property
    def data_end(self) -> dt.date | None:
        """The last as-of date the data supports: the day bucket (see features.sql)
        of the latest clean usage, ticket or NPS timestamp."""
        times = [
            s.last_time
            for name, s in self.tables.items()
            if name in ("usage_events", "support_tickets", "nps_responses") and s.last_time
        ]
        if not times:
            return None
        latest = max(times)
        return latest.date() if latest.time() == dt.time() else latest.date() + dt.timedelta(days=1)

    @property
    def families_off(self) -> dict[str, str]:
        off = {}
        for table, family in (("support_tickets", "Support"), ("nps_responses", "Sentiment")):
            status = self.tables.get(table)
            if status is None or not status.present:
                off[family] = f"{table} is absent"
            elif status.kept == 0:
                off[family] = f"{table} has no usable rows"
        return off

    @property
    def null_columns(self) -> dict[str, list[str]]:
        """Per table, the contract columns that are NULL in every kept row. The
        features that need one of them (``catalog.Feature.needs``) are unknown."""
        return {t: list(s.null_columns) for t, s in self.tables.items() if s.null_columns}

    @property
    def fingerprint(self) -> str:
        """A content fingerprint of the inputs as validated: per table its row
        counts and content hash (absent tables as 'absent'), plus the as-of
        date. Any change to any row - an in-place UPDATE included - changes it,
        so it is a safe cache key for anything built from the staged views."""
        parts = [f"as_of={self.as_of}"]
        for logical in INPUT_TABLES:
            s = self.tables.get(logical)
            if s is None:
                parts.append(f"{logical}:not validated")
            elif not s.present:
                parts.append(f"{logical}:absent")
            else:
                parts.append(f"{logical}:{s.rows}:{s.kept}:{s.bad}:{s.ignored}:{s.content_hash}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]

    def problems(self) -> list[RuleCount]:
        return [r for r in self.rules if r.rows > 0]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([r.__dict__ for r in self.rules])

    def to_dict(self) -> dict:
        return {
            "as_of": str(self.as_of) if self.as_of else None,
            "max_bad_share": self.max_bad_share,
            "tables": {t: {**s.__dict__, "bad_share": s.bad_share} for t, s in self.tables.items()},
            "rules": [r.__dict__ for r in self.problems()],
            "families_off": self.families_off,
            "data_start": str(self.data_start) if self.data_start else None,
            "data_end": str(self.data_end) if self.data_end else None,
            "null_columns": self.null_columns,
            "fingerprint": self.fingerprint,
        }

    def to_markdown(self) -> str:
        lines = [
            f"## Input validation (as of {self.as_of})",
            "",
            "| table | rows | kept | bad | bad share | ignored after as-of |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for s in self.tables.values():
            if not s.present:
                lines.append(f"| {s.table} | absent | | | | |")
                continue
            lines.append(
                f"| {s.table} | {s.rows:,} | {s.kept:,} | {s.bad:,} | {s.bad_share:.2%} | {s.ignored:,} |"
            )
        problems = self.problems()
        if problems:
            lines += ["", "| table | rule | rows excluded | sample keys |", "|---|---|---:|---|"]
            lines += [f"| {r.table} | {r.description} | {r.rows:,} | {', '.join(r.samples)} |" for r in problems]
        else:
            lines += ["", "No row broke a rule."]
        for family, why in self.families_off.items():
            lines.append(f"\nFeature family **{family}** is off: {why}.")
        for table, columns in self.null_columns.items():
            for column in columns:
                lines.append(f"\n{null_column_message(table, column)}.")
        return "\n".join(lines)


def null_column_message(table: str, column: str) -> str:
    """What an all-NULL column means for the features, in one sentence."""
    needing = catalog.features_needing(f"{table}.{column}")
    if needing:
        effect = f"{', '.join(needing)} {'is' if len(needing) == 1 else 'are'} unknown (left empty, not 0)"
    else:
        meaning = INPUT_TABLES[table].column(column).description
        effect = "no feature is left unknown by it" + (f" ({column}: {meaning})" if meaning else "")
    return f"Column {table}.{column} is NULL in every kept row: {effect}"


def staged(table: str) -> str:
    """Name of the staged (clean, typed) view of a logical input table."""
    return f"stg_{table}"


#: engine type names (lower case, prefix match) of time-zone-aware timestamps
_TIMESTAMPTZ = ("timestamp with time zone", "timestamptz")


def _typed_column(engine: SqlEngine, column: Column, found: str) -> str:
    """The cast of one raw column to its contract type. Every timestamp is read
    as UTC: a time-zone-aware value is converted to its UTC wall time first
    (``AT TIME ZONE 'UTC'``, the same on DuckDB and PostgreSQL), so neither the
    host's nor the session's time zone changes a timestamp or a date."""
    source = engine.quote(column.name)
    if column.type in ("timestamp", "date") and found.startswith(_TIMESTAMPTZ):
        source = f"({source} AT TIME ZONE 'UTC')"
    return f"CAST({source} AS {SQL_TYPES[column.type]}) AS {column.name}"


def _flagged_sql(engine: SqlEngine, spec: TableSpec, names: TableNames, types: dict[str, str]) -> str:
    """SQL with the typed columns, helper columns and one boolean per rule;
    ``types`` are the raw table's engine column types."""
    q = engine.quote
    typed_cols = ",\n    ".join(_typed_column(engine, c, types.get(c.name, "")) for c in spec.columns)
    helpers = []
    joins = ""
    if spec.key:
        key = ", ".join(spec.key)
        first, ties = _dedup_order(spec)
        # ascending, NULLs last; text by code point (PostgreSQL would use the database
        # collation, DuckDB compares bytes): the same copy wins on every engine
        collate = ' COLLATE "C"' if engine.dialect == "postgres" else ""
        order = ", ".join(
            f"{c}{collate if spec.column(c).type == 'text' else ''} ASC NULLS LAST" for c in [first, *ties]
        )
        helpers.append(f"ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {order}) AS _dup_rank")
    if spec.name != "accounts":
        helpers.append("(t.account_id IS NOT NULL AND a._account_id IS NULL) AS _orphan")
        joins = (
            "LEFT JOIN (SELECT DISTINCT CAST(account_id AS VARCHAR) AS _account_id "
            f"FROM {q(names.accounts)}) AS a ON a._account_id = t.account_id"
        )
    helpers.append("p.cutoff AS _cutoff, p.now AS _now")
    flags = ",\n    ".join(
        f"COALESCE({rule.predicate}, FALSE) AS _r_{rule.name}" for rule in _rules(spec)
    )
    return f"""
WITH typed AS (
  SELECT
    {typed_cols}
  FROM {q(names.physical(spec.name))}
), helped AS (
  SELECT t.*, {", ".join(helpers)}
  FROM typed AS t
  CROSS JOIN {PARAMS_TABLE} AS p
  {joins}
)
SELECT helped.*,
    {flags}
FROM helped"""


def _check_columns(engine: SqlEngine, spec: TableSpec, physical: str) -> dict[str, str]:
    """Raise ContractError naming the table/column when a column is missing
    or cannot be cast to its contract type; return the engine's column types."""
    types = engine.column_types(physical)
    lower = {c.lower(): c for c in types}
    missing = [c.name for c in spec.columns if c.name not in types]
    if missing:
        hint = [lower[m.lower()] for m in missing if m.lower() in lower]
        extra = f" (found differently-cased {', '.join(hint)})" if hint else ""
        raise ContractError(
            f"Table '{physical}' ({spec.name}) is missing required column(s): "
            f"{', '.join(missing)}{extra}"
        )
    for col in spec.columns:
        found = types[col.name]
        if any(found.startswith(prefix) for prefix in _COMPATIBLE[col.type]):
            continue
        try:
            engine.scalar(
                f"SELECT COUNT(CAST({engine.quote(col.name)} AS {SQL_TYPES[col.type]})) "
                f"FROM {engine.quote(physical)}"
            )
        except Exception as exc:  # the engine says why the cast failed
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ContractError(
                f"Column '{col.name}' of table '{physical}' ({spec.name}) cannot be cast to "
                f"{col.type} (found {found}): {first_line}"
            ) from exc
    return types


def utc_now() -> dt.datetime:
    """The current time as a naive UTC timestamp, like every staged timestamp
    (the host's time zone plays no part)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def as_of_cutoff(as_of: dt.date) -> dt.datetime:
    """The timestamp that closes an as-of date: rows at or before it are visible.

    An as-of date D means ``D 00:00:00`` UTC (staged timestamps are naive UTC):
    an event exactly then counts, one a second later does not (a morning batch
    sees every full day before D).
    """
    return dt.datetime.combine(as_of, dt.time())


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
                raise ContractError(
                    f"Required table '{physical}' ({logical}) is missing from the warehouse"
                )
            report.tables[logical] = TableStatus(logical, physical, present=False, content_hash="absent")
            continue
        types = _check_columns(engine, spec, physical)
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
            _create_view(engine, spec, _flagged_sql(engine, spec, names, engine.column_types(status.physical)))


def _filters(spec: TableSpec) -> tuple[str, str]:
    """(any integrity rule broken, any set-aside rule hit) as SQL over the flags."""
    rules = _rules(spec)
    any_bad = " OR ".join(f"_r_{r.name}" for r in rules if r.integrity) or "FALSE"
    any_ignored = " OR ".join(f"_r_{r.name}" for r in rules if not r.integrity) or "FALSE"
    return any_bad, any_ignored


def _create_view(engine: SqlEngine, spec: TableSpec, flagged: str) -> None:
    any_bad, any_ignored = _filters(spec)
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
        f"SELECT {columns} FROM ({flagged}) AS f WHERE _r_{rule.name} "
        f"ORDER BY {', '.join(key)} LIMIT {SAMPLE_KEYS}"
    )
    return [" / ".join("NULL" if pd.isna(v) else str(v) for v in row) for row in frame.itertuples(index=False)]


def _count_and_stage(
    engine: SqlEngine, spec: TableSpec, names: TableNames, report: ValidationReport, types: dict[str, str]
) -> TableStatus:
    rules = _rules(spec)
    flagged = _flagged_sql(engine, spec, names, types)
    integrity = [f"_r_{r.name}" for r in rules if r.integrity]
    ignored = [f"_r_{r.name}" for r in rules if not r.integrity]
    any_bad = " OR ".join(integrity) or "FALSE"
    any_ignored = " OR ".join(ignored) or "FALSE"
    counts = ",\n  ".join(f"COUNT(*) FILTER (WHERE _r_{r.name}) AS {r.name}" for r in rules)
    time_col = spec.time_column
    nullable = [c.name for c in spec.columns if c.nullable]
    first_known = "".join(
        f",\n  MIN({time_col}) FILTER (WHERE NOT ({any_bad} OR {any_ignored}) AND {c} IS NOT NULL) "
        f"AS _first_known_{c}"
        for c in nullable
    )
    row = engine.query(
        f"""SELECT COUNT(*) AS _total,
  MIN({time_col}) FILTER (WHERE NOT ({any_bad})) AS _first_time,
  MAX({time_col}) FILTER (WHERE NOT ({any_bad})) AS _last_time,
  COUNT(*) FILTER (WHERE {any_bad}) AS _bad,
  COUNT(*) FILTER (WHERE NOT ({any_bad}) AND ({any_ignored})) AS _ignored,
  {_content_hash_sql(engine, spec)} AS _content_hash,
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


def _content_hash_sql(engine: SqlEngine, spec: TableSpec) -> str:
    """SQL aggregate: the sum of a 64-bit hash of every row's typed columns,
    as text (a sum, not a XOR, so identical rows do not cancel out). The hash
    function is the engine's own; sqlglot does not translate it."""
    columns = ", ".join(spec.column_names)
    if engine.dialect == "postgres":
        # the row's text form tells NULL from '' and keeps every float digit
        row_hash = f"hashtextextended(CAST(ROW({columns}) AS TEXT), 0)"
    else:
        row_hash = f"HASH({columns})"
    return f"CAST(COALESCE(SUM({row_hash}), 0) AS VARCHAR)"


def _raise_unusable(status: TableStatus, as_of: dt.date) -> None:
    """A required table without a usable row: every feature built from it
    would read as "nothing happened", so stop."""
    detail = ("it is empty" if status.rows == 0 else
              f"of its {status.rows:,} rows {status.bad:,} break a rule and {status.ignored:,} are dated after it")
    raise ContractError(
        f"Table '{status.physical}' ({status.table}) has no usable rows as of {as_of}: {detail}. "
        "Load the data, or validate as of a date the data covers."
    )


def _raise_on_bad(report: ValidationReport) -> None:
    over = [s for s in report.tables.values() if s.present and s.bad_share > report.max_bad_share]
    if over:
        detail = "; ".join(
            f"{s.table}: {s.bad:,} of {s.rows:,} rows ({s.bad_share:.1%})" for s in over
        )
        raise DataQualityError(
            f"Too many bad rows (limit {report.max_bad_share:.1%} per table): {detail}. "
            "See the validation report for the rules they break.",
            report,
        )


def _to_datetime(value: object) -> dt.datetime | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).to_pydatetime()
