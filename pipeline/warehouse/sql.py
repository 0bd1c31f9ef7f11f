"""Statements and results, the same for every engine: SQL written once in
DuckDB's dialect and transpiled, values bound as plain Python, identifiers
quoted, and PostgreSQL results shaped like DuckDB's."""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import pandas as pd
import sqlglot


@lru_cache(maxsize=512)
def transpile(sql: str, dialect: str) -> str:
    """Translate DuckDB-dialect SQL to ``dialect`` (cached)."""
    if dialect == "duckdb":
        return sql
    if dialect == "spark":
        from pipeline.warehouse.spark_sql import to_spark

        return ";\n".join(to_spark(sql))
    return ";\n".join(sqlglot.transpile(sql, read="duckdb", write=dialect))


def quote(identifier: str) -> str:
    """Quote an identifier (table or column name)."""
    return '"' + identifier.replace('"', '""') + '"'


def bind(text: str, params: Mapping[str, Any] | None, dialect: str) -> tuple[str, dict[str, Any]]:
    """The statement (already in ``dialect``) and its ``$name`` values, as the driver takes them."""
    bound = {k: _to_python(v) for k, v in (params or {}).items()}
    if dialect == "duckdb":
        # DuckDB refuses unused named parameters; keep the ones the SQL uses
        # ("$ab" is not a use of "a").
        bound = {k: v for k, v in bound.items() if re.search(rf"\${re.escape(k)}(?!\w)", text)}
    elif bound:
        # psycopg reads every '%' as a placeholder: escape the literal ones.
        text = re.sub(r"%(?!\(\w+\)s)", "%%", text)
    return text, bound


def _to_python(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def normalise_pg_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Make PostgreSQL results look like DuckDB's: floats not Decimals,
    datetime64 not datetime.date objects."""
    out = frame.copy()
    for col in out.columns:
        series = out[col]
        if series.dtype != object:
            continue
        sample = series.dropna()
        if sample.empty:
            continue
        first = sample.iloc[0]
        if isinstance(first, decimal.Decimal):
            out[col] = series.astype("float64")
        elif isinstance(first, (dt.date, dt.datetime)):
            out[col] = pd.to_datetime(series)
        elif isinstance(first, bool):
            out[col] = series.astype("boolean")
    return out
