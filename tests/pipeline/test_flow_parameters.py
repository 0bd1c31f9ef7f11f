"""Settings travel to the flows as an object, and Prefect records a flow
run's parameters in its API: a password in the warehouse URL (or the MLflow
tracking URI) must never reach that record, nor the run's state, task runs or
logs. Each flow run here fails at its first use of the secret-bearing URL,
after Prefect has stored the parameters, and everything the API holds about
the run is read back and searched for the password."""

from __future__ import annotations

import json

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

from pipeline import flows
from pipeline.settings import load_settings
from tests.pipeline.churn_data import END, mlflow_restored, settings_for, unset

SECRET = "S3cr3t-Pa#ss@w0rd"
#: MLflow HTTP retry settings that models.tracking.configure puts in the environment
MLFLOW_HTTP = (
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)


def test_the_json_form_of_the_settings_masks_passwords():
    settings = load_settings(
        env={},
        warehouse_url=f"postgresql://churn:{SECRET}@db:5432/prod",
        mlflow_tracking_uri=f"http://admin:{SECRET}@mlflow:5000",
    )
    dumped = json.loads(settings.model_dump_json())
    assert dumped["warehouse_url"] == "postgresql://churn:***@db:5432/prod"
    assert dumped["mlflow_tracking_uri"] == "http://admin:***@mlflow:5000"
    assert SECRET not in settings.model_dump_json() and SECRET not in repr(settings)
    assert settings.warehouse_url == f"postgresql://churn:{SECRET}@db:5432/prod"  # the object keeps it


def everything_the_api_holds(flow_run_id) -> tuple[dict, str]:
    """(the flow run's parameters, the JSON of the run, its task runs and its logs)."""
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)  # deliver the run's logs before reading them
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    text = "\n".join(
        [run.model_dump_json(), *(t.model_dump_json() for t in tasks), *(log.model_dump_json() for log in logs)]
    )
    return run.parameters, text


@pytest.mark.parametrize("field", ["warehouse_url", "mlflow_tracking_uri"])
def test_a_password_never_becomes_a_prefect_parameter(field, trained_env, prefect_api_url, tmp_path, monkeypatch):
    if field == "warehouse_url":  # the champion loads, then the warehouse is refused (unsupported scheme)
        url, shown = f"mysql://churn:{SECRET}@127.0.0.1/prod", "mysql://churn:***@127.0.0.1/prod"
        settings = trained_env.copy(tmp_path, warehouse_url=url)
    else:  # nothing answers there: the first MLflow call fails
        url, shown = f"http://admin:{SECRET}@127.0.0.1:1", "http://admin:***@127.0.0.1:1"
        settings = settings_for(tmp_path, mlflow_tracking_uri=url, mlflow_timeout_seconds=5)
        unset(monkeypatch, *MLFLOW_HTTP)
    assert getattr(settings, field) == url
    with mlflow_restored():
        state = flows.score_flow(as_of=END, top_n=3, settings=settings, return_state=True)
    assert state.is_failed(), state
    parameters, everything = everything_the_api_holds(state.state_details.flow_run_id)
    assert parameters["settings"][field] == shown  # the settings were recorded, masked
    assert parameters["settings"]["data_dir"] == str(settings.data_dir)
    assert SECRET not in everything
    assert SECRET not in json.dumps(parameters)
