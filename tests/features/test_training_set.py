"""Training sets at scale: the bounded-memory build (write_training_set) has
the rows and values of the in-memory one, and the bit-mask window counts
hold past one mask's worth of snapshots (features.families._usage_spans)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.build import KEY, LabelError, build_features, build_training_set, snapshot_dates, write_training_set
from features.families._usage_spans import SNAPSHOTS_PER_CHUNK
from features.staging import validate
from tests.conftest import load
from tests.features.data import EVENT_TYPES, engine_warehouse, random_tables

END = dt.date(2024, 6, 15)


@pytest.fixture(scope="module")
def random_wh():
    with engine_warehouse("duckdb") as wh:
        load(wh, **random_tables(seed=11, n_accounts=12))
        yield wh, validate(wh, END, max_bad_share=1.0)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(KEY, kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("per_part", [1, 4])
def test_written_training_set_equals_the_in_memory_one(random_wh, tmp_path, per_part):
    wh, report = random_wh
    start = dt.date(2023, 10, 1)
    in_memory = build_training_set(wh, report, start, END, mature_only=False, max_event_types=3)
    path = write_training_set(
        wh, report, start, END, tmp_path / "train", mature_only=False, max_event_types=3, snapshots_per_part=per_part
    )
    assert path == tmp_path / "train" and path.is_dir()
    assert len(list(path.glob("part-*.parquet"))) == -(-in_memory["as_of_date"].nunique() // per_part)
    written = pd.read_parquet(path)
    assert list(written.columns) == list(in_memory.columns)
    pd.testing.assert_frame_equal(_sorted(written), in_memory)
    # written again: the dataset is replaced, not appended to
    write_training_set(wh, report, start, END, path, mature_only=False, max_event_types=3, snapshots_per_part=per_part)
    assert len(pd.read_parquet(path)) == len(in_memory)


def test_written_training_set_keeps_mature_snapshots_only(random_wh, tmp_path):
    wh, report = random_wh
    start = dt.date(2023, 10, 1)
    in_memory = build_training_set(wh, report, start, END, max_event_types=3)
    written = pd.read_parquet(write_training_set(wh, report, start, END, tmp_path / "t", max_event_types=3))
    pd.testing.assert_frame_equal(_sorted(written), in_memory)
    assert written["mature"].all()
    with pytest.raises(LabelError):
        write_training_set(wh, report, dt.date(2024, 6, 1), END, tmp_path / "none")
    assert not (tmp_path / "none").exists() and not list(tmp_path.glob(".none.*"))


def test_more_snapshots_than_one_mask_holds(random_wh):
    """Weekly snapshots: several chunks of bit masks; each snapshot's counts
    equal its own single-snapshot build."""
    wh, report = random_wh
    dates = snapshot_dates(dt.date(2023, 10, 1), END, "weekly")
    assert len(dates) > 2 * SNAPSHOTS_PER_CHUNK
    multi = build_features(wh, dates, report, event_types=EVENT_TYPES)
    picks = [dates[0], dates[SNAPSHOTS_PER_CHUNK - 1], dates[SNAPSHOTS_PER_CHUNK], dates[-1]]
    for d in picks:
        single = build_features(wh, [d], report, event_types=EVENT_TYPES)
        got = multi[multi["as_of_date"] == pd.Timestamp(d)].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, single)
    assert multi["active_users_30d"].sum() > 0 and multi["active_days_30d"].sum() > 0


def test_a_part_is_written_slice_by_slice_with_one_schema(tmp_path):
    """A slice whose text column is all missing keeps the column's type (the
    schema comes from every row), and the file reads back as the frame."""
    from features.build import _write_parquet

    frame = pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d", "e"],
            "segment": pd.array([None, None, "SMB", "Mid", None], dtype="string"),
            "x": [1.0, float("nan"), 3.0, 4.0, 5.0],
        }
    )
    _write_parquet(frame, tmp_path / "part.parquet", rows=2)
    back = pd.read_parquet(tmp_path / "part.parquet")
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert pq.ParquetFile(tmp_path / "part.parquet").metadata.num_row_groups == 3
