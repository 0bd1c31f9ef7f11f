"""ChurnSim's output mapped onto our data contract (docs/data-contract.md, features/contract.py).

Their tables (``account``, ``subscription``, ``event``; see :class:`SimulationOutput`) become our
``accounts``, ``subscriptions`` and ``usage_events``. No ``support_tickets`` and no
``nps_responses``: the simulator has neither. The README in this folder has the field table.

Two decisions that the contract asks for and the simulator's raw output does not give:

- **end_date is the contracted end.** ChurnSim writes one row per plan and add-on per billing
  term, ending on the renewal date. When a customer on a 6- or 12-month term churns mid-term,
  it rewrites the end of the customer's *last* row (its last add-on's, with add-ons) to the churn
  month. That end was not known when the term began: the contract says such a table "leaks the
  future into every snapshot before the cancellation" (the renewal date, MIN(end_date) of the
  covering rows, would fall on the churn date). The mapping keeps the contracted end; the usage
  stops at the churn, as simulated. With add-ons (crm6) the plan row already ran to the
  contracted end, so coverage and labels are the same either way.
- **Only the simulated period.** Events at or after the simulation's end date (the simulator
  finishes the month that contains it) and subscriptions starting after it are dropped, so the
  data ends on the end date.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from benchmarks.external.churnsim import SimulationOutput

#: user ids are account_id * USER_STRIDE + the simulator's user number (plans allow at most 100 users)
USER_STRIDE = 1000


@dataclass
class ContractTables:
    accounts: pd.DataFrame
    subscriptions: pd.DataFrame
    usage_events: pd.DataFrame
    notes: dict[str, int] = field(default_factory=dict)

    def frames(self) -> dict[str, pd.DataFrame]:
        return {"accounts": self.accounts, "subscriptions": self.subscriptions, "usage_events": self.usage_events}


def to_contract(out: SimulationOutput, end_date: dt.date, has_users: bool) -> ContractTables:
    """Our contract tables from one simulation that ran until ``end_date``."""
    subs = pd.DataFrame(
        out.subscriptions,
        columns=["account_id", "plan", "start_date", "end_date", "mrr", "quantity", "units", "bill_period", "discount"],
    )
    restored = 0
    if out.mid_term_churns:
        ends = pd.DataFrame(
            [(k, v[0], v[1]) for k, v in out.mid_term_churns.items()], columns=["account_id", "contracted", "written"]
        )
        subs = subs.reset_index().merge(ends, on="account_id", how="left").set_index("index").sort_index()
        last = ~subs["account_id"].duplicated(keep="last")  # the simulator rewrites the customer's last row only
        fix = last & subs["contracted"].notna() & (subs["end_date"] == subs["written"])
        if int(fix.sum()) != len(out.mid_term_churns):
            raise AssertionError(f"{int(fix.sum())} rows match {len(out.mid_term_churns)} mid-term churns")
        subs.loc[fix, "end_date"] = subs.loc[fix, "contracted"]
        restored = int(fix.sum())
    subs = subs[subs["start_date"] <= end_date].reset_index(drop=True)
    if subs.empty:
        raise AssertionError("the simulation wrote no subscription")
    first_start = subs.groupby("account_id")["start_date"].min()

    accounts = pd.DataFrame(out.accounts, columns=["account_id", "channel", "date_of_birth", "country"])
    accounts = accounts[accounts["account_id"].isin(first_start.index)]
    accounts = pd.DataFrame(
        {
            "account_id": accounts["account_id"].astype("int64"),
            "created_at": pd.to_datetime(accounts["account_id"].map(first_start)).astype("datetime64[us]"),
            "account_name": pd.Series(None, index=accounts.index, dtype="object"),
            "segment": accounts["channel"].astype(str),
            "industry": pd.Series(None, index=accounts.index, dtype="object"),
            "region": accounts["country"].astype(object),
            "csm_owner": pd.Series(None, index=accounts.index, dtype="object"),
        }
    ).reset_index(drop=True)

    is_seats = subs["units"] == "users"
    subscriptions = pd.DataFrame(
        {
            "subscription_id": subs["account_id"].astype(str) + "-" + subs.groupby("account_id").cumcount().astype(str),
            "account_id": subs["account_id"].astype("int64"),
            "start_date": pd.to_datetime(subs["start_date"]).astype("datetime64[us]"),
            "end_date": pd.to_datetime(subs["end_date"]).astype("datetime64[us]"),
            "mrr": subs["mrr"].astype(float),
            "plan": subs["plan"].astype(str),
            "seats": pd.to_numeric(subs["quantity"].where(is_seats), errors="coerce").astype(float),
            "auto_renew": pd.Series(None, index=subs.index, dtype="object"),
        }
    )

    usage_events, dropped = _events(out, end_date, has_users)
    notes = {
        "mid_term_churns": len(out.mid_term_churns),
        "contracted_end_restored": restored,
        "events_after_end_dropped": dropped,
        "subscriptions_after_end_dropped": len(out.subscriptions) - len(subs),
    }
    return ContractTables(accounts, subscriptions, usage_events, notes)


def _events(out: SimulationOutput, end_date: dt.date, has_users: bool) -> tuple[pd.DataFrame, int]:
    """One row per simulated event: the time (day + second of day), the behaviour's name, the user."""
    n = np.array([len(e[2]) for e in out.events], dtype=np.int64)
    account = np.repeat(np.array([e[0] for e in out.events], dtype=np.int64), n)
    month_start = np.array([np.datetime64(e[1], "s").astype(np.int64) for e in out.events], dtype=np.int64)
    seconds = np.repeat(month_start, n)
    seconds += np.concatenate([e[2] for e in out.events]).astype(np.int64) * 86400
    seconds += np.concatenate([e[3] for e in out.events]).astype(np.int64)
    type_id = np.concatenate([e[4] for e in out.events]).astype(np.int16)
    keep = seconds < np.datetime64(end_date, "s").astype(np.int64)
    dropped = int((~keep).sum())
    frame = pd.DataFrame(
        {
            "account_id": account[keep],
            "event_time": seconds[keep].astype("datetime64[s]").astype("datetime64[us]"),
            "event_type": pd.Categorical.from_codes(type_id[keep], categories=out.event_types),
        }
    )
    if has_users:
        users = np.concatenate([e[5] for e in out.events]).astype(np.int64)[keep]
        frame["user_id"] = account[keep] * USER_STRIDE + users
    else:  # the simulator writes user 0 for every event of a model without users: unknown, not one user
        frame["user_id"] = pd.array([None] * len(frame), dtype="Int64")
    frame["quantity"] = pd.array([None] * len(frame), dtype="Float64")  # one row per event: NULL means 1
    return frame, dropped


