"""A BI client, run as its own process while the scoring job writes:

    python -m tests.reliability.bi_reader hold|loop TARGET STOP_FILE

``hold`` keeps one read-only connection open and queries through it (on
PostgreSQL inside one long transaction that sits idle between queries, as a
dashboard tool does); ``loop`` opens a new connection for every query.
TARGET is a DuckDB file (the published read copy) or a PostgreSQL URL. The
process prints one line per query result or error and stops when STOP_FILE
exists; it exits 1 if any query failed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

QUERY = (
    "SELECT COUNT(*), MAX(as_of_date), SUM(churn_probability) FROM churn_scores_latest "
    "UNION ALL SELECT COUNT(*), NULL, NULL FROM churn_risk_reasons"
)


def _connect(target: str):
    if target.startswith("postgresql://"):
        import psycopg

        return psycopg.connect(target)  # not autocommit: the first query opens a transaction
    import duckdb

    return duckdb.connect(target, read_only=True)


def main(mode: str, target: str, stop_file: str) -> int:
    stop = Path(stop_file)
    failures = queries = 0
    conn = _connect(target) if mode == "hold" else None
    while not stop.exists():
        try:
            if mode == "hold":
                conn.execute(QUERY).fetchall()
            else:
                fresh = _connect(target)
                try:
                    fresh.execute(QUERY).fetchall()
                finally:
                    fresh.close()
            queries += 1
        except Exception as exc:  # every error is a failure of the pipeline's promise
            failures += 1
            print(f"ERROR {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
        time.sleep(0.05)
    print(f"DONE queries={queries} failures={failures}", flush=True)
    if conn is not None:
        conn.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
