"""The `churn` command line.

Every command takes ``--warehouse URL`` (or ``CHURN_WAREHOUSE_URL``) and
``--config FILE``; failures exit non-zero with a one-line cause (the full
traceback only with ``--verbose``).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from models.redaction import redact_url

if TYPE_CHECKING:
    from pipeline.settings import Settings

app = typer.Typer(
    name="churn",
    help="Churn risk for B2B SaaS accounts: data, features, model and scores in your warehouse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# No markup or highlighting: account names, reasons, table names and error texts
# are user data ("[/]" in a name must print as itself, not crash after a commit).
console = Console(stderr=True, markup=False)
out = Console(soft_wrap=True, markup=False)

WarehouseOpt = Annotated[
    str | None,
    typer.Option(
        "--warehouse",
        "-w",
        help="Warehouse URL (default: CHURN_WAREHOUSE_URL or data/warehouse.duckdb).",
        show_default=False,
    ),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML config file (default: churn.toml).")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs and full tracebacks.")]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="As-of date, YYYY-MM-DD (default today).")]


def _parse_date(value: str | None, name: str = "--as-of") -> dt.date:
    if value is None:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=name) from None


@contextmanager
def _session(verbose: bool, config: Path | None, warehouse: str | None = None) -> Iterator[Settings]:
    """What every command runs in: the settings from --config / --warehouse,
    the environment and churn.toml, handed to the steps and flows as an
    object; any failure reported by :func:`_fail` (one line, exit 1)."""
    try:
        yield _setup(verbose, config, warehouse)
    except Exception as exc:  # one line, non-zero exit
        _fail(exc, verbose, warehouse)


def _setup(verbose: bool, config: Path | None, warehouse: str | None) -> Settings:
    import os

    # Prefect's own settings only: the churn settings travel as an object.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, _QuietFailedRuns) for f in handler.filters):
                handler.addFilter(_QuietFailedRuns())
    from pipeline.settings import load_settings

    return load_settings(config, warehouse_url=warehouse)


class _QuietFailedRuns(logging.Filter):
    """Without --verbose a failure is reported once, in one line, by `_fail`: keep
    Prefect's failed-run records (and their tracebacks) off the console. They
    still reach the Prefect API, and --verbose shows them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR or not record.name.startswith(("prefect.flow_runs", "prefect.task_runs"))


def _fail(exc: BaseException, verbose: bool, warehouse: str | None = None) -> None:
    """Report a failure: the validation report when the data stopped the run,
    the traceback with --verbose, then one line; exit 1. Secrets (of
    --warehouse and the environment's URLs) are masked."""
    import os

    from models.redaction import password_of, redact_text

    urls = [warehouse, *(os.environ.get(k) for k in ("CHURN_WAREHOUSE_URL", "MLFLOW_TRACKING_URI"))]
    secrets = [password_of(url) for url in urls]
    report = getattr(exc, "report", None)
    if report is not None and hasattr(report, "to_markdown"):
        console.print(report.to_markdown(), soft_wrap=True)
        console.print()
    if verbose:
        console.print(redact_text("".join(traceback.format_exception(exc)), *secrets), soft_wrap=True)
    text = str(exc).strip()
    message = text.splitlines()[0] if text else type(exc).__name__
    console.print(f"Error: {redact_text(message, *secrets)}", style="bold red", soft_wrap=True)
    _release_frames(exc)
    raise typer.Exit(code=1)


