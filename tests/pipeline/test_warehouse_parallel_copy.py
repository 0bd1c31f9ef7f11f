"""PostgreSQL: a large replace loaded by several COPY streams at once keeps
every value, swaps atomically, cleans up after a failure and after a killed
process, and falls back to one stream inside a transaction."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import psycopg
import pytest

from pipeline.warehouse import Warehouse, WarehouseError, writes

pytestmark = pytest.mark.postgres

TABLE = 'big "odd" table; --'


def _frame(rows: int = 1_000) -> pd.DataFrame:
    i = np.arange(rows)
    return pd.DataFrame(
        {
            "id": i,
            "score": np.where(i % 7 == 0, np.nan, i / 3),
            "text": [None if k % 11 == 0 else f'row {k}, "quoted"\nnew line ; DROP' for k in i],
            "day": [dt.date(2026, 1, 1) + dt.timedelta(days=int(k % 400)) for k in i],
            "at": pd.to_datetime("2026-01-01 00:00:00.000123") + pd.to_timedelta(i, unit="s"),
            "flag": i % 2 == 0,
        }
    )


@pytest.fixture
def opened(pg_wh, monkeypatch) -> list[int]:
    """Parallel replaces from 10 rows on; counts the extra connections opened."""
    monkeypatch.setattr(writes, "PARALLEL_COPY_MIN_ROWS", 10)
    count: list[int] = []
    original = Warehouse._open_postgres

    def counting(url):
        count.append(1)
        return original(url)

    monkeypatch.setattr(Warehouse, "_open_postgres", staticmethod(counting))
    return count


def _loads(wh: Warehouse) -> list[str]:
    found = wh.query(
        "SELECT table_name FROM information_schema.tables WHERE starts_with(table_name, $p) "
        "AND table_schema = current_schema() ORDER BY 1",
        {"p": writes.LOAD_PREFIX},
    )
    return found["table_name"].tolist()


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("id").reset_index(drop=True)


def test_a_large_replace_uses_several_streams_and_keeps_every_value(pg_wh, opened, monkeypatch):
    frame = _frame()
    pg_wh.write_table(TABLE, pd.DataFrame({"old": [1]}))
    pg_wh.write_table(TABLE, frame)
    assert len(opened) == writes.COPY_STREAMS == 2
    parallel = _sorted(pg_wh.read_table(TABLE))
    monkeypatch.setattr(writes, "PARALLEL_COPY_MIN_ROWS", 10**9)  # the same frame through one stream
    pg_wh.write_table("serial", frame)
    assert len(opened) == 2
    pd.testing.assert_frame_equal(parallel, _sorted(pg_wh.read_table("serial")))
    assert pg_wh.column_types(TABLE) == pg_wh.column_types("serial")
    assert parallel["score"].isna().sum() == frame["score"].isna().sum()
    assert parallel["text"].isna().sum() == frame["text"].isna().sum()
    assert _loads(pg_wh) == []


def test_readers_see_the_old_table_until_the_swap(pg_wh, opened, monkeypatch):
    pg_wh.write_table(TABLE, pd.DataFrame({"id": [1, 2, 3]}))
    schema = pg_wh.scalar("SELECT current_schema()")
    seen: list[int] = []
    original = writes._copy

    def copy_then_read(cur, qname, columns, table):
        original(cur, qname, columns, table)
        with Warehouse(pg_wh.url) as reader:  # another session, mid-load
            seen.append(int(reader.scalar(f"SELECT COUNT(*) FROM {reader.quote(schema)}.{reader.quote(TABLE)}")))

    monkeypatch.setattr(writes, "_copy", copy_then_read)
    pg_wh.write_table(TABLE, _frame(100))
    assert seen == [3, 3]
    assert pg_wh.row_count(TABLE) == 100


def test_a_failed_stream_leaves_the_previous_table_and_no_load_table(pg_wh, opened):
    pg_wh.write_table(TABLE, pd.DataFrame({"text": ["old 1", "old 2"]}))
    bad = pd.DataFrame({"text": ["fine"] * 99 + ["bad\x00byte"]})  # the last stream fails: text cannot hold NUL
    with pytest.raises(WarehouseError, match="Writing big"):
        pg_wh.write_table(TABLE, bad)
    assert len(opened) == 2
    assert pg_wh.read_table(TABLE)["text"].tolist() == ["old 1", "old 2"]
    assert _loads(pg_wh) == []
    pg_wh.write_table(TABLE, pd.DataFrame({"text": ["new"] * 20}))  # the connection is still usable
    assert pg_wh.row_count(TABLE) == 20


def test_a_load_left_by_a_killed_process_is_dropped_by_the_next(pg_wh, opened):
    schema = pg_wh.scalar("SELECT current_schema()")
    dead, alive = f"{writes.LOAD_PREFIX}dead", f"{writes.LOAD_PREFIX}alive"
    pg_wh.write_table(dead, pd.DataFrame({"a": [1]}))
    pg_wh.write_table(alive, pd.DataFrame({"a": [1]}))
    with psycopg.connect(pg_wh.url, autocommit=True) as loader:  # a load still running in another session
        loader.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [f"{schema}.{alive}"])
        pg_wh.write_table(TABLE, _frame(50))
        assert _loads(pg_wh) == [alive]
    pg_wh.write_table(TABLE, _frame(50))  # its session has ended: now it is abandoned
    assert _loads(pg_wh) == []


def test_inside_a_transaction_a_replace_uses_one_stream(pg_wh, opened):
    pg_wh.write_table(TABLE, pd.DataFrame({"id": [1]}))
    with pytest.raises(RuntimeError, match="boom"):
        with pg_wh.transaction():
            pg_wh.write_table(TABLE, _frame(100))
            assert pg_wh.row_count(TABLE) == 100
            raise RuntimeError("boom")
    assert opened == []
    assert pg_wh.read_table(TABLE)["id"].tolist() == [1]


def test_small_and_temporary_replaces_use_one_stream(pg_wh, opened, monkeypatch):
    pg_wh.write_table("tmp", _frame(100), temporary=True)
    monkeypatch.setattr(writes, "PARALLEL_COPY_MIN_ROWS", 101)
    pg_wh.write_table(TABLE, _frame(100))
    assert opened == []
    assert pg_wh.row_count("tmp") == pg_wh.row_count(TABLE) == 100


_KILLED_LOADER = """
import sys, time
import pandas as pd
from pipeline.warehouse import Warehouse, writes

