"""The Prefect flows end to end on a temporary Prefect server: generate ->
history (a model trained 11 months before the end scores each month since) ->
train -> score -> monitor through ``demo_flow`` (the same wiring as the
deployments), then the output tables, the registry, the published artifacts,
the feature cache, and the retry condition that retries only transient
errors. On this generated data (2,000 accounts, 30 months) the track record
is checked against an independent computation of the contract's churn
definition, scikit-learn, MLflow and a backtest."""

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

ACCOUNTS, MONTHS, SEED, TOP_N, HISTORY = 2000, 30, 3, 5, 11


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
    """generate -> history -> train -> score -> monitor in one parent flow; returns (result, state)."""
    state = flows.demo_flow(
        accounts=ACCOUNTS, months=MONTHS, seed=SEED, top_n=TOP_N, history_months=HISTORY, return_state=True
    )
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
    """The demo scores each month since the history model, a week ago and
    today: one row per active account and date, reasons, the change since
    last week and a latest view holding the champion's scores of today."""
    result, _ = demo
    today = dt.date.today()
    week_ago = today - dt.timedelta(days=7)
    assert result["generated"]["accounts"] == ACCOUNTS
    scores = read(flow_env, "SELECT * FROM churn_scores")
    assert len(result["history"]) == HISTORY
    assert sorted({d.date() for d in scores["as_of_date"]}) == [*result["history"], week_ago, today]
    for day in (*result["history"], week_ago, today):
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
    assert result["train"]["model_version"] == "2"  # v1 is the history model
    tracking.configure(flow_env.tracking_uri, flow_env.experiment)
    champion = str(MlflowClient().get_model_version_by_alias(flow_env.model_name, "champion").version)
    assert champion == ("2" if result["train"]["promoted"] else "1")
    # the latest scores are the champion's, of today
    assert champion == str(result["score"]["model_version"])
    latest = read(flow_env, "SELECT DISTINCT model_version, as_of_date FROM churn_scores_latest")
    assert list(latest["model_version"]) == [champion] and latest["as_of_date"].dt.date.tolist() == [dt.date.today()]


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
    scored_dates = HISTORY + 2  # the history, a week ago and today
    assert len(by_key["validation-report-score"]) == len(by_key["top-at-risk-accounts"]) == scored_dates
    assert len(by_key["track-record"]) == 1 and by_key["track-record"][0].type == "table"
    for key in ("validation-report-generate", "validation-report-train", "validation-report-score"):
        for artifact in by_key[key]:
            assert artifact.type == "markdown"
            assert "## Input validation" in artifact.data and "usage_events" in artifact.data
    summaries = {a.data.splitlines()[0]: a.data for a in by_key["training-summary"]}
    assert set(summaries) == {"# Training summary: churn-model v1", "# Training summary: churn-model v2"}
    assert "promoted to champion" in summaries["# Training summary: churn-model v1"]  # the first model
    summary = summaries["# Training summary: churn-model v2"]
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


# -- the track record on generated data ------------------------------------------------------
def independent_outcome(spans: list[tuple], day: pd.Timestamp, horizon: int = 90, grace: int = 30):
    """The contract's churn definition, computed apart from the SQL: merge an
    account's subscriptions into coverage spells (a gap shorter than the grace
    period is a late renewal), take the spell covering ``day``; churned when
    it ends within (day, day + horizon]. None when no spell covers the day."""
    far = pd.Timestamp("2262-01-01")
    spells: list[list[pd.Timestamp]] = []
    for start, end in sorted((s, far if pd.isna(e) else e) for s, e in spans):
        if end <= start:
            continue
        if spells and (start - spells[-1][1]).days < grace:
            spells[-1][1] = max(spells[-1][1], end)
        else:
            spells.append([start, end])
    for start, end in spells:
        if start <= day < end:
            churned = day < end <= day + pd.Timedelta(days=horizon)
            return int(churned), (end if churned else None)
    return None


def test_monitor_outcomes_agree_with_an_independent_churn_definition(flow_env, demo):
    from features.staging import validate

    result, _ = demo
    today = dt.date.today()
    with Warehouse(flow_env.warehouse) as wh:
        validate(wh, today)  # the clean subscriptions the contract applies its definition to
        subs = wh.query("SELECT account_id, start_date, end_date FROM stg_subscriptions")
        outcomes = wh.query("SELECT * FROM churn_outcomes")
        scored = wh.row_count("churn_scores")
    spans = {a: list(zip(g["start_date"], g["end_date"])) for a, g in subs.groupby("account_id")}
    assert len(outcomes) == scored and not outcomes.duplicated(["account_id", "as_of_date", "model_name"]).any()
    maturity = outcomes["as_of_date"] + pd.Timedelta(days=120)
    mature = outcomes[maturity <= pd.Timestamp(today)]
    assert (outcomes.loc[maturity > pd.Timestamp(today), "outcome"] == "pending").all()
    assert mature["as_of_date"].nunique() >= 6 and set(mature["outcome"]) == {"churned", "retained"}
    for row in mature.itertuples(index=False):
        churned, churn_date = independent_outcome(spans[row.account_id], row.as_of_date)
        assert row.churned == churned, (row.account_id, row.as_of_date)
        assert (pd.isna(row.churn_date) and churn_date is None) or row.churn_date == churn_date, row.account_id
    # the history model's mature dates have performance rows, and the champion's dates are still pending
    performance = read(flow_env, "SELECT * FROM churn_model_performance")
    overall = performance[performance["slice"] == "all"]
    assert set(overall["as_of_date"]) == set(mature["as_of_date"]) and set(overall["model_version"]) == {"1"}
    assert (overall["test_roc_auc"] > 0.6).all()  # read back from the training run in MLflow
    assert result["monitor"]["mature"] == len(overall)


