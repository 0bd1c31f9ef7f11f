"""Item 1 and 12 of issue #11: validation runs on every run, a cached feature
build is reused only when the data is proven unchanged (content fingerprint),
and the validation report is shown when the data stops a run (CLI and
Prefect artifact)."""

from __future__ import annotations

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from features.staging import DataQualityError
from pipeline import flows
from pipeline.warehouse import Warehouse
from tests.pipeline.churn_data import END, mlflow_restored, read, unset
from tests.pipeline.test_flows import run_ids_and_tasks


@pytest.fixture
def scored_env(trained_env, prefect_api_url, tmp_path, monkeypatch):
    """A private copy of the trained warehouse that the flows find through the environment."""
    settings = trained_env.copy(tmp_path)
    monkeypatch.setenv("CHURN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_env.settings.tracking_uri)
    unset(monkeypatch, "CHURN_WAREHOUSE_URL", "CHURN_CONFIG", "CHURN_MODEL_NAME")
    monkeypatch.chdir(tmp_path)
    with mlflow_restored():
        yield settings


def _task_states(state) -> dict[str, str]:
    _, tasks = run_ids_and_tasks(state.state_details.flow_run_id)
    return {t.name.rsplit("-", 1)[0]: t.state.name for t in tasks}


def _mrr(settings) -> pd.Series:
    frame = read(
        settings, f"SELECT account_id, mrr FROM churn_scores WHERE as_of_date = DATE '{END}' ORDER BY account_id"
    )
    return frame.set_index("account_id")["mrr"]


def test_an_in_place_update_is_not_served_from_the_cache(scored_env):
    first = flows.score_flow(as_of=END, return_state=True)
    assert first.is_completed(), first
    again = flows.score_flow(as_of=END, return_state=True)
    assert _task_states(again)["build-scoring-features"] == "Cached"  # same data: reused
    assert _task_states(again)["validate-inputs"] == "Completed"  # but always validated
    before = _mrr(scored_env)
    with Warehouse(scored_env.warehouse) as wh:  # same rows, same timestamps, new values
        wh.execute("UPDATE subscriptions SET mrr = mrr * 10")
    changed = flows.score_flow(as_of=END, return_state=True)
    assert changed.is_completed(), changed
    assert _task_states(changed)["build-scoring-features"] == "Completed"  # rebuilt
    after = _mrr(scored_env)
    pd.testing.assert_series_equal(after, before * 10, rtol=1e-9)


def test_bad_data_stops_the_run_with_its_report_even_after_a_cached_run(scored_env):
    assert flows.score_flow(as_of=END, return_state=True).is_completed()
    before = read(scored_env, "SELECT * FROM churn_scores ORDER BY as_of_date, account_id")
    with Warehouse(scored_env.warehouse) as wh:
        wh.execute("UPDATE subscriptions SET mrr = -1")
    state = flows.score_flow(as_of=END, return_state=True)
    assert state.is_failed()
    with pytest.raises(DataQualityError, match="subscriptions"):
        state.result()
    states = _task_states(state)
    assert states["validate-inputs"] == "Failed" and "build-scoring-features" not in states
    pd.testing.assert_frame_equal(
        read(scored_env, "SELECT * FROM churn_scores ORDER BY as_of_date, account_id"), before
    )
    # the report that says which rule the rows break is published even though the run failed
    ids, _ = run_ids_and_tasks(state.state_details.flow_run_id)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=list(ids)))
        )
    reports = [a.data for a in artifacts if a.key == "validation-report-score"]
    assert reports and "mrr < 0" in reports[0]
