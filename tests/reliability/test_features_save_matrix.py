"""save_matrix writes through a temporary file of its own, so two concurrent
`churn features` runs saving to the same path both succeed and leave one
complete Parquet file (before: both wrote `<path>.tmp` and collided)."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from pandas import read_parquet as load_matrix  # build.load_matrix was a one-line alias of it

from features.build import save_matrix


def _frame(seed: int, rows: int = 20_000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"account_id": [f"a{i}" for i in range(rows)], "writer": seed, **{f"f{j}": rng.random(rows) for j in range(8)}}
    )


def test_concurrent_saves_to_one_path_both_succeed(tmp_path):
    path = tmp_path / "out" / "features.parquet"
    frames = [_frame(seed) for seed in range(6)]
    start = threading.Barrier(len(frames))
    errors: list[BaseException] = []

    def save(frame: pd.DataFrame) -> None:
        try:
            start.wait()
            for _ in range(4):
                save_matrix(frame, path)
        except BaseException as exc:  # noqa: BLE001 - collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(frame,)) for frame in frames]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors, errors
    result = load_matrix(path)  # complete and readable: exactly one writer's frame
    writer = int(result["writer"].iloc[0])
    pd.testing.assert_frame_equal(result, frames[writer])
    assert [p.name for p in path.parent.iterdir()] == ["features.parquet"]  # no temp files left


def test_a_failed_save_leaves_no_temp_file_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "features.parquet"
    save_matrix(_frame(1, rows=10), path)

    def disk_full(self, target, *args, **kwargs):  # half a file written, then the disk is full
        with open(target, "wb") as out:
            out.write(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_matrix(_frame(2, rows=10), path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["features.parquet"]
    pd.testing.assert_frame_equal(load_matrix(path), _frame(1, rows=10))