def test_the_all_slice_auc_equals_sklearn_on_the_outcomes(flow_env, demo):
    from sklearn.metrics import roc_auc_score

    outcomes = read(flow_env, "SELECT * FROM churn_outcomes WHERE churned IS NOT NULL")
    performance = read(flow_env, "SELECT * FROM churn_model_performance WHERE slice = 'all'")
    for row in performance.itertuples(index=False):
        rows = outcomes[(outcomes["as_of_date"] == row.as_of_date) & (outcomes["model_version"] == row.model_version)]
        assert row.accounts == len(rows) and row.churned == rows["churned"].sum()
        assert row.roc_auc == pytest.approx(roc_auc_score(rows["churned"], rows["churn_probability"]), abs=1e-12)
    slices = set(read(flow_env, "SELECT DISTINCT slice FROM churn_model_performance")["slice"])
    assert {"all", "tier=low", "segment=SMB", "segment=Enterprise"} <= slices


def test_live_metrics_in_mlflow_and_an_idempotent_rerun(flow_env, demo):
    from mlflow.tracking import MlflowClient

    from models import tracking
    from models.tracking_live import epoch_day

    before = {t: read(flow_env, f"SELECT * FROM {t}") for t in ("churn_outcomes", "churn_model_performance")}
    state = flows.monitor_flow(dt.date.today(), return_state=True)
    assert state.is_completed(), state
    for table, frame in before.items():
        after = read(flow_env, f"SELECT * FROM {table}")
        key = list(frame.columns[:4])
        pd.testing.assert_frame_equal(
            after.sort_values(key).reset_index(drop=True), frame.sort_values(key).reset_index(drop=True), obj=table
        )
    tracking.configure(flow_env.tracking_uri, flow_env.experiment)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(flow_env.experiment).experiment_id
    (run,) = client.search_runs([experiment], "tags.churn_monitor = 'live' AND tags.model_version = '1'")
    history = client.get_metric_history(run.info.run_id, "live_roc_auc")
    overall = before["churn_model_performance"].query("slice == 'all'")
    assert sorted(m.step for m in history) == sorted(epoch_day(d) for d in overall["as_of_date"])  # no duplicate
    by_step = {m.step: m.value for m in history}
    for row in overall.itertuples(index=False):
        assert by_step[epoch_day(row.as_of_date)] == pytest.approx(row.roc_auc)
    version = client.get_model_version(flow_env.model_name, "1")
    assert version.tags["monitor_run_id"] == run.info.run_id


def test_monitor_cli_fails_on_alert_only_when_asked(flow_env, demo, tmp_path):
    """A copy whose oldest scored date is scored upside down: the monitor
    flags it, prints the track record and exits 0, or 1 with one line under
    --fail-on-alert."""
    import shutil

    from typer.testing import CliRunner

    from pipeline.cli import app

    result, _ = demo
    shutil.copy(flow_env.data_dir / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    url = f"duckdb://{tmp_path / 'warehouse.duckdb'}"
    first = result["history"][0]
    with Warehouse(url) as wh:
        wh.execute(f"UPDATE churn_scores SET churn_probability = 1 - churn_probability WHERE as_of_date = '{first}'")
    runner = CliRunner()
    report = runner.invoke(app, ["monitor", "--warehouse", url])
    assert report.exit_code == 0, report.output
    assert "Track record" in report.output and "ALERT" in report.output
    failed = runner.invoke(app, ["monitor", "--fail-on-alert", "--warehouse", url])
    assert failed.exit_code == 1, failed.output
    error = [line for line in failed.output.splitlines() if line.startswith("Error:")]
    assert error == [error[0]] and f"retraining recommended: {first} churn-model v1: ROC AUC" in error[0]


def test_backtest_reproduces_the_history_model_and_writes_nothing(flow_env, demo):
    """Trained as `churn train --as-of D0` would, the backtest model is the
    history model: same AUC on the same dates as the monitor measured, and
    no output table changes."""
    from mlflow.tracking import MlflowClient

    from pipeline.backtest import run_backtest
    from tests.pipeline.churn_data import assert_same_tables, snapshot

    result, _ = demo
    dates = result["history"][:2]
    before = snapshot(flow_env)
    train_as_of = (pd.Timestamp(dt.date.today()) - pd.DateOffset(months=HISTORY)).date()
    outcome = run_backtest(flow_env, train_as_of, dates)
    assert_same_tables(before, snapshot(flow_env))
    live = read(flow_env, "SELECT * FROM churn_model_performance WHERE slice = 'all' AND model_version = '1'")
    got = outcome.performance.query("slice == 'all'").set_index("as_of_date")
    for row in live[live["as_of_date"].dt.date.isin(dates)].itertuples(index=False):
        assert got.loc[row.as_of_date, "accounts"] == row.accounts
        assert got.loc[row.as_of_date, "roc_auc"] == pytest.approx(row.roc_auc, abs=1e-9)
    run = MlflowClient().get_run(outcome.run_id)
    assert run.data.tags["churn_backtest"] == "true" and run.data.params["train_as_of"] == str(train_as_of)
    assert len(MlflowClient().get_metric_history(outcome.run_id, "backtest_roc_auc")) == len(dates)


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
