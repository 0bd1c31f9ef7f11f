"""Support tickets and NPS answers (`support_tickets`, `nps_responses`).

Both are drawn from the hidden health: unhealthy accounts file more, more
urgent and slower tickets, and answer NPS surveys lower. The open urgent
tickets and the recent NPS answers they leave are what the churn hazard
observes (`pipeline.synthetic.hazard`).
"""

from __future__ import annotations

import numpy as np

from pipeline.synthetic.accounts import Accounts, State
from pipeline.synthetic.draws import Rows, business_seconds, choice_rows, sigmoid
from pipeline.synthetic.params import (
    CATEGORY_BY_PRIORITY,
    CSAT_RESPONSE_PROB,
    NPS_WINDOW_DAYS,
    PRIORITY_BASE,
    PRIORITY_HEALTH,
    RESOLUTION_MEDIAN_HOURS,
    SEATS_MEDIAN,
    TICKETS_PER_MONTH,
    WEIGHT_PER_MONTH,
)
from pipeline.synthetic.timeline import NO_DAY, SECONDS_PER_DAY, Calendar


class Support:
    """Tickets and NPS answers of one chunk of accounts.

    ``tickets`` and ``nps`` collect the rows (NPS answers of the burn-in
    months too, flagged ``emit`` false, since the hazard looks back at them);
    ``urgent`` holds every urgent ticket, emitted or not.
    """

    def __init__(self, calendar: Calendar, rng: np.random.Generator, accounts: Accounts, state: State) -> None:
        self.cal = calendar
        self.rng = rng
        self.acc = accounts
        self.state = state
        self.tickets = Rows()
        self.urgent = Rows()  # all urgent tickets, for the open-urgent driver
        self.nps = Rows()

    def simulate_tickets(self, lo: np.ndarray, hi: np.ndarray, emit: bool) -> None:
        """Tickets: more, more urgent, slower and left open when health is low."""
        rng, acc, s = self.rng, self.acc, self.state
        covered = np.flatnonzero(hi > lo)
        size = (s.seats[covered] / SEATS_MEDIAN[acc.segment[covered]]) ** 0.3
        lam = (
            TICKETS_PER_MONTH[acc.segment[covered]]
            * size
            * np.exp(-0.6 * s.health[covered])
            * self.cal.weight_between(lo[covered], hi[covered])
            / WEIGHT_PER_MONTH
        )
        a = np.repeat(covered, rng.poisson(lam))
        k = len(a)
        h = s.health[a]
        created = self.cal.sample_days(lo[a], hi[a], rng.random(k)) * SECONDS_PER_DAY
        created = created + business_seconds(rng, k)
        priority = choice_rows(rng, PRIORITY_BASE * np.exp(np.outer(h, PRIORITY_HEALTH)))
        category = choice_rows(rng, CATEGORY_BY_PRIORITY[priority])
        hours = RESOLUTION_MEDIAN_HOURS[priority] * np.exp(rng.normal(0.0, 0.8, k) - 0.3 * h)
        urgent_like = priority >= 2
        p_stuck = np.where(urgent_like, sigmoid(-3.0 - 1.2 * h), 0.02)
        stuck = rng.random(k) < p_stuck
        resolved = np.where(stuck, NO_DAY, created + (hours * 3600).astype(np.int64))
        slow = np.log(hours / RESOLUTION_MEDIAN_HOURS[priority])
        csat = np.clip(np.round(3.9 + 0.7 * h - 0.3 * slow + rng.normal(0.0, 0.8, k)), 1, 5)
        csat = np.where(rng.random(k) < CSAT_RESPONSE_PROB, csat, np.nan)
        is_urgent = priority == 3
        self.urgent.add(acc=a[is_urgent], created=created[is_urgent], resolved=resolved[is_urgent])
        if emit:
            self.tickets.add(
                acc=a,
                created=created,
                resolved=resolved,
                priority=priority,
                category=category,
                csat=csat,
            )

    def simulate_nps(self, start: int, stop: int, lo: np.ndarray, hi: np.ndarray, emit: bool) -> None:
        """Quarterly survey: a few users per account answer within three weeks."""
        rng, acc, s = self.rng, self.acc, self.state
        for wave in self.cal.nps_wave_days[(self.cal.nps_wave_days >= start) & (self.cal.nps_wave_days < stop)]:
            users = s.users(acc.provision)
            n_answers = np.minimum(rng.poisson(0.6 + 0.25 * np.sqrt(users)), users)
            a = np.repeat(np.arange(len(acc)), n_answers)
            window = min(NPS_WINDOW_DAYS, stop - int(wave))
            day = int(wave) + rng.integers(0, window, len(a))
            inside = (day >= lo[a]) & (day < hi[a])
            user = np.floor(rng.random(len(a)) * users[a]).astype(np.int64)
            a, day, user = a[inside], day[inside], user[inside]
            _, first = np.unique(a * 2**20 + user, return_index=True)
            a, day, user = a[first], day[first], user[first]
            k = len(a)
            account_mood = rng.normal(0.0, 0.7, len(acc))[a]
            score = np.clip(np.round(7.4 + 1.6 * s.health[a] + account_mood + rng.normal(0.0, 1.5, k)), 0, 10)
            second = day * SECONDS_PER_DAY + business_seconds(rng, k)
            self.nps.add(acc=a, second=second, score=score, user=user, emit=np.full(k, emit))
