"""MLflow tracking with a real SQLite store: what one training run records,
the champion/challenger gate, loading the champion in a fresh Python process,
and manual promotion / rollback."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from models import tracking
from models.evaluate import classification_metrics
from models.tracking import CHALLENGER, CHAMPION, LoggedRun, NoChampionError
from models.train import LABEL, TrainConfig, TrainingResult, train_and_evaluate
from tests.models.helpers import fresh_model_name, isolated_mlflow, mlflow_store

REPO = Path(tracking.__file__).resolve().parents[1]


def repo_head() -> str:
    """HEAD of the checkout holding the code ("" when it is not a git checkout)."""
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()


#: a clearly worse model: three stumps
WEAK = TrainConfig(num_leaves=2, max_depth=1, n_estimators=3, early_stopping_rounds=1)


def shuffle_labels_before_test(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Labels permuted within each snapshot except the evaluation windows (the
    latest three mature snapshots keep their true labels, so the gate compares
    models on real outcomes)."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    evaluated = sorted(out.loc[out["mature"], "as_of_date"].unique())[-TrainConfig().eval_windows]
    for _, index in out[out["as_of_date"] < evaluated].groupby("as_of_date").groups.items():
        out.loc[index, LABEL] = rng.permutation(out.loc[index, LABEL].to_numpy())
    return out


@pytest.fixture(scope="module")
def weak(training_frame: pd.DataFrame) -> TrainingResult:
    return train_and_evaluate(training_frame, WEAK)


@dataclass
class Registry:
    directory: Path
    name: str
    results: dict[str, TrainingResult]
    runs: dict[str, LoggedRun]
    aliases: dict[str, dict[str, str]]  # after each run: alias -> version


@pytest.fixture(scope="module")
def registry_state(tmp_path_factory, mlflow_template, training_frame, trained, weak) -> Registry:
    """One model name, three runs in order: a weak model (the first, so champion),
    a model trained on shuffled labels (worse), the default model (better)."""
    results = {
        "weak": weak,
        "shuffled": train_and_evaluate(shuffle_labels_before_test(training_frame)),
        "good": trained,
    }
    directory = tmp_path_factory.mktemp("registry") / "mlflow"
    name = fresh_model_name()
    runs, aliases = {}, {}
    with mlflow_store(directory, mlflow_template):
        client = MlflowClient()
        for key, result in results.items():
            runs[key] = tracking.log_training(result, name)
            aliases[key] = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
    return Registry(directory, name, results, runs, aliases)


@pytest.fixture
def registry(registry_state: Registry):
    """The module's store, with MLflow pointed at it for this test only."""
    with isolated_mlflow(registry_state.directory):
        yield registry_state


# -- the gate ----------------------------------------------------------------------
def test_gate_first_model_is_champion_worse_stays_challenger_better_is_promoted(registry: Registry):
    runs, results, aliases = registry.runs, registry.results, registry.aliases
    assert [runs[k].model_version for k in ("weak", "shuffled", "good")] == ["1", "2", "3"]

    first = runs["weak"].decision
    assert first.promoted and first.reason == "no champion yet" and first.champion_score is None
    assert aliases["weak"] == {CHAMPION: "1", CHALLENGER: "1"}

    worse = runs["shuffled"].decision
    assert not worse.promoted
    assert worse.champion_version == "1"
    assert worse.challenger_score == pytest.approx(results["shuffled"].metrics["pr_auc"], abs=1e-12)
    # both runs' held-out predictions on the same windows (the same three months here)
    assert worse.champion_score == pytest.approx(results["weak"].metrics["pr_auc"], abs=1e-12)
    assert "held-out predictions of both training runs" in worse.comparison and len(worse.windows) == 3
    assert worse.challenger_score < worse.champion_score
    assert aliases["shuffled"] == {CHAMPION: "1", CHALLENGER: "2"}  # champion unchanged

    better = runs["good"].decision
    assert better.promoted and better.champion_version == "1"
    assert better.challenger_score > better.champion_score
    assert better.gain_low > 0  # beyond noise
    assert aliases["good"] == {CHAMPION: "3", CHALLENGER: "3"}
    version, model = tracking.load_model(registry.name)
    assert version == "3"
    test = results["good"].split.test
    assert np.array_equal(model.predict_proba(test), results["good"].model.predict_proba(test))


