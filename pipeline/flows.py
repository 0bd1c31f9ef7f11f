"""Prefect flows: they only wire the steps in :mod:`pipeline.steps`.

Tasks are thin adapters. Only tasks that do warehouse or MLflow I/O retry,
with exponential backoff, and only on transient errors (a lost connection,
a locked file), never on bad input. Feature builds are cached by their inputs
(including a fingerprint of the data), so a retried or repeated run does not
rebuild them. Every run publishes artifacts a person reads in the Prefect UI.

Settings travel as an object: every flow takes an optional ``settings``
(the CLI passes its own); without one (a deployment run) the flow reads them
from the environment / config file. Prefect stores a flow run's parameters in
its API, in their JSON form, which masks every password (see
:class:`pipeline.settings.Settings`): secrets never become Prefect parameters.
"""

from __future__ import annotations

import datetime as dt
from datetime import timedelta
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import INPUTS
from prefect.tasks import exponential_backoff

from features.staging import DataQualityError, ValidationReport
from models.health import scorecard
from pipeline import steps
from pipeline.generate import GenerateResult, generate_data, generator_config
from pipeline.settings import Settings, SettingsError, load_settings
from pipeline.warehouse import WarehouseError, redact_url


def _transient(task_, task_run, state) -> bool:
    """Retry only I/O hiccups: lost connections, locks, timeouts."""
    try:
        state.result()
    except WarehouseError as exc:
        return exc.transient
    except (ConnectionError, TimeoutError):
        return True
    except OSError as exc:  # e.g. a locked or busy file; not a missing one
        return not isinstance(exc, (FileNotFoundError, PermissionError))
    except Exception as exc:  # MLflow REST errors carry a code; 5xx / unavailable are transient
        code = getattr(exc, "error_code", "")
        return code in ("TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR")
    return False


IO_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=5),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": _transient,
}


# -- tasks ---------------------------------------------------------------------
@task(name="generate-data", **IO_RETRIES)
def generate_task(settings: Settings, accounts: int, months: int, seed: int) -> GenerateResult:
    return generate_data(settings, generator_config(accounts, months, seed))


@task(name="validate-inputs", **IO_RETRIES)
def validate_task(settings: Settings, as_of: dt.date) -> ValidationReport:
    """Never cached: every run checks the data it is about to use."""
    return steps.validation_report(settings, as_of)


@task(name="champion-event-types", **IO_RETRIES)
def champion_event_types_task(settings: Settings) -> list[str]:
    return steps.champion_event_types(settings)


#: Feature builds are cached by their inputs, among them the content
#: fingerprint of the validated data (every row of every input table), so a
#: cached result is reused only when the data is proven unchanged. The report
#: itself (which carries the validation time) is not part of the key.
FEATURE_CACHE = INPUTS - "report"


@task(name="build-training-set", cache_policy=FEATURE_CACHE, cache_expiration=timedelta(days=1), **IO_RETRIES)
def training_set_task(
    settings: Settings, as_of: dt.date, extra_event_types: list[str], fingerprint: str, report: ValidationReport
):
    return steps.training_set(settings, None, as_of, extra_event_types=extra_event_types, report=report)


@task(name="train-evaluate-register", **IO_RETRIES)
def fit_task(settings: Settings, frame: pd.DataFrame, report, as_of: dt.date) -> steps.TrainOutcome:
    return steps.fit_and_log(settings, frame, report, as_of)


@task(name="load-champion", **IO_RETRIES)
def champion_task(settings: Settings):
    return steps.load_champion(settings)


@task(name="build-scoring-features", cache_policy=FEATURE_CACHE, cache_expiration=timedelta(days=1), **IO_RETRIES)
def scoring_features_task(
    settings: Settings, as_of: dt.date, event_types: dict[str, str], fingerprint: str, report: ValidationReport
):
    return steps.feature_matrix(settings, as_of, event_types, report=report)


@task(name="score-explain-write", **IO_RETRIES)
def write_scores_task(settings: Settings, as_of: dt.date, version: str, model, frame, report, top_n: int):
    return steps.write_scores(settings, as_of, version, model, frame, report, top_n)


