"""What the feature library needs from a warehouse connection.

`pipeline.warehouse.Warehouse` implements this protocol; the library only
builds SQL (DuckDB dialect, values as ``$name`` parameters) and hands it over,
so it never imports a database driver.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, Protocol

import pandas as pd


class SqlEngine(Protocol):
    dialect: str

    def quote(self, identifier: str) -> str: ...

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame: ...

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any: ...

    def table_exists(self, name: str) -> bool: ...

    def column_types(self, name: str) -> dict[str, str]: ...

    def drop(self, name: str, kind: Literal["TABLE", "VIEW"] = "TABLE") -> None: ...

    def write_table(
        self,
        name: str,
        frame: pd.DataFrame,
        mode: Literal["replace", "append"] = "replace",
        temporary: bool = False,
    ) -> None: ...


@contextmanager
def unordered(engine: SqlEngine) -> Iterator[None]:
    """DuckDB: let the engine forget insertion order while inside (fewer
    buffers and less time on large aggregates and temp tables). For builds
    that never read an order they did not ask for: every result the feature
    build reads has an ORDER BY. The connection's own setting is restored;
    other engines are left as they are."""
    if engine.dialect != "duckdb":
        yield
        return
    before = engine.scalar("SELECT current_setting('preserve_insertion_order')")
    engine.execute("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        engine.execute(f"SET preserve_insertion_order = {'true' if before else 'false'}")
