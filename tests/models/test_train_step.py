"""The wiring `churn train` uses: pipeline.steps.train_model on a DuckDB file
warehouse and a SQLite MLflow store, from settings."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from models import tracking
from pipeline import steps
from pipeline.generate import generate_data
from pipeline.settings import load_settings
from pipeline.synthetic import GeneratorConfig
from pipeline.warehouse import redact_url
from tests.models.helpers import fresh_model_name, isolated_mlflow

END = dt.date(2026, 6, 30)


@pytest.mark.slow
def test_train_model_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_template: Path):
    monkeypatch.chdir(tmp_path)  # no churn.toml picked up from the working directory
    store = tmp_path / "mlflow"
    store.mkdir()
    shutil.copy(mlflow_template, store / "mlflow.db")
    name = fresh_model_name()
    settings = load_settings(
        env={"CHURN_MODEL_NAME": name, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"},
        data_dir=tmp_path,
        warehouse_url=f"duckdb://{tmp_path / 'warehouse.duckdb'}",
    )
    generated = generate_data(settings, GeneratorConfig(n_accounts=800, months=24, seed=11, end_date=END))
    assert generated.rows["accounts"] == 800

    with isolated_mlflow(store):  # train_model configures MLflow itself; reset it afterwards
        first = steps.train_model(settings, END)
        result = first.result
        # mature labels only: the latest snapshot is 90 + 30 days before the as-of date
        # the latest evaluation window is the latest mature snapshot; the shipped model trained up to it
        assert result.split.windows()["test"][-1] == str(END - dt.timedelta(days=120))
        assert result.refit.train[-1] == str(END - dt.timedelta(days=120))
        assert first.rows >= len(result.split.train)
        assert result.metrics["roc_auc"] > 0.7
        assert first.run.decision.promoted and first.run.model_version == "1"

        client = MlflowClient()
        assert mlflow.get_tracking_uri() == settings.tracking_uri
        params = client.get_run(first.run.run_id).data.params
        assert params["as_of"] == str(END)
        assert params["warehouse"] == redact_url(settings.warehouse)
        assert params["grace_days"] == "30" and params["snapshot_cadence"] == "monthly"
        assert set(params["families"].split(",")) == {"account", "contract", "usage", "support", "sentiment"}
        version, champion = tracking.load_model(name)
        assert version == "1"
        assert np.array_equal(champion.predict_proba(result.split.test), result.model.predict_proba(result.split.test))

        # the monthly retrain on unchanged data: same model, so the gate keeps the champion
        second = steps.train_model(settings, END)
        assert second.run.model_version == "2"
        assert not second.run.decision.promoted
        # unchanged data, the same recipe: the same held-out predictions, a gain of exactly 0, not promoted
        assert second.run.decision.champion_score == pytest.approx(second.run.decision.challenger_score)
        assert second.run.decision.gain == 0 and second.run.decision.gain_low == 0
        assert tracking.load_model(name)[0] == "1"
        assert np.array_equal(second.result.test_prob, result.test_prob)
        tags = [client.get_run(r.run.run_id).data.tags["data_fingerprint"] for r in (first, second)]
        assert tags[0] == tags[1]
