"""Product usage: per-user active days and the events on them (`usage_events`).

Usage intensity follows the hidden health through `engagement`; the monthly
active user-days and active users it records are what the churn hazard
observes (`pipeline.synthetic.hazard`).
"""

from __future__ import annotations

import numpy as np

from pipeline.synthetic.accounts import Accounts, State
from pipeline.synthetic.draws import Rows, business_seconds, group_arange, hash_uniform, sigmoid
from pipeline.synthetic.params import (
    EVENT_EXTRA_QUANTITY,
    EVENT_HEALTH_POWER,
    EVENT_PROB,
    EVENT_TYPES,
    EXTRA_ACTIVE_DAYS,
    EXTRA_DAYS_SIZE_POWER,
    MONTHLY_ACTIVE_PROB,
    SEATS_MEDIAN,
    SYSTEM_CALLS_PER_DAY,
    WEIGHT_PER_MONTH,
)
from pipeline.synthetic.timeline import SECONDS_PER_DAY, Calendar


def engagement(health: np.ndarray) -> np.ndarray:
    """Usage intensity multiplier from health: 1 at health 0, between 0 and 2."""
    return 2.0 * sigmoid(health)


class Activity:
    """Usage of one chunk of accounts; ``usage`` collects the event rows.

    ``active_user_days``, ``active_users`` and ``covered_days`` are (month,
    account) matrices of what each month showed, emitted or not.
    """

    def __init__(
        self,
        calendar: Calendar,
        rng: np.random.Generator,
        accounts: Accounts,
        state: State,
        seed: int,
    ) -> None:
        self.cal = calendar
        self.rng = rng
        self.acc = accounts
        self.state = state
        self.seed = seed
        n, months = len(accounts), calendar.n_months
        self.active_user_days = np.zeros((months, n))
        self.active_users = np.zeros((months, n))
        self.covered_days = np.zeros((months, n))
        self.usage = Rows()

    def simulate(
        self,
        m: int,
        start: int,
        lo: np.ndarray,
        hi: np.ndarray,
        engagement: np.ndarray,
        emit: bool,
    ) -> None:
        """Per-user active days (Poisson, weekday-weighted) and the event types used on them."""
        rng, acc, s = self.rng, self.acc, self.state
        covered = np.flatnonzero(hi > lo)
        users = s.users(acc.provision)[covered]
        s.max_users[covered] = np.maximum(s.max_users[covered], users)
        pair_acc = np.repeat(covered, users)
        pair_user = group_arange(users)
        # a user's own activity level, fixed over time (power users vs occasional users)
        level = hash_uniform(acc.number[pair_acc], pair_user, self.seed)
        fraction = np.minimum(self.cal.weight_between(lo, hi) / WEIGHT_PER_MONTH, 1.0)
        e, f = engagement[pair_acc], fraction[pair_acc]
        p_active = np.minimum(MONTHLY_ACTIVE_PROB * e * (0.4 + 1.2 * level) * f, 0.97)
        active = np.flatnonzero(rng.random(len(pair_acc)) < p_active)
        extra_days = EXTRA_ACTIVE_DAYS * (s.seats / SEATS_MEDIAN[0]) ** EXTRA_DAYS_SIZE_POWER
        lam = extra_days[pair_acc[active]] * e[active] * (0.5 + level[active]) * f[active]
        draws = np.repeat(active, 1 + rng.poisson(lam))
        a = pair_acc[draws]
        days = self.cal.sample_days(lo[a], hi[a], rng.random(len(draws)))
        key = np.unique(draws.astype(np.int64) * 32 + (days - start))
        pair, day = key // 32, start + key % 32
        row_acc = pair_acc[pair]
        n = len(acc)
        self.active_user_days[m] = np.bincount(row_acc, minlength=n)
        self.active_users[m] = np.bincount(pair_acc[np.unique(pair)], minlength=n)
        self.covered_days[m] = hi - lo
        if emit:
            self._emit_user_events(row_acc, pair_user[pair], day, engagement)
            self._emit_system_calls(covered, lo, hi, engagement)

    def _emit_user_events(self, acc: np.ndarray, user: np.ndarray, day: np.ndarray, engagement: np.ndarray) -> None:
        """One row per (user, active day, event type used); breadth grows with health."""
        rng = self.rng
        e = engagement[acc]
        for t, prob in enumerate(EVENT_PROB):
            if prob >= 1.0:
                used = np.ones(len(acc), dtype=bool)
            else:
                p = np.minimum(prob * e ** EVENT_HEALTH_POWER[t], 0.95)
                used = rng.random(len(acc)) < p
            k = int(used.sum())
            qty = 1 + rng.poisson(EVENT_EXTRA_QUANTITY[t] * np.sqrt(e[used]))
            self.usage.add(
                acc=acc[used],
                user=user[used],
                second=day[used] * SECONDS_PER_DAY + business_seconds(rng, k),
                type=np.full(k, t, dtype=np.int8),
                quantity=qty,
            )

    def _emit_system_calls(self, covered: np.ndarray, lo: np.ndarray, hi: np.ndarray, engagement: np.ndarray) -> None:
        """api_call rows without a user, from integrations, on any day of the week."""
        rng = self.rng
        idx = covered[self.acc.has_integration[covered]]
        span = hi[idx] - lo[idx]
        lam = SYSTEM_CALLS_PER_DAY * np.minimum(engagement[idx], 1.2) * span
        draws = np.repeat(np.arange(len(idx)), rng.poisson(lam))
        day = lo[idx][draws] + np.floor(rng.random(len(draws)) * span[draws]).astype(np.int64)
        key = np.unique(draws.astype(np.int64) * 32 + (day - lo[idx][draws]))
        which = key // 32
        a = idx[which]
        day = lo[a] + key % 32
        k = len(a)
        self.usage.add(
            acc=a,
            user=np.full(k, -1),
            second=day * SECONDS_PER_DAY + rng.integers(0, SECONDS_PER_DAY, k),
            type=np.full(k, EVENT_TYPES.index("api_call"), dtype=np.int8),
            quantity=1 + rng.poisson(150.0 * np.minimum(engagement[a], 1.5)),
        )
