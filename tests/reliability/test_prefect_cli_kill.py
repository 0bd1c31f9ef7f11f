"""Issue #11, item 17: `kill -9` of a `churn` command that runs Prefect flows
with no PREFECT_API_URL. Before the fix Prefect's temporary server (its child
process) kept running forever, re-parented to init, and the flow run stayed
RUNNING in the local Prefect database.

For real: a child Python process enters ``cli_runtime()`` (a temporary
server on a temporary PREFECT_HOME) and runs a flow that sleeps; once the API
says the run is RUNNING the child is SIGKILLed. No server process of that
PREFECT_HOME may survive it. A second process entering ``cli_runtime()`` on the
same PREFECT_HOME then finds the run and marks it CRASHED, naming the dead pid.

The second process also checks a command with PREFECT_API_URL configured: no
server of its own, and only runs of dead processes of this boot are crashed.

The child is this module run with ``python -m`` (see ``_child``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.pipeline.churn_data import clean_env

ROOT = Path(__file__).resolve().parents[2]
MODULE = "tests.reliability.test_prefect_cli_kill"
SERVER_MARK = "prefect.server.api.server:create_app"


# -- the child processes -------------------------------------------------------------------
def _child(mode: str, run_id: str | None = None) -> None:
    """``sleep``: run a flow that sleeps inside cli_runtime(), printing one JSON
    line (server pid, API URL) first. ``reap``: enter cli_runtime() and print
    what it reaped and the state of ``run_id`` as the API reports it."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    from pipeline.prefect_runtime import cli_runtime

    @flow(name="churn-test-sleeper")
    def sleeper(seconds: float) -> None:
        time.sleep(seconds)

    with cli_runtime() as runtime:
        info = {
            "pid": os.getpid(),
            "server_pid": runtime.server.pid if runtime.server else None,
            "api_url": runtime.api_url,
            "reaped": runtime.reaped,
        }
        if mode == "sleep":
            print(json.dumps(info), flush=True)
            sleeper(600)
        else:
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(run_id)
                info.update(state=run.state.type.value, message=run.state.message, name=run.state.name)
                info["configured"] = _configured_server(client, sleeper)
            print(json.dumps(info), flush=True)


def _configured_server(client, flow) -> dict:
    """Inside a runtime, PREFECT_API_URL is set: a nested cli_runtime() is what
    a command with a configured server gets. It starts no server and crashes
    only the run of a dead process of this boot, not that of a live process
    nor that of an earlier boot (a shared server may hold another machine's)."""
    from prefect.states import Running

    from pipeline.prefect_runtime import cli_runtime, run_labels

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    earlier_boot = [t if not t.startswith("boot:") else "boot:an-earlier-boot" for t in run_labels(dead.pid)]
    runs = {
        name: client.create_flow_run(flow, tags=tags, state=Running()).id
        for name, tags in {
            "dead": run_labels(dead.pid),
            "alive": run_labels(os.getppid()),
            "earlier_boot": earlier_boot,
        }.items()
    }
    with cli_runtime() as runtime:
        started = runtime.server is not None
        reaped = runtime.reaped
    return {
        "started_server": started,
        "reaped": [name for name, id_ in runs.items() if str(id_) in reaped],
        "states": {name: client.read_flow_run(id_).state.type.value for name, id_ in runs.items()},
    }