def test_gate_decision_is_logged_with_the_run(registry: Registry):
    client = MlflowClient()
    for key, logged in registry.runs.items():
        run = client.get_run(logged.run_id)
        decision = logged.decision
        logged_json = mlflow.artifacts.load_dict(f"runs:/{logged.run_id}/gate_decision.json")
        assert logged_json == json.loads(json.dumps(asdict(decision)))
        assert run.data.tags["gate_decision"] == decision.reason
        assert run.data.metrics["gate_promoted"] == float(decision.promoted)
        assert run.data.metrics["gate_challenger_score"] == pytest.approx(decision.challenger_score, abs=1e-12)
        if decision.champion_score is None:
            assert "gate_champion_score" not in run.data.metrics, key
        else:
            assert run.data.metrics["gate_champion_score"] == pytest.approx(decision.champion_score, abs=1e-12)
        version = client.get_model_version(registry.name, logged.model_version)
        assert version.run_id == logged.run_id
        assert version.tags["gate_decision"] == decision.reason
        assert float(version.tags["test_pr_auc"]) == pytest.approx(registry.results[key].metrics["pr_auc"], abs=1e-6)
    assert registry.runs["shuffled"].decision.reason.startswith("challenger does not beat champion v1 on pr_auc")


# -- what a run records -------------------------------------------------------------
def _artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    out = set()
    for item in client.list_artifacts(run_id, path):
        out |= _artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def test_run_records_params_metrics_artifacts_and_tags(registry: Registry, tmp_path: Path):
    result = registry.results["good"]
    split, model = result.split, result.model
    client = MlflowClient()
    run = client.get_run(registry.runs["good"].run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags

    assert params["n_features"] == str(len(model.features))
    assert params["horizon_days"] == "90"
    assert params["calibration_method"] == model.calibrator.method
    # the shipped model trained on every mature snapshot; calibrated on and evaluated over the three windows
    assert params["window_train"] == "2024-10-02..2026-03-02"
    assert "window_valid" not in params and "valid_rows" not in params
    assert params["window_calib"] == params["window_test"] == "2026-01-02..2026-03-02"
    record = mlflow.artifacts.load_dict(f"runs:/{registry.runs['good'].run_id}/windows.json")
    assert [f["test_date"] for f in record["evaluation"]] == ["2026-01-02", "2026-02-02", "2026-03-02"]
    for fold in record["evaluation"]:  # no window seen by the model evaluated on it
        assert fold["test_date"] not in fold["windows"]["train"] + fold["windows"]["valid"] + fold["windows"]["calib"]
    assert record["shipped_model"]["train"][-1] == "2026-03-02"
    for name in ("train", "calib", "test"):
        part = getattr(split, name)
        assert params[f"{name}_rows"] == str(len(part))
        assert float(params[f"{name}_positive_rate"]) == pytest.approx(part[LABEL].mean(), abs=1e-5)
    assert params["seed"] == "42" and params["lgb_num_leaves"] == "15" and params["embargo"] == "True"
    assert params["best_iteration"] == str(model.config["best_iteration"])
    assert params["baseline_features"] == ",".join(result.baseline_features)

    for key, value in result.metrics.items():
        assert metrics[f"test_{key}"] == pytest.approx(value, rel=1e-12), key
    for baseline, values in result.baselines.items():
        for key in ("roc_auc", "pr_auc", "brier", "ece"):
            assert metrics[f"{baseline}_{key}"] == pytest.approx(values[key], rel=1e-12)

    artifacts = _artifact_paths(client, run.info.run_id)
    expected = {
        "plots/roc.png",
        "plots/pr.png",
        "plots/calibration.png",
        "plots/lift.png",
        "plots/shap_summary.png",
        "plots/feature_importance.png",
        "tables/metrics_by_segment.csv",
        "model_card.md",
        "gate_decision.json",
        "windows.json",
        "tables/heldout_predictions.parquet",
    }
    assert expected <= artifacts, expected - artifacts
    local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path)))
    for png in (p for p in expected if p.endswith(".png")):
        data = (local / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
    segments = pd.read_csv(local / "tables/metrics_by_segment.csv").set_index("segment")
    pooled = classification_metrics(result.heldout[LABEL], result.heldout["prob"])  # every window's rows
    assert segments.loc["all", "roc_auc"] == pytest.approx(pooled["roc_auc"], rel=1e-9)
    assert segments.loc["all", "accounts"] == len(result.heldout)
    assert {"SMB", "Mid-Market", "Enterprise"} <= set(segments.index)
    card = (local / "model_card.md").read_text()
    assert "within 90 days" in card and "2026-03-02" in card and "`days_to_renewal`" in card

    assert tags["git_commit"] == (repo_head() or "unknown")
    assert re.fullmatch(r"[0-9a-f]{16}", tags["data_fingerprint"])
    assert tags["model_name"] == registry.name


def test_each_logged_plot_is_its_own_image(registry: Registry, tmp_path: Path):
    run_id = registry.runs["good"].run_id
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="plots", dst_path=str(tmp_path)))
    images = {png.name: hashlib.sha256(png.read_bytes()).hexdigest() for png in local.glob("*.png")}
    assert {"shap_summary.png", "feature_importance.png"} <= set(images)
    same = [(a, b) for a in images for b in images if a < b and images[a] == images[b]]
    assert not same, f"the same image under two names: {same}"


