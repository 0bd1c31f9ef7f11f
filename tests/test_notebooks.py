"""The notebooks in notebooks/ run from top to bottom against small demo data,
and are stored without outputs so they stay clean in git.

The demo data is prepared once per module, the way `churn demo` does it but
through the plain step functions (no Prefect): generate, train (the first
model becomes champion) and score today. Each notebook then runs in a fresh
kernel of this interpreter that finds the data through the environment
(``CHURN_DATA_DIR``, ``MLFLOW_TRACKING_URI``), exactly as a user's kernel does.
A failing cell fails the test (nbclient raises ``CellExecutionError`` with the
cell's traceback); the executed copy is kept in the test's tmp directory.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

N_ACCOUNTS = 1200
MONTHS = 24
SEED = 11
CELL_TIMEOUT = 240  # seconds per cell


def _ids(path: Path) -> str:
    return path.name


def test_the_three_notebooks_exist():
    names = [p.name for p in NOTEBOOKS]
    for expected in ("01_explore_data.ipynb", "02_train_and_evaluate.ipynb", "03_explain_account.ipynb"):
        assert expected in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_stored_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} hold outputs or execution counts; clear them before committing "
        "(Jupyter: Edit > Clear Outputs of All Cells, then save)"
    )
    assert nb.metadata.kernelspec.name == "python3"
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    assert "from pipeline" in code, f"{path.name} must import the package, not copy its code"
    assert any(cell.cell_type == "markdown" for cell in nb.cells)


def test_python3_kernel_is_this_interpreter():
    """The kernelspec nbclient starts (``python3``) runs this venv's Python:
    ipykernel's spec says ``python``, which jupyter_client replaces with
    ``sys.executable``; a user-level spec pointing elsewhere would break that."""
    from jupyter_client.manager import KernelManager

    command = KernelManager(kernel_name="python3").format_kernel_cmd()
    assert os.path.abspath(command[0]) == os.path.abspath(sys.executable), command


@contextmanager
def _isolated(cwd: Path) -> Iterator[None]:
    """Run the set-up in ``cwd`` (no stray churn.toml) and undo the
    process-wide MLflow state that ``tracking.configure`` leaves behind."""
    from tests.mlflow_state import mlflow_restored

    with pytest.MonkeyPatch.context() as mp, mlflow_restored():
        mp.chdir(cwd)
        yield


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """A data directory as `churn demo` leaves it (smaller): the warehouse
    with generated data ending today, a champion in the MLflow registry,
    today's scores (notebook 3 scores the earlier dates in memory), and a
    track record for notebook 2: a date 150 days ago scored too, then
    `churn monitor`."""
    from pipeline import steps
    from pipeline.generate import generate_data
    from pipeline.monitor import run_monitor
    from pipeline.settings import load_settings
    from pipeline.synthetic import GeneratorConfig

    root = tmp_path_factory.mktemp("notebook-demo")
    today = dt.date.today()
    with _isolated(root):
        settings = load_settings(env={}, data_dir=root)
        generate_data(settings, GeneratorConfig(n_accounts=N_ACCOUNTS, months=MONTHS, seed=SEED, end_date=today))
        outcome = steps.train_model(settings, today)
        assert outcome.run.decision.promoted, outcome.run.decision.reason
        steps.score_accounts(settings, today)
        steps.score_accounts(settings, today - dt.timedelta(days=150))
        monitored = run_monitor(settings, today)
    assert len(monitored.overall) == 1  # notebook 2 plots a mature date, not the "nothing yet" note
    return root


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_runs(path: Path, demo_dir: Path, monkeypatch, tmp_path: Path):
    from nbclient import NotebookClient

    # the kernel inherits this environment: the demo directory, no other churn or MLflow setting
    for name in [name for name in os.environ if name.startswith(("CHURN_", "MLFLOW_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CHURN_DATA_DIR", str(demo_dir))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{demo_dir / 'mlflow.db'}")
    monkeypatch.setenv("MPLBACKEND", "Agg")

    before = _outputs(demo_dir)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )  # the kernel's working directory
    try:
        client.execute()
    finally:
        nbformat.write(nb, tmp_path / path.name)  # the executed copy, to look at after a failure
    errors = [
        out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs if out.output_type == "error"
    ]
    assert not errors
    # notebooks read; they never write to the output tables (issue #11, item 21)
    after = _outputs(demo_dir)
    for table, frame in before.items():
        pd.testing.assert_frame_equal(after[table], frame, obj=f"{table} after {path.name}")


def _outputs(data_dir: Path) -> dict[str, pd.DataFrame]:
    """The output tables, row by row, in a stable order."""
    from pipeline.warehouse import Warehouse

    with Warehouse(f"duckdb://{data_dir / 'warehouse.duckdb'}") as wh:
        tables = ("churn_scores", "churn_risk_reasons", "churn_outcomes", "churn_model_performance")
        frames = {t: wh.read_table(t) for t in tables}
    return {t: f.sort_values(list(f.columns)).reset_index(drop=True) for t, f in frames.items()}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebooks_never_write(path: Path):
    """No call that writes to the warehouse or scores into it appears in a notebook."""
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    for writer in (
        "score_accounts",
        "write_scores",
        "write_table",
        "replace_date",
        "generate_data",
        "INSERT ",
        "DELETE ",
        "DROP ",
        "CREATE ",
    ):
        assert writer not in code, f"{path.name} calls {writer!r}: notebooks read, they never write"
