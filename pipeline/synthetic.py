"""Synthetic B2B SaaS data for the churn pipeline (`churn generate`).

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
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import pandas as pd

from features.contract import INPUT_TABLES

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------
# Public constants
# --------------------------------------------------------------------------

TABLE_COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {name: spec.column_names for name, spec in INPUT_TABLES.items()}
)
"""Tables in the order `generate` yields them, with their contract columns."""

SEGMENTS: tuple[str, ...] = ("SMB", "Mid-Market", "Enterprise")
EVENT_TYPES: tuple[str, ...] = (
    "login",
    "dashboard_view",
    "report_created",
    "export",
    "integration_sync",
    "invite_sent",
    "api_call",
)
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
TICKET_CATEGORIES: tuple[str, ...] = ("bug", "billing", "how-to", "outage", "feature_request")

CHURN_DRIVERS: Mapping[str, float] = MappingProxyType(
    {
        # log-odds added per unit of the driver at a churn decision
        "usage_decline": 2.0,  # 1 - (active user-days last month / month before), clipped to [0, 1]
        "low_seat_utilisation": 1.8,  # (0.3 - monthly active users / seats) / 0.3, in [0, 1]
        "open_urgent_tickets": 0.8,  # urgent tickets open at the decision, capped at 2
        "nps_detractor": 1.0,  # mean NPS answer of the last 120 days <= 6
        "nps_promoter": -0.5,  # mean NPS answer of the last 120 days >= 9
        "tenure_under_6_months": 0.9,
        "tenure_6_to_12_months": 0.3,
        "no_auto_renew_at_renewal": 0.4,  # annual / multi-year contracts only
        "latent_health": -0.4,  # per unit of the hidden health (unobserved part)
        "segment_mid_market": -0.2,
        "segment_enterprise": -0.5,
        "base_monthly_contract": -5.7,  # at each monthly period end (monthly plans)
        "base_annual_renewal": -3.0,  # at each term end (annual and two-year contracts)
    }
)
"""True churn-hazard coefficients (logit scale); see docs/synthetic-data.md."""

# --------------------------------------------------------------------------
# Model parameters (internal)
# --------------------------------------------------------------------------

_SEGMENT_SHARE = np.array([0.6, 0.3, 0.1])
_SEATS_MEDIAN = np.array([8.0, 50.0, 220.0])
_SEATS_SIGMA = np.array([0.55, 0.5, 0.6])
_SEATS_MIN = np.array([3, 20, 100])
_SEATS_MAX = np.array([25, 150, 1000])
_PRICE_PER_SEAT = np.array([20.0, 28.0, 50.0])
_MRR_MIN = np.array([50.0, 500.0, 5000.0])
_MRR_MAX = np.array([500.0, 5000.0, 50000.0])
# contract term per segment: P(monthly), P(12 months), P(24 months)
_TERM_PROB = np.array([[0.85, 0.15, 0.0], [0.40, 0.60, 0.0], [0.0, 0.80, 0.20]])
_TERM_MONTHS = np.array([1, 12, 24])
_AUTO_RENEW_PROB = np.array([0.95, 0.5, 0.3])  # by term index
_CSM_PROB = np.array([0.15, 0.85, 1.0])
_INTEGRATION_PROB = np.array([0.10, 0.30, 0.60])
_HEALTH_OFFSET = np.array([-0.1, 0.1, 0.3])
_TICKETS_PER_MONTH = np.array([0.3, 0.8, 2.0])

_HEALTH_PHI = 0.8
_HEALTH_SIGMA = 0.35
_HEALTH_MEAN_SD = 0.45
_CHAMPION_LEFT_PROB = 0.025  # per month; health drops for two months
_CHAMPION_LEFT_DROP = 0.6
_GOOD_NEWS_PROB = 0.015
_GOOD_NEWS_LIFT = 0.4

_MONTHLY_ACTIVE_PROB = 0.5  # P(a provisioned user is active in a month) at engagement 1
_EXTRA_ACTIVE_DAYS = 2.2  # extra active days per active user and month, 8-seat account
_EXTRA_DAYS_SIZE_POWER = -0.7  # users of larger accounts use the product less often
_WEEKDAY_WEIGHT = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.12, 0.08])  # Mon..Sun
_WEIGHT_PER_MONTH = 365.25 / 12 / 7 * _WEEKDAY_WEIGHT.sum()
_WIND_DOWN = 0.4  # engagement multiplier in the month an account leaves
_EVENT_PROB = np.array([1.0, 0.3, 0.15, 0.07, 0.03, 0.02, 0.03])
_EVENT_HEALTH_POWER = np.array([0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 0.5])
_EVENT_EXTRA_QUANTITY = np.array([0.3, 2.0, 0.6, 0.4, 1.0, 0.3, 15.0])
_SYSTEM_CALLS_PER_DAY = 0.8

_PRIORITY_BASE = np.array([0.30, 0.45, 0.17, 0.08])
_PRIORITY_HEALTH = np.array([0.3, 0.0, -0.4, -0.9])  # log-weight per unit of health
_CATEGORY_BY_PRIORITY = np.array(
    [  # bug, billing, how-to, outage, feature_request
        [0.15, 0.20, 0.40, 0.00, 0.25],
        [0.35, 0.20, 0.30, 0.02, 0.13],
        [0.60, 0.10, 0.10, 0.15, 0.05],
        [0.45, 0.05, 0.00, 0.50, 0.00],
    ]
)
_RESOLUTION_MEDIAN_HOURS = np.array([120.0, 48.0, 20.0, 4.0])
_CSAT_RESPONSE_PROB = 0.55

_NPS_WINDOW_DAYS = 21
_NPS_LOOKBACK_DAYS = 120
_BURN_IN_MONTHS = 2
_GRACE_DAYS = 30
_WINBACK_PROB = 0.04
_LATE_RENEWAL_PROB = 0.12
_NEW_ACCOUNT_SHARE_PER_MONTH = 0.025
_MAX_TENURE_DAYS = 3 * 365
_NO_DAY = np.iinfo(np.int64).max // 4  # "never" as an epoch day
_TEXT_DTYPE = pd.Series(["text"]).dtype  # str with pandas >= 3, object before
_TEXT_COLUMNS = frozenset(
    {
        "account_id",
        "account_name",
        "segment",
        "industry",
        "region",
        "csm_owner",
        "subscription_id",
        "plan",
        "event_type",
        "user_id",
        "ticket_id",
        "priority",
        "category",
    }
)
_SECONDS_PER_DAY = 86_400

_INDUSTRIES = np.array(
    [
        "Software",
        "Financial Services",
        "Healthcare",
        "Retail",
        "Manufacturing",
        "Education",
        "Media",
        "Logistics",
    ],
    dtype=object,
)
_INDUSTRY_PROB = np.array([0.22, 0.14, 0.12, 0.12, 0.12, 0.10, 0.09, 0.09])
_REGIONS = np.array(["North America", "EMEA", "APAC", "LATAM"], dtype=object)
_REGION_PROB = np.array([0.45, 0.32, 0.15, 0.08])
_CSM_NAMES = np.array(
    [
        "Alice Moreau",
        "Ben Okafor",
        "Chen Wei",
        "Dana Kowalski",
        "Elena Rossi",
        "Farid Haddad",
        "Grace Lindqvist",
        "Hiro Tanaka",
    ],
    dtype=object,
)
_NAME_FIRST = np.array(
    "Acme Northwind Globex Initech Umbrella Vandelay Hooli Soylent Tyrell Aperture "
    "Blue-Sky Red-Rock Silverlake Pioneer Summit Harbor Evergreen Quantum Nimbus "
    "Atlas Beacon Cobalt Delta Ember Falcon Granite Horizon Ironwood Juniper".split(),
    dtype=object,
)
_NAME_SECOND = np.array(
    "Analytics Logistics Health Systems Labs Foods Energy Partners Media Robotics "
    "Capital Retail Works Dynamics Networks Studios".split(),
    dtype=object,
)
_NAME_SUFFIX = np.array(["Inc", "Ltd", "GmbH", "LLC", "Group", "Co", "SA", "BV"], dtype=object)


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. The history covers ``months`` months ending at ``end_date``."""

    n_accounts: int = 2000
    months: int = 12  # length of the history ending at end_date
    seed: int = 42
    end_date: dt.date | None = None  # None -> date.today() when generate() starts
    chunk_accounts: int = 5000  # accounts per chunk, bounds memory

    def __post_init__(self) -> None:
        if self.n_accounts < 1:
            raise ValueError("n_accounts must be >= 1")
        if self.months < 1:
            raise ValueError("months must be >= 1")
        if self.chunk_accounts < 1:
            raise ValueError("chunk_accounts must be >= 1")
        if self.seed < 0:
            raise ValueError("seed must be >= 0")