def test_each_figure_function_draws_on_a_figure_of_its_own(trained: TrainingResult):
    from matplotlib.container import BarContainer

    from models import plots

    model, test = trained.model, trained.split.test
    y = test[LABEL].to_numpy()
    importance = pd.Series(model.booster.feature_importance("gain"), index=model.features)
    sample = test.head(300)
    figures = {
        "roc": plots.roc_figure(y, {"model": trained.test_prob}),
        "pr": plots.pr_figure(y, {"model": trained.test_prob}),
        "calibration": plots.calibration_figure(y, {"model": trained.test_prob}),
        "lift": plots.lift_figure(y, trained.test_prob),
        "importance": plots.importance_figure(importance),
        "shap": plots.shap_summary_figure(model.contributions(sample), model.matrix(sample)),
    }
    try:
        assert len({id(fig) for fig in figures.values()}) == len(figures)
        importance_axes = figures["importance"].axes
        assert len(importance_axes) == 1
        assert importance_axes[0].get_title() == "Feature importance (gain)"
        assert any(isinstance(c, BarContainer) for c in importance_axes[0].containers)
        shap_axes = figures["shap"].axes
        assert not any(isinstance(c, BarContainer) for ax in shap_axes for c in ax.containers)
        assert "Feature importance (gain)" not in [ax.get_title() for ax in shap_axes]
        assert any(ax.collections for ax in shap_axes)  # the beeswarm's points
        for name, fig in figures.items():
            assert all(ax.figure is fig for ax in fig.axes), name
    finally:
        for fig in figures.values():
            plots.close(fig)


def test_data_fingerprint_tag_follows_the_training_data(registry: Registry):
    client = MlflowClient()
    fingerprint = {k: client.get_run(r.run_id).data.tags["data_fingerprint"] for k, r in registry.runs.items()}
    assert fingerprint["weak"] == fingerprint["good"]  # same training set, another model
    assert fingerprint["shuffled"] != fingerprint["good"]  # same features, other labels