writes.PARALLEL_COPY_MIN_ROWS = 10
original = writes._copy

def copy_then_hang(cur, qname, columns, table):
    original(cur, qname, columns, table)
    print("loading", flush=True)
    time.sleep(600)

writes._copy = copy_then_hang
with Warehouse(sys.argv[1]) as wh:
    wh.execute(f"SET search_path TO {sys.argv[2]}")
    wh.write_table(sys.argv[3], pd.DataFrame({"id": range(100)}))
"""


def test_kill_9_mid_load_leaves_the_old_table_and_the_next_load_cleans_up(pg_wh, monkeypatch):
    schema = pg_wh.scalar("SELECT current_schema()")
    pg_wh.write_table(TABLE, pd.DataFrame({"id": [1, 2]}))
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_LOADER, pg_wh.url, schema, TABLE],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert "loading" in child.stdout.readline()  # both streams print it, maybe on one line
        (load,) = _loads(pg_wh)  # the hidden table, half filled
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
    assert pg_wh.read_table(TABLE)["id"].tolist() == [1, 2]
    # the killed session's advisory lock goes when the server notices the closed socket
    key = {"key": f"{schema}.{load}"}
    for _ in range(100):
        if pg_wh.scalar("SELECT pg_try_advisory_lock(hashtextextended($key, 0))", key):
            pg_wh.execute("SELECT pg_advisory_unlock(hashtextextended($key, 0))", key)
            break
        time.sleep(0.1)
    monkeypatch.setattr(writes, "PARALLEL_COPY_MIN_ROWS", 10)
    pg_wh.write_table(TABLE, _frame(30))
    assert _loads(pg_wh) == []
    assert pg_wh.row_count(TABLE) == 30
