"""The one module that talks to MLflow: runs, the model flavour and the
registry. What a run records is built elsewhere, without MLflow: the gate's
decision in :mod:`models.gate`, the parameters, figures, tables and model card
in :mod:`models.report`.

The logged model is a pyfunc whose ``predict(df)`` returns the calibrated
churn probability per row (not 0/1 labels). Every new version gets the alias
``challenger``; it becomes ``champion`` only when it beats the current
champion on the same, latest evaluation window by a margin.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import ColSpec, Schema

from models import gate, report
from models.gate import GateDecision
from models.redaction import password_of, redact_text, redact_url
from models.train import LABEL, ChurnModel, TrainingResult

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"


class NoChampionError(LookupError):
    """No model version holds the champion alias."""


class RegistryError(RuntimeError):
    """The model registry failed to answer, or a registered model failed to load."""

    def __init__(self, message: str, version: str | None = None):
        super().__init__(message)
        self.version = version


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking server did not answer (in time)."""


class TrackingStoreMissingError(FileNotFoundError):
    """The SQLite MLflow database named by the tracking URI does not exist."""


def configure(
    tracking_uri: str, experiment: str = "churn", *, create: bool = False, timeout_seconds: float = 60.0
) -> None:
    """Point MLflow at a tracking server/database (the registry lives there too).

    A SQLite database must exist unless ``create`` (a typo in the path would
    otherwise start an empty registry). An http(s) server must answer within
    ``timeout_seconds``, and every later MLflow HTTP call in this process
    gives up after about as long."""
    if _is_http(tracking_uri):
        bound_http_retries(timeout_seconds)
        _probe(tracking_uri, timeout_seconds)
    database = sqlite_path(tracking_uri)
    if database is not None:
        if create:
            database.parent.mkdir(parents=True, exist_ok=True)
        elif not database.is_file():
            raise TrackingStoreMissingError(
                f"MLflow tracking database {database} does not exist: run `churn train` first, "
                "or check MLFLOW_TRACKING_URI"
            )
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        artifacts = None
        if database is not None:
            artifacts = (database.parent / "mlartifacts").as_uri()
        mlflow.create_experiment(experiment, artifact_location=artifacts)
    mlflow.set_experiment(experiment)


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute), or None (another
    kind of store, or an in-memory database)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path).resolve()


def _is_http(uri: str) -> bool:
    return uri.lower().startswith(("http://", "https://"))


#: MLflow's HTTP retry settings (its defaults retry one call for minutes)
HTTP_RETRIES, HTTP_BACKOFF, HTTP_JITTER, HTTP_TIMEOUT = (
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)


def http_retry_settings(timeout_seconds: float) -> dict[str, str]:
    """MLflow HTTP retry settings under which one call (three attempts and the
    pauses between them) takes about ``timeout_seconds`` at most."""
    attempts = 3
    backoff = 1 if timeout_seconds >= 15 else 0  # urllib3 pauses 0, then 2 x backoff
    jitter = 0.5 if backoff else 0.0
    pauses = 2 * backoff + (attempts - 1) * jitter
    per_attempt = max(1, math.floor((timeout_seconds - pauses) / attempts))
    return {
        HTTP_RETRIES: str(attempts - 1),
        HTTP_BACKOFF: str(backoff),
        HTTP_JITTER: str(jitter),
        HTTP_TIMEOUT: str(per_attempt),
    }


def bound_http_retries(timeout_seconds: float) -> None:
    """Bound every later MLflow HTTP call of this process (values already set
    lower in the environment are kept)."""
    for name, value in http_retry_settings(timeout_seconds).items():
        current = os.environ.get(name)
        try:
            if current is not None and float(current) <= float(value):
                continue
        except ValueError:
            pass
        os.environ[name] = value


def _probe(tracking_uri: str, timeout_seconds: float) -> None:
    """Raise TrackingUnavailableError unless the server answers a cheap
    request within ``timeout_seconds``."""
    outcome: dict[str, Exception] = {}

    def ask() -> None:
        try:
            MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
        except Exception as exc:  # raised by the calling thread, redacted
            outcome["error"] = exc

    started = time.monotonic()
    worker = threading.Thread(target=ask, name="mlflow-probe", daemon=True)
    worker.start()
    worker.join(timeout_seconds)
    waited = time.monotonic() - started
    where = redact_url(tracking_uri)
    if worker.is_alive():
        raise TrackingUnavailableError(
            f"MLflow tracking server {where} did not answer within {timeout_seconds:g} s "
            f"(waited {waited:.1f} s). Check MLFLOW_TRACKING_URI and that the server is running."
        )
    if "error" in outcome:
        cause = redact_text(str(outcome["error"]), password_of(tracking_uri))
        raise TrackingUnavailableError(
            f"MLflow tracking server {where} cannot be used (waited {waited:.1f} s of at most "
            f"{timeout_seconds:g} s): {cause}. Check MLFLOW_TRACKING_URI and that the server is running."
        )


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: ``predict(df)`` -> calibrated churn probability per row."""

    def __init__(self, model: ChurnModel | None = None):
        self.model = model

    def load_context(self, context) -> None:
        import joblib

        self.model = joblib.load(context.artifacts["churn_model"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        return self.model.predict_proba(model_input)


def pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("lightgbm", "scikit-learn", "pandas", "numpy", "mlflow")]


def data_fingerprint(frame: pd.DataFrame) -> str:
    """A short content hash of a training set (rows, columns and values)."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest = hashlib.sha256(hashed.tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]


