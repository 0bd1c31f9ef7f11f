"""A temporary Prefect API server that cannot outlive the `churn` command:
the server process Prefect's ephemeral mode starts, with the Linux
parent-death signal set, so the kernel kills it when the command dies."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

logger = logging.getLogger("pipeline.prefect_runtime")

DEFAULT_STARTUP_TIMEOUT = 90.0
_PR_SET_PDEATHSIG = 1
_UVICORN_STARTUP_FAILURE = 3  # uvicorn's exit code when it cannot bind (or start)


# -- the temporary server -------------------------------------------------------------------
def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent():
    """A ``preexec_fn`` that asks the kernel to SIGKILL the child when its parent
    dies (Linux). Everything is resolved before the fork: the child only makes
    two system calls. SIGKILL rather than SIGTERM: nobody is left to talk to,
    and a graceful uvicorn shutdown may wait on background work forever; the
    database is crash-safe (SQLite WAL / PostgreSQL)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    sigkill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _server_command(port: int) -> list[str]:
    """What Prefect's ``SubprocessASGIServer`` runs (prefect 3.8)."""
    import prefect

    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(prefect.__module_path__.parent),
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]


def _server_env() -> dict[str, str]:
    """The environment Prefect gives its ephemeral server: ours, plus the
    current settings (so PREFECT_HOME and the database URL are the same), UI off."""
    from prefect.settings import get_current_settings

    return {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        **get_current_settings().to_environment_variables(exclude_unset=True),
    }


def startup_timeout() -> float:
    """PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS when set (environment or
    profile), else 90 s: Prefect's default of 20 s is too short for the first
    start on a fresh PREFECT_HOME (database migrations)."""
    from prefect.settings import get_current_settings

    ephemeral = get_current_settings().server.ephemeral
    if "startup_timeout_seconds" in ephemeral.model_fields_set:
        return float(ephemeral.startup_timeout_seconds)
    return DEFAULT_STARTUP_TIMEOUT


@dataclass
class TemporaryServer:
    process: subprocess.Popen[bytes]
    port: int
    output: IO[bytes] = field(repr=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def pid(self) -> int:
        return self.process.pid

    def output_tail(self, chars: int = 2000) -> str:
        self.output.flush()
        self.output.seek(0)
        return self.output.read().decode(errors="replace")[-chars:].strip()


def _start(timeout: float) -> TemporaryServer:
    import httpx

    deadline = time.monotonic() + timeout
    output = tempfile.TemporaryFile()  # anonymous: nothing is left behind, even after kill -9
    preexec = _die_with_parent()
    env = _server_env()
    attempts = 0
    while True:
        attempts += 1
        port = _free_port()
        process = subprocess.Popen(
            _server_command(port),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec,
            close_fds=True,
        )
        server = TemporaryServer(process, port, output)
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                code = process.poll()
                if code is not None:
                    break
                try:
                    if client.get(f"{server.api_url}/health").status_code == 200:
                        return server
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        code = process.poll()
        if code == _UVICORN_STARTUP_FAILURE and attempts < 3 and time.monotonic() < deadline:
            continue  # most likely someone took the port between our probe and uvicorn's bind
        _stop(server)
        why = (
            f"exited with code {code}"
            if code is not None
            else f"did not answer {server.api_url}/health within {timeout:.0f} s "
            "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)"
        )
        tail = server.output_tail()
        output.close()
        raise RuntimeError(f"The temporary Prefect server {why}" + (f": {tail}" if tail else ""))


def _stop(server: TemporaryServer) -> None:
    process = server.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _drain_prefect_workers() -> None:
    """Deliver the logs and events still queued for the API before it goes away
    (what prefect_test_harness does before stopping its server)."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        with contextlib.suppress(RuntimeError):
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    try:
        run_coro_as_sync(drain())
    except Exception as exc:  # noqa: BLE001 - never fail the command while shutting down
        logger.debug("Draining Prefect logs/events failed: %s", exc)


@contextlib.contextmanager
def _use_api_url(url: str) -> Iterator[None]:
    """Point this process at ``url``: its settings context, the process-global
    one (threads started without a copied context read that one), and the
    environment (subprocesses, e.g. Dask workers). All restored on exit."""
    import prefect.context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            global_context = getattr(prefect.context, "_temporary_global_settings_context", None)
            with global_context(prefect.context.get_settings_context()) if global_context else contextlib.nullcontext():
                yield
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous


@contextlib.contextmanager
def temporary_server(timeout: float | None = None) -> Iterator[TemporaryServer]:
    """Start Prefect's API server (as its ephemeral mode does, on the same
    database) as a child process the kernel kills if this process dies, wait
    until ``/api/health`` answers, point this process at it, and stop it on exit."""
    from prefect.server.api.server import SubprocessASGIServer

    server = _start(timeout if timeout is not None else startup_timeout())
    # Code that asks Prefect for "the" ephemeral server gets this one, not a
    # second, unprotected process (prefect_test_harness does the same).
    alias = SubprocessASGIServer(port=server.port)
    alias.server_process, alias.running = server.process, True
    previous_default = SubprocessASGIServer._instances.get(None)
    SubprocessASGIServer._instances[None] = alias
    try:
        with _use_api_url(server.api_url):
            try:
                yield server
            finally:
                _drain_prefect_workers()
    finally:
        if previous_default is not None:
            SubprocessASGIServer._instances[None] = previous_default
        else:
            SubprocessASGIServer._instances.pop(None, None)
        SubprocessASGIServer._instances.pop(server.port, None)
        alias.server_process, alias.running = None, False
        if server.process.poll() is not None:
            logger.warning(
                "The temporary Prefect server had stopped (code %s): %s",
                server.process.returncode,
                server.output_tail(),
            )
        _stop(server)
        server.output.close()
