"""Benchmark `churn monitor` on a long scoring history (about 1M scored rows).

    python -m benchmarks.monitor --accounts 65000 --dates 20

Builds, in SQL inside a DuckDB file under --workdir, contract tables for
``--accounts`` accounts over 30 monthly periods (monthly subscriptions, some
churn, some late renewals inside the grace period, one usage event per
account and month) and ``churn_scores`` for ``--dates`` monthly scoring dates
of two model versions (every active account, random probabilities). Then
times :func:`pipeline.monitor.run_monitor` end to end: validation of the
inputs, the outcome join in the engine, the per-slice metrics, the atomic
replace of both tables and the read copy. MLflow is left out (its cost does
not grow with the rows: one point per date and version). Writes
<out>/monitor_<rows>.json and prints the figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from pathlib import Path

from pipeline import outputs
from pipeline.monitor import run_monitor
from pipeline.settings import load_settings
from pipeline.warehouse import Warehouse

START = dt.date(2024, 1, 1)
AS_OF = dt.date(2026, 7, 1)


def build(path: Path, accounts: int, dates: int, seed: int = 7) -> int:
    """The inputs and the scores; returns the number of scored rows."""
    path.unlink(missing_ok=True)
    settings = load_settings(env={}, data_dir=path.parent, warehouse_url=f"duckdb://{path}")
    with Warehouse(settings.warehouse, create=True) as wh:
        wh.execute(f"SELECT setseed({seed / 100})")
        wh.execute(
            f"""CREATE TABLE accounts AS
            SELECT 'A' || i AS account_id, TIMESTAMP '2023-12-01' AS created_at, 'Account ' || i AS account_name,
                   ['SMB', 'Mid-Market', 'Enterprise'][1 + i % 3] AS segment, 'Software' AS industry,
                   'EMEA' AS region, 'csm' || (i % 40) AS csm_owner
            FROM range({accounts}) AS t(i)"""
        )
        # each account: monthly periods from month `first` to `last`; one in four renews 10 days late once
        wh.execute(
            """CREATE TABLE _plan AS
            SELECT account_id, CAST(floor(random() * 6) AS INTEGER) AS first,
                   CASE WHEN random() < 0.5 THEN 30 ELSE 6 + CAST(floor(random() * 24) AS INTEGER) END AS last,
                   CASE WHEN random() < 0.25 THEN 3 + CAST(floor(random() * 20) AS INTEGER) END AS late_month,
                   50 + CAST(floor(random() * 2000) AS INTEGER) AS mrr
            FROM accounts"""
        )
        wh.execute(
            f"""CREATE TABLE subscriptions AS
            SELECT p.account_id || '-' || m AS subscription_id, p.account_id,
                   CAST(DATE '{START}' + INTERVAL (m) MONTH
                        + CASE WHEN m = p.late_month THEN INTERVAL 10 DAY ELSE INTERVAL 0 DAY END AS DATE)
                       AS start_date,
                   CAST(DATE '{START}' + INTERVAL (m + 1) MONTH AS DATE) AS end_date,
                   CAST(p.mrr AS DOUBLE) AS mrr, 'Growth' AS plan, 10.0 AS seats, TRUE AS auto_renew
            FROM _plan AS p, range(0, 30) AS r(m)
            WHERE m >= p.first AND m < p.last"""
        )
        wh.execute(
            """CREATE TABLE usage_events AS
            SELECT account_id, CAST(start_date AS TIMESTAMP) + INTERVAL 3 DAY + INTERVAL 10 HOUR AS event_time,
                   'login' AS event_type, 'u1' AS user_id, CAST(NULL AS DOUBLE) AS quantity
            FROM subscriptions"""
        )
        wh.execute(
            f"""INSERT INTO usage_events
            VALUES ('A0', TIMESTAMP '{AS_OF - dt.timedelta(days=1)} 12:00:00', 'login', 'u1', NULL)"""
        )
        outputs.prepare(wh, settings.tables)
        # the columns the monitor reads, and the rest of the scores' first ones; the later
        # ones (area sums, statuses, change reasons) stay NULL: the monitor does not read them
        columns = ", ".join(list(outputs.SCORES_SCHEMA)[:17])  # account_id .. csm_owner
        wh.execute(
            f"""INSERT INTO churn_scores ({columns})
            SELECT account_id, as_of_date, p AS churn_probability, NULL,
                   CASE WHEN p >= 0.5 THEN 'high' WHEN p >= 0.2 THEN 'medium' ELSE 'low' END, NULL,
                   mrr, p * 12 * mrr, NULL, NULL, NULL, 'churn-model',
                   CASE WHEN n < {dates // 2} THEN '1' ELSE '2' END, NULL, account_name, segment, csm_owner
            FROM (SELECT s.account_id, d.as_of_date, d.n, s.mrr, a.account_name, a.segment, a.csm_owner,
                         power(random(), 2.5) AS p
                  FROM (SELECT n, CAST(DATE '{START}' + INTERVAL (6 + n) MONTH AS DATE) AS as_of_date
                        FROM range({dates}) AS t(n)) AS d
                  JOIN subscriptions AS s ON s.start_date <= d.as_of_date AND s.end_date > d.as_of_date
                  JOIN accounts AS a ON a.account_id = s.account_id) AS scored"""
        )
        wh.execute("DROP TABLE _plan")
        return wh.row_count("churn_scores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=65_000)
    parser.add_argument("--dates", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = (args.workdir / f"monitor_{args.accounts}.duckdb").resolve()
    started = time.perf_counter()
    rows = build(path, args.accounts, args.dates)
    built = time.perf_counter() - started
    settings = load_settings(env={}, data_dir=path.parent, warehouse_url=f"duckdb://{path}")
    test_auc = {("churn-model", "1"): 0.8, ("churn-model", "2"): 0.8}
    timings = []
    for _ in range(2):  # the second run replaces what the first wrote (the weekly case)
        started = time.perf_counter()
        outcome = run_monitor(settings, AS_OF, test_auc=test_auc, tracking=False)
        timings.append(time.perf_counter() - started)
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {_cpus()} cores, Python {platform.python_version()}",
        "accounts": args.accounts,
        "scoring_dates": args.dates,
        "scored_rows": rows,
        "mature_rows": int(outcome.counts.loc[outcome.counts["outcome"] != "pending", "accounts"].sum()),
        "performance_rows": len(outcome.performance),
        "build_seconds": round(built, 1),
        "monitor_seconds": [round(t, 2) for t in timings],
        "target_seconds": 30,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"monitor_{rows}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    main()
