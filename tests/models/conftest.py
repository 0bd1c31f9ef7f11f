"""Fixtures of the model tests: one realistic training set per session (the
synthetic generator -> DuckDB in memory -> staging -> features and labels), the
default model trained on it once, and isolated MLflow stores (SQLite under a
temporary directory, global MLflow state restored afterwards)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from features.build import build_training_set
from features.staging import validate
from models.train import TrainingResult, train_and_evaluate
from pipeline.synthetic import GeneratorConfig, generate
from pipeline.warehouse import Warehouse
from tests.models.helpers import isolated_mlflow, mlflow_store

#: 4,000 accounts x 24 months: ~40k mature account-snapshots over 18 monthly
#: snapshots, ~180 churners in the test month; builds in ~7 s on 2 cores.
N_ACCOUNTS = 4000
SEED = 7
END = dt.date(2026, 6, 30)
FIRST_SNAPSHOT = dt.date(2024, 10, 1)
LAST_SNAPSHOT = END - dt.timedelta(days=120)  # horizon 90 + grace 30: labels mature


def pytest_collection_modifyitems(items) -> None:
    """Tests on the generated training set carry the project's `slow` marker."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and "training_frame" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def training_frame() -> pd.DataFrame:
    """Mature monthly snapshots with features and labels. Session-wide: do not mutate."""
    wh = Warehouse("duckdb:///:memory:")
    try:
        config = GeneratorConfig(n_accounts=N_ACCOUNTS, months=24, seed=SEED, end_date=END)
        for table, chunk in generate(config):
            wh.write_table(table, chunk, mode="append")
        report = validate(wh, END)
        frame = build_training_set(wh, report, FIRST_SNAPSHOT, LAST_SNAPSHOT)
    finally:
        wh.close()
    return frame


@pytest.fixture(scope="session")
def trained(training_frame: pd.DataFrame) -> TrainingResult:
    """The default model (TrainConfig()) with its baselines. Session-wide: do not mutate."""
    return train_and_evaluate(training_frame)


# -- MLflow -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An MLflow SQLite database with its schema migrated, made once: creating
    one costs seconds, copying it milliseconds."""
    directory = tmp_path_factory.mktemp("mlflow-template")
    with isolated_mlflow(directory, experiment="template"):
        pass
    return directory / "mlflow.db"


@pytest.fixture
def mlflow_uri(tmp_path: Path, mlflow_template: Path) -> Iterator[str]:
    """A per-test MLflow store; global MLflow state is reset on teardown."""
    with mlflow_store(tmp_path / "mlflow", mlflow_template) as uri:
        yield uri