def test_data_fingerprint():
    frame = pd.DataFrame({"account_id": ["A1", "A2"], "x": [1.0, 2.0], "churned": [0, 1]})
    fp = tracking.data_fingerprint(frame)
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    assert tracking.data_fingerprint(frame.copy()) == fp
    assert tracking.data_fingerprint(frame.assign(x=[1.0, 2.5])) != fp
    assert tracking.data_fingerprint(frame.rename(columns={"x": "y"})) != fp
    assert tracking.data_fingerprint(frame.iloc[:1]) != fp


def test_git_commit_does_not_depend_on_the_working_directory(tmp_path: Path, monkeypatch):
    head = repo_head()
    if not head:
        pytest.skip("the code is not in a git checkout")
    monkeypatch.chdir(tmp_path)  # e.g. `churn train` started by a scheduler elsewhere
    assert tracking.git_commit() == head


# -- the champion in a fresh process -----------------------------------------------------
FRESH_PROCESS = r"""
import json, sys
import mlflow
import numpy as np
import pandas as pd

model = mlflow.pyfunc.load_model(sys.argv[1])
frame = pd.read_parquet("test_window.parquet")
prob = np.asarray(model.predict(frame), dtype=float)
np.save("prob.npy", prob)

from models.evaluate import classification_metrics

print(json.dumps(classification_metrics(frame["churned"].to_numpy(), prob)))
"""


def test_champion_reproduces_the_shipped_models_predictions_in_a_fresh_process(registry: Registry, tmp_path: Path):
    """The registered champion, loaded in a fresh process, gives exactly the
    shipped model's probabilities (the logged test metrics are the held-out
    folds', checked in test_reported_metrics_are_window_means_with_intervals)."""
    result = registry.results["good"]
    result.split.test.to_parquet(tmp_path / "test_window.parquet")
    uri = mlflow.get_tracking_uri()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = uri
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, f"models:/{registry.name}@champion"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    logged = MlflowClient().get_run(registry.runs["good"].run_id).data.metrics
    for key in ("roc_auc", "pr_auc", "lift_top10"):
        assert logged[f"test_{key}"] == pytest.approx(result.metrics[key], abs=1e-9), key
    # the shipped model has seen these windows: it scores them at least as well as the held-out folds
    assert metrics["roc_auc"] >= result.metrics["roc_auc"] - 0.01

    prob = np.load(tmp_path / "prob.npy")
    assert len(prob) == len(result.split.test)
    assert np.all((prob > 0) & (prob < 1))  # probabilities, not 0/1 labels
    assert len(np.unique(prob)) > 50
    assert np.allclose(prob, result.model.predict_proba(result.split.test), rtol=0, atol=1e-12)


def test_a_searched_run_logs_the_parameters_it_trained_with_and_every_trial(
    mlflow_uri: str, training_frame: pd.DataFrame, tmp_path: Path
):
    result = train_and_evaluate(training_frame, TrainConfig(search_trials=3, n_estimators=60))
    used = result.model.config["params"]
    logged = tracking.log_training(result, fresh_model_name())
    client = MlflowClient()
    params = client.get_run(logged.run_id).data.params
    for key, value in used.items():
        assert params[f"lgb_{key}"] == str(value), key
    for key in ("learning_rate", "num_leaves", "max_depth", "min_child_samples", "reg_lambda"):
        assert params[key] == str(used[key]), key  # not TrainConfig's defaults
    assert params["search_trials"] == "3"

    history = client.get_metric_history(logged.run_id, "search_trial_logloss")
    trials = result.model.config["trials"]
    assert sorted(m.step for m in history) == [0, 1, 2]
    assert {m.step: m.value for m in history} == pytest.approx({t["trial"]: t["valid_log_loss"] for t in trials})
    table = pd.read_csv(
        mlflow.artifacts.download_artifacts(
            run_id=logged.run_id, artifact_path="tables/search_trials.csv", dst_path=str(tmp_path)
        )
    )
    assert len(table) == 3 and table["chosen"].sum() == 1
    chosen = table[table["chosen"]].iloc[0]
    assert chosen["valid_log_loss"] == pytest.approx(table["valid_log_loss"].min())
    for key in ("num_leaves", "max_depth", "min_child_samples", "learning_rate", "reg_lambda"):
        assert chosen[key] == pytest.approx(used[key]), key


