"""A registry that fails is not a registry without a champion, and a champion
that cannot be loaded is not replaced without a comparison (issue #11, item 16).

Real MLflow on SQLite; a small hand-made training set keeps each test fast."""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from models import tracking
from models.tracking import CHALLENGER, CHAMPION, NoChampionError, RegistryError
from models.train import LABEL, TrainConfig, TrainingResult, train_and_evaluate
from tests.mlflow_state import mlflow_restored
from tests.reliability.test_mlflow_unreachable import chain

SECRET = "s3cr3t-registry"
FAST = TrainConfig(n_estimators=30, early_stopping_rounds=10, embargo=False, min_positives=10)
WEAK = TrainConfig(num_leaves=2, max_depth=1, n_estimators=2, early_stopping_rounds=1, embargo=False, min_positives=10)


def small_frame(snapshots: int = 6, rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """Monthly snapshots with two informative features, one with gaps, and a segment."""
    rng = np.random.default_rng(seed)
    parts = []
    for date in pd.date_range("2025-01-01", periods=snapshots, freq="MS"):
        churned = (rng.uniform(size=rows) < 0.15).astype(int)
        trend = rng.normal(0, 1, rows) - churned
        trend[rng.uniform(size=rows) < 0.1] = np.nan
        parts.append(
            pd.DataFrame(
                {
                    "account_id": [f"A{i:04d}" for i in range(rows)],
                    "as_of_date": date,
                    "seat_utilization_30d": rng.uniform(0, 1, rows) - 0.3 * churned,
                    "events_trend_30d": trend,
                    "days_to_renewal": rng.integers(0, 365, rows).astype(float),
                    "segment": pd.array(rng.choice(["SMB", "Mid-Market"], rows), dtype="string"),
                    "mrr": rng.uniform(100, 1000, rows),
                    LABEL: churned,
                    "mature": True,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def results() -> dict[str, TrainingResult]:
    frame = small_frame()
    return {
        "weak": train_and_evaluate(frame, WEAK, horizon_days=30),
        "good": train_and_evaluate(frame, FAST, horizon_days=30),
    }


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A migrated, empty MLflow database (creating one costs seconds, copying it nothing)."""
    directory = tmp_path_factory.mktemp("mlflow-template")
    with mlflow_restored():
        tracking.configure(f"sqlite:///{directory / 'mlflow.db'}", "template", create=True)  # not `churn`: its
    return directory / "mlflow.db"  # artifact location would point here


@pytest.fixture
def store(tmp_path: Path, template: Path) -> Iterator[Path]:
    directory = tmp_path / "mlflow"
    directory.mkdir()
    shutil.copy(template, directory / "mlflow.db")
    with mlflow_restored():
        tracking.configure(f"sqlite:///{directory / 'mlflow.db'}", "churn")
        yield directory


def fresh_name() -> str:
    return f"churn-reliability-{uuid.uuid4().hex[:8]}"


def aliases(name: str) -> dict[str, str]:
    return {a: str(v) for a, v in MlflowClient().get_registered_model(name).aliases.items()}


def transient(*args, **kwargs):
    raise MlflowException("The registry is temporarily unavailable", error_code="TEMPORARILY_UNAVAILABLE")


# -- what counts as "no champion" -------------------------------------------------------
def test_no_registered_model_and_no_alias_are_no_champion(store: Path, results):
    name = fresh_name()
    with pytest.raises(NoChampionError, match="churn train"):
        tracking.load_model(name)  # RESOURCE_DOES_NOT_EXIST
    tracking.log_training(results["weak"], name)
    MlflowClient().delete_registered_model_alias(name, CHAMPION)
    with pytest.raises(NoChampionError, match="churn train"):
        tracking.load_model(name)  # INVALID_PARAMETER_VALUE: alias not found
    assert tracking.champion_or_none(name) is None
    assert tracking.load_model(name, CHALLENGER)[0] == "1"


def test_a_transient_registry_error_is_not_no_champion_and_promotes_nothing(
    store: Path, results, monkeypatch: pytest.MonkeyPatch
):
    name = fresh_name()
    tracking.log_training(results["weak"], name)
    with monkeypatch.context() as patched:
        patched.setattr(MlflowClient, "get_model_version_by_alias", transient)
        with pytest.raises(RegistryError, match="temporarily unavailable") as info:
            tracking.load_model(name)
        assert not isinstance(info.value, NoChampionError)
        with pytest.raises(RegistryError):
            tracking.champion_or_none(name)
        logged = tracking.log_training(results["good"], name)  # better, but nothing to compare with
    assert not logged.decision.promoted
    assert "churn promote 2" in logged.decision.reason
    assert aliases(name) == {CHAMPION: "1", CHALLENGER: "2"}


def test_an_unreachable_registry_is_an_error_with_the_password_masked(store: Path, monkeypatch: pytest.MonkeyPatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    mlflow.set_registry_uri(f"http://churn:{SECRET}@127.0.0.1:{port}")
    with pytest.raises(RegistryError) as info:
        tracking.load_model(fresh_name())
    assert not isinstance(info.value, NoChampionError)
    assert f"http://churn:***@127.0.0.1:{port}" in str(info.value)
    assert SECRET not in chain(info.value)


# -- a champion that cannot be loaded -----------------------------------------------------
def test_a_champion_whose_model_cannot_be_loaded_is_not_replaced(store: Path, results):
    name = fresh_name()
    tracking.log_training(results["weak"], name)
    model_id = MlflowClient().get_model_version(name, "1").source.removeprefix("models:/")  # MLflow 3: m-<id>
    [artifact] = [p for p in store.rglob("churn_model.joblib") if model_id in str(p)]
    artifact.unlink()  # e.g. an artifact store that lost the file

    with pytest.raises(RegistryError, match="version 1") as info:
        tracking.load_model(name)
    assert not isinstance(info.value, NoChampionError)

    logged = tracking.log_training(results["good"], name)
    decision = logged.decision
    assert not decision.promoted
    assert decision.champion_version == "1" and decision.champion_score is None
    assert "could not be loaded" in decision.reason and "churn promote 2" in decision.reason
    assert aliases(name) == {CHAMPION: "1", CHALLENGER: "2"}
    run = MlflowClient().get_run(logged.run_id)
    assert run.data.metrics["gate_promoted"] == 0.0
    assert run.data.tags["gate_decision"] == decision.reason


def test_an_undefined_champion_score_is_not_no_champion():
    """A metric undefined on the window (e.g. no churner in it) is no evidence:
    the champion is kept instead of being treated as absent."""
    import math

    from models.gate import decide

    kept = decide("pr_auc", 0.0, 0.4, math.nan, "3")
    assert not kept.promoted and "undefined" in kept.reason
    assert not decide("pr_auc", 0.0, math.nan, 0.3, "3").promoted
    assert decide("pr_auc", 0.0, 0.4, None).promoted  # truly no champion
