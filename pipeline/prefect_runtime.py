"""Prefect for the `churn` command: a temporary API server that cannot outlive
the command, and a clean-up of the runs a killed command left behind.

With no ``PREFECT_API_URL`` configured, Prefect's own ephemeral mode starts
``python -m uvicorn ... prefect.server.api.server:create_app`` as a child
process and stops it with an ``atexit`` hook. A ``kill -9`` of the command
skips that hook: the server keeps running forever (re-parented to init) and
the flow run stays RUNNING in the local Prefect database.

:func:`cli_runtime` fixes both:

* :func:`temporary_server` starts the same server process (same command, same
  environment, hence the same ``PREFECT_HOME`` / database) itself, with the
  Linux parent-death signal set, so the kernel kills it when the command dies,
  whatever the signal. The uvicorn process serves the API on its own (no
  worker processes), so there is no grandchild to leak.
* :func:`reap_orphaned_runs` marks CRASHED the PENDING / RUNNING flow runs
  (and their unfinished task runs) of a command that no longer exists. It
  knows the owner of a run from the tags of :func:`run_labels`, which
  :func:`cli_runtime` applies to every run created inside it.

With ``PREFECT_API_URL`` set, no server is started and the reaper runs against
that server (only on runs of this host and boot). With ephemeral mode
disallowed (``PREFECT_SERVER_ALLOW_EPHEMERAL_MODE=false``) and no URL, nothing
is started either and Prefect raises its own error at the first flow.

Usage in the CLI (in the main thread: the parent-death signal fires when the
thread that started the server ends)::

    with cli_runtime():
        score_flow(day, top_n=top)
"""

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
from typing import IO, Any

logger = logging.getLogger(__name__)

CLI_TAG = "churn-cli"
DEFAULT_STARTUP_TIMEOUT = 90.0
_PR_SET_PDEATHSIG = 1
_UVICORN_STARTUP_FAILURE = 3  # uvicorn's exit code when it cannot bind (or start)
_ACTIVE = ("PENDING", "RUNNING")


