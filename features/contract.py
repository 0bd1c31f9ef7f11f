"""The input data contract (v1): tables, columns, logical types and keys.

This module is data only: each table's columns, key, time column and the
row rules that validation (`features.staging`) checks beyond the generic ones
(not-null columns, duplicate keys, unknown accounts). The warehouse module,
the demo data generator and the feature families read it; the docs describe
it in words (docs/data-contract.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LogicalType = Literal["text", "timestamp", "date", "numeric", "integer", "boolean"]


@dataclass(frozen=True)
class Column:
    name: str
    type: LogicalType
    nullable: bool = True
    description: str = ""


@dataclass(frozen=True)
class Rule:
    """A row-level check. ``predicate`` is SQL over the typed contract columns
    that is TRUE for a bad row."""

    name: str
    description: str
    predicate: str
    integrity: bool = True  # False: the row is set aside but is not an error


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    #: a required table must be present with usable rows, else the run stops; an
    #: optional one switches the feature families that read it off (features.families)
    required: bool = True
    key: tuple[str, ...] = ()
    description: str = ""
    time_column: str | None = None  # the column compared with the as-of date
    #: rows are events at ``time_column``: a row dated later than now breaks a rule,
    #: rows dated after the as-of are set aside, and the latest row marks the end of the data
    event_log: bool = False
    #: row rules of this table beyond the generic ones
    checks: tuple[Rule, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


ACCOUNTS = TableSpec(
    name="accounts",
    description="one row per customer account",
    key=("account_id",),
    time_column="created_at",
    columns=(
        Column("account_id", "text", False, "unique key"),
        Column("created_at", "timestamp", False, "when the account was created"),
        Column("account_name", "text", True, "shown to CSMs"),
        Column("segment", "text", True, "e.g. SMB / Mid-Market / Enterprise"),
        Column("industry", "text"),
        Column("region", "text"),
        Column("csm_owner", "text", True, "the CSM who owns the account"),
    ),
)

SUBSCRIPTIONS = TableSpec(
    name="subscriptions",
    description="one row per contract or subscription period",
    key=("subscription_id",),
    time_column="start_date",
    columns=(
        Column("subscription_id", "text", False, "unique key"),
        Column("account_id", "text", False, "-> accounts"),
        Column("start_date", "date", False, "first covered day"),
        Column("end_date", "date", True, "first day NOT covered; NULL = still running"),
        Column("mrr", "numeric", False, "monthly recurring revenue, >= 0"),
        Column("plan", "text"),
        Column("seats", "numeric", True, "licensed quantity"),
        Column("auto_renew", "boolean"),
    ),
    checks=(
        Rule("end_before_start", "end_date < start_date", "end_date < start_date"),
        Rule("negative_mrr", "mrr < 0", "mrr < 0"),
        Rule("negative_seats", "seats < 0", "seats < 0"),
    ),
)

USAGE_EVENTS = TableSpec(
    name="usage_events",
    description="product usage: raw events or daily rollups",
    key=(),
    time_column="event_time",
    event_log=True,
    columns=(
        Column("account_id", "text", False, "-> accounts"),
        Column("event_time", "timestamp", False),
        Column("event_type", "text", False, "action or feature name"),
        Column("user_id", "text", True, "acting user"),
        Column("quantity", "numeric", True, "count for rollups; NULL means 1"),
    ),
    checks=(Rule("negative_quantity", "quantity < 0", "quantity < 0"),),
)

SUPPORT_TICKETS = TableSpec(
    name="support_tickets",
    description="support tickets (optional)",
    required=False,
    key=("ticket_id",),
    time_column="created_at",
    event_log=True,
    columns=(
        Column("ticket_id", "text", False, "unique key"),
        Column("account_id", "text", False, "-> accounts"),
        Column("created_at", "timestamp", False),
        Column("resolved_at", "timestamp", True, "NULL = still open"),
        Column("priority", "text", True, "low / normal / high / urgent"),
        Column("category", "text"),
        Column("satisfaction", "numeric", True, "CSAT 1-5"),
    ),
    checks=(
        Rule("resolved_before_created", "resolved_at < created_at", "resolved_at < created_at"),
        Rule("csat_out_of_range", "satisfaction outside 1-5", "satisfaction < 1 OR satisfaction > 5"),
    ),
)

NPS_RESPONSES = TableSpec(
    name="nps_responses",
    description="NPS survey responses (optional)",
    required=False,
    key=(),
    time_column="responded_at",
    event_log=True,
    columns=(
        Column("account_id", "text", False, "-> accounts"),
        Column("responded_at", "timestamp", False),
        Column("score", "integer", False, "0-10"),
        Column("user_id", "text"),
    ),
    checks=(Rule("nps_out_of_range", "score outside 0-10", "score < 0 OR score > 10"),),
)

INPUT_TABLES: dict[str, TableSpec] = {
    t.name: t for t in (ACCOUNTS, SUBSCRIPTIONS, USAGE_EVENTS, SUPPORT_TICKETS, NPS_RESPONSES)
}


@dataclass(frozen=True)
class TableNames:
    """Physical names of the contract tables in the user's warehouse.

    The logical names are the contract's; each can be mapped to another
    physical table (e.g. ``usage_events="product_events_daily"``).
    """

    accounts: str = "accounts"
    subscriptions: str = "subscriptions"
    usage_events: str = "usage_events"
    support_tickets: str = "support_tickets"
    nps_responses: str = "nps_responses"
    churn_scores: str = "churn_scores"
    churn_risk_reasons: str = "churn_risk_reasons"
    churn_topic_contributions: str = "churn_topic_contributions"
    churn_outcomes: str = "churn_outcomes"
    churn_model_performance: str = "churn_model_performance"

    def physical(self, logical: str) -> str:
        return getattr(self, logical)
