"""Demo data into the warehouse: `churn generate` and the first task of the demo.

The only production module that uses the synthetic data generator
(`pipeline.synthetic`), and it imports it only when data is generated: the
flows, the steps and the CLI import this module, never the generator, so no
scoring or training run loads it (tests/pipeline/test_import_boundaries.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from features.contract import INPUT_TABLES
from features.staging import ValidationReport
from pipeline.settings import Settings
from pipeline.steps import open_warehouse, validate_inputs

if TYPE_CHECKING:
    from pipeline.synthetic import GeneratorConfig

INCOMING_SUFFIX = "__churn_new"
"""Generated chunks are appended to ``<table>__churn_new`` swap tables, which
replace the contract tables in one transaction once every chunk is in."""


@dataclass
class GenerateResult:
    rows: dict[str, int]  # contract table -> rows generated
    report: ValidationReport  # validation of the new data as of its end date


def generator_config(accounts: int, months: int, seed: int, end_date: dt.date | None = None) -> GeneratorConfig:
    """The generator's config from the CLI's and the demo flow's parameters
    (so that they need not import the generator to build one)."""
    from pipeline.synthetic import GeneratorConfig

    return GeneratorConfig(n_accounts=accounts, months=months, seed=seed, end_date=end_date)


def generate_data(
    settings: Settings,
    config: GeneratorConfig,
    on_chunk: Callable[[int], None] | None = None,
) -> GenerateResult:
    """Generate synthetic data into the warehouse, then validate it.

    Chunks go to swap tables; the contract tables are replaced in one
    transaction at the end, so a failure leaves the previous data intact.
    ``on_chunk`` is called with the number of accounts of each chunk written.
    """
    from pipeline.synthetic import generate

    names = settings.tables
    incoming = {logical: names.physical(logical) + INCOMING_SUFFIX for logical in INPUT_TABLES}
    rows: dict[str, int] = {}
    with open_warehouse(settings, create=True) as wh:
        for swap in incoming.values():
            wh.drop(swap)
        try:
            for table, chunk in generate(config):
                wh.write_table(incoming[table], chunk, mode="append")
                rows[table] = rows.get(table, 0) + len(chunk)
                if on_chunk and table == "accounts":
                    on_chunk(len(chunk))
            wh.publish({incoming[table]: names.physical(table) for table in rows})
        finally:
            for swap in incoming.values():
                wh.drop(swap)
        report = validate_inputs(wh, settings, config.end_date or dt.date.today())
    return GenerateResult(rows, report)
