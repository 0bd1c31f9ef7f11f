"""DuckDB-dialect SQL for Spark SQL: sqlglot's Spark dialect, plus the few
rewrites where the same text would mean something else on Spark.

- ``EPOCH(a - b)`` of two timestamps: sqlglot writes ``UNIX_TIMESTAMP`` of an
  interval, which Spark refuses; it becomes the difference in microseconds
  over 1e6, a DOUBLE as on DuckDB.
- A decimal literal (``1.0``, ``30.4375``): DuckDB computes with it as a
  DOUBLE where Spark keeps a DECIMAL of the literal's scale, so
  ``AVG(CASE .. THEN 1.0 ELSE 0.0 END)`` would round to five places. Each
  becomes ``CAST(.. AS DOUBLE)``.
"""

from __future__ import annotations

from functools import lru_cache

import sqlglot
from sqlglot import exp


def _fix(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.TimeToUnix) and isinstance(node.this, exp.Sub):
        later, earlier = node.this.this, node.this.expression
        micros = exp.Anonymous(this="TIMESTAMPDIFF", expressions=[exp.var("MICROSECOND"), earlier.copy(), later.copy()])
        return exp.Div(
            this=exp.Cast(this=micros, to=exp.DataType.build("DOUBLE")), expression=exp.Literal.number(1_000_000)
        )
    if (
        isinstance(node, exp.Literal)
        and node.is_number
        and not node.is_int
        and not isinstance(node.parent, exp.DataTypeParam)
    ):
        return exp.Cast(this=node.copy(), to=exp.DataType.build("DOUBLE"))
    return node


@lru_cache(maxsize=512)
def to_spark(sql: str) -> tuple[str, ...]:
    """The statements of ``sql`` (DuckDB dialect) in Spark SQL, one per element."""
    return tuple(tree.transform(_fix).sql(dialect="spark") for tree in sqlglot.parse(sql, read="duckdb") if tree)
