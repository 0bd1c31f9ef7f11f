"""prefect.yaml validated for real: a Prefect server started for the test, the
work pool created, `prefect deploy --all --no-prompt` from the repository
root, and both deployments read back from the API with their schedules."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.pipeline.churn_data import clean_env

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "prefect.yaml"
PREFECT = str(Path(sys.executable).parent / "prefect")
EXPECTED = {  # deployment -> (flow, cron)
    "daily-scoring": ("churn-score", "0 6 * * *"),
    "monthly-retraining": ("churn-retrain-and-score", "0 3 1 * *"),
}


def _strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def test_prefect_yaml_has_no_absolute_paths():
    config = yaml.safe_load(PREFECT_YAML.read_text())
    for text in _strings(config):
        assert not os.path.isabs(text) and not text.startswith("~"), text
        assert str(ROOT) not in text and "/home/" not in text and "/work/" not in text, text
    for deployment in config["deployments"]:
        path, _, function = deployment["entrypoint"].partition(":")
        assert (ROOT / path).is_file() and f"def {function}(" in (ROOT / path).read_text()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def prefect_server(tmp_path):
    """`prefect server start` on a free local port with its own PREFECT_HOME;
    always stopped (terminate, then kill) when the test ends."""
    port = _free_port()
    env = clean_env(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                    PREFECT_SERVER_UI_ENABLED="false")
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Prefect server did not start:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield api, {**env, "PREFECT_API_URL": api}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the processes it started
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([PREFECT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_prefect_deploy_all_creates_both_scheduled_deployments(prefect_server):
    api, env = prefect_server
    before = PREFECT_YAML.read_bytes()
    _run(["work-pool", "create", "churn-pool", "--type", "process"], env)
    _run(["deploy", "--all", "--no-prompt"], env)
    assert PREFECT_YAML.read_bytes() == before  # deploying does not rewrite the file

    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(api=api) as client:
        deployments = {d.name: d for d in client.read_deployments()}
        assert set(deployments) == set(EXPECTED)
        for name, (flow_name, cron) in EXPECTED.items():
            deployment = deployments[name]
            assert client.read_flow(deployment.flow_id).name == flow_name
            assert deployment.work_pool_name == "churn-pool"
            assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in deployment.schedules] == [
                (cron, "UTC", True)]
            assert deployment.entrypoint.startswith("pipeline/flows.py:")
            assert deployment.parameters == {"top_n": 20}  # no secret, no path in the parameters
        pool = client.read_work_pool("churn-pool")
        assert pool.type == "process"
