"""Simulate ChurnSim and map it onto the contract, or load the cached result.

The cache lives under the system temp dir (``churn-external-cache/<key>``) as one Parquet file
per contract table; the key covers the simulator's parameters and every file of the vendored
simulator and of the mapping, so a change to either simulates again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from dateutil import parser

from benchmarks.external import mapping
from benchmarks.external.churnsim import ChurnSimulation, load_config
from benchmarks.external.mapping import ContractTables, write_warehouse

__all__ = ["Simulated", "load_or_simulate", "write_warehouse"]

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
CACHE = Path(tempfile.gettempdir()) / "churn-external-cache"


@dataclass
class Simulated:
    model: str
    config: dict
    start_date: dt.date
    end_date: dt.date
    tables: ContractTables
    cached: bool
    cache_dir: Path

    @property
    def has_users(self) -> bool:
        return self.tables.usage_events["user_id"].notna().any()


def _code_hash() -> str:
    digest = hashlib.sha256()
    files = sorted((HERE / "churnsim").rglob("*")) + [HERE / "mapping.py", HERE / "data.py"]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(HERE).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def load_or_simulate(
    model: str,
    customers: int | None,
    seed: int,
    start: str | None,
    end: str | None,
    cache: bool = True,
    monthly_counts: bool = True,
) -> Simulated:
    config = load_config(
        model,
        init_customers=customers,
        random_seed=seed,
        start_date=start,
        end_date=end,
        monthly_event_counts=monthly_counts,
    )
    start_date = parser.parse(config.start_date).date()
    end_date = parser.parse(config.end_date).date()
    key = hashlib.sha256(json.dumps([dict(config), _code_hash()], sort_keys=True, default=str).encode()).hexdigest()
    where = CACHE / key[:16]
    if cache and (where / "done.json").exists():
        log.info("Loading the cached simulation from %s", where)
        notes = json.loads((where / "done.json").read_text())["notes"]
        frames = {name: pd.read_parquet(where / f"{name}.parquet") for name in ("accounts", "subscriptions")}
        events = pd.read_parquet(where / "usage_events.parquet")
        tables = ContractTables(frames["accounts"], frames["subscriptions"], events, notes)
        return Simulated(model, dict(config), start_date, end_date, tables, True, where)

    log.info(
        "Simulating ChurnSim %s: %s initial customers, %s to %s, seed %s",
        model,
        config.init_customers,
        start_date,
        end_date,
        seed,
    )
    output = ChurnSimulation(config).end_to_end_simulation()
    has_users = "users" in output.event_types
    tables = mapping.to_contract(output, end_date, has_users)
    del output
    log.info("Mapped: %s", {name: len(frame) for name, frame in tables.frames().items()} | tables.notes)
    if cache:
        tmp = where.with_name(f"{where.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, frame in tables.frames().items():
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / "done.json").write_text(json.dumps({"config": dict(config), "notes": tables.notes}, default=str))
        shutil.rmtree(where, ignore_errors=True)
        tmp.rename(where)
    return Simulated(model, dict(config), start_date, end_date, tables, False, where)
