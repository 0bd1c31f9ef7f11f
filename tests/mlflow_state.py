"""Undo the process-wide MLflow state that ``models.tracking.configure`` sets,
so tests do not leak tracking URIs or experiments into each other."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow

#: environment variables MLflow sets for subprocesses (set_tracking_uri & co.)
_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")


@contextmanager
def mlflow_restored() -> Iterator[None]:
    """Undo the process-wide MLflow state that ``tracking.configure`` sets (the
    tracking/registry URIs, the active experiment and their environment
    variables, which ``load_settings()`` would otherwise read)."""
    saved = {name: os.environ.get(name) for name in _MLFLOW_ENV}
    try:
        yield
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        import mlflow.tracking.fluent as fluent

        fluent._active_experiment_id = None
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
