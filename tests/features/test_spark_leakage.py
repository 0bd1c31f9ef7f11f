"""Point-in-time property on Spark: rows dated after the as-of cutoff never
change a feature at that as-of (the property of test_leakage.py on one
derandomised example: a Spark example costs ~25 s, not milliseconds; the
parity tests show the same SQL gives DuckDB's values, where the property
runs 25 examples)."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.conftest import load, spark_warehouse
from tests.features.test_leakage import LATER, T, _assert_only_empty_extra_families, _features, base_data, later_rows

pytestmark = pytest.mark.spark


@settings(
    max_examples=1,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.generate],
)
@given(base=base_data(), later=later_rows())
def test_rows_after_the_cutoff_never_change_features_at_the_cutoff_on_spark(spark_url, base, later):
    warehouse = spark_warehouse(spark_url)
    wh = next(warehouse)
    try:
        load(wh, **base)
        expected, families_off = _features(wh, T)
        assert not expected.empty
        for name, frame in later.items():
            wh.write_table(name, frame, mode="append" if name in base else "replace")
        # validated as of a later date: the staged views hold the new rows, the feature SQL must ignore them at T
        later_frame, _ = _features(wh, LATER)
        _assert_only_empty_extra_families(expected, later_frame, families_off)
        pd.testing.assert_frame_equal(later_frame[list(expected.columns)], expected)
    finally:
        warehouse.close()