def generate(config: GeneratorConfig) -> Iterator[tuple[str, pd.DataFrame]]:
    """Yield (table_name, chunk) pairs for accounts, subscriptions, usage_events,
    support_tickets, nps_responses, chunk by chunk of accounts.

    Every chunk yields all five tables in that order (a frame may be empty).
    Columns are exactly the contract's, in contract order. The caller appends
    each chunk to the warehouse table of that name.
    """
    end = config.end_date if config.end_date is not None else dt.date.today()
    calendar = _Calendar.build(end, config.months)
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
        tables = _ChunkSimulation(calendar, rng, numbers, config.seed, id_width).run()
        logger.debug(
            "chunk %d/%d: %s",
            chunk + 1,
            n_chunks,
            ", ".join(f"{name}={len(frame)}" for name, frame in tables.items()),
        )
        for name in TABLE_COLUMNS:
            yield name, tables[name]


# --------------------------------------------------------------------------
# Calendar: all internal dates are int64 epoch days
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Calendar:
    """Month grid of the simulation and weekday weights for drawing days."""

    end_day: int  # first day after the history (exclusive)
    window_start_day: int  # first day of the emitted history
    month_starts: np.ndarray  # grid boundaries; the first months are burn-in
    burn_in_months: int
    cum_weight: np.ndarray  # cum_weight[i] = weekday weight of grid days before i
    nps_wave_days: np.ndarray  # calendar quarter starts inside the grid

    @classmethod
    def build(cls, end: dt.date, months: int) -> _Calendar:
        end_day = _epoch_day(end)
        total = months + _BURN_IN_MONTHS
        offsets = np.arange(-total, 1)
        starts = _add_months(np.full(total + 1, end_day, dtype=np.int64), offsets)
        grid_start = int(starts[0])
        days = np.arange(grid_start, end_day)
        weights = _WEEKDAY_WEIGHT[_weekday(days)]
        cum = np.concatenate([[0.0], np.cumsum(weights)])
        first_month = np.datetime64(int(grid_start), "D").astype("M8[M]")
        quarter_months = np.arange(
            first_month - (first_month.astype(int) % 3), np.datetime64(end, "M") + 1, 3
        )
        waves = quarter_months.astype("M8[D]").astype(np.int64)
        waves = waves[(waves >= grid_start) & (waves < end_day)]
        return cls(
            end_day=end_day,
            window_start_day=int(starts[_BURN_IN_MONTHS]),
            month_starts=starts,
            burn_in_months=_BURN_IN_MONTHS,
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


def _epoch_day(day: dt.date) -> int:
    return int(np.datetime64(day, "D").astype(np.int64))


def _weekday(days: np.ndarray) -> np.ndarray:
    """Monday = 0 for epoch days (1970-01-01 was a Thursday)."""
    return (days + 3) % 7


def _add_months(days: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Epoch days moved by whole calendar months, clipping to the month's last day."""
    d = np.asarray(days, dtype=np.int64).astype("M8[D]")
    month = d.astype("M8[M]")
    day_of_month = (d - month.astype("M8[D]")).astype(np.int64)
    target = month + np.asarray(months, dtype=np.int64).astype("m8[M]")
    last = (target + np.timedelta64(1, "M")).astype("M8[D]").astype(np.int64) - 1
    return np.minimum(target.astype("M8[D]").astype(np.int64) + day_of_month, last)


# --------------------------------------------------------------------------
# Small vectorised helpers
# --------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _engagement(health: np.ndarray) -> np.ndarray:
    """Usage intensity multiplier from health: 1 at health 0, between 0 and 2."""
    return 2.0 * _sigmoid(health)


def _group_arange(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for each count c, concatenated."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


def _hash_uniform(a: np.ndarray, b: np.ndarray, seed: int) -> np.ndarray:
    """Uniform(0, 1) numbers that depend only on (a, b, seed) (splitmix64)."""
    x = (np.asarray(a, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (
        np.asarray(b, dtype=np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
    )
    x = x ^ np.uint64((seed * 0x94D049BB133111EB) % 2**64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / float(2**53)


def _choice_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category index per row of a (rows, categories) probability matrix."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cum[:, -1]
    return np.minimum((u[:, None] >= cum).sum(axis=1), probs.shape[1] - 1)


def _business_seconds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds into the day, centred on office hours."""
    hours = np.clip(rng.normal(13.5, 2.8, n), 0.0, 23.999)
    return (hours * 3600).astype(np.int64)


def _format_ids(prefix: np.ndarray, numbers: np.ndarray, width: int) -> np.ndarray:
    """prefix + zero-padded number, vectorised (object array of str)."""
    if len(numbers) == 0:
        return np.zeros(0, dtype=object)
    padded = pd.Series(np.asarray(numbers, dtype=np.int64)).astype(str).str.zfill(width)
    return (pd.Series(prefix, dtype=object).astype(str) + padded).to_numpy(dtype=object)


def _timestamps(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds (int64) -> naive datetime64[ns]."""
    return np.asarray(seconds, dtype=np.int64).astype("M8[s]").astype("M8[ns]")


def _dates(days: np.ndarray) -> np.ndarray:
    """Epoch days -> datetime64[ns] at midnight; _NO_DAY -> NaT."""
    days = np.asarray(days, dtype=np.int64)
    never = days >= _NO_DAY
    out = np.where(never, 0, days).astype("M8[D]").astype("M8[ns]")
    out[never] = np.datetime64("NaT")
    return out


def _plan(segment: np.ndarray, mrr: np.ndarray) -> np.ndarray:
    """Plan tier from segment and MRR."""
    plans = np.array(["Starter", "Growth", "Pro", "Enterprise"], dtype=object)
    idx = np.where(
        segment == 0,
        np.where(mrr < 150, 0, 1),
        np.where(segment == 1, np.where(mrr < 1500, 1, 2), 3),
    )
    return plans[idx]


# --------------------------------------------------------------------------
# Accounts (static attributes of one chunk)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Accounts:
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


def _draw_accounts(
    rng: np.random.Generator, calendar: _Calendar, numbers: np.ndarray, id_width: int
) -> _Accounts:
    n = len(numbers)
    segment = rng.choice(3, size=n, p=_SEGMENT_SHARE)
    size_z = rng.normal(size=n)
    seats = np.clip(
        np.round(_SEATS_MEDIAN[segment] * np.exp(_SEATS_SIGMA[segment] * size_z)),
        _SEATS_MIN[segment],
        _SEATS_MAX[segment],
    ).astype(np.int64)
    price = _PRICE_PER_SEAT[segment] * np.exp(rng.normal(0.0, 0.3, n))
    mrr = np.round(np.clip(seats * price, _MRR_MIN[segment], _MRR_MAX[segment]), 2)
    term_index = _choice_rows(rng, _TERM_PROB[segment])
    auto_renew = rng.random(n) < _AUTO_RENEW_PROB[term_index]

    window_start, end = calendar.window_start_day, calendar.end_day
    months = calendar.n_months - calendar.burn_in_months
    is_new = rng.random(n) < min(0.5, _NEW_ACCOUNT_SHARE_PER_MONTH * months)
    tenure = 1 + np.floor(_MAX_TENURE_DAYS * rng.random(n) ** 1.4).astype(np.int64)
    new_day = window_start + np.floor(rng.random(n) * (end - window_start)).astype(np.int64)
    created_day = np.where(is_new, new_day, window_start - tenure)

    has_csm = rng.random(n) < _CSM_PROB[segment]
    csm = np.where(has_csm, _CSM_NAMES[rng.integers(0, len(_CSM_NAMES), n)], None)
    name = (
        pd.Series(_NAME_FIRST[rng.integers(0, len(_NAME_FIRST), n)]).str.replace("-", " ")
        + " "
        + _NAME_SECOND[rng.integers(0, len(_NAME_SECOND), n)]
        + " "
        + _NAME_SUFFIX[rng.integers(0, len(_NAME_SUFFIX), n)]
    ).to_numpy(dtype=object)
    return _Accounts(
        number=numbers,
        account_id=_format_ids(np.full(n, "A", dtype=object), numbers, id_width),
        segment=segment,
        created_day=created_day,
        created_second=_business_seconds(rng, n),
        term_index=term_index,
        auto_renew=auto_renew,
        health_mean=_HEALTH_OFFSET[segment] + rng.normal(0.0, _HEALTH_MEAN_SD, n),
        provision=rng.uniform(0.55, 1.0, n),
        has_integration=rng.random(n) < _INTEGRATION_PROB[segment],
        seats=seats,
        mrr=mrr,
        account_name=name,
        industry=_INDUSTRIES[rng.choice(len(_INDUSTRIES), size=n, p=_INDUSTRY_PROB)],
        region=_REGIONS[rng.choice(len(_REGIONS), size=n, p=_REGION_PROB)],
        csm_owner=csm,
    )


# --------------------------------------------------------------------------
# Collectors for generated rows (int-coded until the chunk is finished)
# --------------------------------------------------------------------------


@dataclass
class _Rows:
    """Column-wise parts appended month by month, concatenated at the end."""

    parts: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, **columns: np.ndarray) -> None:
        for name, values in columns.items():
            self.parts.setdefault(name, []).append(np.asarray(values))

    def column(self, name: str, dtype: type | str) -> np.ndarray:
        chunks = self.parts.get(name)
        if not chunks:
            return np.zeros(0, dtype=dtype)
        return np.concatenate(chunks).astype(dtype, copy=False)


@dataclass
class _State:
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
    cover_end: np.ndarray  # churn day of the current interval (_NO_DAY while active)
    churn_days: np.ndarray  # (n, 2): first and second churn day
    winback_day: np.ndarray
    max_users: np.ndarray

    def users(self, provision: np.ndarray) -> np.ndarray:
        return np.maximum(1, np.round(self.seats * provision)).astype(np.int64)

    def term_months(self, idx: np.ndarray | slice = slice(None)) -> np.ndarray:
        return _TERM_MONTHS[self.term_index[idx]]


# --------------------------------------------------------------------------
# The simulation of one chunk of accounts
# --------------------------------------------------------------------------


class _ChunkSimulation:
    """Simulates one chunk of accounts over the month grid and builds its frames."""

    def __init__(
        self,
        calendar: _Calendar,
        rng: np.random.Generator,
        numbers: np.ndarray,
        seed: int,
        id_width: int,
    ) -> None:
        self.cal = calendar
        self.rng = rng
        self.seed = seed
        self.acc = _draw_accounts(rng, calendar, numbers, id_width)
        n, months = len(numbers), calendar.n_months
        self.active_user_days = np.zeros((months, n))
        self.active_users = np.zeros((months, n))
        self.covered_days = np.zeros((months, n))
        self.subs = _Rows()
        self.usage = _Rows()
        self.tickets = _Rows()
        self.urgent = _Rows()  # all urgent tickets, for the open-urgent driver
        self.nps = _Rows()
        self.state = self._initial_state()

    # ---- set-up ----------------------------------------------------------

    def _initial_state(self) -> _State:
        """Accounts older than the grid are mid-way through a period at its start."""
        acc, rng, grid_start = self.acc, self.rng, self.cal.grid_start_day
        n = len(acc)
        term = _TERM_MONTHS[acc.term_index]
        periods_done = _full_terms_before(acc.created_day, term, grid_start)
        self._add_prior_periods(periods_done, term)
        return _State(
            health=acc.health_mean + rng.normal(0.0, _stationary_sd(), n),
            champion_left_months=np.zeros(n, dtype=np.int64),
            term_index=acc.term_index.copy(),
            auto_renew=acc.auto_renew.copy(),
            seats=acc.seats.astype(np.float64),
            mrr=acc.mrr.astype(np.float64),
            anchor=acc.created_day.copy(),
            period=periods_done,
            sub_start=_add_months(acc.created_day, periods_done * term),
            term_end=_add_months(acc.created_day, (periods_done + 1) * term),
            cover_start=acc.created_day.copy(),
            cover_end=np.full(n, _NO_DAY, dtype=np.int64),
            churn_days=np.full((n, 2), _NO_DAY, dtype=np.int64),
            winback_day=np.full(n, _NO_DAY, dtype=np.int64),
            max_users=np.zeros(n, dtype=np.int64),
        )

    def _add_prior_periods(self, periods_done: np.ndarray, term: np.ndarray) -> None:
        """Periods completed before the grid starts; contracts had a 4% yearly uplift."""
        idx = np.repeat(np.arange(len(self.acc)), periods_done)
        j = _group_arange(periods_done)
        t = term[idx]
        start = _add_months(self.acc.created_day[idx], j * t)
        end = _add_months(self.acc.created_day[idx], (j + 1) * t)
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
        self.subs.add(
            acc=idx, start=start, end=end, mrr=np.round(mrr, 2), seats=seats, auto_renew=auto_renew
        )

    def _close_current_rows(self, idx: np.ndarray) -> None:
        s = self.state
        self._close_rows(
            idx, s.sub_start[idx], s.term_end[idx], s.mrr[idx], s.seats[idx], s.auto_renew[idx]
        )

    # ---- the month loop --------------------------------------------------

    def run(self) -> dict[str, pd.DataFrame]:
        for m in range(self.cal.n_months):
            start, stop = int(self.cal.month_starts[m]), int(self.cal.month_starts[m + 1])
            self._apply_winbacks(start, stop)
            self._end_periods(m, start, stop)
            self._update_health(m)
            lo = np.maximum(start, self.state.cover_start)
            hi = np.maximum(np.minimum(stop, self.state.cover_end), lo)
            leaving = (self.state.cover_end >= start) & (self.state.cover_end < stop)
            engagement = _engagement(self.state.health) * np.where(leaving, _WIND_DOWN, 1.0)
            emit = m >= self.cal.burn_in_months
            self._simulate_usage(m, start, lo, hi, engagement, emit)
            self._simulate_tickets(lo, hi, emit)
            self._simulate_nps(start, stop, lo, hi, emit)
        self._close_open_subscriptions()
        return self._frames()

    def _update_health(self, m: int) -> None:
        """AR(1) step around the account mean, plus champion-left and good-news shocks."""
        s, rng, n = self.state, self.rng, len(self.acc)
        if m > 0:
            s.health = (
                self.acc.health_mean
                + _HEALTH_PHI * (s.health - self.acc.health_mean)
                + rng.normal(0.0, _HEALTH_SIGMA, n)
            )
        new_shock = rng.random(n) < _CHAMPION_LEFT_PROB
        s.champion_left_months = np.where(new_shock, 2, s.champion_left_months)
        s.health = s.health - _CHAMPION_LEFT_DROP * (s.champion_left_months > 0)
        s.champion_left_months = np.maximum(s.champion_left_months - 1, 0)
        s.health = s.health + _GOOD_NEWS_LIFT * (rng.random(n) < _GOOD_NEWS_PROB)

    # ---- churn, renewals, expansions ---------------------------------------

    def _end_periods(self, m: int, start: int, stop: int) -> None:
        """Every period ending in month m renews or churns, decided at the month start.

        Churn needs two months of observed signals, so the first (burn-in)
        months only renew.
        """
        s = self.state
        churn_allowed = m >= max(2, self.cal.burn_in_months)
        if churn_allowed:
            signals = self._signals(m, start)
            p_monthly = _sigmoid(self._churn_logit(signals, at_renewal=False))
            p_renewal = _sigmoid(self._churn_logit(signals, at_renewal=True))
        for _ in range(3):  # a short grid month can hold two monthly period ends
            idx = np.flatnonzero((s.cover_end >= _NO_DAY) & (s.term_end < stop))
            if len(idx) == 0:
                break
            if churn_allowed:
                p = np.where(s.term_index[idx] == 0, p_monthly[idx], p_renewal[idx])
                churn = self.rng.random(len(idx)) < p
            else:
                churn = np.zeros(len(idx), dtype=bool)
            self._churn(idx[churn])
            self._renew(idx[~churn])

    def _signals(self, m: int, start: int) -> dict[str, np.ndarray]:
        """Observable drivers at the start of month m (from months m-1 and m-2)."""
        s = self.state
        days1, days2 = self.covered_days[m - 1], self.covered_days[m - 2]
        rate1 = self.active_user_days[m - 1] * 30.0 / np.maximum(days1, 1)
        rate2 = self.active_user_days[m - 2] * 30.0 / np.maximum(days2, 1)
        valid = (days1 >= 14) & (days2 >= 14)
        decline = np.where(valid, np.clip(1.0 - (rate1 + 1.0) / (rate2 + 1.0), 0.0, 1.0), 0.0)
        utilisation = np.where(
            days1 >= 20, self.active_users[m - 1] / np.maximum(s.seats, 1.0), 0.5
        )
        return {
            "usage_decline": decline,
            "low_seat_utilisation": np.clip((0.3 - utilisation) / 0.3, 0.0, 1.0),
            "open_urgent_tickets": np.minimum(self._open_urgent(start), 2),
            **self._nps_signals(start),
            "tenure_days": start - self.acc.created_day,
        }

    def _open_urgent(self, day: int) -> np.ndarray:
        acc = self.urgent.column("acc", np.int64)
        created = self.urgent.column("created", np.int64)
        resolved = self.urgent.column("resolved", np.int64)
        t = day * _SECONDS_PER_DAY
        is_open = (created < t) & (resolved >= t)
        return np.bincount(acc[is_open], minlength=len(self.acc))

    def _nps_signals(self, day: int) -> dict[str, np.ndarray]:
        acc = self.nps.column("acc", np.int64)
        when = self.nps.column("second", np.int64)
        score = self.nps.column("score", np.float64)
        t = day * _SECONDS_PER_DAY
        recent = (when < t) & (when >= t - _NPS_LOOKBACK_DAYS * _SECONDS_PER_DAY)
        n = len(self.acc)
        count = np.bincount(acc[recent], minlength=n)
        total = np.bincount(acc[recent], weights=score[recent], minlength=n)
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        return {
            "nps_detractor": (count > 0) & (mean <= 6),
            "nps_promoter": (count > 0) & (mean >= 9),
        }

    def _churn_logit(self, signals: dict[str, np.ndarray], at_renewal: bool) -> np.ndarray:
        """Log-odds of churning at a period end (monthly plan, or annual renewal)."""
        c, s, seg = CHURN_DRIVERS, self.state, self.acc.segment
        tenure = signals["tenure_days"]
        logit = (
            (c["base_annual_renewal"] if at_renewal else c["base_monthly_contract"])
            + c["usage_decline"] * signals["usage_decline"]
            + c["low_seat_utilisation"] * signals["low_seat_utilisation"]
            + c["open_urgent_tickets"] * signals["open_urgent_tickets"]
            + c["nps_detractor"] * signals["nps_detractor"]
            + c["nps_promoter"] * signals["nps_promoter"]
            + c["tenure_under_6_months"] * (tenure < 183)
            + c["tenure_6_to_12_months"] * ((tenure >= 183) & (tenure < 365))
            + c["latent_health"] * s.health
            + c["segment_mid_market"] * (seg == 1)
            + c["segment_enterprise"] * (seg == 2)
        )
        if at_renewal:
            logit = logit + c["no_auto_renew_at_renewal"] * ~s.auto_renew
        return logit

    def _churn(self, idx: np.ndarray) -> None:
        """The period ends and is not renewed; a few accounts come back after > 60 days."""
        s, rng = self.state, self.rng
        self._close_current_rows(idx)
        day = s.term_end[idx]
        s.cover_end[idx] = day
        first = s.churn_days[idx, 0] >= _NO_DAY
        s.churn_days[idx, 0] = np.where(first, day, s.churn_days[idx, 0])
        s.churn_days[idx, 1] = np.where(first, s.churn_days[idx, 1], day)
        comes_back = first & (rng.random(len(idx)) < _WINBACK_PROB)
        gap = rng.integers(2 * _GRACE_DAYS + 1, 240, len(idx))
        s.winback_day[idx] = np.where(comes_back, day + gap, _NO_DAY)

    def _apply_winbacks(self, start: int, stop: int) -> None:
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
        s.term_end[idx] = _add_months(day, np.ones(len(idx), dtype=np.int64))
        s.cover_start[idx] = day
        s.cover_end[idx] = _NO_DAY
        s.auto_renew[idx] = True
        s.winback_day[idx] = _NO_DAY
        s.health[idx] = self.acc.health_mean[idx] + rng.normal(0.0, 0.3, len(idx))

    def _renew(self, idx: np.ndarray) -> None:
        """Start the next period: maybe resized (expansion / downgrade), annual ones maybe late."""
        s, rng = self.state, self.rng
        self._close_current_rows(idx)
        h = s.health[idx]
        annual = s.term_index[idx] > 0
        u = rng.random(len(idx))
        p_expand = np.where(
            annual, np.minimum(0.25 * np.exp(0.5 * h), 0.6), np.minimum(0.02 * np.exp(0.7 * h), 0.1)
        )
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
        uplift = np.where(
            annual & ~expand & ~downgrade, 1.0 + rng.uniform(0.0, 0.06, len(idx)), 1.0
        )
        self._resize(idx, factor, uplift)
        p_late = np.where(annual, _LATE_RENEWAL_PROB + 0.1 * (h < -0.5), 0.0)
        late = rng.random(len(idx)) < p_late
        gap = np.where(late, rng.integers(1, _GRACE_DAYS, len(idx)), 0)
        new_start = s.term_end[idx] + gap
        s.anchor[idx] = np.where(late, new_start, s.anchor[idx])
        s.period[idx] = np.where(late, 0, s.period[idx] + 1)
        s.sub_start[idx] = new_start
        s.term_end[idx] = _add_months(s.anchor[idx], (s.period[idx] + 1) * s.term_months(idx))

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

    def _close_open_subscriptions(self) -> None:
        """Periods still running at the end of the history (they end after it).

        A late renewal that starts on or after the end of the history is not
        yet signed, so it is not emitted.
        """
        s = self.state
        idx = np.flatnonzero((s.cover_end >= _NO_DAY) & (s.sub_start < self.cal.end_day))
        self._close_current_rows(idx)

    # ---- activity: usage, tickets, NPS -------------------------------------

    def _simulate_usage(
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
        pair_user = _group_arange(users)
        # a user's own activity level, fixed over time (power users vs occasional users)
        level = _hash_uniform(acc.number[pair_acc], pair_user, self.seed)
        fraction = np.minimum(self.cal.weight_between(lo, hi) / _WEIGHT_PER_MONTH, 1.0)
        e, f = engagement[pair_acc], fraction[pair_acc]
        p_active = np.minimum(_MONTHLY_ACTIVE_PROB * e * (0.4 + 1.2 * level) * f, 0.97)
        active = np.flatnonzero(rng.random(len(pair_acc)) < p_active)
        extra_days = _EXTRA_ACTIVE_DAYS * (s.seats / _SEATS_MEDIAN[0]) ** _EXTRA_DAYS_SIZE_POWER
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

    def _emit_user_events(
        self, acc: np.ndarray, user: np.ndarray, day: np.ndarray, engagement: np.ndarray
    ) -> None:
        """One row per (user, active day, event type used); breadth grows with health."""
        rng = self.rng
        e = engagement[acc]
        for t, prob in enumerate(_EVENT_PROB):
            if prob >= 1.0:
                used = np.ones(len(acc), dtype=bool)
            else:
                p = np.minimum(prob * e ** _EVENT_HEALTH_POWER[t], 0.95)
                used = rng.random(len(acc)) < p
            k = int(used.sum())
            qty = 1 + rng.poisson(_EVENT_EXTRA_QUANTITY[t] * np.sqrt(e[used]))
            self.usage.add(
                acc=acc[used],
                user=user[used],
                second=day[used] * _SECONDS_PER_DAY + _business_seconds(rng, k),
                type=np.full(k, t, dtype=np.int8),
                quantity=qty,
            )

    def _emit_system_calls(
        self, covered: np.ndarray, lo: np.ndarray, hi: np.ndarray, engagement: np.ndarray
    ) -> None:
        """api_call rows without a user, from integrations, on any day of the week."""
        rng = self.rng
        idx = covered[self.acc.has_integration[covered]]
        span = hi[idx] - lo[idx]
        lam = _SYSTEM_CALLS_PER_DAY * np.minimum(engagement[idx], 1.2) * span
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
            second=day * _SECONDS_PER_DAY + rng.integers(0, _SECONDS_PER_DAY, k),
            type=np.full(k, EVENT_TYPES.index("api_call"), dtype=np.int8),
            quantity=1 + rng.poisson(150.0 * np.minimum(engagement[a], 1.5)),
        )

    def _simulate_tickets(self, lo: np.ndarray, hi: np.ndarray, emit: bool) -> None:
        """Tickets: more, more urgent, slower and left open when health is low."""
        rng, acc, s = self.rng, self.acc, self.state
        covered = np.flatnonzero(hi > lo)
        size = (s.seats[covered] / _SEATS_MEDIAN[acc.segment[covered]]) ** 0.3
        lam = (
            _TICKETS_PER_MONTH[acc.segment[covered]]
            * size
            * np.exp(-0.6 * s.health[covered])
            * self.cal.weight_between(lo[covered], hi[covered])
            / _WEIGHT_PER_MONTH
        )
        a = np.repeat(covered, rng.poisson(lam))
        k = len(a)
        h = s.health[a]
        created = self.cal.sample_days(lo[a], hi[a], rng.random(k)) * _SECONDS_PER_DAY
        created = created + _business_seconds(rng, k)
        priority = _choice_rows(rng, _PRIORITY_BASE * np.exp(np.outer(h, _PRIORITY_HEALTH)))
        category = _choice_rows(rng, _CATEGORY_BY_PRIORITY[priority])
        hours = _RESOLUTION_MEDIAN_HOURS[priority] * np.exp(rng.normal(0.0, 0.8, k) - 0.3 * h)
        urgent_like = priority >= 2
        p_stuck = np.where(urgent_like, _sigmoid(-3.0 - 1.2 * h), 0.02)
        stuck = rng.random(k) < p_stuck
        resolved = np.where(stuck, _NO_DAY, created + (hours * 3600).astype(np.int64))
        slow = np.log(hours / _RESOLUTION_MEDIAN_HOURS[priority])
        csat = np.clip(np.round(3.9 + 0.7 * h - 0.3 * slow + rng.normal(0.0, 0.8, k)), 1, 5)
        csat = np.where(rng.random(k) < _CSAT_RESPONSE_PROB, csat, np.nan)
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

    def _simulate_nps(
        self, start: int, stop: int, lo: np.ndarray, hi: np.ndarray, emit: bool
    ) -> None:
        """Quarterly survey: a few users per account answer within three weeks."""
        rng, acc, s = self.rng, self.acc, self.state
        for wave in self.cal.nps_wave_days[
            (self.cal.nps_wave_days >= start) & (self.cal.nps_wave_days < stop)
        ]:
            users = s.users(acc.provision)
            n_answers = np.minimum(rng.poisson(0.6 + 0.25 * np.sqrt(users)), users)
            a = np.repeat(np.arange(len(acc)), n_answers)
            window = min(_NPS_WINDOW_DAYS, stop - int(wave))
            day = int(wave) + rng.integers(0, window, len(a))
            inside = (day >= lo[a]) & (day < hi[a])
            user = np.floor(rng.random(len(a)) * users[a]).astype(np.int64)
            a, day, user = a[inside], day[inside], user[inside]
            _, first = np.unique(a * 2**20 + user, return_index=True)
            a, day, user = a[first], day[first], user[first]
            k = len(a)
            account_mood = rng.normal(0.0, 0.7, len(acc))[a]
            score = np.clip(
                np.round(7.4 + 1.6 * s.health[a] + account_mood + rng.normal(0.0, 1.5, k)), 0, 10
            )
            second = day * _SECONDS_PER_DAY + _business_seconds(rng, k)
            self.nps.add(acc=a, second=second, score=score, user=user, emit=np.full(k, emit))

    # ---- frames ------------------------------------------------------------

    def _frames(self) -> dict[str, pd.DataFrame]:
        frames = {
            "accounts": self._accounts_frame(),
            "subscriptions": self._subscriptions_frame(),
            "usage_events": self._usage_frame(),
            "support_tickets": self._tickets_frame(),
            "nps_responses": self._nps_frame(),
        }
        return {name: _with_text_dtype(frame) for name, frame in frames.items()}

    def _user_ids(self, acc: np.ndarray, user: np.ndarray) -> np.ndarray:
        """'A000123-U004' strings; None where user < 0. Formats each distinct user once."""
        max_users = np.maximum(self.state.max_users, 1)
        offset = np.cumsum(max_users) - max_users
        owner = np.repeat(np.arange(len(self.acc)), max_users)
        table = _format_ids(self.acc.account_id[owner] + "-U", _group_arange(max_users) + 1, 3)
        table = np.append(table, None)
        code = np.where(
            user >= 0, offset[acc] + np.minimum(user, max_users[acc] - 1), len(table) - 1
        )
        return table[code]

    def _accounts_frame(self) -> pd.DataFrame:
        a = self.acc
        return pd.DataFrame(
            {
                "account_id": a.account_id,
                "created_at": _timestamps(a.created_day * _SECONDS_PER_DAY + a.created_second),
                "account_name": a.account_name,
                "segment": np.array(SEGMENTS, dtype=object)[a.segment],
                "industry": a.industry,
                "region": a.region,
                "csm_owner": a.csm_owner,
            }
        )

    def _subscriptions_frame(self) -> pd.DataFrame:
        r = self.subs
        acc = r.column("acc", np.int64)
        start = r.column("start", np.int64)
        order = np.lexsort((start, acc))
        acc, start = acc[order], start[order]
        end = r.column("end", np.int64)[order]
        mrr = r.column("mrr", np.float64)[order]
        seats = r.column("seats", np.float64)[order]
        seq = _group_arange(np.bincount(acc, minlength=len(self.acc))) + 1
        return pd.DataFrame(
            {
                "subscription_id": _format_ids(self.acc.account_id[acc] + "-S", seq, 3),
                "account_id": self.acc.account_id[acc],
                "start_date": _dates(start),
                "end_date": _dates(end),
                "mrr": mrr,
                "plan": _plan(self.acc.segment[acc], mrr),
                "seats": pd.array(np.round(seats).astype(np.int64), dtype="Int64"),
                "auto_renew": r.column("auto_renew", bool)[order],
            }
        )

    def _usage_frame(self) -> pd.DataFrame:
        r = self.usage
        acc = r.column("acc", np.int64)
        return pd.DataFrame(
            {
                "account_id": self.acc.account_id[acc],
                "event_time": _timestamps(r.column("second", np.int64)),
                "event_type": np.array(EVENT_TYPES, dtype=object)[r.column("type", np.int64)],
                "user_id": self._user_ids(acc, r.column("user", np.int64)),
                "quantity": r.column("quantity", np.int64),
            }
        )

    def _tickets_frame(self) -> pd.DataFrame:
        r = self.tickets
        acc = r.column("acc", np.int64)
        created = r.column("created", np.int64)
        order = np.lexsort((created, acc))
        acc, created = acc[order], created[order]
        resolved = r.column("resolved", np.int64)[order]
        # nothing after the end of the history, nor after the account left
        interval_end = np.where(
            created // _SECONDS_PER_DAY < self.state.churn_days[acc, 0],
            self.state.churn_days[acc, 0],
            self.state.churn_days[acc, 1],
        )
        limit = np.minimum(interval_end, self.cal.end_day) * _SECONDS_PER_DAY
        still_open = resolved >= limit
        resolved_at = _timestamps(np.where(still_open, 0, resolved))
        resolved_at[still_open] = np.datetime64("NaT")
        satisfaction = np.where(still_open, np.nan, r.column("csat", np.float64)[order])
        seq = _group_arange(np.bincount(acc, minlength=len(self.acc))) + 1
        return pd.DataFrame(
            {
                "ticket_id": _format_ids(self.acc.account_id[acc] + "-T", seq, 4),
                "account_id": self.acc.account_id[acc],
                "created_at": _timestamps(created),
                "resolved_at": resolved_at,
                "priority": np.array(PRIORITIES, dtype=object)[
                    r.column("priority", np.int64)[order]
                ],
                "category": np.array(TICKET_CATEGORIES, dtype=object)[
                    r.column("category", np.int64)[order]
                ],
                "satisfaction": satisfaction,
            }
        )

    def _nps_frame(self) -> pd.DataFrame:
        r = self.nps
        keep = r.column("emit", bool)
        acc = r.column("acc", np.int64)[keep]
        second = r.column("second", np.int64)[keep]
        order = np.lexsort((second, acc))
        acc, second = acc[order], second[order]
        return pd.DataFrame(
            {
                "account_id": self.acc.account_id[acc],
                "responded_at": _timestamps(second),
                "score": r.column("score", np.float64)[keep][order].astype(np.int64),
                "user_id": self._user_ids(acc, r.column("user", np.int64)[keep][order]),
            }
        )


def _with_text_dtype(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns get pandas' default text dtype even when empty or all missing."""
    text = [c for c in frame.columns if c in _TEXT_COLUMNS and frame[c].dtype != _TEXT_DTYPE]
    return frame.astype({c: _TEXT_DTYPE for c in text}) if text else frame


def _stationary_sd() -> float:
    return _HEALTH_SIGMA / float(np.sqrt(1.0 - _HEALTH_PHI**2))


def _full_terms_before(created: np.ndarray, term: np.ndarray, day: int) -> np.ndarray:
    """Number of whole contract terms between `created` and the term covering `day`."""
    day_month = np.datetime64(int(day), "D").astype("M8[M]").astype(np.int64)
    months = day_month - created.astype("M8[D]").astype("M8[M]").astype(np.int64)
    k = np.maximum(months // term, 0)
    k = np.where(_add_months(created, k * term) > day, k - 1, k)
    k = np.where(_add_months(created, (k + 1) * term) <= day, k + 1, k)
    return np.where(created < day, np.maximum(k, 0), 0)