#: typed columns (an all-NULL column has no type of its own in a DataFrame)
_SELECT = {
    "accounts": "account_id, created_at, CAST(account_name AS VARCHAR) AS account_name, CAST(segment AS VARCHAR) "
    "AS segment, CAST(industry AS VARCHAR) AS industry, CAST(region AS VARCHAR) AS region, "
    "CAST(csm_owner AS VARCHAR) AS csm_owner",
    "subscriptions": "subscription_id, account_id, CAST(start_date AS DATE) AS start_date, CAST(end_date AS DATE) "
    "AS end_date, mrr, plan, seats, CAST(auto_renew AS BOOLEAN) AS auto_renew",
    # text event types, as a product's export would have them
    "usage_events": "account_id, event_time, CAST(event_type AS VARCHAR) AS event_type, CAST(user_id AS BIGINT) "
    "AS user_id, CAST(quantity AS DOUBLE) AS quantity",
}


def write_warehouse(path: Path, tables: ContractTables) -> None:
    """A fresh DuckDB file with the three contract tables, loaded the way a user would."""
    if path.exists():
        raise FileExistsError(f"{path} exists: the external check writes a fresh warehouse")
    con = duckdb.connect(str(path))
    try:
        for name, frame in tables.frames().items():
            con.register("incoming", frame)
            con.execute(f"CREATE TABLE {name} AS SELECT {_SELECT[name]} FROM incoming")
            con.unregister("incoming")
    finally:
        con.close()
