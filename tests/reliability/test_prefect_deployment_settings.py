"""Item 22 of issue #11 (the worker side): a deployment run works in a
temporary clone of the repository, so its data must be named by absolute
locations; falling back to the clone's ./data would read an empty directory
and write into one that is deleted after the run."""

from __future__ import annotations

import pytest

from pipeline import flows
from pipeline.settings import SettingsError
from tests.pipeline.churn_data import unset

DEPLOYMENT = "PREFECT__RUNTIME__DEPLOYMENT__ID"  # how prefect.runtime.deployment.id can be set


@pytest.fixture
def in_deployment(monkeypatch, tmp_path):
    unset(monkeypatch, "CHURN_DATA_DIR", "CHURN_WAREHOUSE_URL", "MLFLOW_TRACKING_URI", "CHURN_CONFIG")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DEPLOYMENT, "00000000-0000-0000-0000-000000000001")
    return monkeypatch


def test_a_deployment_run_without_absolute_locations_fails_clearly(in_deployment):
    with pytest.raises(SettingsError, match="CHURN_DATA_DIR"):
        flows._settings()
    in_deployment.setenv("CHURN_DATA_DIR", "data")  # relative: the clone's
    with pytest.raises(SettingsError, match="absolute"):
        flows._settings()


def test_a_deployment_run_with_absolute_locations_gets_them(in_deployment, tmp_path):
    in_deployment.setenv("CHURN_DATA_DIR", str(tmp_path / "srv"))
    assert flows._settings().data_dir == tmp_path / "srv"
    in_deployment.delenv("CHURN_DATA_DIR")
    in_deployment.setenv("CHURN_WAREHOUSE_URL", "postgresql://churn@db/prod")
    in_deployment.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert flows._settings().warehouse == "postgresql://churn@db/prod"


def test_outside_a_deployment_the_default_data_dir_is_fine(monkeypatch, tmp_path):
    unset(monkeypatch, "CHURN_DATA_DIR", "CHURN_WAREHOUSE_URL", "MLFLOW_TRACKING_URI", "CHURN_CONFIG", DEPLOYMENT)
    monkeypatch.chdir(tmp_path)
    assert flows._settings().data_dir == tmp_path / "data"
