"""The Prefect flows end to end on a temporary Prefect server: generate -> train
-> score through ``demo_flow`` (the same wiring as the deployments), then the
output tables, the registry, the published artifacts, the feature cache, and
the retry condition that retries only transient errors."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import psycopg
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.states import Completed, Failed

from features.staging import ContractError, DataQualityError
from pipeline import flows
from pipeline.warehouse import Warehouse, WarehouseError
from tests.pipeline.churn_data import mlflow_restored, read, settings_for, unset

ACCOUNTS, MONTHS, SEED, TOP_N = 800, 24, 3, 5


@pytest.fixture(scope="module")
def flow_env(prefect_api_url, tmp_path_factory):
    """Settings come from the environment inside the flows: point it at a fresh
    data directory for the module (restored afterwards)."""
    data_dir = tmp_path_factory.mktemp("flows")
    with pytest.MonkeyPatch.context() as mp, mlflow_restored():
        mp.setenv("CHURN_DATA_DIR", str(data_dir))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{data_dir / 'mlflow.db'}")
        unset(mp, "CHURN_WAREHOUSE_URL", "CHURN_CONFIG", "CHURN_MODEL_NAME")
        mp.chdir(data_dir)  # no churn.toml from the working directory
        yield settings_for(data_dir)


@pytest.fixture(scope="module")
def demo(flow_env):
    """generate -> train -> score in one parent flow; returns (result, state)."""
    state = flows.demo_flow(accounts=ACCOUNTS, months=MONTHS, seed=SEED, top_n=TOP_N, return_state=True)
    assert state.is_completed(), state
    return state.result(), state


def run_ids_and_tasks(flow_run_id):
    """Every flow run under ``flow_run_id`` (itself included) and their task runs."""
    with get_client(sync_client=True) as client:
        ids = {flow_run_id}
        while True:
            children = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id={"any_": list(ids)}))
            new = {r.id for r in children} - ids
            if not new:
                break
            ids |= new
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids))))
    return ids, tasks


def active_accounts(settings, day: dt.date) -> int:
    return int(
        read(
            settings,
            f"""SELECT COUNT(DISTINCT account_id) AS n FROM subscriptions
        WHERE start_date <= DATE '{day}' AND (end_date IS NULL OR end_date > DATE '{day}')""",
        )["n"].iloc[0]
    )


def test_demo_flow_writes_scores_for_every_active_account(flow_env, demo):
    """The demo scores a week ago and today: one row per active account and
    date, reasons, the change since last week and a latest view."""
    result, _ = demo
    today = dt.date.today()
    week_ago = today - dt.timedelta(days=7)
    assert result["generated"]["accounts"] == ACCOUNTS
    scores = read(flow_env, "SELECT * FROM churn_scores")
    assert sorted({d.date() for d in scores["as_of_date"]}) == [week_ago, today]
    for day in (week_ago, today):
        n_active = active_accounts(flow_env, day)
        on_day = scores[scores["as_of_date"].dt.date == day]
        assert len(on_day) == n_active > 0 and on_day["account_id"].is_unique, day
        assert on_day["top_reasons"].notna().mean() > 0.8
    now = scores[scores["as_of_date"].dt.date == today]
    assert result["score"]["accounts"] == len(now)
    before = scores[scores["as_of_date"].dt.date == week_ago].set_index("account_id")["churn_probability"]
    change = now.set_index("account_id")
    both = change.index.intersection(before.index)
    assert len(both) > 0.9 * len(now)
    pd.testing.assert_series_equal(
        change.loc[both, "churn_probability_change"],
        change.loc[both, "churn_probability"] - before.loc[both],
        check_names=False,
    )
    reasons = read(
        flow_env, f"SELECT account_id, direction, reason FROM churn_risk_reasons WHERE as_of_date = DATE '{today}'"
    )
    assert len(reasons) == result["score"]["reasons"] > len(now)
    assert set(reasons["direction"]) == {"increases_risk", "decreases_risk"}
    assert reasons["reason"].str.len().min() > 0
    latest = read(flow_env, "SELECT * FROM churn_scores_latest")  # today's rows only: no stale account
    assert latest["account_id"].is_unique and set(latest["account_id"]) == set(now["account_id"])


def test_demo_flow_registers_the_champion(flow_env, demo):
    from mlflow.tracking import MlflowClient

    from models import tracking

    result, _ = demo
    assert result["train"]["promoted"] is True
    tracking.configure(flow_env.tracking_uri, flow_env.experiment)
    champion = MlflowClient().get_model_version_by_alias(flow_env.model_name, "champion")
    assert str(champion.version) == result["train"]["model_version"] == str(result["score"]["model_version"])


def test_demo_flow_publishes_its_artifacts(flow_env, demo):
    _, state = demo
    today = dt.date.today()
    ids, _ = run_ids_and_tasks(state.state_details.flow_run_id)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=list(ids)))
        )
    by_key: dict[str, list] = {}
    for artifact in artifacts:
        by_key.setdefault(artifact.key, []).append(artifact)
    assert {
        "validation-report-generate",
        "validation-report-train",
        "validation-report-score",
        "training-summary",
        "top-at-risk-accounts",
    } <= set(by_key)
    assert len(by_key["validation-report-score"]) == len(by_key["top-at-risk-accounts"]) == 2  # two dates
    for key in ("validation-report-generate", "validation-report-train", "validation-report-score"):
        for artifact in by_key[key]:
            assert artifact.type == "markdown"
            assert "## Input validation" in artifact.data and "usage_events" in artifact.data
    (summary,) = [a.data for a in by_key["training-summary"]]
    assert "# Training summary: churn-model v1" in summary and "promoted to champion" in summary
    assert "baseline_logistic" in summary
    (top,) = [a for a in by_key["top-at-risk-accounts"] if str(today) in (a.description or "")]
    assert top.type == "table"
    rows = pd.DataFrame(json.loads(top.data) if isinstance(top.data, str) else top.data)
    assert list(rows["rank"]) == list(range(1, TOP_N + 1))
    riskiest = read(
        flow_env,
        f"SELECT * FROM churn_scores WHERE risk_rank = 1 AND as_of_date = DATE '{today}'",
    ).iloc[0]
    assert rows["account"].iloc[0].startswith(riskiest["account_id"])
    assert rows["reasons"].iloc[0] == (riskiest["top_reasons"] or "")
    # what a CSM needs on the same line: owner, stage, the area scorecard, what changed, the next step
    first = rows.iloc[0]
    assert first["next_action"] == riskiest["next_action"] and first["next_action"]
    text = {k: "" if pd.isna(v) else v for k, v in riskiest.items()}
    assert first["changed"] == text["change_reasons"]
    assert first["stage"] == text["lifecycle_stage"].replace("_", " ")
    assert first["csm_owner"] == text["csm_owner"]
    assert first["health"].startswith(f"usage {riskiest['usage_status']}, support {riskiest['support_status']}")


def test_a_second_score_run_reuses_the_cached_features(flow_env, demo):
    before = read(flow_env, "SELECT COUNT(*) AS n FROM churn_scores")["n"].iloc[0]
    state = flows.score_flow(top_n=TOP_N, return_state=True)
    assert state.is_completed(), state
    _, tasks = run_ids_and_tasks(state.state_details.flow_run_id)
    states = {t.name.rsplit("-", 1)[0]: t.state.name for t in tasks}
    assert states["build-scoring-features"] == "Cached"
    assert states["score-explain-write"] == "Completed"
    assert read(flow_env, "SELECT COUNT(*) AS n FROM churn_scores")["n"].iloc[0] == before  # replaced, not added


def test_a_broken_input_is_not_served_from_the_cache(flow_env, demo):
    """Dropping a required column: validation (never cached) names the column,
    the features are not built, nothing is written, and the error (bad input,
    not transient) is not retried."""
    before = read(flow_env, "SELECT * FROM churn_scores ORDER BY as_of_date, account_id")
    with Warehouse(flow_env.warehouse) as wh:
        wh.execute("ALTER TABLE usage_events DROP COLUMN event_type")
    state = flows.score_flow(top_n=TOP_N, return_state=True)
    assert state.is_failed()
    with pytest.raises(ContractError, match="event_type"):
        state.result()
    _, tasks = run_ids_and_tasks(state.state_details.flow_run_id)
    validation = [t for t in tasks if t.name.startswith("validate-inputs")]
    assert len(validation) == 1 and validation[0].state.is_failed()
    assert validation[0].run_count == 1  # no retry on a contract error
    assert not [t for t in tasks if t.name.startswith("build-scoring-features")]
    pd.testing.assert_frame_equal(read(flow_env, "SELECT * FROM churn_scores ORDER BY as_of_date, account_id"), before)


# -- the retry condition ----------------------------------------------------------------
def _warehouse_error(cause: BaseException) -> WarehouseError:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise WarehouseError(f"{type(exc).__name__}: {exc}") from exc
    except WarehouseError as err:
        return err


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (_warehouse_error(ConnectionError("connection reset by peer")), True),
        (_warehouse_error(psycopg.OperationalError("server closed the connection unexpectedly")), True),
        (_warehouse_error(TimeoutError("timed out")), True),
        (ConnectionError("refused"), True),
        (_warehouse_error(ValueError("syntax error at or near SELECT")), False),
        (ContractError("Table 'usage_events' is missing required column(s): event_type"), False),
        (DataQualityError("12% of usage_events rows are bad", report=None), False),
        (FileNotFoundError("warehouse.duckdb"), False),
        (ValueError("bad value"), False),
    ],
)
def test_retry_only_transient_errors(exc, retry):
    assert flows._transient(None, None, Failed(data=exc)) is retry


def test_a_completed_state_is_not_retried():
    assert flows._transient(None, None, Completed(data=1)) is False


def test_io_tasks_retry_with_the_transient_condition():
    for task in (
        flows.generate_task,
        flows.validate_task,
        flows.scoring_features_task,
        flows.write_scores_task,
        flows.fit_task,
        flows.champion_task,
    ):
        assert task.retries == 3
        assert task.retry_condition_fn is flows._transient
