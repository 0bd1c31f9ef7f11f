"""Items 10, 11, 12, 13 and 15 of issue #11: what the `churn` command shows
and does when something is wrong. Run as a user runs it: the installed
console script in a subprocess, with a clean environment."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from prefect.states import Failed

from models.redaction import redact_url
from pipeline import flows
from pipeline.warehouse import Warehouse, WarehouseError
from tests.pipeline.churn_data import END, churn_executable, clean_env

SECRET = "Pa#ss?w/rd@1"


def churn(*args: str, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [churn_executable(), *args], cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=timeout
    )


# -- 10. passwords are masked wherever a URL is shown ----------------------------------------
@pytest.mark.parametrize(
    "url, shown",
    [
        (f"postgresql://churn:{SECRET}@db.example.com:5432/prod", "postgresql://churn:***@db.example.com:5432/prod"),
        ("postgresql://churn:a#b@db/prod?sslmode=require", "postgresql://churn:***@db/prod?sslmode=require"),
        ("postgresql://churn:a?b@db/prod", "postgresql://churn:***@db/prod"),
        (f"host=db user=churn password='{SECRET}' dbname=prod", "host=db user=churn password=*** dbname=prod"),
        ("host=db password=plain dbname=prod", "host=db password=*** dbname=prod"),
        ("http://admin:tok#en@mlflow.internal:5000", "http://admin:***@mlflow.internal:5000"),
        ("duckdb:///data/warehouse.duckdb", "duckdb:///data/warehouse.duckdb"),
    ],
)
def test_urls_and_dsns_are_redacted(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://churn:{SECRET}@127.0.0.1:1/prod",
        f"host=127.0.0.1 port=1 user=churn password='{SECRET}' dbname=prod",
        f"mysql://churn:{SECRET}@127.0.0.1/prod",
    ],
)
def test_connection_errors_never_show_the_password(url, tmp_path):
    with pytest.raises(WarehouseError) as err:
        Warehouse(url)
    assert SECRET not in str(err.value) and "Pa" not in str(err.value).split("churn")[-1][:3]
    result = churn("validate", "--warehouse", url, cwd=tmp_path)
    assert result.returncode == 1
    assert SECRET not in result.stdout + result.stderr
    assert "***" in result.stderr or "Unsupported" in result.stderr


def test_settings_errors_never_show_the_password(tmp_path):
    result = churn(
        "validate", cwd=tmp_path, CHURN_WAREHOUSE_URL=f"postgresql://u:{SECRET}@db/x", CHURN_MAX_BAD_SHARE="lots"
    )
    assert result.returncode == 1
    assert SECRET not in result.stdout + result.stderr


# -- 11. user data is printed as text, never as Rich markup -----------------------------------
def test_markup_in_a_table_name_is_printed_literally(tmp_path, trained_env):
    settings = trained_env.copy(tmp_path)
    (tmp_path / "churn.toml").write_text('[churn.tables]\naccounts = "acc[/]ounts [bold]x"\n')
    result = churn("validate", "--as-of", str(END), cwd=tmp_path, CHURN_DATA_DIR=str(settings.data_dir))
    assert result.returncode == 1, result.stderr
    assert "acc[/]ounts [bold]x" in result.stderr
    assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr


def test_markup_in_an_account_name_prints_after_scoring(tmp_path, trained_env, prefect_api_url):
    settings = trained_env.copy(tmp_path)
    with Warehouse(settings.warehouse) as wh:
        wh.execute("UPDATE accounts SET account_name = '[/]Acme [bold]Corp[/x]'")
    result = churn(
        "score",
        "--as-of",
        str(END),
        "--top",
        "3",
        cwd=tmp_path,
        CHURN_DATA_DIR=str(tmp_path),
        MLFLOW_TRACKING_URI=trained_env.settings.tracking_uri,
        PREFECT_API_URL=prefect_api_url,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[/]Acme [bold]Corp" in result.stdout
    assert "Traceback" not in result.stderr


# -- 12. when validation stops a run, the report is shown --------------------------------------
def test_validate_shows_the_report_when_bad_rows_stop_it(tmp_path, trained_env):
    settings = trained_env.copy(tmp_path)
    with Warehouse(settings.warehouse) as wh:
        wh.execute("UPDATE subscriptions SET mrr = -1")
    result = churn("validate", "--as-of", str(END), cwd=tmp_path, CHURN_DATA_DIR=str(tmp_path))
    assert result.returncode == 1
    assert "## Input validation" in result.stderr
    assert "mrr < 0" in result.stderr  # the rule and its count
    with Warehouse(settings.warehouse) as wh:  # and the first offending keys, to look them up
        first = wh.scalar("SELECT MIN(CAST(subscription_id AS VARCHAR)) FROM subscriptions")
    assert first in result.stderr
    assert "Error: Too many bad rows" in result.stderr


# -- 13. only transient errors are retried ------------------------------------------------------
@pytest.mark.postgres
def test_a_wrong_password_or_a_missing_database_is_not_transient():
    base = os.environ["CHURN_TEST_POSTGRES_URL"]
    user_part, host_part = base.split("://", 1)[1].rsplit("@", 1)
    user = user_part.split(":")[0]
    for url in (
        f"postgresql://{user}:wrong-{SECRET}@{host_part}",
        f"postgresql://{user_part}@{host_part.rsplit('/', 1)[0]}/no_such_db_{os.getpid()}",
    ):
        started = time.monotonic()
        with pytest.raises(WarehouseError) as err:
            Warehouse(url)
        assert time.monotonic() - started < 10
        assert not err.value.transient, str(err.value)
        assert flows._transient(None, None, Failed(data=err.value)) is False
        assert SECRET not in str(err.value)


def test_a_refused_connection_is_transient():
    with pytest.raises(WarehouseError) as err:
        Warehouse("postgresql://u:p@127.0.0.1:1/db")
    assert err.value.transient
    assert flows._transient(None, None, Failed(data=err.value)) is True


@pytest.mark.postgres
def test_score_flow_does_not_retry_a_wrong_password(tmp_path, trained_env, prefect_api_url, monkeypatch):
    """The flow fails at the first warehouse task, once, well under the ~50 s of
    four attempts with backoff."""
    from tests.pipeline.churn_data import mlflow_restored, unset

    base = os.environ["CHURN_TEST_POSTGRES_URL"]
    user_part, host_part = base.split("://", 1)[1].rsplit("@", 1)
    monkeypatch.setenv("CHURN_WAREHOUSE_URL", f"postgresql://{user_part.split(':')[0]}:wrong@{host_part}")
    monkeypatch.setenv("CHURN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_env.settings.tracking_uri)
    unset(monkeypatch, "CHURN_CONFIG")
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    with mlflow_restored():
        state = flows.score_flow(as_of=END, return_state=True)
    assert state.is_failed()
    assert time.monotonic() - started < 30
    with pytest.raises(WarehouseError, match="authentication failed"):
        state.result()


# -- 15. a typo in a path never creates an empty warehouse or tracking database ---------------
@pytest.mark.parametrize("command", [["validate"], ["features"], ["score"]])
def test_a_missing_duckdb_file_is_refused_and_not_created(tmp_path, command):
    typo = tmp_path / "warehuose.duckdb"
    result = churn(
        *command,
        "--as-of",
        str(END),
        "--warehouse",
        f"duckdb://{typo}",
        cwd=tmp_path,
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'nothing.db'}",
    )
    assert result.returncode == 1
    assert str(typo) in result.stderr or "nothing.db" in result.stderr
    assert not typo.exists()
    assert not (tmp_path / "nothing.db").exists()  # nor an empty MLflow database


def test_score_refuses_a_missing_tracking_database(tmp_path, trained_env):
    settings = trained_env.copy(tmp_path)
    typo = tmp_path / "mlfow.db"
    result = churn(
        "score",
        "--as-of",
        str(END),
        cwd=tmp_path,
        CHURN_DATA_DIR=str(settings.data_dir),
        MLFLOW_TRACKING_URI=f"sqlite:///{typo}",
    )
    assert result.returncode == 1
    assert str(typo) in result.stderr and "does not exist" in result.stderr
    assert not typo.exists()
