"""Issue #11 item 6: results must not depend on the host's or the session's
time zone.

Rule (docs/data-contract.md): every timestamp is read as UTC at staging - a
TIMESTAMPTZ value becomes its UTC wall time, a naive TIMESTAMP is taken as
UTC - and as-of dates are UTC dates; "now" (for rows dated in the future) is
the current UTC time.

The data here sits near UTC midnight, so reading it in New York (UTC-4) or
Tokyo (UTC+9) wall time moves events across day buckets, window edges and
the as-of cutoff: any dependence on the zone changes the features.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from features.build import build_features
from features.contract import INPUT_TABLES
from features.staging import validate
from pipeline.warehouse import Warehouse
from tests import factories as f
from tests.conftest import load

T = dt.date(2024, 6, 1)
VALIDATE_AS_OF = dt.date(2024, 6, 2)
ROOT = Path(__file__).resolve().parents[2]


def utc_tables() -> dict[str, pd.DataFrame]:
    """Naive timestamps, meant as UTC."""
    accounts = pd.concat(
        [
            f.accounts("A", created_at="2024-01-01 02:00"),
            f.accounts("B", created_at="2024-03-03 01:00"),  # tenure 90 in UTC, 91 days in New York
        ],
        ignore_index=True,
    )
    subscriptions = f.subscriptions(
        [
            ("sA", "A", "2024-01-01", "2025-01-01", 100, 10),
            ("sB", "B", "2024-03-03", "2024-09-01", 50, 5),
        ]
    )
    usage = f.events(
        [
            ("A", "2024-05-31 23:30", "login", "u1"),  # Tokyo: after the cutoff
            ("A", "2024-05-25 02:00", "login", "u2"),  # New York: 05-24 22:00, outside the 7 days
            ("A", "2024-05-02 03:00", "export", "u3", 4),  # New York: 05-01 23:00, outside the 30 days
            ("B", "2024-06-01 00:00", "login", "u4"),  # at the cutoff exactly; New York: 05-31 20:00
            ("B", "2024-03-04 04:00", "login", "u5", 2),  # New York: inside the 90 days still
            ("B", "2024-06-01 08:00", "login", "u4"),  # after the cutoff in UTC; New York: 04:00
        ]
    )
    tickets = f.tickets(
        [
            ("t1", "A", "2024-05-31 22:00", "2024-06-01 01:00", "high", 2),  # open at T in UTC
            ("t2", "B", "2024-03-03 03:00", "2024-03-03 04:00", "low", 5),  # 90 days before T
        ]
    )
    nps = f.nps([("A", "2024-05-31 21:00", 4), ("B", "2023-06-02 02:00", 9)])
    return dict(
        accounts=accounts, subscriptions=subscriptions, usage_events=usage, support_tickets=tickets, nps_responses=nps
    )


def _to_timestamptz(wh, tables=None) -> None:
    """Turn every timestamp and date column of the tables (default: those of
    utc_tables()) into TIMESTAMPTZ holding the same UTC instants (loaded naive,
    then converted)."""
    for name in utc_tables() if tables is None else tables:
        spec = INPUT_TABLES[name]
        wh.execute(f"ALTER TABLE {name} RENAME TO {name}_naive")
        cols = ", ".join(
            f"timezone('UTC', CAST({c.name} AS TIMESTAMP)) AS {c.name}" if c.type in ("timestamp", "date") else c.name
            for c in spec.columns
        )
        wh.execute(f"CREATE TABLE {name} AS SELECT {cols} FROM {name}_naive")
        wh.drop(f"{name}_naive")
    assert wh.column_types("usage_events")["event_time"] == "timestamp with time zone"
    assert wh.column_types("subscriptions")["start_date"] == "timestamp with time zone"


def _features(wh) -> pd.DataFrame:
    report = validate(wh, VALIDATE_AS_OF)
    return build_features(wh, [T], report)


@pytest.fixture(scope="module")
def expected() -> pd.DataFrame:
    """The features of the naive (UTC) data, built in UTC."""
    with Warehouse("duckdb:///:memory:") as wh:
        wh.execute("SET TimeZone = 'UTC'")
        load(wh, **utc_tables())
        return _features(wh)


def test_the_data_is_sensitive_to_the_zone(expected):
    # not vacuous: reading the instants as New York wall time gives other features
    shifted = {name: frame.copy() for name, frame in utc_tables().items()}
    for name in shifted:
        for c in INPUT_TABLES[name].columns:
            if c.type in ("timestamp", "date") and c.name in shifted[name]:
                shifted[name][c.name] = shifted[name][c.name] - pd.Timedelta(hours=4)
    with Warehouse("duckdb:///:memory:") as wh:
        load(wh, **shifted)
        other = _features(wh)
    assert not other.equals(expected)
    assert expected.set_index("account_id").loc["A", "events_30d"] == 6


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Tokyo"])
def test_timestamptz_inputs_in_another_session_zone(wh, expected, zone):
    load(wh, **utc_tables())
    _to_timestamptz(wh)
    wh.execute(f"SET TimeZone = '{zone}'")
    pd.testing.assert_frame_equal(_features(wh), expected)


# -- the host's time zone: a fresh process per TZ ----------------------------------------
CHILD = """
import datetime as dt, json, sys
from features.build import build_features
from features.staging import validate
from pipeline.warehouse import Warehouse

with Warehouse("duckdb:///" + sys.argv[1]) as wh:
    report = validate(wh, dt.date(2024, 6, 2), max_bad_share=1.0)
    build_features(wh, [dt.date(2024, 6, 1)], report).to_parquet(sys.argv[2])
    print(json.dumps({f"{r.table}.{r.rule}": r.rows for r in report.problems()}))
"""


def test_timestamptz_inputs_on_hosts_in_other_zones(tmp_path, expected):
    database = tmp_path / "warehouse.duckdb"
    # two NPS responses with naive (UTC) times two hours either side of now: only
    # the later one is in the future, whatever the host's zone
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    tables = utc_tables()
    tables["nps_responses"] = pd.concat(
        [
            tables["nps_responses"],
            f.nps([("A", str(now - dt.timedelta(hours=2)), 1), ("A", str(now + dt.timedelta(hours=2)), 1)]),
        ],
        ignore_index=True,
    )
    duckdb.connect(str(database)).close()  # create the file
    with Warehouse(f"duckdb:///{database}") as wh:
        wh.execute("SET TimeZone = 'UTC'")
        load(wh, **tables)
        _to_timestamptz(wh, [t for t in tables if t != "nps_responses"])  # NPS naive: UTC by the rule
        assert wh.column_types("nps_responses")["responded_at"] == "timestamp"

    runs = {}
    for zone in ("UTC", "America/New_York", "Asia/Tokyo"):
        copy = tmp_path / f"{zone.replace('/', '_')}.duckdb"
        shutil.copy(database, copy)
        out = tmp_path / f"{zone.replace('/', '_')}.parquet"
        env = {**os.environ, "TZ": zone, "PYTHONPATH": str(ROOT)}
        runs[zone] = (
            out,
            subprocess.Popen(
                [sys.executable, "-c", CHILD, str(copy), str(out)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
    for zone, (out, proc) in runs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{zone}: {stderr[-2000:]}"
        problems = json.loads(stdout.strip().splitlines()[-1])
        assert problems.get("nps_responses.in_the_future") == 1, (zone, problems)
        pd.testing.assert_frame_equal(pd.read_parquet(out), expected, obj=zone)
