"""The DuckDB read copy: published whole the first time, then only the
(model, date) partitions that changed; always the same rows as the
warehouse, and a failed publish leaves the previous copy."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pytest

from pipeline.warehouse import Warehouse, WarehouseError, writes

D1, D2, D3 = dt.date(2026, 9, 30), dt.date(2026, 10, 31), dt.date(2026, 11, 30)
VIEW = {"latest": "SELECT * FROM scores WHERE as_of_date = (SELECT MAX(as_of_date) FROM scores)"}
PARTS = {"scores": ("model_name", "as_of_date")}


def scores(date: dt.date, values: list[float], model: str = "m") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": [f"a{i}" for i in range(len(values))],
            "as_of_date": pd.to_datetime([date] * len(values)),
            "model_name": model,
            "v": values,
        }
    )


def rows(conn, table: str) -> list[tuple]:
    return conn.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()


def assert_copy_is_the_warehouse(wh: Warehouse, copy) -> None:
    with duckdb.connect(str(copy), read_only=True) as published:
        for table in ("scores", "other", "latest"):
            query = f"SELECT * FROM ({VIEW[table]})" if table in VIEW else f"SELECT * FROM {table}"
            expected = wh._conn.execute(f"{query} ORDER BY ALL").fetchall()  # the warehouse's own connection
            assert rows(published, table) == expected


@pytest.fixture
def wh(tmp_path):
    with Warehouse(f"duckdb://{tmp_path / 'w.duckdb'}", create=True) as wh:
        wh.write_table("scores", scores(D1, [0.1, 0.2]))
        wh.write_table("scores", scores(D2, [0.3, 0.4]), mode="append")
        wh.write_table("other", pd.DataFrame({"x": [1, 2]}))
        yield wh


def publish(wh: Warehouse, copy) -> None:
    wh.publish_copy(copy, ["scores", "other"], VIEW, PARTS)


def test_only_changed_partitions_are_rewritten_and_the_copy_equals_the_warehouse(wh, tmp_path, monkeypatch):
    copy = tmp_path / "w.outputs.duckdb"
    publish(wh, copy)  # first time: whole
    assert_copy_is_the_warehouse(wh, copy)
    updated = []
    original = writes._update_partitions
    monkeypatch.setattr(writes, "_update_partitions", lambda *a: updated.append(a[3]) or original(*a))
    wh.execute("DELETE FROM scores WHERE as_of_date = DATE '2026-10-31'")  # a date replaced
    wh.write_table("scores", scores(D2, [0.5, 0.6, 0.7]), mode="append")
    wh.write_table("scores", scores(D3, [0.8]), mode="append")  # a new date
    wh.write_table("scores", scores(D3, [0.9], model="n"), mode="append")  # another model
    wh.execute("DELETE FROM scores WHERE as_of_date = DATE '2026-09-30'")  # a date gone
    wh.write_table("other", pd.DataFrame({"x": [3]}))  # not partitioned: copied whole
    publish(wh, copy)
    assert updated == ["scores"]  # from the previous copy, partition by partition
    assert_copy_is_the_warehouse(wh, copy)
    # same count, other values: still seen as changed
    wh.execute("UPDATE scores SET v = v + 1 WHERE as_of_date = DATE '2026-10-31'")
    publish(wh, copy)
    assert_copy_is_the_warehouse(wh, copy)


def test_a_new_column_publishes_the_copy_afresh(wh, tmp_path):
    copy = tmp_path / "w.outputs.duckdb"
    publish(wh, copy)
    wh.execute("ALTER TABLE scores ADD COLUMN note VARCHAR")
    wh.execute("UPDATE scores SET note = 'n'")
    publish(wh, copy)
    assert_copy_is_the_warehouse(wh, copy)
    with duckdb.connect(str(copy), read_only=True) as published:
        assert [
            c
            for (c,) in published.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = 'scores'"
            ).fetchall()
        ][-1] == "note"


def test_a_failed_publish_keeps_the_previous_copy(wh, tmp_path):
    copy = tmp_path / "w.outputs.duckdb"
    publish(wh, copy)
    before = copy.read_bytes()
    wh.write_table("scores", scores(D3, [0.8]), mode="append")
    with pytest.raises(WarehouseError, match="Publishing the read copy"):
        wh.publish_copy(copy, ["scores", "other"], {"latest": "SELECT * FROM no_such_table"}, PARTS)
    assert copy.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    publish(wh, copy)
    assert_copy_is_the_warehouse(wh, copy)


def test_an_unreadable_copy_is_published_afresh(wh, tmp_path):
    copy = tmp_path / "w.outputs.duckdb"
    copy.write_bytes(b"not a database" * 1000)
    publish(wh, copy)
    assert_copy_is_the_warehouse(wh, copy)
