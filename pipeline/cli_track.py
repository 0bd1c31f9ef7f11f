"""The track-record commands of `churn`: `churn monitor` and `churn backtest`
(registered on :data:`pipeline.cli.app`; errors go through its one
``_session`` path), and the track-record table the demo prints."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated

import typer

from pipeline.cli import AsOfOpt, ConfigOpt, VerboseOpt, WarehouseOpt, _parse_date, _session, app, console, out


@app.command()
def monitor(
    as_of: AsOfOpt = None,
    fail_on_alert: Annotated[
        bool, typer.Option("--fail-on-alert", help="Exit 1 when a mature date is flagged (default: report only).")
    ] = False,
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Join every scored account with its realised outcome (same churn definition as
    training), write churn_outcomes + churn_model_performance, flag dates where the
    model stopped working, and log the live metrics to MLflow (Prefect flow churn-monitor)."""
    with _session(verbose, config, warehouse) as settings:
        from pipeline.flows import monitor_flow
        from pipeline.monitor import MonitorAlertError
        from pipeline.prefect_runtime import cli_runtime

        day = _parse_date(as_of)
        started = time.perf_counter()
        with console.status(f"Monitoring the scores as of {day} (Prefect flow churn-monitor)..."), cli_runtime():
            outcome = monitor_flow(day, settings=settings)["outcome"]
        names = settings.tables
        out.print(
            f"Monitored as of {day} (outcomes known up to {outcome.known_by}) in "
            f"{time.perf_counter() - started:.1f} s -> {names.churn_outcomes}, {names.churn_model_performance}; "
            f"{outcome.pending():,} scored accounts still pending."
        )
        print_track_record(outcome.performance)
        lines = outcome.alert_lines()
        if lines and fail_on_alert:
            raise MonitorAlertError(f"retraining recommended: {lines[0]} ({len(lines)} alert(s))")


def _dates(text: str | None) -> list[dt.date]:
    return [_parse_date(part.strip(), "--dates") for part in (text or "").split(",") if part.strip()]


@app.command()
def backtest(
    train_as_of: Annotated[str, typer.Option("--train-as-of", help="Train as `churn train --as-of` would.")],
    dates: Annotated[str | None, typer.Option("--dates", help="Dates to score, D1,D2,... (YYYY-MM-DD).")] = None,
    start: Annotated[str | None, typer.Option("--from", help="First date to score.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last date to score.")] = None,
    every: Annotated[str, typer.Option("--every", help="Cadence from --to back to --from: monthly, weekly, <N>d.")] = (
        "monthly"
    ),
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Train a model as of --train-as-of WITHOUT registering it, score later dates with
    point-in-time features and report how it did against the realised outcomes
    (console and an MLflow run tagged churn_backtest). Writes no output table."""
    with _session(verbose, config, warehouse) as settings:
        from pipeline.backtest import backtest_dates, run_backtest

        day = _parse_date(train_as_of, "--train-as-of")
        chosen = backtest_dates(
            _dates(dates),
            _parse_date(start, "--from") if start else None,
            _parse_date(end, "--to") if end else None,
            every,
        )
        started = time.perf_counter()
        with console.status(f"Backtest: training as of {day}, scoring {len(chosen)} date(s)..."):
            outcome = run_backtest(settings, day, chosen)
        metrics = outcome.result.metrics
        out.print(
            f"Backtest of a model trained as of {day} (test-window ROC AUC {metrics['roc_auc']:.3f}, not registered), "
            f"{len(chosen)} date(s) scored in {time.perf_counter() - started:.1f} s."
        )
        print_track_record(outcome.performance)
        pending = outcome.pending_dates()
        if pending:
            out.print(f"Not mature yet (outcome unknown): {', '.join(str(d) for d in pending)}")
        out.print(f"MLflow run {outcome.run_id} (tag churn_backtest=true).")


def print_track_record(performance) -> None:
    """The track record: per mature date and model version, accounts, churned,
    AUC, lift, predicted vs observed churn; then why each flagged date is."""
    import pandas as pd

    from pipeline.monitor import alert_lines, track_record

    record = track_record(performance)
    if record.empty:
        out.print("Track record: no scored date is mature yet (its outcome is known horizon + grace days later).")
        return
    out.print("\nTrack record (mature scored dates):")
    out.print(
        f"  {'as of':<10} {'model':>7} {'accounts':>8} {'churned':>7} {'AUC':>6} {'lift@10%':>8} "
        f"{'predicted':>9} {'observed':>8}  alert"
    )
    for r in record.itertuples(index=False):
        auc = "-" if pd.isna(r.roc_auc) else f"{r.roc_auc:.3f}"
        lift = "-" if pd.isna(r.lift_top10) else f"{r.lift_top10:.2f}"
        flag = "ALERT" if pd.notna(r.alert) and bool(r.alert) else ""
        out.print(
            f"  {str(pd.Timestamp(r.as_of_date).date()):<10} {'v' + str(r.model_version):>7} {r.accounts:>8,} "
            f"{r.churned:>7,} {auc:>6} {lift:>8} {r.mean_probability:>9.1%} {r.observed_rate:>8.1%}  {flag}"
        )
    for line in alert_lines(performance):
        out.print(f"  ALERT, retraining recommended: {line}")