def git_commit() -> str:
    try:
        # the commit of this code, wherever the process was started from
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


#: what MLflow raises (SQLite and REST stores alike) for a missing registered
#: model (RESOURCE_DOES_NOT_EXIST) or a missing alias (INVALID_PARAMETER_VALUE)
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


def _is_missing(exc: mlflow.exceptions.MlflowException) -> bool:
    """The registry has no such model, or the model has no such alias."""
    if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    text = str(exc).lower()
    return exc.error_code in _NOT_FOUND and "alias" in text and "not found" in text


def _registry_where() -> str:
    return redact_url(mlflow.get_registry_uri())


def load_model(name: str, alias: str = CHAMPION) -> tuple[str, ChurnModel]:
    """(version, model) of the version holding ``alias``. NoChampionError only
    when the registry has no such model or alias; RegistryError when the
    registry fails or the version cannot be loaded."""
    # Errors are raised outside the ``except`` blocks: the original exception
    # (whose message may quote the registry URI with its password) must not
    # travel along as ``__context__``.
    failure: Exception | None = None
    try:
        version = MlflowClient().get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as exc:
        failure = exc
    if failure is not None:
        if _is_missing(failure):
            raise NoChampionError(f"No model '{name}' has the alias '{alias}': run `churn train` first.")
        raise RegistryError(
            f"The model registry at {_registry_where()} failed to say which version of '{name}' "
            f"holds '{alias}': {_redacted(failure)}"
        )
    number = str(version.version)  # MLflow 3 gives an int
    try:
        return number, mlflow.pyfunc.load_model(f"models:/{name}/{number}").unwrap_python_model().model
    except Exception as exc:
        failure = exc
    raise RegistryError(
        f"Model '{name}' version {number} ('{alias}') could not be loaded from {_registry_where()}: "
        f"{type(failure).__name__}: {_redacted(failure)}",
        version=number,
    )


def _redacted(exc: BaseException) -> str:
    return redact_text(str(exc), password_of(mlflow.get_registry_uri()))


def champion_or_none(name: str) -> tuple[str, ChurnModel] | None:
    """The champion, or None when there is none (registry failures raise)."""
    try:
        return load_model(name, CHAMPION)
    except NoChampionError:
        return None


# -- logging one training run ----------------------------------------------------
@dataclass
class LoggedRun:
    run_id: str
    model_version: str
    decision: GateDecision


def log_training(
    result: TrainingResult,
    model_name: str,
    params: dict[str, Any] | None = None,
    gate_metric: str = "pr_auc",
    gate_margin: float = 0.0,
    families: list[str] | None = None,
) -> LoggedRun:
    """Log one training run (params, metrics, figures, model card), register
    the model as ``challenger`` and apply the gate."""
    split = result.split
    train_all = pd.concat([split.train, split.valid, split.calib, split.test])
    with mlflow.start_run() as run:
        mlflow.set_tags(
            {
                "git_commit": git_commit(),
                "data_fingerprint": data_fingerprint(train_all),
                "model_name": model_name,
            }
        )
        mlflow.log_params(report.run_params(result, params or {}, families))
        _log_search(result.model.config.get("trials", []))
        mlflow.log_metrics({f"test_{k}": v for k, v in result.metrics.items() if np.isfinite(v)})
        _log_windows(result)
        for name, metrics in result.baselines.items():
            mlflow.log_metrics({f"{name}_{k}": v for k, v in metrics.items() if np.isfinite(v)})
        with tempfile.TemporaryDirectory() as tmp:
            report.write_artifacts(result, Path(tmp))
            mlflow.log_artifacts(tmp)
        info = _log_model(result, model_name)
        version = str(info.registered_model_version)
        client = MlflowClient()
        client.set_registered_model_alias(model_name, CHALLENGER, version)
        decision = _gate(result, model_name, gate_metric, gate_margin, version)
        if decision.promoted:
            client.set_registered_model_alias(model_name, CHAMPION, version)
        mlflow.log_dict(asdict(decision), "gate_decision.json")
        mlflow.log_metrics(
            {"gate_challenger_score": decision.challenger_score, "gate_promoted": float(decision.promoted)}
        )
        if decision.champion_score is not None:
            mlflow.log_metric("gate_champion_score", decision.champion_score)
        mlflow.set_tag("gate_decision", decision.reason)
        client.set_model_version_tag(model_name, version, "gate_decision", decision.reason)
        for key, value in result.metrics.items():
            if np.isfinite(value):
                client.set_model_version_tag(model_name, version, f"test_{key}", f"{value:.6f}")
    return LoggedRun(run.info.run_id, version, decision)


