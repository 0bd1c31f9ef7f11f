"""The month grid of the simulation and its date arithmetic.

All internal dates are int64 epoch days and all times int64 epoch seconds;
`NO_DAY` stands for "never" (an open end, no churn yet). Only
`pipeline.synthetic.frames` turns them into pandas types.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from pipeline.synthetic.params import BURN_IN_MONTHS, WEEKDAY_WEIGHT

NO_DAY = np.iinfo(np.int64).max // 4  # "never" as an epoch day (or second)
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Calendar:
    """Month grid of the simulation and weekday weights for drawing days."""

    end_day: int  # first day after the history (exclusive)
    window_start_day: int  # first day of the emitted history
    month_starts: np.ndarray  # grid boundaries; the first months are burn-in
    burn_in_months: int
    cum_weight: np.ndarray  # cum_weight[i] = weekday weight of grid days before i
    nps_wave_days: np.ndarray  # calendar quarter starts inside the grid

    @classmethod
    def build(cls, end: dt.date, months: int) -> Calendar:
        end_day = epoch_day(end)
        total = months + BURN_IN_MONTHS
        offsets = np.arange(-total, 1)
        starts = add_months(np.full(total + 1, end_day, dtype=np.int64), offsets)
        grid_start = int(starts[0])
        days = np.arange(grid_start, end_day)
        weights = WEEKDAY_WEIGHT[weekday(days)]
        cum = np.concatenate([[0.0], np.cumsum(weights)])
        first_month = np.datetime64(int(grid_start), "D").astype("M8[M]")
        quarter_months = np.arange(first_month - (first_month.astype(int) % 3), np.datetime64(end, "M") + 1, 3)
        waves = quarter_months.astype("M8[D]").astype(np.int64)
        waves = waves[(waves >= grid_start) & (waves < end_day)]
        return cls(
            end_day=end_day,
            window_start_day=int(starts[BURN_IN_MONTHS]),
            month_starts=starts,
            burn_in_months=BURN_IN_MONTHS,
            cum_weight=cum,
            nps_wave_days=waves,
        )

    @property
    def grid_start_day(self) -> int:
        return int(self.month_starts[0])

    @property
    def n_months(self) -> int:
        return len(self.month_starts) - 1

    def weight_between(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Total weekday weight of days lo <= d < hi (epoch days inside the grid)."""
        g = self.grid_start_day
        return self.cum_weight[hi - g] - self.cum_weight[lo - g]

    def sample_days(self, lo: np.ndarray, hi: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Days in [lo, hi) drawn with weekday weights, from uniforms u."""
        g = self.grid_start_day
        c_lo = self.cum_weight[lo - g]
        target = c_lo + u * (self.cum_weight[hi - g] - c_lo)
        idx = np.searchsorted(self.cum_weight, target, side="right") - 1
        return np.clip(idx + g, lo, hi - 1)


def epoch_day(day: dt.date) -> int:
    return int(np.datetime64(day, "D").astype(np.int64))


def weekday(days: np.ndarray) -> np.ndarray:
    """Monday = 0 for epoch days (1970-01-01 was a Thursday)."""
    return (days + 3) % 7


def add_months(days: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Epoch days moved by whole calendar months, clipping to the month's last day."""
    d = np.asarray(days, dtype=np.int64).astype("M8[D]")
    month = d.astype("M8[M]")
    day_of_month = (d - month.astype("M8[D]")).astype(np.int64)
    target = month + np.asarray(months, dtype=np.int64).astype("m8[M]")
    last = (target + np.timedelta64(1, "M")).astype("M8[D]").astype(np.int64) - 1
    return np.minimum(target.astype("M8[D]").astype(np.int64) + day_of_month, last)


def full_terms_before(created: np.ndarray, term: np.ndarray, day: int) -> np.ndarray:
    """Number of whole contract terms between `created` and the term covering `day`."""
    day_month = np.datetime64(int(day), "D").astype("M8[M]").astype(np.int64)
    months = day_month - created.astype("M8[D]").astype("M8[M]").astype(np.int64)
    k = np.maximum(months // term, 0)
    k = np.where(add_months(created, k * term) > day, k - 1, k)
    k = np.where(add_months(created, (k + 1) * term) <= day, k + 1, k)
    return np.where(created < day, np.maximum(k, 0), 0)
