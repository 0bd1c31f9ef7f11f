"""Helpers of the model tests: isolated MLflow stores and unique model names."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from models import tracking

#: environment variables MLflow sets for subprocesses (set_tracking_uri & co.)
from tests.mlflow_state import mlflow_restored


@contextmanager
def isolated_mlflow(directory: Path, experiment: str = "churn") -> Iterator[str]:
    """Point MLflow at ``directory/mlflow.db`` with :func:`tracking.configure`,
    and undo every piece of process-wide state it sets on exit."""
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    with mlflow_restored():
        tracking.configure(uri, experiment, create=True)
        yield uri


@contextmanager
def mlflow_store(directory: Path, template: Path) -> Iterator[str]:
    """A fresh tracking store + registry in ``directory`` (artifacts beside it),
    copied from a migrated empty database (creating one costs seconds)."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, directory / "mlflow.db")
    with isolated_mlflow(directory) as uri:
        yield uri


def fresh_model_name() -> str:
    return f"churn-test-{uuid.uuid4().hex[:10]}"