# -- artifacts ---------------------------------------------------------------------
def _publish_validation(report, key: str) -> None:
    create_markdown_artifact(report.to_markdown(), key=key, description="Input validation report")


def _validated(settings: Settings, as_of: dt.date, key: str) -> ValidationReport:
    """Validate (every run, never cached) and publish the report, also when
    the data stops the run: the report says which rules the bad rows break."""
    try:
        report = validate_task(settings, as_of)
    except DataQualityError as exc:
        if exc.report is not None:
            _publish_validation(exc.report, key)
        raise
    _publish_validation(report, key)
    return report


def _publish_training(outcome: steps.TrainOutcome, settings: Settings) -> None:
    run, result = outcome.run, outcome.result
    table = result.summary().round(4).reset_index(names="model").to_markdown(index=False)
    windows = {k: f"{v[0]} .. {v[-1]}" for k, v in result.split.windows().items() if v}
    markdown = "\n".join(
        [
            f"# Training summary: {settings.model_name} v{run.model_version}",
            "",
            f"**Gate:** {'promoted to champion' if run.decision.promoted else 'kept as challenger'} "
            f"({run.decision.reason}).",
            "",
            f"Out-of-time windows: train {windows.get('train')}, validation {windows.get('valid')}, "
            f"calibration {windows.get('calib')}, test {windows.get('test')}; {outcome.rows:,} account-snapshots.",
            "",
            "## Test window, model vs baselines",
            "",
            table,
            "",
            f"MLflow run `{run.run_id}` in `{redact_url(settings.tracking_uri)}`.",
        ]
    )
    create_markdown_artifact(markdown, key="training-summary", description="Metrics vs baselines and gate")


def _text(value) -> str:
    """A possibly missing (None, NaN, pd.NA) text value as a string."""
    return "" if value is None or pd.isna(value) else str(value)


def _publish_scores(outcome: steps.ScoreOutcome, top_n: int) -> None:
    top = outcome.top.head(top_n)
    rows = [
        {
            "rank": int(r.risk_rank),
            "account": f"{r.account_id} {_text(r.account_name)}".strip(),
            "tier": r.risk_tier,
            "probability": round(float(r.churn_probability), 3),
            "arr_at_risk": round(float(r.arr_at_risk), 0),
            "renewal": str(r.renewal_date)[:10],
            "csm_owner": _text(r.csm_owner),
            "stage": _text(r.lifecycle_stage).replace("_", " "),
            "health": scorecard(r._asdict()),
            "reasons": _text(r.top_reasons),
            "changed": _text(r.change_reasons),
            "next_action": _text(r.next_action),
        }
        for r in top.itertuples()
    ]
    create_table_artifact(
        rows, key="top-at-risk-accounts", description=f"Top {len(rows)} accounts at risk on {outcome.as_of}"
    )
    drifted = outcome.drift[outcome.drift["drifted"]]
    if len(drifted):
        create_markdown_artifact(
            "## Drift warning\n\nPopulation stability index above 0.2 against the training data:\n\n"
            + drifted.round(3).to_markdown(index=False),
            key="drift-report",
            description="Feature and score drift (PSI)",
        )


# -- flows --------------------------------------------------------------------------
def _settings(given: Settings | None = None) -> Settings:
    """The settings a caller gave, else those of the environment / config file.
    A deployment run works in a temporary clone of the repository, deleted
    afterwards: its data must be named by absolute locations, never the
    clone's ``./data``."""
    import os

    from prefect.runtime import deployment

    if given is not None:
        return given
    settings = load_settings()
    if deployment.id:
        data_dir = os.environ.get("CHURN_DATA_DIR", "")
        explicit = settings.warehouse_url and settings.mlflow_tracking_uri
        if not explicit and not os.path.isabs(data_dir):
            raise SettingsError(
                "A deployment run works in a temporary clone of the repository: set CHURN_DATA_DIR to an "
                "absolute path (or CHURN_WAREHOUSE_URL and MLFLOW_TRACKING_URI) in the worker's environment "
                "(see docs/deployments.md)."
            )
    return settings


