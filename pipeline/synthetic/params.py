"""What to generate (`GeneratorConfig`) and the behavioural parameters of the
simulation: the category values, the true churn drivers, and the numbers every
other module of the generator draws from. docs/synthetic-data.md states them in
words; change a number here and the page there.

Public (re-exported by `pipeline.synthetic`): `GeneratorConfig`, `SEGMENTS`,
`EVENT_TYPES`, `PRIORITIES`, `TICKET_CATEGORIES`, `CHURN_DRIVERS`. The other
names are the generator's own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np


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


# --------------------------------------------------------------------------
# Category values and the true churn drivers (public)
# --------------------------------------------------------------------------

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
# Accounts and contracts, by segment (SMB, Mid-Market, Enterprise)
# --------------------------------------------------------------------------

SEGMENT_SHARE = np.array([0.6, 0.3, 0.1])
SEATS_MEDIAN = np.array([8.0, 50.0, 220.0])
SEATS_SIGMA = np.array([0.55, 0.5, 0.6])
SEATS_MIN = np.array([3, 20, 100])
SEATS_MAX = np.array([25, 150, 1000])
PRICE_PER_SEAT = np.array([20.0, 28.0, 50.0])
MRR_MIN = np.array([50.0, 500.0, 5000.0])
MRR_MAX = np.array([500.0, 5000.0, 50000.0])
# contract term per segment: P(monthly), P(12 months), P(24 months)
TERM_PROB = np.array([[0.85, 0.15, 0.0], [0.40, 0.60, 0.0], [0.0, 0.80, 0.20]])
TERM_MONTHS = np.array([1, 12, 24])
AUTO_RENEW_PROB = np.array([0.95, 0.5, 0.3])  # by term index
CSM_PROB = np.array([0.15, 0.85, 1.0])
INTEGRATION_PROB = np.array([0.10, 0.30, 0.60])
HEALTH_OFFSET = np.array([-0.1, 0.1, 0.3])
TICKETS_PER_MONTH = np.array([0.3, 0.8, 2.0])
PLANS = np.array(["Starter", "Growth", "Pro", "Enterprise"], dtype=object)

NEW_ACCOUNT_SHARE_PER_MONTH = 0.025
MAX_TENURE_DAYS = 3 * 365
GRACE_DAYS = 30
WINBACK_PROB = 0.04
LATE_RENEWAL_PROB = 0.12

# --------------------------------------------------------------------------
# The hidden health process
# --------------------------------------------------------------------------

HEALTH_PHI = 0.8
HEALTH_SIGMA = 0.35
HEALTH_MEAN_SD = 0.45
CHAMPION_LEFT_PROB = 0.025  # per month; health drops for two months
CHAMPION_LEFT_DROP = 0.6
GOOD_NEWS_PROB = 0.015
GOOD_NEWS_LIFT = 0.4

# --------------------------------------------------------------------------
# Activity: usage, tickets, NPS
# --------------------------------------------------------------------------

MONTHLY_ACTIVE_PROB = 0.5  # P(a provisioned user is active in a month) at engagement 1
EXTRA_ACTIVE_DAYS = 2.2  # extra active days per active user and month, 8-seat account
EXTRA_DAYS_SIZE_POWER = -0.7  # users of larger accounts use the product less often
WEEKDAY_WEIGHT = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.12, 0.08])  # Mon..Sun
WEIGHT_PER_MONTH = 365.25 / 12 / 7 * WEEKDAY_WEIGHT.sum()
WIND_DOWN = 0.4  # engagement multiplier in the month an account leaves
EVENT_PROB = np.array([1.0, 0.3, 0.15, 0.07, 0.03, 0.02, 0.03])
EVENT_HEALTH_POWER = np.array([0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 0.5])
EVENT_EXTRA_QUANTITY = np.array([0.3, 2.0, 0.6, 0.4, 1.0, 0.3, 15.0])
SYSTEM_CALLS_PER_DAY = 0.8

PRIORITY_BASE = np.array([0.30, 0.45, 0.17, 0.08])
PRIORITY_HEALTH = np.array([0.3, 0.0, -0.4, -0.9])  # log-weight per unit of health
CATEGORY_BY_PRIORITY = np.array(
    [  # bug, billing, how-to, outage, feature_request
        [0.15, 0.20, 0.40, 0.00, 0.25],
        [0.35, 0.20, 0.30, 0.02, 0.13],
        [0.60, 0.10, 0.10, 0.15, 0.05],
        [0.45, 0.05, 0.00, 0.50, 0.00],
    ]
)
RESOLUTION_MEDIAN_HOURS = np.array([120.0, 48.0, 20.0, 4.0])
CSAT_RESPONSE_PROB = 0.55

NPS_WINDOW_DAYS = 21
NPS_LOOKBACK_DAYS = 120

# --------------------------------------------------------------------------
# The month grid
# --------------------------------------------------------------------------

BURN_IN_MONTHS = 2

# --------------------------------------------------------------------------
# Names drawn for the accounts
# --------------------------------------------------------------------------

INDUSTRIES = np.array(
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
INDUSTRY_PROB = np.array([0.22, 0.14, 0.12, 0.12, 0.12, 0.10, 0.09, 0.09])
REGIONS = np.array(["North America", "EMEA", "APAC", "LATAM"], dtype=object)
REGION_PROB = np.array([0.45, 0.32, 0.15, 0.08])
CSM_NAMES = np.array(
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
NAME_FIRST = np.array(
    "Acme Northwind Globex Initech Umbrella Vandelay Hooli Soylent Tyrell Aperture "
    "Blue-Sky Red-Rock Silverlake Pioneer Summit Harbor Evergreen Quantum Nimbus "
    "Atlas Beacon Cobalt Delta Ember Falcon Granite Horizon Ironwood Juniper".split(),
    dtype=object,
)
NAME_SECOND = np.array(
    "Analytics Logistics Health Systems Labs Foods Energy Partners Media Robotics "
    "Capital Retail Works Dynamics Networks Studios".split(),
    dtype=object,
)
NAME_SUFFIX = np.array(["Inc", "Ltd", "GmbH", "LLC", "Group", "Co", "SA", "BV"], dtype=object)
