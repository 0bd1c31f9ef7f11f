"""An MLflow tracking server that is down or hangs fails `configure` within its
time budget, with the URI (password masked), the wait and the cause; MLflow's
own HTTP retries no longer stack up to minutes (issue #11, item 14)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest
from mlflow.tracking import MlflowClient

from models import tracking
from models.tracking import TrackingUnavailableError
from tests.mlflow_state import mlflow_restored

HTTP_ENV = (
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)
SECRET = "s3cr3t-mlflow"


@pytest.fixture(autouse=True)
def restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """MLflow's global state and its HTTP environment variables as they were."""
    for name in HTTP_ENV:
        monkeypatch.delenv(name, raising=False)  # restored on teardown, whatever configure sets
    with mlflow_restored():
        yield


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chain(exc: BaseException) -> str:
    """Every message in an exception chain."""
    texts = []
    while exc is not None:
        texts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(texts)


def test_nothing_listening_fails_fast_with_the_redacted_uri_the_wait_and_the_cause():
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError) as info:
        tracking.configure(f"http://churn:{SECRET}@127.0.0.1:{port}", "churn", timeout_seconds=3)
    waited = time.monotonic() - started
    assert waited < 5, waited
    message = str(info.value)
    assert f"http://churn:***@127.0.0.1:{port}" in message
    assert "3 s" in message  # the budget
    assert "refused" in message.lower()  # the cause
    assert SECRET not in chain(info.value)
    assert isinstance(info.value, RuntimeError)


def test_a_server_that_never_answers_fails_within_the_budget():
    with socket.socket() as server:  # accepts connections (kernel backlog), never replies
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(TrackingUnavailableError) as info:
            tracking.configure(f"http://127.0.0.1:{port}", "churn", timeout_seconds=2)
        waited = time.monotonic() - started
    assert 1.5 < waited < 4, waited
    assert f"http://127.0.0.1:{port}" in str(info.value)
    assert "2 s" in str(info.value)


def test_later_mlflow_calls_in_the_process_are_bounded_too():
    port = closed_port()
    with pytest.raises(TrackingUnavailableError):
        tracking.configure(f"http://127.0.0.1:{port}", "churn", timeout_seconds=3)
    assert int(os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) <= 3
    assert int(os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"]) <= 3
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - whichever error MLflow raises, it must come fast
        MlflowClient(f"http://127.0.0.1:{port}").search_experiments(max_results=1)
    assert time.monotonic() - started < 5
