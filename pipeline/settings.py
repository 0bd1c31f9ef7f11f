"""One typed settings object, built at the entry point.

Sources, later ones winning: defaults, a TOML config file (``churn.toml`` in
the working directory, or the path in ``CHURN_CONFIG``), environment
variables, then command-line options. Secrets (a password in a warehouse URL)
are accepted only from the environment, and are never logged: use
:func:`pipeline.warehouse.redact_url` to show a URL. The settings travel as
an object (the CLI hands them to the flows); their JSON form, which Prefect
stores as a flow run's parameters, masks the passwords.
Nothing happens at import time: no directories, no tracking URI.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from features.build import LabelConfig
from features.contract import TableNames
from models.health import AreaThresholds
from models.playbook import build_playbook
from models.redaction import password_of, redact_text, redact_url


class Tiers(BaseModel):
    """Risk tiers by calibrated probability: >= high is `high`, >= medium is `medium`."""

    model_config = ConfigDict(frozen=True)
    high: float = 0.5
    medium: float = 0.2

    @model_validator(mode="after")
    def _ordered(self) -> Tiers:
        if not 0 <= self.medium <= self.high <= 1:
            raise ValueError("tiers must satisfy 0 <= medium <= high <= 1")
        return self


class Areas(BaseModel):
    """Health by area (``<area>_status`` on churn_scores): an area whose
    contributions add at least ``at_risk`` log-odds is "at risk", one that
    takes off at least ``healthy`` is "healthy", anything between "neutral"."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    at_risk: float = Field(0.4, gt=0)  # about ln 1.5: the area raises the odds of churn by half
    healthy: float = Field(0.4, gt=0)

    @property
    def thresholds(self) -> AreaThresholds:
        return AreaThresholds(self.at_risk, self.healthy)


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    data_dir: Path = Path("data")
    warehouse_url: str | None = Field(None, repr=False)  # may hold a password: never in a repr
    mlflow_tracking_uri: str | None = Field(None, repr=False)
    model_name: str = "churn-model"
    experiment: str = "churn"
    gate_metric: str = "pr_auc"  # champion/challenger comparison on the latest test window
    gate_margin: float = Field(0.0, ge=0)
    horizon_days: int = Field(90, gt=0)
    grace_days: int = Field(30, ge=0)
    snapshot_cadence: str = "monthly"
    max_bad_share: float = Field(0.05, ge=0, le=1)
    max_event_types: int = Field(20, ge=0)
    lock_wait_seconds: float = Field(60.0, ge=0)  # wait for a DuckDB file another process writes
    mlflow_timeout_seconds: float = Field(60.0, gt=0)  # total wait for an unreachable MLflow server
    monitor_auc_drop: float = Field(0.05, ge=0)  # alert: live AUC this far below the test-window AUC
    monitor_confidence: float = Field(0.95, gt=0, lt=1)  # alert: mean probability outside this interval
    tiers: Tiers = Tiers()
    areas: Areas = Areas()
    #: topic -> the CSM's next step when it is the strongest reason; overrides
    #: the defaults of docs/features.md (``[churn.playbook]`` in churn.toml)
    playbook: dict[str, str] = Field(default_factory=dict)
    tables: TableNames = TableNames()

    @field_validator("playbook")
    @classmethod
    def _known_topics(cls, value: dict[str, str]) -> dict[str, str]:
        build_playbook(value)  # PlaybookError (a ValueError) names every bad entry
        return value

    @property
    def actions(self) -> dict[str, str]:
        """The playbook: the defaults with the overrides applied."""
        return build_playbook(self.playbook)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_serializer("warehouse_url", "mlflow_tracking_uri", when_used="json")
    def _masked(self, url: str | None) -> str | None:
        """JSON (e.g. a flow run's parameters in the Prefect API) never holds a password."""
        return None if url is None else redact_url(url)

    @property
    def warehouse(self) -> str:
        """The warehouse URL (default: a DuckDB file under the data directory)."""
        return self.warehouse_url or f"duckdb://{self.data_dir / 'warehouse.duckdb'}"

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI (default: SQLite under the data directory)."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.data_dir / 'mlflow.db'}"

    @property
    def labels(self) -> LabelConfig:
        return LabelConfig(horizon_days=self.horizon_days, grace_days=self.grace_days)


ENV = {
    "CHURN_DATA_DIR": "data_dir",
    "CHURN_WAREHOUSE_URL": "warehouse_url",
    "MLFLOW_TRACKING_URI": "mlflow_tracking_uri",
    "CHURN_MODEL_NAME": "model_name",
    "CHURN_GATE_METRIC": "gate_metric",
    "CHURN_GATE_MARGIN": "gate_margin",
    "CHURN_HORIZON_DAYS": "horizon_days",
    "CHURN_GRACE_DAYS": "grace_days",
    "CHURN_SNAPSHOT_CADENCE": "snapshot_cadence",
    "CHURN_MAX_BAD_SHARE": "max_bad_share",
    "CHURN_LOCK_WAIT_SECONDS": "lock_wait_seconds",
    "CHURN_MLFLOW_TIMEOUT_SECONDS": "mlflow_timeout_seconds",
    "CHURN_MONITOR_AUC_DROP": "monitor_auc_drop",
}


class SettingsError(ValueError):
    """The configuration is invalid."""


def _has_password(url: str | None) -> bool:
    return bool(url) and bool(urlsplit(url).password)


def load_settings(
    config_file: str | Path | None = None,
    env: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from file, environment and explicit overrides
    (``None`` overrides are ignored)."""
    env = dict(os.environ if env is None else env)
    path = Path(config_file or env.get("CHURN_CONFIG") or "churn.toml")
    values: dict[str, Any] = {}
    if path.exists():
        with path.open("rb") as fh:
            values = tomllib.load(fh).get("churn", {})
        if _has_password(values.get("warehouse_url")) or _has_password(values.get("mlflow_tracking_uri")):
            raise SettingsError(
                f"{path} holds a password in a URL: secrets belong in the environment "
                "(CHURN_WAREHOUSE_URL / MLFLOW_TRACKING_URI), not in a config file."
            )
    elif config_file is not None:
        raise SettingsError(f"Config file {path} does not exist")
    for var, key in ENV.items():
        if env.get(var):
            values[key] = env[var]
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValueError as exc:  # pydantic quotes the input values: never a password
        secrets = [password_of(values.get(k)) for k in ("warehouse_url", "mlflow_tracking_uri")]
        raise SettingsError(redact_text(f"Invalid settings: {exc}", *secrets)) from None