# -- the model's signature -----------------------------------------------------------
@pytest.mark.parametrize(
    "column",
    ["events_trend_30d", "active_users_trend_30d", "oldest_open_ticket_age_days", "csat_avg_90d", "days_to_renewal"],
)
def test_signature_requires_every_feature_and_accepts_missing_values(registry: Registry, column: str):
    result = registry.results["good"]
    model = mlflow.pyfunc.load_model(f"models:/{registry.name}/{registry.runs['good'].model_version}")
    frame = result.split.test[result.model.features].head(50)

    with pytest.raises(MlflowException, match=column):  # a schema error, not a KeyError inside the model
        model.predict(frame.drop(columns=column))
    inputs = model.metadata.get_input_schema().inputs
    assert sorted(c.name for c in inputs) == sorted(result.model.features)
    assert [c.name for c in inputs if not c.required] == []

    with_gaps = frame.assign(**{column: np.nan})  # a required column may hold missing values
    prob = np.asarray(model.predict(with_gaps), dtype=float)
    assert np.allclose(prob, result.model.predict_proba(with_gaps), rtol=0, atol=1e-12)


# -- manual promotion and rollback ------------------------------------------------
def test_manual_promotion_and_rollback(mlflow_uri: str, weak: TrainingResult, trained: TrainingResult):
    name = fresh_model_name()
    assert tracking.champion_or_none(name) is None
    first = tracking.log_training(weak, name)
    second = tracking.log_training(trained, name)
    assert (first.model_version, second.model_version) == ("1", "2") and second.decision.promoted
    client = MlflowClient()

    tracking.promote(name, first.model_version)  # rollback
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias(name, CHALLENGER).version) == "2"  # untouched
    version, model = tracking.load_model(name)
    assert version == "1"
    assert np.array_equal(model.predict_proba(weak.split.test), weak.model.predict_proba(weak.split.test))

    tracking.promote(name, 2)  # promote again (an int version works too)
    version, model = tracking.champion_or_none(name)
    assert version == "2"
    assert np.array_equal(model.predict_proba(trained.split.test), trained.model.predict_proba(trained.split.test))

    with pytest.raises(MlflowException):
        tracking.promote(name, 99)
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == "2"


def test_champion_that_cannot_score_the_new_data_is_kept(mlflow_uri: str, training_frame: pd.DataFrame):
    """No comparison, no promotion: the reason says why and how to promote by hand."""
    name = fresh_model_name()
    older = train_and_evaluate(training_frame.assign(legacy_score=training_frame["seats"] * 2.0), WEAK)
    assert "legacy_score" in older.model.features
    tracking.log_training(older, name)
    newer = tracking.log_training(train_and_evaluate(training_frame, WEAK), name)  # no legacy_score
    assert not newer.decision.promoted
    assert newer.decision.champion_score is None and newer.decision.champion_version == "1"
    assert "cannot score" in newer.decision.reason and "legacy_score" in newer.decision.reason
    assert "churn promote 2" in newer.decision.reason
    assert tracking.load_model(name)[0] == "1"
    assert tracking.load_model(name, CHALLENGER)[0] == "2"


def test_no_champion(mlflow_uri: str):
    name = fresh_model_name()
    assert tracking.champion_or_none(name) is None
    with pytest.raises(NoChampionError, match="churn train"):
        tracking.load_model(name)
