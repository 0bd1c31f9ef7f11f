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

Modules: ``server`` (the temporary server) and ``orphans`` (run owners and
the reaper); this one wires them for the CLI.

Usage in the CLI (in the main thread: the parent-death signal fires when the
thread that started the server ends)::

    with cli_runtime():
        score_flow(day, top_n=top)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.prefect_runtime.orphans import CLI_TAG, owner_is_gone, reap_orphaned_runs, reap_quietly, run_labels
from pipeline.prefect_runtime.server import TemporaryServer, startup_timeout, temporary_server

__all__ = [
    "CLI_TAG",
    "Runtime",
    "TemporaryServer",
    "cli_runtime",
    "configured_api_url",
    "owner_is_gone",
    "reap_orphaned_runs",
    "run_labels",
    "startup_timeout",
    "temporary_server",
]


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
        reaped = reap_quietly(api_url, local_database=server is not None) if api_url else []
        stack.enter_context(prefect.tags(*run_labels()))
        yield Runtime(api_url, server, reaped)
