"""ChurnSim, the churn simulator of the book *Fighting Churn with Data* (Carl Gold), vendored.

Source: https://github.com/carl24k/fight-churn, folder ``fightchurn/churnsim/``, as released on PyPI
as ``fightchurn`` 1.2.0 (wheel ``fightchurn-1.2.0-py3-none-any.whl``, sha256
a789731ab6be67b52adbb6d4717c373714f82f9d6c9ec1941ebe37aa530a159d; the wheel does not record
its git commit). Licence: MIT, Copyright 2020 Carl Gold (``LICENSE.md`` beside this file).
Model described in the ChurnSim report: https://papers.ssrn.com/sol3/papers.cfm?abstract_id=4540160

Only what must change to run here without its PostgreSQL schema, Hydra, OmegaConf or file
locks was changed; each change is marked ``ADAPTED`` in the code. The behaviour model, the
utility (churn) model, plans, add-ons, billing periods and the month-end logic are the
original's. The parameter files under ``conf/`` are copied unchanged from the wheel.
"""

from benchmarks.external.churnsim.simulation import ChurnSimulation, SimulationOutput, load_config

__all__ = ["ChurnSimulation", "SimulationOutput", "load_config"]
