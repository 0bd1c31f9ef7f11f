"""The `churn` command: help for every command, the happy path on a small
DuckDB file (generate, validate, features), and the failure contract: a broken
input gives one line naming the culprit, a non-zero exit code and no write
(the full traceback only with --verbose)."""

from __future__ import annotations

import re
import subprocess

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.warehouse import Warehouse
from tests.pipeline.churn_data import (
    END,
    assert_same_tables,
    churn_executable,
    clean_env,
    mlflow_restored,
    run_churn,
    snapshot,
    unset,
)

COMMANDS = ["generate", "validate", "features", "train", "score", "monitor", "backtest", "demo"]


@pytest.fixture
def runner(monkeypatch, tmp_path) -> CliRunner:
    """An in-process runner whose environment changes are undone: the CLI hands
    --warehouse and --config to the flows through os.environ."""
    unset(
        monkeypatch,
        "CHURN_WAREHOUSE_URL",
        "CHURN_CONFIG",
        "MLFLOW_TRACKING_URI",
        "PREFECT_LOGGING_LEVEL",
        "PREFECT_SERVER_ANALYTICS_ENABLED",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
    )
    monkeypatch.setenv("CHURN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    with mlflow_restored():
        yield CliRunner()


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


# -- help ------------------------------------------------------------------------------
def test_the_fixture_undoes_what_the_cli_sets_in_the_environment():
    import os

    original = os.environ.get("CHURN_WAREHOUSE_URL")
    with pytest.MonkeyPatch.context() as mp:
        unset(mp, "CHURN_WAREHOUSE_URL")
        os.environ["CHURN_WAREHOUSE_URL"] = "duckdb:///elsewhere.duckdb"  # what `--warehouse` does
    assert os.environ.get("CHURN_WAREHOUSE_URL") == original


def test_help_lists_every_command(runner):
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in COMMANDS:
        assert command in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(runner, command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--warehouse", "--config", "--verbose"):
        assert option in result.output


def test_console_script_help():
    done = subprocess.run([churn_executable(), "--help"], capture_output=True, text=True, timeout=60, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert "Usage: churn" in done.stdout and "score" in done.stdout


# -- happy path on a tmp DuckDB file ----------------------------------------------------
@pytest.fixture
def small_warehouse(runner, tmp_path) -> str:
    url = f"duckdb://{tmp_path / 'small.duckdb'}"
    result = runner.invoke(
        app,
        ["generate", "--accounts", "150", "--months", "4", "--seed", "5", "--end-date", str(END), "--warehouse", url],
    )
    assert result.exit_code == 0, result.output
    assert "accounts" in result.output and "usage_events" in result.output and "Validation:" in result.output
    return url


def test_generate_then_features_to_parquet(runner, small_warehouse, tmp_path):
    out = tmp_path / "x.parquet"
    result = runner.invoke(app, ["features", "--as-of", str(END), "--out", str(out), "--warehouse", small_warehouse])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    with Warehouse(small_warehouse) as wh:
        active = wh.scalar(f"""SELECT COUNT(DISTINCT account_id) FROM subscriptions
            WHERE start_date <= DATE '{END}' AND (end_date IS NULL OR end_date > DATE '{END}')""")
    assert len(frame) == active > 0
    assert frame["account_id"].is_unique
    assert {"account_id", "as_of_date", "events_30d", "days_to_renewal"} <= set(frame.columns)
    assert re.search(rf"{active:,} active accounts x \d+ features as of {END}", result.output)


def test_validate_prints_the_markdown_report(runner, small_warehouse):
    result = runner.invoke(app, ["validate", "--as-of", str(END), "--warehouse", small_warehouse])
    assert result.exit_code == 0, result.output
    assert f"## Input validation (as of {END})" in result.output
    assert re.search(r"^\| table \| rows \|", result.output, flags=re.MULTILINE)
    for table in ("accounts", "subscriptions", "usage_events", "support_tickets", "nps_responses"):
        assert re.search(rf"^\| {table} \| [\d,]+ \|", result.output, flags=re.MULTILINE), table


# -- failure: a required column is missing ------------------------------------------------
@pytest.fixture
def broken(trained_env, tmp_path):
    """A scored warehouse (churn_scores present) whose usage_events lost event_type."""
    settings = trained_env.copy(tmp_path / "broken")
    with Warehouse(settings.warehouse) as wh:
        wh.execute("ALTER TABLE usage_events DROP COLUMN event_type")
    return settings


@pytest.mark.parametrize("command", [["validate"], ["features", "--out", "never.parquet"]])
def test_missing_column_is_one_line_and_writes_nothing(runner, broken, command, tmp_path):
    before = snapshot(broken)
    result = runner.invoke(app, [*command, "--as-of", str(END), "--warehouse", broken.warehouse])
    assert result.exit_code == 1
    lines = error_lines(result.output)
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error:") and "usage_events" in lines[0] and "event_type" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "never.parquet").exists()
    assert_same_tables(before, snapshot(broken))


def test_verbose_shows_the_traceback(runner, broken):
    result = runner.invoke(app, ["validate", "--as-of", str(END), "--warehouse", broken.warehouse, "--verbose"])
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.output
    assert "ContractError" in result.output
    assert error_lines(result.output)[-1].startswith("Error:")


def test_score_with_a_missing_column_is_one_line_and_keeps_the_scores(broken, prefect_api_url, tmp_path):
    """The real console script (its own process, so Prefect's own logging is
    what a user sees) against the session's Prefect server."""
    before = snapshot(broken)
    done = run_churn(broken, ["score", "--as-of", str(END)], prefect_api_url, tmp_path, timeout=180)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.strip() == ""
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0] == "Error: Table 'usage_events' (usage_events) is missing required column(s): event_type"
    assert_same_tables(before, snapshot(broken))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dates", "2026-05-01", "--from", "2026-01-01"], "Error: Give either --dates or --from/--to, not both"),
        (["--from", "2026-01-01"], "Error: Give the dates to score: --dates D1,D2,... or --from D --to D"),
        (["--dates", "2026-02-30"], "Error: '2026-02-30' is not a date (YYYY-MM-DD)"),
    ],
)
def test_backtest_argument_errors_are_one_line(runner, args, message):
    result = runner.invoke(app, ["backtest", "--train-as-of", "2026-03-01", *args])
    assert result.exit_code != 0
    assert error_lines(result.output)[-1].startswith(message), result.output
