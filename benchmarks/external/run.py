"""External check: our pipeline on data we did not write (ChurnSim, the *Fighting Churn with Data* simulator).

    .venv/bin/python -m benchmarks.external.run [--customers N] [--seed S] [--out FILE]

1. Simulate (``benchmarks/external/churnsim``, vendored) or load the cached simulation, map it onto the
   contract (:mod:`benchmarks.external.mapping`) and load it into a fresh DuckDB warehouse in a temp dir.
2. Train as of one date with the pipeline's own API, exactly as a user would:
   ``pipeline.steps.train_model(settings, D0)`` (registers a champion in SQLite MLflow under the dir).
3. Score the champion on three monthly dates (by default D0 and the two months after it, as in the
   issue's external set) with ``pipeline.steps.feature_matrix`` + ``model.predict_proba``; the realised
   labels come from ``features.build.build_labels`` (the pipeline's churn definition).
4. The reference peer (:mod:`benchmarks.external.reference`) trains on the mature snapshots as of D0 and
   scores the same accounts on the same dates.
5. Metrics per date and pooled (``models.evaluate.classification_metrics``), pooled with a bootstrap
   90% interval over accounts; a markdown report to ``--out``.

Fails loudly: any error stops the run with a non-zero exit and no report is written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

from benchmarks.external import data, report
from benchmarks.external.reference import EventCounts, fit
from features import build as feature_build
from models.evaluate import classification_metrics
from pipeline import steps
from pipeline.settings import load_settings

log = logging.getLogger("benchmarks.external")
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "external-check.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.external.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="crm6", choices=["crm6", "socialnet7"], help="ChurnSim parameter set")
    p.add_argument("--customers", type=int, default=1000, help="initial customers (crm6 itself starts with 2000)")
    p.add_argument("--seed", type=int, default=42, help="the simulator's random seed (and the bootstrap's)")
    p.add_argument("--start", default="2022-01-01", help="simulation start (crm6's own; default %(default)s)")
    p.add_argument("--end", default="2024-01-01", help="simulation end = end of the data (default %(default)s)")
    p.add_argument(
        "--cumulative-counts",
        action="store_true",
        help="utility from all events since the start, as the release's end-to-end loop (see churnsim/simulation.py)",
    )
    p.add_argument("--train-as-of", type=dt.date.fromisoformat, default=None, help="D0 (default: end - 6 months)")
    p.add_argument("--score-dates", default=None, help="comma-separated dates (default: D0, D0+1m, D0+2m)")
    p.add_argument("--bootstrap", type=int, default=500, help="bootstrap draws (accounts resampled)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report (default: %(default)s)")
    p.add_argument("--workdir", type=Path, default=None, help="keep the warehouse and MLflow here (default: temp)")
    p.add_argument("--no-cache", action="store_true", help="simulate even when a cached simulation exists")
    return p.parse_args(argv)


def month_add(day: dt.date, months: int) -> dt.date:
    return (pd.Timestamp(day) + pd.DateOffset(months=months)).date()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)
    args = parse_args(argv)
    if Path("churn.toml").exists() or os.environ.get("CHURN_CONFIG"):
        raise SystemExit("A churn.toml (or CHURN_CONFIG) would change the settings: run from a directory without one")
    if args.out.exists() and args.out.resolve() != DEFAULT_OUT.resolve():
        raise SystemExit(f"{args.out} exists: only the default report is ever overwritten (choose another --out)")
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    tick = time.perf_counter()
    sim = data.load_or_simulate(
        args.model,
        args.customers,
        args.seed,
        args.start,
        args.end,
        cache=not args.no_cache,
        monthly_counts=not args.cumulative_counts,
    )
    seconds["simulate" if not sim.cached else "load cached simulation"] = time.perf_counter() - tick
    end = sim.end_date
    d0 = args.train_as_of or month_add(end, -6)
    dates = (
        [dt.date.fromisoformat(d) for d in args.score_dates.split(",")]
        if args.score_dates
        else [d0, month_add(d0, 1), month_add(d0, 2)]
    )

    with tempfile.TemporaryDirectory(prefix="churn-external-") as tmp:
        workdir = args.workdir or Path(tmp)
        data_dir = workdir / "data"
        data_dir.mkdir(parents=True, exist_ok=False)
        settings = load_settings(env={}, data_dir=data_dir)
        horizon = dt.timedelta(days=settings.horizon_days + settings.grace_days)
        if max(dates) + horizon > end:
            raise SystemExit(f"The outcome of {max(dates)} is not realised by the end of the data ({end})")

        tick = time.perf_counter()
        data.write_warehouse(Path(settings.warehouse.removeprefix("duckdb://")), sim.tables)
        seconds["load warehouse"] = time.perf_counter() - tick

        tick = time.perf_counter()
        outcome = steps.train_model(settings, d0)
        version, model = steps.load_champion(settings)
        seconds["train (pipeline.steps.train_model)"] = time.perf_counter() - tick

        tick = time.perf_counter()
        with steps.open_warehouse(settings) as wh:
            at_end = steps.validate_inputs(wh, settings, end)
            truth = feature_build.build_labels(wh, dates, at_end, settings.labels)
            at_d0 = steps.validate_inputs(wh, settings, d0)
            train_dates = feature_build.snapshot_dates(
                steps.first_full_window(at_d0), d0 - horizon, settings.snapshot_cadence
            )
            train_labels = feature_build.build_labels(wh, train_dates, at_d0, settings.labels)
        if not truth["mature"].all():
            raise AssertionError(f"Labels not mature on {sorted(set(truth.loc[~truth['mature'], 'as_of_date']))}")
        train_labels = train_labels[train_labels["mature"]].reset_index(drop=True)

        scored, drift = [], {}
        for day in dates:
            frame, _ = steps.feature_matrix(settings, day, dict(model.event_types))
            prob = model.predict_proba(frame)
            part = pd.DataFrame({"account_id": frame["account_id"].astype(str), "as_of_date": frame["as_of_date"]})
            part["ours"] = prob
            labels = truth[truth["as_of_date"] == pd.Timestamp(day)]
            merged = part.merge(labels[["account_id", "as_of_date", "churned"]], on=["account_id", "as_of_date"])
            if not (len(merged) == len(part) == len(labels)):
                raise AssertionError(
                    f"{day}: {len(part)} accounts scored, {len(labels)} labelled, {len(merged)} in both: "
                    "every active account must be scored and labelled"
                )
            scored.append(merged)
            drift[day] = report.drift_flags(model, frame, version)
        scored_frame = pd.concat(scored, ignore_index=True)
        seconds["score (feature_matrix + predict_proba) and labels"] = time.perf_counter() - tick

        tick = time.perf_counter()
        counts = EventCounts(sim.tables.usage_events)
        train_x = counts.at(train_labels)
        peer = fit(train_x, train_labels["churned"].to_numpy(), args.seed)
        scored_frame["reference"] = peer.predict_proba(counts.at(scored_frame))[:, 1]
        seconds["reference peer"] = time.perf_counter() - tick

        tick = time.perf_counter()
        results = report.evaluate(
            scored_frame, ["ours", "reference"], args.bootstrap, args.seed, classification_metrics
        )
        seconds["bootstrap"] = time.perf_counter() - tick
        seconds["total"] = time.perf_counter() - started

        text = report.markdown(
            command="python -m benchmarks.external.run " + shlex.join(sys.argv[1:] if argv is None else argv),
            sim=sim,
            d0=d0,
            dates=dates,
            results=results,
            seconds=seconds,
            outcome=outcome,
            version=version,
            model=model,
            peer_dates=sorted({str(pd.Timestamp(d).date()) for d in train_labels["as_of_date"]}),
            peer_rows=len(train_labels),
            validation=at_end,
            drift=drift,
            bootstrap=args.bootstrap,
        )
    print(report.table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    log.info("Wrote %s (%.0f s)", args.out, seconds["total"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
