"""Helpers of the model tests: isolated MLflow stores and unique model names."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow

from models import tracking

#: environment variables MLflow sets for subprocesses (set_tracking_uri & co.)
_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")


@contextmanager
def isolated_mlflow(directory: Path, experiment: str = "churn") -> Iterator[str]:
    """Point MLflow at ``directory/mlflow.db`` with :func:`tracking.configure`,
    and undo every piece of process-wide state it sets on exit."""
    saved_env = {name: os.environ.get(name) for name in _MLFLOW_ENV}
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    try:
        tracking.configure(uri, experiment)
        yield uri
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        # configure() sets the tracking and registry URIs, the active
        # experiment, and environment variables for each of them
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        import mlflow.tracking.fluent as fluent

        fluent._active_experiment_id = None
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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