@flow(name="churn-train", log_prints=False)
def train_flow(as_of: dt.date | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Retrain on data up to ``as_of`` (default: the run date) and apply the champion gate."""
    logger = get_run_logger()
    settings = _settings(settings)
    day = as_of or dt.date.today()
    report = _validated(settings, day, "validation-report-train")
    extra = champion_event_types_task(settings)
    frame, report = training_set_task(settings, day, extra, report.fingerprint, report)
    outcome = fit_task(settings, frame, report, day)
    _publish_training(outcome, settings)
    logger.info("Model %s v%s: %s", settings.model_name, outcome.run.model_version, outcome.run.decision.reason)
    return {
        "model_version": outcome.run.model_version,
        "promoted": outcome.run.decision.promoted,
        "test_metrics": outcome.result.metrics,
        "run_id": outcome.run.run_id,
        "outcome": outcome,
    }


def _champion_features(settings: Settings, day: dt.date):
    """(version, model, features, report): the champion and the features it
    needs as of ``day``, from validated (and published) inputs."""
    version, model = champion_task(settings)
    report = _validated(settings, day, "validation-report-score")
    frame, report = scoring_features_task(settings, day, dict(model.event_types), report.fingerprint, report)
    return version, model, frame, report


@flow(name="churn-score")
def score_flow(as_of: dt.date | None = None, top_n: int = 10, settings: Settings | None = None) -> dict[str, Any]:
    """Score every active account with the champion and write the results back."""
    logger = get_run_logger()
    settings = _settings(settings)
    day = as_of or dt.date.today()
    version, model, frame, report = _champion_features(settings, day)
    outcome = write_scores_task(settings, day, version, model, frame, report, top_n)
    _publish_scores(outcome, top_n)
    if outcome.drifted:
        logger.warning("Drift (PSI > 0.2) against the training data in: %s", ", ".join(outcome.drifted))
    logger.info("Scored %d accounts as of %s with v%s", outcome.accounts, day, version)
    return {
        "accounts": outcome.accounts,
        "reasons": outcome.reasons,
        "model_version": version,
        "drifted": outcome.drifted,
        "outcome": outcome,
    }


@task(name="explain-partition")
def explain_partition_task(explain_one, chunk: pd.DataFrame) -> pd.DataFrame:
    """Run the scoring step's per-partition explainer (model and spec bound in)."""
    return explain_one(chunk)


@flow(name="churn-score-partitioned")
def score_partitioned_flow(
    as_of: dt.date | None = None, partition_rows: int = 50_000, top_n: int = 10, settings: Settings | None = None
) -> dict[str, Any]:
    """Like ``churn-score``, but the SHAP explanations of each partition of
    accounts run as mapped tasks on the flow's task runner (a Dask cluster
    with :func:`dask_score_flow`). Features stay in the warehouse engine; the
    write-back is still one transaction."""
    from prefect import unmapped

    settings = _settings(settings)
    day = as_of or dt.date.today()
    version, model, frame, report = _champion_features(settings, day)

    def on_runner(explain_one, parts):
        return [f.result() for f in explain_partition_task.map(unmapped(explain_one), parts)]

    outcome = steps.write_scores(
        settings, day, version, model, frame, report, top_n, chunk_rows=partition_rows, mapper=on_runner
    )
    _publish_scores(outcome, top_n)
    return {"accounts": outcome.accounts, "reasons": outcome.reasons, "model_version": version, "outcome": outcome}


def dask_score_flow(n_workers: int = 2, address: str | None = None):
    """``churn-score-partitioned`` on a Dask cluster: an existing scheduler at
    ``address`` (or ``CHURN_DASK_ADDRESS``), else a local cluster of
    ``n_workers`` single-threaded worker processes."""
    import os

    from prefect_dask import DaskTaskRunner

    address = address or os.environ.get("CHURN_DASK_ADDRESS")
    runner = (
        DaskTaskRunner(address=address)
        if address
        else DaskTaskRunner(
            cluster_kwargs={
                "n_workers": n_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
        )
    )
    return score_partitioned_flow.with_options(task_runner=runner)


@flow(name="churn-retrain-and-score")
def retrain_and_score_flow(
    as_of: dt.date | None = None, top_n: int = 10, settings: Settings | None = None
) -> dict[str, Any]:
    """Monthly: retrain (gated), then score with whichever model is champion."""
    settings = _settings(settings)
    trained = train_flow(as_of, settings=settings)
    scored = score_flow(as_of, top_n, settings=settings)
    return {"train": trained, "score": scored}


@task(name="monitor-outcomes-and-performance", **IO_RETRIES)
def monitor_task(settings: Settings, as_of: dt.date):
    from pipeline.monitor import run_monitor

    return run_monitor(settings, as_of)


def _publish_monitor(outcome) -> None:
    record = outcome.track_record()
    rows = [
        {
            "as_of_date": str(pd.Timestamp(r.as_of_date).date()),
            "model_version": str(r.model_version),
            "accounts": int(r.accounts),
            "churned": int(r.churned),
            "roc_auc": None if pd.isna(r.roc_auc) else round(float(r.roc_auc), 3),
            "lift_top10": None if pd.isna(r.lift_top10) else round(float(r.lift_top10), 2),
            "predicted": round(float(r.mean_probability), 3),
            "observed": round(float(r.observed_rate), 3),
            "alert": bool(r.alert) if pd.notna(r.alert) else False,
        }
        for r in record.itertuples(index=False)
    ]
    create_table_artifact(rows, key="track-record", description=f"Live performance as of {outcome.as_of}")
    lines = outcome.alert_lines()
    if lines:
        create_markdown_artifact(
            "## Retraining recommended\n\n"
            + "\n".join(f"- retraining recommended: {line}" for line in lines)
            + "\n\nRetrain with `churn train` (or wait for the monthly deployment) and compare with "
            "`churn backtest` first.",
            key="monitor-alert",
            description="retraining recommended: " + lines[0],
        )


@flow(name="churn-monitor")
def monitor_flow(as_of: dt.date | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Weekly: the outcome of every scored account whose horizon has passed,
    live performance per date, model version and slice, and alerts."""
    logger = get_run_logger()
    settings = _settings(settings)
    outcome = monitor_task(settings, as_of or dt.date.today())
    _publish_monitor(outcome)
    for line in outcome.alert_lines():
        logger.warning("Retraining recommended: %s", line)
    logger.info("Monitor: %d mature date(s) x model version(s)", len(outcome.overall))
    return {"mature": len(outcome.overall), "alerts": outcome.alert_lines(), "outcome": outcome}


@flow(name="churn-demo")
def demo_flow(
    accounts: int = 3000,
    months: int = 24,
    seed: int = 42,
    top_n: int = 10,
    history_months: int = 6,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Generate synthetic data and build a track record, all in one process:
    a model trained ``history_months`` before today scores the first day of
    each month since (as the daily job would have), then today's model is
    trained (gated), scores a week ago and today (so the output tables show
    a trend and the latest scores are the champion's), and the monitor
    measures every scored date whose outcome is known."""
    settings = _settings(settings)
    generated = generate_task(settings, accounts, months, seed)
    _publish_validation(generated.report, "validation-report-generate")
    today = dt.date.today()
    history = []
    if history_months:
        start = (pd.Timestamp(today) - pd.DateOffset(months=history_months)).date()
        train_flow(start, settings=settings)
        for day in monthly_dates(start, today - timedelta(days=8)):
            score_flow(day, top_n, settings=settings)
            history.append(day)
    trained = train_flow(None, settings=settings)
    score_flow(today - timedelta(days=7), top_n, settings=settings)
    scored = score_flow(today, top_n, settings=settings)
    monitored = monitor_flow(today, settings=settings)
    return {"generated": generated.rows, "train": trained, "score": scored, "history": history, "monitor": monitored}


def monthly_dates(start: dt.date, end: dt.date) -> list[dt.date]:
    """``start`` and the same day of each later month (the month's last day
    when it is shorter) up to ``end``."""
    dates, month = [], 0
    while (day := (pd.Timestamp(start) + pd.DateOffset(months=month)).date()) <= end:
        dates.append(day)
        month += 1
    return dates
