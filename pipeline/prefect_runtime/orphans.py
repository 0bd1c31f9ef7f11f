"""Runs of `churn` commands that were killed: who owns a run (the tags of
:func:`run_labels`) and :func:`reap_orphaned_runs`, which marks CRASHED the
PENDING / RUNNING runs whose owner no longer exists."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

logger = logging.getLogger("pipeline.prefect_runtime")

CLI_TAG = "churn-cli"
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
        return stat[stat.rindex(")") + 2 :].split()[19]  # field 22, starttime
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
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=active)),
                    tags=FlowRunFilterTags(all_=[CLI_TAG, f"host:{host}"]),
                ),
                limit=200,
                offset=offset,
            )
            runs += batch
            offset += len(batch)
            if len(batch) < 200:
                break
        for run in runs:
            if not owner_is_gone(list(run.tags), local_database=local_database):
                continue
            values = _tag_values(list(run.tags))
            message = (
                f"The churn command that ran this flow (pid {values.get('pid')} on {host}) ended "
                f"without reporting a final state (killed?); marked crashed by pid {os.getpid()}."
            )
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            crashed.append(run.id)
        if crashed:
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=crashed)),
                task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=active))),
            )
            for task_run in tasks:
                client.set_task_run_state(task_run.id, Crashed(message="Its flow run crashed."), force=True)
    ids = [str(run_id) for run_id in crashed]
    if ids:
        logger.warning("Marked %d flow run(s) of killed churn commands as crashed: %s", len(ids), ", ".join(ids))
    return ids


def reap_quietly(api_url: str, *, local_database: bool) -> list[str]:
    """Best effort, and fast when the API is down (no client retries): the
    flow that follows reports an unreachable server in its own words."""
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    try:
        with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0}):
            return reap_orphaned_runs(api_url, local_database=local_database)
    except Exception as exc:  # noqa: BLE001 - housekeeping must never fail the command
        logger.info("Could not check for runs of killed churn commands: %s", exc)
        return []