def _release_frames(exc: BaseException | None) -> None:
    """Drop the locals of the failed frames (Prefect keeps the exception in the
    run state): a DuckDB connection alive at interpreter exit makes its
    bindings print a page of "nanobind: leaked ..." after the one-line error."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__


@app.command()
def generate(
    accounts: Annotated[int, typer.Option(help="Number of accounts.", min=1)] = 2000,
    months: Annotated[int, typer.Option(help="Months of history.", min=1)] = 12,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 42,
    end_date: Annotated[str | None, typer.Option(help="Last day of history (default today).")] = None,
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Generate realistic synthetic SaaS data into the warehouse (replaces the contract tables)."""
    with _session(verbose, config, warehouse) as settings:
        from pipeline.generate import generate_data, generator_config

        cfg = generator_config(
            accounts, months, seed, end_date=_parse_date(end_date, "--end-date") if end_date else None
        )
        started = time.perf_counter()
        with _progress() as progress:
            task = progress.add_task("Generating accounts", total=accounts)
            result = generate_data(settings, cfg, on_chunk=lambda n: progress.advance(task, n))
        elapsed = time.perf_counter() - started
        out.print(f"Generated into {redact_url(settings.warehouse)} in {elapsed:.1f} s:")
        for table, n in result.rows.items():
            out.print(f"  {table:<16} {n:>12,} rows")
        out.print(f"Validation: {_report_line(result.report)}")


