"""`generate`: the month loop over each chunk of accounts.

Every chunk draws from its own ``np.random.default_rng([seed, chunk])`` and
the order of the draws below is part of the data: reordering two steps of the
month loop changes every number after them (the same statistics, other data).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd

from pipeline.synthetic.accounts import Book, draw_accounts
from pipeline.synthetic.activity import Activity, engagement
from pipeline.synthetic.frames import TABLE_COLUMNS, chunk_frames
from pipeline.synthetic.hazard import churn_probabilities
from pipeline.synthetic.params import WIND_DOWN, GeneratorConfig
from pipeline.synthetic.support import Support
from pipeline.synthetic.timeline import Calendar

logger = logging.getLogger(__package__)  # "pipeline.synthetic", as the docs say


def generate(config: GeneratorConfig) -> Iterator[tuple[str, pd.DataFrame]]:
    """Yield (table_name, chunk) pairs for accounts, subscriptions, usage_events,
    support_tickets, nps_responses, chunk by chunk of accounts.

    Every chunk yields all five tables in that order (a frame may be empty).
    Columns are exactly the contract's, in contract order. The caller appends
    each chunk to the warehouse table of that name.
    """
    end = config.end_date if config.end_date is not None else dt.date.today()
    calendar = Calendar.build(end, config.months)
    n_chunks = -(-config.n_accounts // config.chunk_accounts)
    logger.info(
        "generating %d accounts x %d months ending %s in %d chunk(s)",
        config.n_accounts,
        config.months,
        end.isoformat(),
        n_chunks,
    )
    id_width = max(6, len(str(config.n_accounts)))
    for chunk in range(n_chunks):
        first = chunk * config.chunk_accounts
        numbers = np.arange(first, min(first + config.chunk_accounts, config.n_accounts)) + 1
        rng = np.random.default_rng([config.seed, chunk])
        tables = ChunkSimulation(calendar, rng, numbers, config.seed, id_width).run()
        logger.debug(
            "chunk %d/%d: %s",
            chunk + 1,
            n_chunks,
            ", ".join(f"{name}={len(frame)}" for name, frame in tables.items()),
        )
        for name in TABLE_COLUMNS:
            yield name, tables[name]


class ChunkSimulation:
    """Simulates one chunk of accounts over the month grid and builds its frames."""

    def __init__(
        self,
        calendar: Calendar,
        rng: np.random.Generator,
        numbers: np.ndarray,
        seed: int,
        id_width: int,
    ) -> None:
        self.cal = calendar
        self.accounts = draw_accounts(rng, calendar, numbers, id_width)
        self.book = Book(calendar, rng, self.accounts)
        self.activity = Activity(calendar, rng, self.accounts, self.book.state, seed)
        self.support = Support(calendar, rng, self.accounts, self.book.state)

    def run(self) -> dict[str, pd.DataFrame]:
        book, state = self.book, self.book.state
        for m in range(self.cal.n_months):
            start, stop = int(self.cal.month_starts[m]), int(self.cal.month_starts[m + 1])
            book.apply_winbacks(start, stop)
            # churn needs two months of observed signals: the first months only renew
            p_churn = None
            if m >= max(2, self.cal.burn_in_months):
                p_churn = churn_probabilities(m, start, self.accounts, state, self.activity, self.support)
            book.end_periods(stop, p_churn)
            book.update_health(m)
            lo = np.maximum(start, state.cover_start)
            hi = np.maximum(np.minimum(stop, state.cover_end), lo)
            leaving = (state.cover_end >= start) & (state.cover_end < stop)
            usage_level = engagement(state.health) * np.where(leaving, WIND_DOWN, 1.0)
            emit = m >= self.cal.burn_in_months
            self.activity.simulate(m, start, lo, hi, usage_level, emit)
            self.support.simulate_tickets(lo, hi, emit)
            self.support.simulate_nps(start, stop, lo, hi, emit)
        book.close_open_subscriptions()
        return chunk_frames(self)
