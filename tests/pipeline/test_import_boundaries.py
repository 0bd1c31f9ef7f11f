"""Scoring and training never load the demo data generator.

`pipeline.synthetic` is demo data only: the flows, the steps and the command
line reach it through `pipeline.generate`, which imports it when data is
generated. Each check imports a module in a fresh interpreter under
``python -X importtime`` and reads the list of modules it loaded.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def loaded_modules(code: str) -> list[str]:
    """Every module a fresh interpreter imports to run ``code``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # lines: "import time: self [us] | cumulative | imported package"
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    return [line.rsplit("|", 1)[-1].strip() for line in lines[1:]]  # the first is the header


def generator_modules(code: str) -> list[str]:
    return [name for name in loaded_modules(code) if "synthetic" in name]


@pytest.mark.parametrize("module", ["pipeline.flows", "pipeline.steps", "pipeline.cli", "pipeline.generate"])
def test_importing_the_wiring_does_not_load_the_generator(module: str) -> None:
    assert generator_modules(f"import {module}") == [], (
        f"importing {module} loads the synthetic data generator; "
        "import it through pipeline.generate (which loads it only when data is generated)"
    )


def test_the_check_sees_the_generator_when_it_is_loaded() -> None:
    """The check above is not vacuous: building a generator config loads the package."""
    code = "from pipeline.generate import generator_config; generator_config(10, 1, 0)"
    modules = generator_modules(code)
    assert "pipeline.synthetic" in modules
    assert "pipeline.synthetic.simulation" in modules
