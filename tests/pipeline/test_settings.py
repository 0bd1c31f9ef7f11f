"""One typed settings object: defaults < config file < environment < options;
secrets only from the environment, never logged or written to MLflow."""

from __future__ import annotations

import pytest

from pipeline.settings import SettingsError, load_settings
from pipeline.warehouse import redact_url


def test_defaults_live_under_the_data_directory(tmp_path):
    s = load_settings(env={}, data_dir=tmp_path)
    assert s.warehouse == f"duckdb://{tmp_path.resolve() / 'warehouse.duckdb'}"
    assert s.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert (s.horizon_days, s.grace_days, s.tiers.high, s.tiers.medium) == (90, 30, 0.5, 0.2)


def test_file_then_environment_then_options(tmp_path):
    config = tmp_path / "churn.toml"
    config.write_text(
        '[churn]\nhorizon_days = 60\ngrace_days = 14\nmodel_name = "from-file"\n'
        '[churn.tiers]\nhigh = 0.6\n[churn.tables]\nusage_events = "events_daily"\n'
    )
    s = load_settings(config, env={"CHURN_GRACE_DAYS": "21"}, model_name="from-option")
    assert s.horizon_days == 60  # file
    assert s.grace_days == 21  # environment beats file
    assert s.model_name == "from-option"  # option beats both
    assert s.tiers.high == 0.6 and s.tiers.medium == 0.2
    assert s.tables.usage_events == "events_daily" and s.tables.accounts == "accounts"
    assert s.labels.horizon_days == 60 and s.labels.grace_days == 21


def test_config_file_found_through_env_and_missing_file_is_an_error(tmp_path):
    config = tmp_path / "other.toml"
    config.write_text("[churn]\nmax_bad_share = 0.1\n")
    assert load_settings(env={"CHURN_CONFIG": str(config)}).max_bad_share == 0.1
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})


def test_password_in_config_file_is_refused(tmp_path):
    config = tmp_path / "churn.toml"
    config.write_text('[churn]\nwarehouse_url = "postgresql://u:hunter2@db/x"\n')
    with pytest.raises(SettingsError, match="environment") as err:
        load_settings(config, env={})
    assert "hunter2" not in str(err.value)


def test_password_from_environment_is_accepted_and_redacted(tmp_path):
    s = load_settings(env={"CHURN_WAREHOUSE_URL": "postgresql://u:hunter2@db:5432/x"}, data_dir=tmp_path)
    assert s.warehouse.endswith("@db:5432/x")
    assert "hunter2" not in redact_url(s.warehouse)
    assert "hunter2" not in redact_url("postgresql://db/x?user=u&password=hunter2")


@pytest.mark.parametrize(
    "bad", [{"horizon_days": 0}, {"tiers": {"high": 0.1, "medium": 0.5}}, {"max_bad_share": 2}, {"unknown_key": 1}]
)
def test_invalid_settings_say_what_is_wrong(bad):
    with pytest.raises(SettingsError, match="Invalid settings"):
        load_settings(env={}, **bad)