@app.command("validate")
def validate_cmd(
    as_of: AsOfOpt = None,
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Check the input tables against the data contract and print the report."""
    with _session(verbose, config, warehouse) as settings:
        from pipeline.steps import open_warehouse, validate_inputs

        with open_warehouse(settings) as wh:
            report = validate_inputs(wh, settings, _parse_date(as_of))
        out.print(report.to_markdown())


@app.command()
def features(
    as_of: AsOfOpt = None,
    out_path: Annotated[Path | None, typer.Option("--out", help="Parquet file to write.")] = None,
    table: Annotated[str | None, typer.Option("--table", help="Also write the matrix to this warehouse table.")] = None,
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Build the point-in-time feature matrix for one as-of date and write it to Parquet."""
    with _session(verbose, config, warehouse) as settings:
        from features.build import save_matrix
        from pipeline.steps import feature_matrix

        day = _parse_date(as_of)
        started = time.perf_counter()
        with console.status(f"Building features as of {day}..."):
            frame, report = feature_matrix(settings, day)
        path = save_matrix(frame, out_path or settings.data_dir / f"features_{day}.parquet")
        if table:
            from pipeline.steps import open_warehouse

            with open_warehouse(settings) as wh:
                wh.write_table(table, frame)
            path = f"{path} and table {table}"
        elapsed = time.perf_counter() - started
        out.print(
            f"{len(frame):,} active accounts x {frame.shape[1] - 2} features as of {day} in {elapsed:.1f} s -> {path}"
        )
        out.print(f"Validation: {_report_line(report)}")


@app.command()
def train(
    as_of: AsOfOpt = None,
    search: Annotated[
        int, typer.Option(help="Random-search trials on the validation window (0 = defaults).", min=0)
    ] = 0,
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Build the training set up to --as-of (mature labels only), train and calibrate
    LightGBM, compare with baselines, log to MLflow, register and apply the champion gate."""
    with _session(verbose, config, warehouse) as settings:
        day = _parse_date(as_of)
        started = time.perf_counter()
        with console.status(f"Training on data up to {day} (Prefect flow churn-train)..."):
            if search:
                from models.train import TrainConfig
                from pipeline.steps import train_model

                outcome = train_model(settings, day, TrainConfig(search_trials=search))
            else:
                from pipeline.flows import train_flow
                from pipeline.prefect_runtime import cli_runtime

                with cli_runtime():
                    outcome = train_flow(day, settings=settings)["outcome"]
        _print_training(outcome, settings, time.perf_counter() - started)


def _print_training(outcome, settings, seconds: float | None) -> None:
    result, run = outcome.result, outcome.run
    windows = result.split.windows()
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    out.print(
        f"Trained on {outcome.rows:,} account-snapshots ({len(windows['train'])} training snapshots, "
        f"test window {windows['test'][0]}){took}."
    )
    table = result.summary()[["roc_auc", "pr_auc", "brier", "ece", "lift_top10", "arr_captured_top10"]]
    out.print(table.round(3).to_string())
    verdict = "promoted to champion" if run.decision.promoted else "kept as challenger"
    out.print(f"Model {settings.model_name} v{run.model_version}: {verdict} ({run.decision.reason}).")
    out.print(
        f"MLflow run {run.run_id}; browse with: .venv/bin/mlflow ui --backend-store-uri "
        f"{redact_url(settings.tracking_uri)}"
    )


@app.command()
def score(
    as_of: AsOfOpt = None,
    top: Annotated[int, typer.Option(help="How many of the riskiest accounts to print.", min=0)] = 10,
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Score every active account with the champion model, explain each score in plain
    language and write churn_scores + churn_risk_reasons back to the warehouse."""
    with _session(verbose, config, warehouse) as settings:
        from pipeline.flows import score_flow
        from pipeline.prefect_runtime import cli_runtime

        day = _parse_date(as_of)
        started = time.perf_counter()
        with console.status(f"Scoring accounts as of {day} (Prefect flow churn-score)..."), cli_runtime():
            outcome = score_flow(day, top_n=max(top, 1), settings=settings)["outcome"]
        _print_scoring(outcome, settings, time.perf_counter() - started, top)


def _print_scoring(outcome, settings, seconds: float | None, top: int) -> None:
    from models.health import scorecard

    names = settings.tables
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    out.print(
        f"Scored {outcome.accounts:,} accounts as of {outcome.as_of} with {settings.model_name} "
        f"v{outcome.model_version}{took} -> {names.churn_scores} "
        f"({outcome.reasons:,} reasons in {names.churn_risk_reasons})."
    )
    if outcome.drifted:
        console.print(
            f"Warning: drift (PSI > 0.2) against the training data in: {', '.join(outcome.drifted[:8])}", style="yellow"
        )
    if top and len(outcome.top):
        out.print(f"\nTop {min(top, len(outcome.top))} accounts at risk:")
        for _, row in outcome.top.head(top).iterrows():
            out.print(
                f"  {row['risk_rank']:>3}. {row['account_id']} {str(row['account_name'])[:28]:<28} "
                f"{row['risk_tier']:<6} p={row['churn_probability']:.2f}  ARR at risk "
                f"${row['arr_at_risk']:,.0f}  renewal {_date_text(row['renewal_date'])}"
            )
            stage = _text(row.get("lifecycle_stage")).replace("_", " ") or "-"
            out.print(f"       CSM {_text(row.get('csm_owner')) or '-'} | {stage} | {scorecard(row.to_dict())}")
            out.print(f"       Why: {_text(row['top_reasons']) or 'no driver raises the risk'}")
            for label, column in (("Changed", "change_reasons"), ("Next", "next_action"), ("", "context")):
                if _text(row.get(column)):
                    out.print(f"       {label + ': ' if label else ''}{row[column]}")


def _text(value) -> str:
    import pandas as pd

    return "" if value is None or pd.isna(value) else str(value)


def _date_text(value) -> str:
    import pandas as pd

    return "-" if pd.isna(value) else str(pd.Timestamp(value).date())


@app.command()
def publish(
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Publish the read copy of the output tables that BI tools open (DuckDB
    warehouses; every `churn score` does this after it commits)."""
    with _session(verbose, config, warehouse) as settings:
        from pipeline.steps import publish_outputs

        path = publish_outputs(settings)
        out.print(
            f"Published {path} (open it read-only from your BI tool)"
            if path
            else "Nothing to publish: the warehouse is a server (BI tools read it directly) or has no scores yet."
        )


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Registered model version to point the alias at.")],
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Manually promote a model version to champion, or roll back to an earlier one."""
    with _session(verbose, config) as settings:
        from models import tracking

        tracking.configure(settings.tracking_uri, settings.experiment, timeout_seconds=settings.mlflow_timeout_seconds)
        tracking.promote(settings.model_name, version, alias)
        out.print(f"{settings.model_name}@{alias} -> version {version}")


@app.command()
def demo(
    accounts: Annotated[int, typer.Option(help="Number of accounts to generate.", min=200)] = 3000,
    months: Annotated[int, typer.Option(help="Months of history to generate.", min=12)] = 24,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    top: Annotated[int, typer.Option(help="How many of the riskiest accounts to print.", min=1)] = 10,
    history: Annotated[int, typer.Option(help="Months of track record: an older model scores each month.", min=0)] = 6,
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """The whole job on the embedded defaults, in one Prefect flow (one server start):
    generate data, build a track record (a model trained --history months ago scores each
    month since), train + register + gate, score and explain, monitor, then show where to look."""
    with _session(verbose, config, warehouse) as settings:
        from pipeline.flows import demo_flow
        from pipeline.prefect_runtime import cli_runtime

        started = time.perf_counter()
        with console.status(f"Running the demo flow: {accounts:,} accounts x {months} months..."), cli_runtime():
            result = demo_flow(
                accounts=accounts, months=months, seed=seed, top_n=top, history_months=history, settings=settings
            )
        seconds = time.perf_counter() - started
        rows = result["generated"]
        out.print(f"1. Data: {sum(rows.values()):,} rows generated into {redact_url(settings.warehouse)}")
        out.print("2. Model")
        _print_training(result["train"]["outcome"], settings, None)
        out.print("3. Scores")
        _print_scoring(result["score"]["outcome"], settings, None, top)
        out.print(f"4. Track record: a model trained {history} months ago scored each month since")
        cli_track.print_track_record(result["monitor"]["outcome"].performance)
        from pipeline.warehouse import Warehouse, read_copy_path

        query = (
            "SELECT account_id, risk_tier, round(churn_probability, 2) p, round(arr_at_risk) arr, top_reasons "
            "FROM w.churn_scores_latest ORDER BY risk_rank LIMIT 10"
        )
        if Warehouse.is_spark(settings.warehouse):
            spark_query = query.replace("w.churn", "churn")
            out.print(f"""
Done in {seconds:.0f} s. The outputs are Spark tables partitioned by as_of_date and model_name.
  MLflow UI:   .venv/bin/mlflow ui --backend-store-uri {redact_url(settings.tracking_uri)}   (then http://127.0.0.1:5000)
  SQL:         .venv/bin/python -c "from pipeline.warehouse import Warehouse; \\
print(Warehouse('$CHURN_WAREHOUSE_URL').query('{spark_query}'))"
  BI tools:    the cluster's SQL endpoint or Spark's Thrift server, over the same catalog.""")
            return
        db = read_copy_path(settings.data_dir / "warehouse.duckdb")
        sql_hint = (
            f'.venv/bin/python -c "import duckdb; duckdb.sql(\\"ATTACH \'{db}\' AS w (READ_ONLY); {query}\\").show()"'
        )
        out.print(f"""
Done in {seconds:.0f} s. Where to look next:
  MLflow UI:   .venv/bin/mlflow ui --backend-store-uri {redact_url(settings.tracking_uri)}   (then http://127.0.0.1:5000)
  Prefect UI:  .venv/bin/prefect server start   (then http://127.0.0.1:4200; runs appear when flows run against it)
  SQL:         {sql_hint}
  BI tools:    open {db} read-only (replaced after every scoring run; never blocks the job)
  More SQL for BI tools: README.md, sections "Reading the risk in a BI tool" and "Does the score work?".""")


def _report_line(report) -> str:
    bad = sum(s.bad for s in report.tables.values())
    ignored = sum(s.ignored for s in report.tables.values())
    parts = [
        f"{bad:,} bad rows excluded",
        f"{ignored:,} rows after the as-of ignored",
        f"data {report.data_start} .. {report.data_end}",
    ]
    parts += [f"{family} features off ({why})" for family, why in report.families_off.items()]
    return "; ".join(parts)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


from pipeline import cli_track  # noqa: E402, F401  (registers `churn monitor` and `churn backtest`)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
