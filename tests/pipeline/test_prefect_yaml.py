"""prefect.yaml validated for real: a Prefect server started for the module,
the work pool created, `prefect deploy --all --no-prompt` from the repository
root, every deployment read back from the API with their schedules and
portable pull steps, and the daily scoring deployment run to completion by a
real process worker started in another directory, which gets the code from a
git clone (issue #11, item 22: `prefect deploy` used to record the absolute
directory it ran in, which no other host or checkout has)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from pipeline.warehouse import Warehouse
from tests.conftest import free_port, stop_group
from tests.pipeline.churn_data import END, clean_env, read

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "prefect.yaml"
PREFECT = str(Path(sys.executable).parent / "prefect")
EXPECTED = {  # deployment -> (flow, cron, parameters)
    "daily-scoring": ("churn-score", "0 6 * * *", {"top_n": 20}),
    "monthly-retraining": ("churn-retrain-and-score", "0 3 1 * *", {"top_n": 20}),
    "weekly-monitoring": ("churn-monitor", "0 7 * * 1", {}),
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


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """`prefect server start` on a free local port with its own PREFECT_HOME;
    always stopped (terminate, then kill) when the module's tests end."""
    tmp_path = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = clean_env(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
    )
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
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
        stop_group(proc)  # the server and the processes it started
        log.close()


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([PREFECT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def deployed(prefect_server):
    """The work pool and `prefect deploy --all` from the repository root (the
    environment has no CHURN_* variable, so the pull step keeps its templates)."""
    api, env = prefect_server
    before = PREFECT_YAML.read_bytes()
    _run(["work-pool", "create", "churn-pool", "--type", "process"], env)
    _run(["deploy", "--all", "--no-prompt"], env)
    assert PREFECT_YAML.read_bytes() == before  # deploying does not rewrite the file
    return api, env


def test_prefect_deploy_all_creates_the_scheduled_deployments(deployed):
    api, env = deployed

    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(api=api) as client:
        deployments = {d.name: d for d in client.read_deployments()}
        assert set(deployments) == set(EXPECTED)
        for name, (flow_name, cron, parameters) in EXPECTED.items():
            deployment = deployments[name]
            assert client.read_flow(deployment.flow_id).name == flow_name
            assert deployment.work_pool_name == "churn-pool"
            assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in deployment.schedules] == [
                (cron, "UTC", True)
            ]
            assert deployment.entrypoint.startswith("pipeline/flows.py:")
            assert deployment.parameters == parameters  # no secret, no path in the parameters
        pool = client.read_work_pool("churn-pool")
        assert pool.type == "process"


def test_recorded_pull_steps_hold_no_path_of_this_checkout(deployed):
    """What a worker runs before the flow: the git clone of prefect.yaml, the
    repository and branch still templates read on the worker, never the
    directory `prefect deploy` ran in (before the fix: a set_working_directory
    step holding this checkout's absolute path)."""
    api, _ = deployed
    from prefect.client.orchestration import SyncPrefectClient

    expected = yaml.safe_load(PREFECT_YAML.read_text()).get("pull")
    with SyncPrefectClient(api=api) as client:
        deployments = client.read_deployments()
    assert {d.name for d in deployments} == set(EXPECTED)
    for deployment in deployments:
        for text in _strings(deployment.pull_steps):
            assert str(ROOT) not in text and not os.path.isabs(text), (deployment.name, text)
        assert [next(iter(step)) for step in deployment.pull_steps] == ["prefect.deployments.steps.git_clone"]
        assert deployment.pull_steps == expected, deployment.name


# -- a worker on "another machine" -------------------------------------------------------------
MARKER = "CHURN_TEST_IMPORTED_FROM"


def _git(*args: str, cwd: Path) -> str:
    who = {
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(GIT_CONFIG_NOSYSTEM="1", **who),
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def _origin(tmp_path: Path) -> tuple[str, str]:
    """A clone of this repository at HEAD standing in for the team's remote,
    with one extra commit: importing `pipeline` writes its own path to
    $CHURN_TEST_IMPORTED_FROM, so the test sees where the worker took the code from."""
    origin = tmp_path / "origin"
    _git("clone", "--quiet", str(ROOT), str(origin), cwd=tmp_path)
    init = origin / "pipeline" / "__init__.py"
    init.write_text(
        init.read_text() + f"\nimport os as _os\n\nif _os.environ.get({MARKER!r}):\n"
        f"    open(_os.environ[{MARKER!r}], 'w').write(__file__)\n"
    )
    _git("commit", "--quiet", "-am", "test: report where pipeline is imported from", cwd=origin)
    return f"file://{origin}", _git("rev-parse", "--abbrev-ref", "HEAD", cwd=origin)


def test_a_worker_elsewhere_runs_daily_scoring_from_a_git_clone(deployed, trained_env, tmp_path):
    """The real `churn-score` flow of the daily-scoring deployment, on the
    session's small trained warehouse, run by `prefect worker start --run-once`
    started in an unrelated directory: the pull step clones the repository, the
    flow imports the clone's code, and the run completes with the scores written."""
    api, _ = deployed
    from prefect.client.orchestration import SyncPrefectClient

    settings = trained_env.copy(tmp_path / "data")
    table = settings.tables.churn_scores
    with Warehouse(settings.warehouse) as wh:
        wh.execute(f"DELETE FROM {table} WHERE as_of_date = DATE '{END}'")
    repository, branch = _origin(tmp_path)
    elsewhere = tmp_path / "worker-cwd"
    elsewhere.mkdir()
    marker = tmp_path / "imported-from.txt"
    worker_env = clean_env(
        PREFECT_API_URL=api,
        PREFECT_HOME=str(tmp_path / "worker-prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="INFO",
        CHURN_GIT_REPOSITORY=repository,
        CHURN_GIT_BRANCH=branch,
        CHURN_DATA_DIR=str(settings.data_dir),
        MLFLOW_TRACKING_URI=settings.tracking_uri,
        **{MARKER: str(marker)},
    )

    with SyncPrefectClient(api=api) as client:
        deployment = client.read_deployment_by_name("churn-score/daily-scoring")
        run = client.create_flow_run_from_deployment(deployment.id, parameters={"as_of": str(END), "top_n": 5})
        done = subprocess.run(
            [PREFECT, "worker", "start", "--pool", "churn-pool", "--type", "process", "--run-once", "--limit", "1"],
            cwd=elsewhere,
            env=worker_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = f"{done.stdout}\n{done.stderr}"[-6000:]
        assert done.returncode == 0, output
        state = client.read_flow_run(run.id).state
        assert state.is_completed(), f"{state!r}\n{output}"
        artifacts = client.read_artifacts()
    assert "top-at-risk-accounts" in {a.key for a in artifacts if a.flow_run_id == run.id}

    assert marker.is_file(), "the flow did not import the code of the clone"
    imported_from = Path(marker.read_text())
    assert not imported_from.is_relative_to(ROOT) and not imported_from.is_relative_to(elsewhere)
    assert imported_from.parts[-2:] == ("pipeline", "__init__.py")
    scored = read(settings, f"SELECT count(*) AS n FROM {table} WHERE as_of_date = DATE '{END}'")
    assert int(scored["n"].iloc[0]) > 0
