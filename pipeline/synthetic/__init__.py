"""Synthetic B2B SaaS data for the churn pipeline (`churn generate`, the demo).

The generator simulates a book of accounts month by month. Each account has a
hidden *health* score (an AR(1) process with shocks); product usage, support
tickets and NPS answers are drawn from that health, and churn is drawn from a
hazard whose drivers are the *observable* consequences of health (usage
decline, low seat utilisation, open urgent tickets, detractor NPS) plus short
tenure, the renewal date and random churn. docs/synthetic-data.md describes the
model and lists the true drivers; `CHURN_DRIVERS` holds their coefficients.

Pure library code: no database and no printing. `generate` yields
``(table_name, DataFrame)`` pairs, chunk by chunk of accounts; the caller
appends each frame to the warehouse table of that name.

Determinism: every chunk draws from ``np.random.default_rng([seed, chunk])``,
so a run is a pure function of the config (including ``end_date`` and
``chunk_accounts``: changing the chunk size changes the data, not its
statistics).

Demo data only: scoring and training never import this package
(tests/pipeline/test_import_boundaries.py); `pipeline.generate` loads it when
data is generated.

Modules, in the order a chunk uses them:

- `params`: `GeneratorConfig`, category values, `CHURN_DRIVERS` and every
  behavioural parameter;
- `timeline`: the month grid and epoch-day arithmetic;
- `accounts`: the accounts, their hidden health and their subscriptions;
- `activity`: usage events;
- `support`: support tickets and NPS answers;
- `hazard`: the churn decision from what is observable;
- `frames`: the chunk as DataFrames typed from the data contract;
- `simulation`: `generate` and the month loop;
- `draws`: small vectorised helpers.
"""

from pipeline.synthetic.frames import TABLE_COLUMNS
from pipeline.synthetic.params import (
    CHURN_DRIVERS,
    EVENT_TYPES,
    PRIORITIES,
    SEGMENTS,
    TICKET_CATEGORIES,
    GeneratorConfig,
)
from pipeline.synthetic.simulation import generate

__all__ = [
    "CHURN_DRIVERS",
    "EVENT_TYPES",
    "PRIORITIES",
    "SEGMENTS",
    "TABLE_COLUMNS",
    "TICKET_CATEGORIES",
    "GeneratorConfig",
    "generate",
]
