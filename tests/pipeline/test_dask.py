"""Scoring partitions mapped through Prefect onto a real local Dask cluster
(two worker processes) gives exactly the single-process results."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline import flows, steps
from pipeline.warehouse import Warehouse
from tests.pipeline.churn_data import END, mlflow_restored


def _outputs(settings) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    with Warehouse(settings.warehouse) as wh:
        scores = wh.query(
            "SELECT * EXCLUDE (scored_at) FROM churn_scores WHERE as_of_date = $d ORDER BY account_id", {"d": END}
        )
        reasons = wh.query(
            "SELECT * FROM churn_risk_reasons WHERE as_of_date = $d ORDER BY account_id, rank", {"d": END}
        )
        topics = wh.query(
            "SELECT * FROM churn_topic_contributions WHERE as_of_date = $d ORDER BY account_id, topic", {"d": END}
        )
    return scores, reasons, topics


@pytest.mark.slow
def test_dask_scoring_matches_single_process(trained_env, prefect_api_url, tmp_path, monkeypatch):
    single = trained_env.copy(tmp_path / "single")
    on_dask = trained_env.copy(tmp_path / "dask")
    with mlflow_restored():
        steps.score_accounts(single, END)
        monkeypatch.setenv("CHURN_DATA_DIR", str(on_dask.data_dir))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", on_dask.tracking_uri)
        monkeypatch.delenv("CHURN_WAREHOUSE_URL", raising=False)
        monkeypatch.chdir(tmp_path)
        # small partitions so the work really is spread over both workers
        state = flows.dask_score_flow(n_workers=2)(as_of=END, partition_rows=150, return_state=True)
        assert state.is_completed(), state
        result = state.result()
    expected_scores, expected_reasons, expected_topics = _outputs(single)
    scores, reasons, topics = _outputs(on_dask)
    assert result["accounts"] == len(expected_scores) > 300
    assert result["reasons"] == len(expected_reasons)
    pd.testing.assert_frame_equal(scores, expected_scores)
    pd.testing.assert_frame_equal(reasons, expected_reasons)
    pd.testing.assert_frame_equal(topics, expected_topics)
    assert len(topics) > len(scores)
