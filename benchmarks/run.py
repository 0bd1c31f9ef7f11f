"""Time each pipeline stage at scale, with peak memory per stage.

    python -m benchmarks.run --accounts 100000 [--months 12] [--out benchmarks/results]

Generates data into a fresh DuckDB file (reused when it already holds the
same configuration, pass --regenerate to force), then times: validate,
features for one snapshot, and a 12-snapshot training set. Writes a JSON file
and a markdown table next to it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from features.build import build_features, build_training_set, snapshot_dates
from features.staging import validate
from pipeline.synthetic import GeneratorConfig, generate
from pipeline.warehouse import Warehouse


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def _peak_rss():
    """Sample RSS every 50 ms; yields a dict that gets 'peak_mb' on exit."""
    result: dict[str, float] = {"start_mb": _rss_mb()}
    stop = threading.Event()
    peak = [result["start_mb"]]

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mb())
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result["peak_mb"] = max(peak[0], _rss_mb())


def _stage(results: list[dict], name: str, fn: Callable[[], Any], **info: Any) -> Any:
    with _peak_rss() as mem:
        started = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - started
    row = {"stage": name, "seconds": round(seconds, 2), "peak_rss_mb": round(mem["peak_mb"]), **info}
    results.append(row)
    print(f"{name:<28} {seconds:8.2f} s   peak RSS {mem['peak_mb']:8.0f} MB   {info}", flush=True)
    return value


def _generate(wh: Warehouse, cfg: GeneratorConfig) -> dict[str, int]:
    rows: dict[str, int] = {}
    for table in ("accounts", "subscriptions", "usage_events", "support_tickets", "nps_responses"):
        wh.drop(table)
    for table, chunk in generate(cfg):
        wh.write_table(table, chunk, mode="append")
        rows[table] = rows.get(table, 0) + len(chunk)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--snapshots", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end-date", default="2026-10-31")
    parser.add_argument("--workdir", default="benchmarks/out")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args(argv)

    end = dt.date.fromisoformat(args.end_date)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / f"bench_{args.accounts}_{args.months}_{args.seed}_{end}.duckdb"
    results: list[dict] = []
    fresh = args.regenerate or not db.exists()
    if fresh and db.exists():
        db.unlink()
    wh = Warehouse(f"duckdb://{db.resolve()}")
    cfg = GeneratorConfig(n_accounts=args.accounts, months=args.months, seed=args.seed, end_date=end)
    if fresh:
        rows = _stage(results, "generate", lambda: _generate(wh, cfg), accounts=args.accounts)
    else:
        rows = {t: wh.row_count(t) for t in ("accounts", "subscriptions", "usage_events",
                                             "support_tickets", "nps_responses")}
    print(f"rows: {rows}")
    report = _stage(results, "validate", lambda: validate(wh, end))
    one = _stage(results, "features, 1 snapshot", lambda: build_features(wh, [end], report))
    label_end = end - dt.timedelta(days=120)
    dates = snapshot_dates(label_end - dt.timedelta(days=31 * args.snapshots), label_end)[-args.snapshots:]
    train = _stage(
        results, f"training set, {len(dates)} snapshots",
        lambda: build_training_set(wh, report, dates[0], dates[-1]),
    )
    wh.close()
    summary = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {_mem_total_gb():.0f} GB RAM, "
                   f"Python {platform.python_version()}",
        "accounts": args.accounts, "months": args.months, "rows": rows,
        "feature_rows_1_snapshot": len(one), "training_rows": len(train),
        "stages": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"features_{args.accounts}"
    stem.with_suffix(".json").write_text(json.dumps(summary, indent=2, default=str))
    stem.with_suffix(".md").write_text(_markdown(summary))
    print(_markdown(summary))


def _mem_total_gb() -> float:
    with open("/proc/meminfo") as fh:
        return int(fh.readline().split()[1]) / 1024 / 1024


def _markdown(summary: dict) -> str:
    lines = [
        f"# Benchmark: {summary['accounts']:,} accounts x {summary['months']} months",
        "",
        f"Run {summary['date']} on {summary['machine']}.",
        "Rows: " + ", ".join(f"{t} {n:,}" for t, n in summary["rows"].items()),
        "",
        "| stage | seconds | peak RSS (MB) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {s['stage']} | {s['seconds']:.1f} | {s['peak_rss_mb']:,} |" for s in summary["stages"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
