"""What staging checks, as SQL: the casts to the contract's types and the
row rules of each table.

A table's rules are generic (a NULL in a NOT NULL column, a duplicate key, an
account id not in ``accounts``, for event logs a time later than now or after
the as-of cutoff) plus the table's own ``checks`` from :mod:`features.contract`.
:func:`flagged_sql` turns them into one boolean column per rule over the typed
rows; :mod:`features.staging` counts those flags and keeps the clean rows.
"""

from __future__ import annotations

from features.contract import Column, Rule, TableNames, TableSpec
from features.engine import SqlEngine
from features.staging_report import ContractError

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
    "numeric": (
        "integer",
        "bigint",
        "smallint",
        "tinyint",
        "hugeint",
        "double",
        "real",
        "float",
        "decimal",
        "numeric",
        "ubigint",
        "uinteger",
        "usmallint",
        "utinyint",
    ),
    "integer": ("integer", "bigint", "smallint", "tinyint", "hugeint", "ubigint", "uinteger", "usmallint", "utinyint"),
    "boolean": ("boolean",),
}

#: engine type names (lower case, prefix match) of time-zone-aware timestamps
_TIMESTAMPTZ = ("timestamp with time zone", "timestamptz")

#: the one-row temp table with the run's as-of cutoff and "now" that the rules compare with
PARAMS_TABLE = "_churn_run_params"


def table_rules(spec: TableSpec) -> tuple[Rule, ...]:
    """Every rule of a table, in report order."""
    rules: list[Rule] = [
        Rule(f"null_{c.name}", f"{c.name} is null", f"{c.name} IS NULL") for c in spec.columns if not c.nullable
    ]
    if spec.key:
        key = ", ".join(spec.key)
        first, ties = dedup_order(spec)
        # rows with a NULL key are counted under null_<key> only: they are no one's duplicate
        not_null = " AND ".join(f"{k} IS NOT NULL" for k in spec.key)
        rules.append(
            Rule(
                "duplicate_key",
                f"duplicate {key} (earliest {first} kept, ties by {', '.join(ties)})",
                f"{not_null} AND _dup_rank > 1",
            )
        )
    if spec.name != "accounts":
        rules.append(Rule("orphan_account", "account_id not in accounts", "_orphan"))
    rules.extend(spec.checks)
    if spec.event_log:
        rules.append(Rule("in_the_future", f"{spec.time_column} later than now", f"{spec.time_column} > _now"))
        rules.append(
            Rule(
                "after_as_of",
                f"{spec.time_column} after the as-of cutoff (ignored, not an error)",
                f"{spec.time_column} > _cutoff",
                integrity=False,
            )
        )
    return tuple(rules)


def dedup_order(spec: TableSpec) -> tuple[str, list[str]]:
    """Which of several rows with one key is kept: the earliest by the time
    column, ties broken by every other contract column in contract order."""
    first = spec.time_column or spec.key[0]
    ties = [c for c in spec.column_names if c != first and c not in spec.key]
    return first, ties


def filters(spec: TableSpec) -> tuple[str, str]:
    """(any integrity rule broken, any set-aside rule hit) as SQL over the flags."""
    rules = table_rules(spec)
    any_bad = " OR ".join(f"_r_{r.name}" for r in rules if r.integrity) or "FALSE"
    any_ignored = " OR ".join(f"_r_{r.name}" for r in rules if not r.integrity) or "FALSE"
    return any_bad, any_ignored


def _typed_column(engine: SqlEngine, column: Column, found: str) -> str:
    """The cast of one raw column to its contract type. Every timestamp is read
    as UTC: a time-zone-aware value is converted to its UTC wall time first
    (``AT TIME ZONE 'UTC'``, the same on DuckDB and PostgreSQL), so neither the
    host's nor the session's time zone changes a timestamp or a date."""
    source = engine.quote(column.name)
    if column.type in ("timestamp", "date") and found.startswith(_TIMESTAMPTZ):
        source = f"({source} AT TIME ZONE 'UTC')"
    return f"CAST({source} AS {SQL_TYPES[column.type]}) AS {column.name}"


def flagged_sql(engine: SqlEngine, spec: TableSpec, names: TableNames, types: dict[str, str]) -> str:
    """SQL with the typed columns, helper columns and one boolean per rule;
    ``types`` are the raw table's engine column types."""
    q = engine.quote
    typed_cols = ",\n    ".join(_typed_column(engine, c, types.get(c.name, "")) for c in spec.columns)
    helpers = []
    joins = ""
    if spec.key:
        key = ", ".join(spec.key)
        first, ties = dedup_order(spec)
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
    flags = ",\n    ".join(f"COALESCE({rule.predicate}, FALSE) AS _r_{rule.name}" for rule in table_rules(spec))
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


def content_hash_sql(engine: SqlEngine, spec: TableSpec) -> str:
    """SQL aggregate: the sum of a 64-bit hash of every row's typed columns,
    as text (a sum, not a XOR, so identical rows do not cancel out). The hash
    function is the engine's own; sqlglot does not translate it."""
    columns = ", ".join(spec.column_names)
    if engine.dialect == "postgres":
        # the row's text form tells NULL from '' and keeps every float digit
        row_hash = f"hashtextextended(CAST(ROW({columns}) AS TEXT), 0)"
    elif engine.dialect == "spark":
        # Spark's HASH is 32-bit, and a BIGINT sum overflows (an error under ANSI):
        # a 64-bit hash summed as DECIMAL; the NULL flags tell (a, NULL) from (NULL, a)
        flags = ", ".join(f"{c} IS NULL" for c in spec.column_names)
        return f"CAST(COALESCE(SUM(CAST(XXHASH64({columns}, {flags}) AS DECIMAL(38, 0))), 0) AS VARCHAR)"
    else:
        row_hash = f"HASH({columns})"
    return f"CAST(COALESCE(SUM({row_hash}), 0) AS VARCHAR)"


def check_columns(engine: SqlEngine, spec: TableSpec, physical: str) -> dict[str, str]:
    """Raise ContractError naming the table/column when a column is missing
    or cannot be cast to its contract type; return the engine's column types."""
    types = engine.column_types(physical)
    lower = {c.lower(): c for c in types}
    missing = [c.name for c in spec.columns if c.name not in types]
    if missing:
        hint = [lower[m.lower()] for m in missing if m.lower() in lower]
        extra = f" (found differently-cased {', '.join(hint)})" if hint else ""
        raise ContractError(
            f"Table '{physical}' ({spec.name}) is missing required column(s): {', '.join(missing)}{extra}"
        )
    for col in spec.columns:
        found = types[col.name]
        if any(found.startswith(prefix) for prefix in _COMPATIBLE[col.type]):
            continue
        try:
            engine.scalar(
                f"SELECT COUNT(CAST({engine.quote(col.name)} AS {SQL_TYPES[col.type]})) FROM {engine.quote(physical)}"
            )
        except Exception as exc:  # the engine says why the cast failed
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ContractError(
                f"Column '{col.name}' of table '{physical}' ({spec.name}) cannot be cast to "
                f"{col.type} (found {found}): {first_line}"
            ) from exc
    return types