# -- helpers ---------------------------------------------------------------------------------
def _servers_of(home: Path) -> list[psutil.Process]:
    """Live (non-zombie) Prefect API server processes using this PREFECT_HOME."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or SERVER_MARK not in " ".join(proc.info["cmdline"] or []):
                continue
            if proc.environ().get("PREFECT_HOME") == str(home):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _env(home: Path) -> dict[str, str]:
    # PREFECT_API_URL is dropped by clean_env: the temporary server is the point.
    return clean_env(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90",
        PREFECT_LOGGING_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )


def _wait_running(api_url: str, pid: int, child: subprocess.Popen, timeout: float = 60) -> str:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    deadline = time.monotonic() + timeout
    with SyncPrefectClient(api_url) as client:
        while time.monotonic() < deadline:
            assert child.poll() is None, "the child ended before its flow ran"
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["churn-cli", f"pid:{pid}"]))
            )
            if runs and runs[0].state and runs[0].state.type.value == "RUNNING":
                return str(runs[0].id)
            time.sleep(0.2)
    pytest.fail("the flow run never became RUNNING")


# -- the test ---------------------------------------------------------------------------------
def test_kill_9_leaves_no_server_and_the_next_command_marks_the_run_crashed(tmp_path):
    home = tmp_path / "prefect-home"
    env = _env(home)
    log = (tmp_path / "sleep.log").open("w+")
    child = subprocess.Popen(
        [sys.executable, "-m", MODULE, "sleep"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=log, text=True
    )
    try:
        line = child.stdout.readline()
        assert line, f"child printed nothing:\n{(tmp_path / 'sleep.log').read_text()[-3000:]}"
        info = json.loads(line)
        server_pid = info["server_pid"]
        assert server_pid and psutil.Process(server_pid).ppid() == child.pid
        assert [p.pid for p in _servers_of(home)] == [server_pid]  # the only server: Prefect started none
        assert psutil.Process(server_pid).children(recursive=True) == []  # nothing below it to leak
        run_id = _wait_running(info["api_url"], child.pid, child)

        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        deadline = time.monotonic() + 5
        while not _gone(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(server_pid), "the temporary Prefect server outlived the killed command"
        assert _servers_of(home) == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for proc in _servers_of(home):  # clean up after a failure: only servers of this test's home
            proc.kill()
        log.close()

    assert (home / "prefect.db").is_file()  # Prefect's own local database under PREFECT_HOME

    done = subprocess.run(
        [sys.executable, "-m", MODULE, "reap", run_id],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    after = json.loads(done.stdout.strip().splitlines()[-1])
    assert after["reaped"] == [run_id]
    assert after["state"] == "CRASHED"
    assert f"pid {child.pid} on {socket.gethostname()}" in after["message"]
    assert _gone(after["server_pid"]) and _servers_of(home) == []  # stopped on a normal exit too
    assert after["configured"] == {
        "started_server": False,
        "reaped": ["dead"],
        "states": {"dead": "CRASHED", "alive": "RUNNING", "earlier_boot": "RUNNING"},
    }


# -- whose runs are orphans (no server needed) ------------------------------------------------
def _tags_of(owner: int, **changes: str) -> list[str]:
    """The tags a command with pid ``owner`` puts on its runs, with some values replaced."""
    from pipeline.prefect_runtime import run_labels

    tags = run_labels(owner)
    for key, value in changes.items():
        tags = [f"{key.replace('_', '-')}:{value}" if t.startswith(f"{key.replace('_', '-')}:") else t for t in tags]
    return tags


def test_only_runs_of_dead_commands_of_this_host_are_orphans():
    from pipeline.prefect_runtime import owner_is_gone

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    dead_tags = _tags_of(os.getpid(), pid=str(dead.pid))  # this boot and host; the pid is gone
    parent = os.getppid()  # alive, not us

    assert owner_is_gone(dead_tags, local_database=False)
    assert not owner_is_gone(_tags_of(parent), local_database=True)
    assert not owner_is_gone(_tags_of(os.getpid()), local_database=True)
    assert not owner_is_gone(_tags_of(dead.pid, host="another-host"), local_database=True)
    assert not owner_is_gone([t for t in dead_tags if t != "churn-cli"], local_database=True)
    # The pid is alive but belongs to a process that started later: the owner is gone.
    assert owner_is_gone(_tags_of(parent, pid_start="1"), local_database=False)
    # An earlier boot: gone for this machine's own database; a shared server may
    # hold runs of another machine with the same hostname, so those are left alone.
    assert owner_is_gone(_tags_of(parent, boot="an-earlier-boot"), local_database=True)
    assert not owner_is_gone(_tags_of(parent, boot="an-earlier-boot"), local_database=False)


if __name__ == "__main__":
    _child(*sys.argv[1:])
