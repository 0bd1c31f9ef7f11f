"""What the feature library needs from a warehouse connection.

`pipeline.warehouse.Warehouse` implements this protocol; the library only
builds SQL (DuckDB dialect, values as ``$name`` parameters) and hands it over,
so it never imports a database driver.
"""

from __future__ import annotations

from collections.abc import Mapping
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