# -- who runs this process ----------------------------------------------------------------
def _boot_id() -> str | None:
    """Identifies this boot of this machine (changes on reboot)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        pass
    try:
        import psutil

        return str(int(psutil.boot_time()))
    except Exception:  # noqa: BLE001 - no way to tell: the reaper then relies on the pid alone
        return None


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot on Linux), to tell a
    live owner from an unrelated process that got the same pid later."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
        return stat[stat.rindex(")") + 2:].split()[19]  # field 22, starttime
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return f"{psutil.Process(pid).create_time():.2f}"
    except Exception:  # noqa: BLE001 - gone, or no psutil
        return None


def run_labels(pid: int | None = None) -> list[str]:
    """Tags naming the process that creates a run: ``churn-cli``,
    ``host:<hostname>``, ``boot:<boot id>``, ``pid:<pid>`` and
    ``pid-start:<start time>`` (the last two tell a dead owner from a live one,
    even after the pid was reused)."""
    pid = os.getpid() if pid is None else pid
    labels = [CLI_TAG, f"host:{socket.gethostname()}"]
    if boot := _boot_id():
        labels.append(f"boot:{boot}")
    labels.append(f"pid:{pid}")
    if start := _process_start(pid):
        labels.append(f"pid-start:{start}")
    return labels


def _tag_values(tags: list[str]) -> dict[str, str]:
    return {k: v for k, _, v in (t.partition(":") for t in tags if ":" in t)}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def owner_is_gone(tags: list[str], *, local_database: bool) -> bool:
    """True when the `churn` process named by a run's tags certainly no longer
    exists. Only runs of this host are judged. A run from an earlier boot is
    judged gone only when the database is this machine's own (a shared server
    may hold runs of another machine with the same hostname)."""
    if CLI_TAG not in tags:
        return False
    values = _tag_values(tags)
    if values.get("host") != socket.gethostname():
        return False
    try:
        pid = int(values["pid"])
    except (KeyError, ValueError):
        return False
    boot = _boot_id()
    if "boot" in values and boot and values["boot"] != boot:
        return local_database
    if pid == os.getpid():
        return False
    if not _pid_alive(pid):
        return True
    started = values.get("pid-start")
    now = _process_start(pid)
    return bool(started and now and started != now)  # the pid belongs to another process now


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

    return [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent),
            "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "error", "--lifespan", "on"]


def _server_env() -> dict[str, str]:
    """The environment Prefect gives its ephemeral server: ours, plus the
    current settings (so PREFECT_HOME and the database URL are the same), UI off."""
    from prefect.settings import get_current_settings

    return {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **get_current_settings().to_environment_variables(exclude_unset=True)}


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
        process = subprocess.Popen(_server_command(port), env=env, stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, preexec_fn=preexec, close_fds=True)
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
        why = (f"exited with code {code}" if code is not None
               else f"did not answer {server.api_url}/health within {timeout:.0f} s "
                    "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)")
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
            with (global_context(prefect.context.get_settings_context()) if global_context
                  else contextlib.nullcontext()):
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
            logger.warning("The temporary Prefect server had stopped (code %s): %s",
                           server.process.returncode, server.output_tail())
        _stop(server)
        server.output.close()


# -- orphaned runs ---------------------------------------------------------------------------
def reap_orphaned_runs(api_url: str | None = None, *, local_database: bool = True) -> list[str]:
    """Mark CRASHED the PENDING / RUNNING flow runs of `churn` processes of this
    host that no longer exist (see :func:`owner_is_gone`), and their unfinished
    task runs. Returns the ids of the crashed flow runs."""
    from prefect.client.orchestration import SyncPrefectClient, get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    active = [StateType(s) for s in _ACTIVE]
    host = socket.gethostname()
    crashed: list[Any] = []
    client_cm: Any = SyncPrefectClient(api_url) if api_url else get_client(sync_client=True)
    with client_cm as client:
        runs, offset = [], 0
        while True:
            batch = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=active)),
                                              tags=FlowRunFilterTags(all_=[CLI_TAG, f"host:{host}"])),
                limit=200, offset=offset)
            runs += batch
            offset += len(batch)
            if len(batch) < 200:
                break
        for run in runs:
            if not owner_is_gone(list(run.tags), local_database=local_database):
                continue
            values = _tag_values(list(run.tags))
            message = (f"The churn command that ran this flow (pid {values.get('pid')} on {host}) ended "
                       f"without reporting a final state (killed?); marked crashed by pid {os.getpid()}.")
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            crashed.append(run.id)
        if crashed:
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=crashed)),
                task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=active))))
            for task_run in tasks:
                client.set_task_run_state(task_run.id, Crashed(message="Its flow run crashed."), force=True)
    ids = [str(run_id) for run_id in crashed]
    if ids:
        logger.warning("Marked %d flow run(s) of killed churn commands as crashed: %s", len(ids), ", ".join(ids))
    return ids


def _reap_quietly(api_url: str, *, local_database: bool) -> list[str]:
    """Best effort, and fast when the API is down (no client retries): the
    flow that follows reports an unreachable server in its own words."""
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    try:
        with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0}):
            return reap_orphaned_runs(api_url, local_database=local_database)
    except Exception as exc:  # noqa: BLE001 - housekeeping must never fail the command
        logger.info("Could not check for runs of killed churn commands: %s", exc)
        return []


# -- the entry point of the CLI ------------------------------------------------------------
@dataclass
class Runtime:
    api_url: str | None  # None: no server configured and ephemeral mode disallowed (Prefect raises)
    server: TemporaryServer | None  # None when PREFECT_API_URL points at a real server
    reaped: list[str]


def configured_api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def _ephemeral_allowed() -> bool:
    """PREFECT_SERVER_ALLOW_EPHEMERAL_MODE (on in Prefect's default profile):
    off means "never start a server of my own", so none is started here either."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().server.ephemeral.enabled)


@contextlib.contextmanager
def cli_runtime() -> Iterator[Runtime]:
    """Everything a `churn` command that runs flows needs around them: with no
    PREFECT_API_URL, a temporary server that dies with the command; the
    orphaned runs of killed commands marked crashed; and this process's
    :func:`run_labels` on every run created inside. Call it in the main thread."""
    import prefect

    with contextlib.ExitStack() as stack:
        api_url = configured_api_url()
        server = None
        if not api_url and _ephemeral_allowed():
            server = stack.enter_context(temporary_server())
            api_url = server.api_url
        reaped = _reap_quietly(api_url, local_database=server is not None) if api_url else []
        stack.enter_context(prefect.tags(*run_labels()))
        yield Runtime(api_url, server, reaped)
