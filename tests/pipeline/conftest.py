"""Fixtures of the pipeline tests: the generated + trained + scored data (once
per session) and one Prefect test server per session (it takes 10-30 s to
start, so every flow test and the CLI's flow path share it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pipeline.churn_data import Trained, trained


@pytest.fixture(scope="session")
def trained_env(tmp_path_factory) -> Trained:
    """Data generated, a champion trained and two dates scored. Read-only:
    copy it (``trained_env.copy(tmp_path)``) before changing anything."""
    return trained(tmp_path_factory)


@pytest.fixture(scope="session")
def prefect_api_url(tmp_path_factory) -> Iterator[str]:
    """A temporary Prefect server (SQLite) for the whole session; yields its API
    URL, which subprocesses can use too. Task results (the feature cache) go
    to a temporary directory, not ~/.prefect."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        mp.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
        import prefect.settings
        from prefect.testing.utilities import prefect_test_harness

        storage = tmp_path_factory.mktemp("prefect-storage")
        with prefect.settings.temporary_settings(updates={prefect.settings.PREFECT_LOCAL_STORAGE_PATH: storage}):
            with prefect_test_harness(server_startup_timeout=90):
                yield prefect.settings.PREFECT_API_URL.value()

