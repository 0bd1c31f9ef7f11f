"""A typo in a SQLite MLflow path is an error naming the path, not a new empty
database; only `create=True` (what `churn train` passes) makes a store
(issue #11, item 15)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from models import tracking
from models.tracking import TrackingStoreMissingError
from tests.mlflow_state import mlflow_restored


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    with mlflow_restored():
        yield


def test_a_missing_sqlite_store_is_an_error_naming_the_path(tmp_path: Path):
    path = tmp_path / "mlfow" / "mlflow.db"  # the typo
    with pytest.raises(TrackingStoreMissingError) as info:
        tracking.configure(f"sqlite:///{path}", "churn")
    message = str(info.value)
    assert str(path) in message and "does not exist" in message
    assert "churn train" in message and "MLFLOW_TRACKING_URI" in message
    assert isinstance(info.value, FileNotFoundError)
    assert not path.parent.exists()  # nothing created on the way


def test_a_relative_path_is_named_as_the_file_it_would_be(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TrackingStoreMissingError, match=str(tmp_path / "data" / "mlflow.db")):
        tracking.configure("sqlite:///data/mlflow.db", "churn")
    assert list(tmp_path.iterdir()) == []


def test_only_create_makes_a_store_and_an_existing_one_needs_no_create(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    tracking.configure(uri, "churn", create=True)
    assert (tmp_path / "store" / "mlflow.db").is_file()
    experiment = mlflow.get_experiment_by_name("churn").experiment_id
    mlflow.set_tracking_uri(None)

    tracking.configure(uri, "churn")  # `churn score` / `churn promote` on the store train made
    assert mlflow.get_tracking_uri() == uri
    assert mlflow.get_experiment_by_name("churn").experiment_id == experiment
