"""MLflow calls of the track record, beside :mod:`models.tracking` (the two
are the only modules that talk to MLflow): the test-window AUC a version was
trained with, its live metrics as a series by as-of date, and backtest runs.

Live metrics go to one run per model version in the experiment, tagged
``churn_monitor=live``, ``model_name`` and ``model_version`` (the version
carries the run id in its ``monitor_run_id`` tag). Each mature as-of date is
one point: ``step`` = days since 1970-01-01 of the as-of date, ``timestamp``
= that date at 00:00 UTC (so MLflow's wall-time axis shows the dates). A date
already logged is not logged again: reruns add no duplicate points.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

LIVE_TAG, BACKTEST_TAG = "churn_monitor", "churn_backtest"
#: performance columns logged as live_<name> series
SERIES = ("roc_auc", "pr_auc", "brier", "ece", "lift_top10", "observed_rate", "mean_probability", "accounts")
EPOCH = dt.date(1970, 1, 1)


def epoch_day(day: Any) -> int:
    """The MLflow step of an as-of date: days since 1970-01-01."""
    return (pd.Timestamp(day).date() - EPOCH).days


def trained_auc(
    model_name: str, versions: Iterable[str], metric: str = "roc_auc"
) -> dict[tuple[str, str], float | None]:
    """The test-window metric each registered version was trained with (the
    ``test_<metric>`` tag training sets, else the training run's metric);
    None for a version the registry does not know or that has no value."""
    client, out = MlflowClient(), {}
    for version in versions:
        value: float | None = None
        try:
            found = client.get_model_version(model_name, str(version))
        except mlflow.exceptions.MlflowException:
            found = None
        if found is not None:
            tag = (found.tags or {}).get(f"test_{metric}")
            if tag is not None:
                value = float(tag)
            elif found.run_id:
                value = client.get_run(found.run_id).data.metrics.get(f"test_{metric}")
        out[(model_name, str(version))] = value
    return out


def _live_run(client: MlflowClient, experiment_id: str, model_name: str, version: str) -> str:
    query = (
        f"tags.{LIVE_TAG} = 'live' AND tags.model_name = '{_quoted(model_name)}' "
        f"AND tags.model_version = '{_quoted(version)}'"
    )
    found = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(
        experiment_id,
        tags={LIVE_TAG: "live", "model_name": model_name, "model_version": version},
        run_name=f"live {model_name} v{version}",
    )
    client.set_terminated(run.info.run_id)
    try:
        client.set_model_version_tag(model_name, version, "monitor_run_id", run.info.run_id)
    except mlflow.exceptions.MlflowException:  # a version not (or no longer) in the registry
        pass
    return run.info.run_id


def _quoted(text: str) -> str:
    return str(text).replace("'", "\\'")


def log_live(experiment: str, performance: pd.DataFrame) -> dict[str, str]:
    """Log each model version's ``all``-slice metrics per mature date as
    ``live_<metric>`` series (and ``live_alert`` 0/1) to its live run; dates
    already logged are skipped. Returns version -> run id."""
    client = MlflowClient()
    experiment_id = mlflow.get_experiment_by_name(experiment).experiment_id
    rows = performance[performance["slice"] == "all"]
    runs: dict[str, str] = {}
    for (model_name, version), part in rows.groupby(["model_name", "model_version"], sort=True):
        run_id = runs[str(version)] = _live_run(client, experiment_id, str(model_name), str(version))
        done = {m.step for m in client.get_metric_history(run_id, "live_accounts")}
        metrics = []
        for row in part.itertuples(index=False):
            step = epoch_day(row.as_of_date)
            if step in done:
                continue
            stamp = int(pd.Timestamp(row.as_of_date).tz_localize("UTC").timestamp() * 1000)
            values = {f"live_{name}": getattr(row, name) for name in SERIES}
            values["live_alert"] = float(bool(row.alert)) if pd.notna(row.alert) else np.nan
            metrics += [Metric(key, float(value), stamp, step) for key, value in values.items() if pd.notna(value)]
        for start in range(0, len(metrics), 900):  # MLflow takes at most 1000 per batch
            client.log_batch(run_id, metrics=metrics[start : start + 900])
    return runs


def log_backtest(
    experiment: str, params: Mapping[str, Any], performance: pd.DataFrame, training_metrics: Mapping[str, float]
) -> str:
    """One run tagged ``churn_backtest``: the parameters, the trained model's
    test-window metrics (``test_*``), the ``all``-slice metrics per scored date
    as ``backtest_<metric>`` series (step = epoch day) and the whole table."""
    mlflow.set_experiment(experiment)
    rows = performance[performance["slice"] == "all"]
    with mlflow.start_run(run_name=f"backtest trained {params.get('train_as_of')}") as run:
        mlflow.set_tags({BACKTEST_TAG: "true", "model_name": str(params.get("model_name", ""))})
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({f"test_{k}": v for k, v in training_metrics.items() if np.isfinite(v)})
        for row in rows.itertuples(index=False):
            values = {f"backtest_{name}": getattr(row, name) for name in SERIES}
            mlflow.log_metrics({k: float(v) for k, v in values.items() if pd.notna(v)}, step=epoch_day(row.as_of_date))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "backtest_performance.csv"
            performance.to_csv(path, index=False)
            mlflow.log_artifact(str(path), "tables")
    return run.info.run_id