HELDOUT = "tables/heldout_predictions.parquet"


def _log_windows(result: TrainingResult) -> None:
    """What each model saw and how it did per window: the folds' snapshot
    lists and the shipped model's (``windows.json``), per-window metrics,
    the bootstrap intervals, and every held-out prediction (the next run's
    gate compares its own with them)."""
    if result.refit is None:
        return
    record = {
        "evaluation": [asdict(f) for f in result.folds],
        "shipped_model": asdict(result.refit),
        "intervals_90": {k: list(v) for k, v in result.intervals.items()},
    }
    mlflow.log_dict(record, "windows.json")
    for key, (low, high) in result.intervals.items():
        if np.isfinite(low) and np.isfinite(high):
            mlflow.log_metrics({f"test_{key}_low": low, f"test_{key}_high": high})
    for step, row in enumerate(result.window_metrics.itertuples()):
        mlflow.log_metrics(
            {f"window_{k}": getattr(row, k) for k in ("roc_auc", "pr_auc") if np.isfinite(getattr(row, k))}, step=step
        )
    mlflow.set_tag("evaluation_windows", ",".join(f.test_date for f in result.folds))
    mlflow.set_tag(
        "shipped_model_snapshots", f"{result.refit.train[0]}..{result.refit.train[-1]} ({len(result.refit.train)})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(HELDOUT).name
        columns = ["account_id", "as_of_date", "window", LABEL, "prob"]
        result.heldout[columns].to_parquet(path, index=False)
        mlflow.log_artifact(str(path), str(Path(HELDOUT).parent))


def champion_heldout(name: str, version: str) -> pd.DataFrame | None:
    """The held-out predictions logged by the champion's training run (None
    for a run from before they were logged)."""
    try:
        run_id = MlflowClient().get_model_version(name, version).run_id
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=HELDOUT)
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        log.info("Champion v%s has no held-out predictions (%s): it is scored on the new windows", version, exc)
        return None
    return pd.read_parquet(local)


def _gate(result: TrainingResult, name: str, metric: str, margin: float, version: str) -> GateDecision:
    """The gate against the registry's champion; a champion that cannot be
    looked up or loaded is kept: no comparison, no promotion."""
    try:
        current = champion_or_none(name)
    except RegistryError as exc:
        why = f"champion v{exc.version} could not be loaded" if exc.version else "the champion could not be looked up"
        log.warning("%s (%s): challenger v%s not promoted", why, exc, version)
        return gate.kept(f"{why} ({exc})", version, metric, margin, result.metrics[metric], exc.version)
    heldout = champion_heldout(name, current[0]) if current is not None else None
    return gate.judge(result, current, metric, margin, version, heldout)


def _log_search(trials: list[dict[str, Any]]) -> None:
    """Each search trial's validation log loss (step = trial) and its parameters."""
    if not trials:
        return
    for row in trials:
        mlflow.log_metric("search_trial_logloss", row["valid_log_loss"], step=row["trial"])
    mlflow.log_metric("search_best_logloss", min(row["valid_log_loss"] for row in trials))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "search_trials.csv"
        pd.DataFrame(trials).to_csv(path, index=False)
        mlflow.log_artifact(str(path), "tables")


def required_inputs(signature: ModelSignature) -> ModelSignature:
    """The signature with every input column required. ``infer_signature``
    marks a column optional when the example holds a missing value, but the
    model needs every feature column (its values may still be missing)."""
    columns = [ColSpec(c.type, c.name, required=True) for c in signature.inputs.inputs]
    return ModelSignature(inputs=Schema(columns), outputs=signature.outputs, params=signature.params)


def _log_model(result: TrainingResult, name: str):
    import joblib

    example = result.split.test[result.model.features].head(5)
    signature = required_inputs(infer_signature(example, result.model.predict_proba(example)))
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "churn_model.joblib"
        joblib.dump(result.model, path)
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(here / "pyfunc_model.py"),
            artifacts={"churn_model": str(path)},
            input_example=example,
            signature=signature,
            pip_requirements=pip_requirements(),
            # No code_paths: MLflow would put a frozen copy of `models/` first on
            # sys.path at load time, shadowing the installed package. The model
            # needs this package installed (it is, wherever the pipeline runs).
            registered_model_name=name,
        )


# -- manual promotion / rollback -----------------------------------------------
def promote(name: str, version: str | int, alias: str = CHAMPION) -> None:
    """Point ``alias`` (default champion) at a version: manual promotion or rollback."""
    MlflowClient().set_registered_model_alias(name, alias, str(version))
