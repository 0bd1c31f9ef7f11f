"""The input data contract (v1): tables, columns, logical types and keys.

This module is data only. Validation (`features.staging`) and the warehouse
module read it; the docs describe it in words (docs/data-contract.md).
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
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    required: bool = True
    key: tuple[str, ...] = ()
    description: str = ""
    time_column: str | None = None  # the column compared with the as-of date

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
)

USAGE_EVENTS = TableSpec(
    name="usage_events",
    description="product usage: raw events or daily rollups",
    key=(),
    time_column="event_time",
    columns=(
        Column("account_id", "text", False, "-> accounts"),
        Column("event_time", "timestamp", False),
        Column("event_type", "text", False, "action or feature name"),
        Column("user_id", "text", True, "acting user"),
        Column("quantity", "numeric", True, "count for rollups; NULL means 1"),
    ),
)

SUPPORT_TICKETS = TableSpec(
    name="support_tickets",
    description="support tickets (optional)",
    required=False,
    key=("ticket_id",),
    time_column="created_at",
    columns=(
        Column("ticket_id", "text", False, "unique key"),
        Column("account_id", "text", False, "-> accounts"),
        Column("created_at", "timestamp", False),
        Column("resolved_at", "timestamp", True, "NULL = still open"),
        Column("priority", "text", True, "low / normal / high / urgent"),
        Column("category", "text"),
        Column("satisfaction", "numeric", True, "CSAT 1-5"),
    ),
)

NPS_RESPONSES = TableSpec(
    name="nps_responses",
    description="NPS survey responses (optional)",
    required=False,
    key=(),
    time_column="responded_at",
    columns=(
        Column("account_id", "text", False, "-> accounts"),
        Column("responded_at", "timestamp", False),
        Column("score", "integer", False, "0-10"),
        Column("user_id", "text"),
    ),
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

    def physical(self, logical: str) -> str:
        return getattr(self, logical)
