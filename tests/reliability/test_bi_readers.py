"""Items 8 and 9 of issue #11: a CSM's dashboard and the morning job coexist.

A BI client holding a read-only connection and one opening a connection per
query run in their own processes during the scoring job, on DuckDB (they read
the published copy ``warehouse.outputs.duckdb``) and on PostgreSQL (they read
the tables, one of them from inside a long idle transaction). Scoring finishes,
no reader sees an error. Before: DuckDB readers failed at once with "Could not
set lock" and a reader holding the file made `churn score` fail; on
PostgreSQL every run's CREATE OR REPLACE VIEW queued behind the idle
transaction (and every later dashboard query queued behind it).
"""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline import steps
from pipeline.warehouse import Warehouse, WarehouseError
from tests.pipeline.churn_data import END, churn_executable, clean_env, mlflow_restored, read
from tests.reliability.pg import postgres_copy

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def readers(target: str, tmp_path: Path):
    """Both kinds of BI client against ``target``; yields, then stops them and
    returns their output lines through the list it yields."""
    stop = tmp_path / "stop-readers"
    stop.unlink(missing_ok=True)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.bi_reader", mode, target, str(stop)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for mode in ("hold", "loop")
    ]
    lines: list[str] = []
    time.sleep(1.5)  # both have run queries before the job starts
    try:
        yield lines
    finally:
        stop.touch()
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            lines.extend(out.splitlines())
            lines.append(f"exit={proc.returncode}")


def _assert_clean(lines: list[str]) -> None:
    assert not [line for line in lines if line.startswith("ERROR")], lines
    done = [line for line in lines if line.startswith("DONE")]
    assert len(done) == 2 and all("failures=0" in d and "queries=0" not in d for d in done), lines
    assert lines.count("exit=0") == 2, lines


def test_duckdb_readers_and_churn_score_coexist(trained_env, prefect_api_url, tmp_path):
    settings = trained_env.copy(tmp_path)
    with mlflow_restored():
        steps.publish_outputs(settings)  # the copy exists before the dashboards open it
    copy = tmp_path / "warehouse.outputs.duckdb"
    before = read(settings, "SELECT MAX(scored_at) AS t FROM churn_scores").iloc[0]["t"]
    env = clean_env(
        CHURN_DATA_DIR=str(tmp_path),
        MLFLOW_TRACKING_URI=trained_env.settings.tracking_uri,
        PREFECT_API_URL=prefect_api_url,
    )
    with readers(str(copy), tmp_path) as lines:
        run = subprocess.run(
            [churn_executable(), "score", "--as-of", str(END), "--top", "3"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        time.sleep(1.0)  # the readers see the new copy
    _assert_clean(lines)
    import duckdb

    with duckdb.connect(str(copy), read_only=True) as conn:  # the published copy is the new one
        (after,) = conn.execute("SELECT MAX(scored_at) FROM churn_scores").fetchone()
    assert after > before


def test_a_reader_of_the_warehouse_file_itself_gets_a_clear_wait_message(trained_env, tmp_path):
    """DuckDB allows one process per file when one writes: a tool holding the
    warehouse file makes the job wait (configurable), then fail naming the
    read copy, instead of retrying for half a minute with a driver message."""
    import duckdb

    settings = trained_env.copy(tmp_path, lock_wait_seconds=1.5)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; "
            f"c = duckdb.connect({str(tmp_path / 'warehouse.duckdb')!r}, read_only=True); "
            "print('open', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        started = time.monotonic()
        with pytest.raises(WarehouseError) as err:
            steps.open_warehouse(settings)
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert "locked by another process" in str(err.value)
    assert "warehouse.outputs.duckdb" in str(err.value)
    assert not err.value.transient  # the wait already happened: no retry on top of it
    assert 1.4 <= waited < 30
    duckdb.connect(str(tmp_path / "warehouse.duckdb")).close()  # free again once the holder is gone


@pytest.mark.postgres
def test_postgres_readers_and_scoring_coexist(trained_env, tmp_path):
    with mlflow_restored(), postgres_copy(trained_env, tmp_path) as settings:
        steps.score_accounts(settings, END)  # first run: tables and view created
        started = time.perf_counter()
        steps.score_accounts(settings, END)
        alone = time.perf_counter() - started
        with readers(settings.warehouse, tmp_path) as lines:
            started = time.perf_counter()
            steps.score_accounts(settings, END)  # would wait on the idle transaction if it ran DDL
            with_readers = time.perf_counter() - started
        _assert_clean(lines)
        with Warehouse(settings.warehouse) as wh:
            assert wh.scalar("SELECT COUNT(*) FROM churn_scores") == wh.scalar(
                "SELECT COUNT(DISTINCT account_id) FROM churn_scores"
            )
        # the timing is reported, not asserted (see benchmarks/bi_readers.py for the measurement)
        print(
            f"PostgreSQL scoring: {alone:.2f} s alone, {with_readers:.2f} s with two BI readers "
            f"({with_readers / alone:.2f}x)"
        )
