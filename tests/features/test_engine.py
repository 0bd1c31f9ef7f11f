"""features.engine.unordered: a build lets DuckDB drop insertion order, and
gives the connection its own setting back, whatever happens."""

from __future__ import annotations

import pandas as pd
import pytest

from features.build import AsOfError, build_features
from features.engine import unordered
from tests.features.data import stage, with_history
from tests.features.test_features import VALIDATE_AS_OF, T, rich_tables


def _setting(wh) -> bool:
    return bool(wh.scalar("SELECT current_setting('preserve_insertion_order')"))


@pytest.mark.parametrize("own", [True, False])
def test_a_build_restores_the_connections_own_setting(duckdb_wh, own):
    duckdb_wh.execute(f"SET preserve_insertion_order = {str(own).lower()}")
    report = stage(duckdb_wh, VALIDATE_AS_OF, **with_history(rich_tables()))
    with unordered(duckdb_wh):
        assert _setting(duckdb_wh) is False
    assert _setting(duckdb_wh) is own
    matrix = build_features(duckdb_wh, [T], report)
    assert len(matrix) and _setting(duckdb_wh) is own
    with pytest.raises(AsOfError):  # a failed build too
        build_features(duckdb_wh, [T.replace(year=T.year + 5)], report)
    assert _setting(duckdb_wh) is own


def test_the_matrix_is_the_same_whatever_the_setting(duckdb_wh):
    report = stage(duckdb_wh, VALIDATE_AS_OF, **with_history(rich_tables()))
    duckdb_wh.execute("SET preserve_insertion_order = true")
    first = build_features(duckdb_wh, [T], report)
    duckdb_wh.execute("SET preserve_insertion_order = false")

    pd.testing.assert_frame_equal(build_features(duckdb_wh, [T], report), first)
