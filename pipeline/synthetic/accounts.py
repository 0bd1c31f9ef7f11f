"""Accounts and their contracts: who the accounts of a chunk are, their
hidden health, and the subscriptions (one row per billing period) that
renew, resize, churn and come back month by month.

Whether a period end churns is decided in `pipeline.synthetic.hazard`; this
module carries the decision out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.synthetic.draws import Rows, business_seconds, choice_rows, format_ids, group_arange
from pipeline.synthetic.params import (
    AUTO_RENEW_PROB,
    CHAMPION_LEFT_DROP,
    CHAMPION_LEFT_PROB,
    CSM_NAMES,
    CSM_PROB,
    GOOD_NEWS_LIFT,
    GOOD_NEWS_PROB,
    GRACE_DAYS,
    HEALTH_MEAN_SD,
    HEALTH_OFFSET,
    HEALTH_PHI,
    HEALTH_SIGMA,
    INDUSTRIES,
    INDUSTRY_PROB,
    INTEGRATION_PROB,
    LATE_RENEWAL_PROB,
    MAX_TENURE_DAYS,
    MRR_MAX,
    MRR_MIN,
    NAME_FIRST,
    NAME_SECOND,
    NAME_SUFFIX,
    NEW_ACCOUNT_SHARE_PER_MONTH,
    PLANS,
    PRICE_PER_SEAT,
    REGION_PROB,
    REGIONS,
    SEATS_MAX,
    SEATS_MEDIAN,
    SEATS_MIN,
    SEATS_SIGMA,
    SEGMENT_SHARE,
    TERM_MONTHS,
    TERM_PROB,
    WINBACK_PROB,
)
from pipeline.synthetic.timeline import NO_DAY, Calendar, add_months, full_terms_before

# --------------------------------------------------------------------------
# Accounts (static attributes of one chunk)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Accounts:
    number: np.ndarray  # global 1-based account number
    account_id: np.ndarray  # object str
    segment: np.ndarray  # 0 SMB, 1 Mid-Market, 2 Enterprise
    created_day: np.ndarray  # epoch day
    created_second: np.ndarray  # seconds into the created day
    term_index: np.ndarray  # 0 monthly, 1 annual, 2 two-year
    auto_renew: np.ndarray
    health_mean: np.ndarray
    provision: np.ndarray  # users provisioned per seat
    has_integration: np.ndarray
    seats: np.ndarray  # initial seats
    mrr: np.ndarray  # initial MRR
    account_name: np.ndarray
    industry: np.ndarray
    region: np.ndarray
    csm_owner: np.ndarray

    def __len__(self) -> int:
        return len(self.number)


def draw_accounts(rng: np.random.Generator, calendar: Calendar, numbers: np.ndarray, id_width: int) -> Accounts:
    n = len(numbers)
    segment = rng.choice(3, size=n, p=SEGMENT_SHARE)
    size_z = rng.normal(size=n)
    seats = np.clip(
        np.round(SEATS_MEDIAN[segment] * np.exp(SEATS_SIGMA[segment] * size_z)),
        SEATS_MIN[segment],
        SEATS_MAX[segment],
    ).astype(np.int64)
    price = PRICE_PER_SEAT[segment] * np.exp(rng.normal(0.0, 0.3, n))
    mrr = np.round(np.clip(seats * price, MRR_MIN[segment], MRR_MAX[segment]), 2)
    term_index = choice_rows(rng, TERM_PROB[segment])
    auto_renew = rng.random(n) < AUTO_RENEW_PROB[term_index]

    window_start, end = calendar.window_start_day, calendar.end_day
    months = calendar.n_months - calendar.burn_in_months
    is_new = rng.random(n) < min(0.5, NEW_ACCOUNT_SHARE_PER_MONTH * months)
    tenure = 1 + np.floor(MAX_TENURE_DAYS * rng.random(n) ** 1.4).astype(np.int64)
    new_day = window_start + np.floor(rng.random(n) * (end - window_start)).astype(np.int64)
    created_day = np.where(is_new, new_day, window_start - tenure)

    has_csm = rng.random(n) < CSM_PROB[segment]
    csm = np.where(has_csm, CSM_NAMES[rng.integers(0, len(CSM_NAMES), n)], None)
    name = (
        pd.Series(NAME_FIRST[rng.integers(0, len(NAME_FIRST), n)]).str.replace("-", " ")
        + " "
        + NAME_SECOND[rng.integers(0, len(NAME_SECOND), n)]
        + " "
        + NAME_SUFFIX[rng.integers(0, len(NAME_SUFFIX), n)]
    ).to_numpy(dtype=object)
    return Accounts(
        number=numbers,
        account_id=format_ids(np.full(n, "A", dtype=object), numbers, id_width),
        segment=segment,
        created_day=created_day,
        created_second=business_seconds(rng, n),
        term_index=term_index,
        auto_renew=auto_renew,
        health_mean=HEALTH_OFFSET[segment] + rng.normal(0.0, HEALTH_MEAN_SD, n),
        provision=rng.uniform(0.55, 1.0, n),
        has_integration=rng.random(n) < INTEGRATION_PROB[segment],
        seats=seats,
        mrr=mrr,
        account_name=name,
        industry=INDUSTRIES[rng.choice(len(INDUSTRIES), size=n, p=INDUSTRY_PROB)],
        region=REGIONS[rng.choice(len(REGIONS), size=n, p=REGION_PROB)],
        csm_owner=csm,
    )


def plan_tier(segment: np.ndarray, mrr: np.ndarray) -> np.ndarray:
    """Plan tier from segment and MRR."""
    idx = np.where(
        segment == 0,
        np.where(mrr < 150, 0, 1),
        np.where(segment == 1, np.where(mrr < 1500, 1, 2), 3),
    )
    return PLANS[idx]


# --------------------------------------------------------------------------
# The state that evolves month by month
# --------------------------------------------------------------------------


@dataclass
class State:
    """Per-account simulation state that evolves month by month.

    A subscription is a run of billing periods of ``term_months`` from
    ``anchor``; the current period is number ``period`` (so it ends at
    ``anchor + (period + 1) * term_months``). One row is emitted per period.
    """

    health: np.ndarray
    champion_left_months: np.ndarray  # months of health drop still to come
    term_index: np.ndarray  # 0 monthly, 1 annual, 2 two-year
    auto_renew: np.ndarray
    seats: np.ndarray
    mrr: np.ndarray
    anchor: np.ndarray  # first day of the current run of periods
    period: np.ndarray  # index of the current period since the anchor
    sub_start: np.ndarray  # start of the current period (row)
    term_end: np.ndarray  # end of the current period (row), exclusive
    cover_start: np.ndarray  # start of the current coverage interval
    cover_end: np.ndarray  # churn day of the current interval (NO_DAY while active)
    churn_days: np.ndarray  # (n, 2): first and second churn day
    winback_day: np.ndarray
    max_users: np.ndarray

    def users(self, provision: np.ndarray) -> np.ndarray:
        return np.maximum(1, np.round(self.seats * provision)).astype(np.int64)

    def term_months(self, idx: np.ndarray | slice = slice(None)) -> np.ndarray:
        return TERM_MONTHS[self.term_index[idx]]


class Book:
    """The accounts of one chunk as they evolve: hidden health and contracts.

    ``state`` is shared with the activity and support simulations (they read
    health, seats and users); ``subs`` collects one row per billing period.
    """

    def __init__(self, calendar: Calendar, rng: np.random.Generator, accounts: Accounts) -> None:
        self.cal = calendar
        self.rng = rng
        self.acc = accounts
        self.subs = Rows()
        self.state = self._initial_state()

    def _initial_state(self) -> State:
        """Accounts older than the grid are mid-way through a period at its start."""
        acc, rng, grid_start = self.acc, self.rng, self.cal.grid_start_day
        n = len(acc)
        term = TERM_MONTHS[acc.term_index]
        periods_done = full_terms_before(acc.created_day, term, grid_start)
        self._add_prior_periods(periods_done, term)
        return State(
            health=acc.health_mean + rng.normal(0.0, _stationary_sd(), n),
            champion_left_months=np.zeros(n, dtype=np.int64),
            term_index=acc.term_index.copy(),
            auto_renew=acc.auto_renew.copy(),
            seats=acc.seats.astype(np.float64),
            mrr=acc.mrr.astype(np.float64),
            anchor=acc.created_day.copy(),
            period=periods_done,
            sub_start=add_months(acc.created_day, periods_done * term),
            term_end=add_months(acc.created_day, (periods_done + 1) * term),
            cover_start=acc.created_day.copy(),
            cover_end=np.full(n, NO_DAY, dtype=np.int64),
            churn_days=np.full((n, 2), NO_DAY, dtype=np.int64),
            winback_day=np.full(n, NO_DAY, dtype=np.int64),
            max_users=np.zeros(n, dtype=np.int64),
        )

    def _add_prior_periods(self, periods_done: np.ndarray, term: np.ndarray) -> None:
        """Periods completed before the grid starts; contracts had a 4% yearly uplift."""
        idx = np.repeat(np.arange(len(self.acc)), periods_done)
        j = group_arange(periods_done)
        t = term[idx]
        start = add_months(self.acc.created_day[idx], j * t)
        end = add_months(self.acc.created_day[idx], (j + 1) * t)
        years_ago = np.where(t >= 12, (periods_done[idx] - j) * t // 12, 0)
        uplift = 0.96 ** years_ago.astype(np.float64)
        self._close_rows(idx, start, end, self.acc.mrr[idx] * uplift, self.acc.seats[idx])

    def _close_rows(
        self,
        idx: np.ndarray,
        start: np.ndarray,
        end: np.ndarray,
        mrr: np.ndarray,
        seats: np.ndarray,
        auto_renew: np.ndarray | None = None,
    ) -> None:
        if auto_renew is None:
            auto_renew = self.acc.auto_renew[idx]
        self.subs.add(acc=idx, start=start, end=end, mrr=np.round(mrr, 2), seats=seats, auto_renew=auto_renew)

    def _close_current_rows(self, idx: np.ndarray) -> None:
        s = self.state
        self._close_rows(idx, s.sub_start[idx], s.term_end[idx], s.mrr[idx], s.seats[idx], s.auto_renew[idx])

    # ---- hidden health -----------------------------------------------------

    def update_health(self, m: int) -> None:
        """AR(1) step around the account mean, plus champion-left and good-news shocks."""
        s, rng, n = self.state, self.rng, len(self.acc)
        if m > 0:
            s.health = (
                self.acc.health_mean + HEALTH_PHI * (s.health - self.acc.health_mean) + rng.normal(0.0, HEALTH_SIGMA, n)
            )
        new_shock = rng.random(n) < CHAMPION_LEFT_PROB
        s.champion_left_months = np.where(new_shock, 2, s.champion_left_months)
        s.health = s.health - CHAMPION_LEFT_DROP * (s.champion_left_months > 0)
        s.champion_left_months = np.maximum(s.champion_left_months - 1, 0)
        s.health = s.health + GOOD_NEWS_LIFT * (rng.random(n) < GOOD_NEWS_PROB)

    # ---- churn, renewals, expansions ---------------------------------------

    def end_periods(self, stop: int, p_churn: tuple[np.ndarray, np.ndarray] | None) -> None:
        """Every period ending before ``stop`` renews or churns.

        ``p_churn`` holds the churn probabilities at a monthly and at an annual
        period end (`pipeline.synthetic.hazard`); None (the first months)
        renews them all.
        """
        s = self.state
        for _ in range(3):  # a short grid month can hold two monthly period ends
            idx = np.flatnonzero((s.cover_end >= NO_DAY) & (s.term_end < stop))
            if len(idx) == 0:
                break
            if p_churn is not None:
                p_monthly, p_renewal = p_churn
                p = np.where(s.term_index[idx] == 0, p_monthly[idx], p_renewal[idx])
                churn = self.rng.random(len(idx)) < p
            else:
                churn = np.zeros(len(idx), dtype=bool)
            self._churn(idx[churn])
            self._renew(idx[~churn])

    def _churn(self, idx: np.ndarray) -> None:
        """The period ends and is not renewed; a few accounts come back after > 60 days."""
        s, rng = self.state, self.rng
        self._close_current_rows(idx)
        day = s.term_end[idx]
        s.cover_end[idx] = day
        first = s.churn_days[idx, 0] >= NO_DAY
        s.churn_days[idx, 0] = np.where(first, day, s.churn_days[idx, 0])
        s.churn_days[idx, 1] = np.where(first, s.churn_days[idx, 1], day)
        comes_back = first & (rng.random(len(idx)) < WINBACK_PROB)
        gap = rng.integers(2 * GRACE_DAYS + 1, 240, len(idx))
        s.winback_day[idx] = np.where(comes_back, day + gap, NO_DAY)

    def apply_winbacks(self, start: int, stop: int) -> None:
        """Won-back accounts restart on a monthly plan with fewer seats."""
        s, rng = self.state, self.rng
        idx = np.flatnonzero((s.winback_day >= start) & (s.winback_day < stop))
        if len(idx) == 0:
            return
        day = s.winback_day[idx]
        shrink = rng.uniform(0.5, 1.0, len(idx))
        s.seats[idx] = np.maximum(1, np.round(s.seats[idx] * shrink))
        s.mrr[idx] = np.round(s.mrr[idx] * shrink, 2)
        s.term_index[idx] = 0
        s.anchor[idx] = day
        s.period[idx] = 0
        s.sub_start[idx] = day
        s.term_end[idx] = add_months(day, np.ones(len(idx), dtype=np.int64))
        s.cover_start[idx] = day
        s.cover_end[idx] = NO_DAY
        s.auto_renew[idx] = True
        s.winback_day[idx] = NO_DAY
        s.health[idx] = self.acc.health_mean[idx] + rng.normal(0.0, 0.3, len(idx))

    def _renew(self, idx: np.ndarray) -> None:
        """Start the next period: maybe resized (expansion / downgrade), annual ones maybe late."""
        s, rng = self.state, self.rng
        self._close_current_rows(idx)
        h = s.health[idx]
        annual = s.term_index[idx] > 0
        u = rng.random(len(idx))
        p_expand = np.where(annual, np.minimum(0.25 * np.exp(0.5 * h), 0.6), np.minimum(0.02 * np.exp(0.7 * h), 0.1))
        p_downgrade = np.where(
            annual,
            np.minimum(0.12 * np.exp(-0.6 * h), 0.5),
            np.minimum(0.012 * np.exp(-0.7 * h), 0.1),
        )
        expand = u < p_expand
        downgrade = ~expand & (u < p_expand + p_downgrade)
        factor = np.where(
            expand,
            rng.uniform(1.1, 1.6, len(idx)),
            np.where(downgrade, rng.uniform(0.55, 0.9, len(idx)), 1.0),
        )
        uplift = np.where(annual & ~expand & ~downgrade, 1.0 + rng.uniform(0.0, 0.06, len(idx)), 1.0)
        self._resize(idx, factor, uplift)
        p_late = np.where(annual, LATE_RENEWAL_PROB + 0.1 * (h < -0.5), 0.0)
        late = rng.random(len(idx)) < p_late
        gap = np.where(late, rng.integers(1, GRACE_DAYS, len(idx)), 0)
        new_start = s.term_end[idx] + gap
        s.anchor[idx] = np.where(late, new_start, s.anchor[idx])
        s.period[idx] = np.where(late, 0, s.period[idx] + 1)
        s.sub_start[idx] = new_start
        s.term_end[idx] = add_months(s.anchor[idx], (s.period[idx] + 1) * s.term_months(idx))

    def _resize(self, idx: np.ndarray, seat_factor: np.ndarray, price_change: np.ndarray) -> None:
        """Scale seats (at least one seat change when the factor is not 1) and MRR with them."""
        s = self.state
        old = s.seats[idx]
        new = np.round(old * seat_factor)
        new = np.where(seat_factor > 1, np.maximum(new, old + 1), new)
        new = np.where(seat_factor < 1, np.minimum(new, old - 1), new)
        new = np.maximum(new, 1)
        s.mrr[idx] = np.round(s.mrr[idx] * new / old * price_change, 2)
        s.seats[idx] = new

    def close_open_subscriptions(self) -> None:
        """Periods still running at the end of the history (they end after it).

        A late renewal that starts on or after the end of the history is not
        yet signed, so it is not emitted.
        """
        s = self.state
        idx = np.flatnonzero((s.cover_end >= NO_DAY) & (s.sub_start < self.cal.end_day))
        self._close_current_rows(idx)


def _stationary_sd() -> float:
    return HEALTH_SIGMA / float(np.sqrt(1.0 - HEALTH_PHI**2))
