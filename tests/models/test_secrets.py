"""A password in the warehouse URL never reaches MLflow: not in params, tags,
metrics or artifacts of the training run."""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from features.staging import TableStatus, ValidationReport
from pipeline import steps
from pipeline.settings import load_settings
from tests.models.helpers import fresh_model_name

SECRET = "s3cr3t-Pa55"


def test_training_run_never_records_the_warehouse_password(training_frame, mlflow_uri, tmp_path):
    settings = load_settings(
        env={
            "CHURN_WAREHOUSE_URL": f"postgresql://churn:{SECRET}@db.internal:5432/prod",
            "MLFLOW_TRACKING_URI": mlflow_uri,
        },
        data_dir=tmp_path,
        model_name=fresh_model_name(),
    )
    report = ValidationReport(
        as_of=None,
        tables={
            name: TableStatus(name, name, present=True, rows=1, kept=1)
            for name in ("accounts", "subscriptions", "usage_events", "support_tickets", "nps_responses")
        },
    )
    outcome = steps.fit_and_log(settings, training_frame, report, training_frame["as_of_date"].max().date())
    run = MlflowClient().get_run(outcome.run.run_id)
    recorded = [*run.data.params.values(), *run.data.tags.values(), *map(str, run.data.metrics)]
    assert run.data.params["warehouse"] == "postgresql://churn:***@db.internal:5432/prod"
    assert not [value for value in recorded if SECRET in value]
    artifacts = mlflow.artifacts.download_artifacts(run_id=outcome.run.run_id, dst_path=str(tmp_path / "a"))
    for path in Path(artifacts).rglob("*"):
        if path.is_file() and path.suffix in (".md", ".json", ".csv", ".txt", ".yaml", ""):
            assert SECRET not in path.read_text(errors="ignore"), path
