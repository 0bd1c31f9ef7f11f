"""The simulation of a chunk as contract-typed DataFrames.

The builders below only say which values go in which contract column, as the
simulation keeps them: ids, codes, epoch seconds and epoch days. The contract
(`features.contract.INPUT_TABLES`) decides the rest: the tables and their
order, the columns and their order, and the pandas type of each column from
its logical type:

| logical type | values from the builder | pandas dtype |
|--------------|-------------------------|--------------|
| text | str or None | pandas' default text dtype (`str` on pandas 3), missing = NaN |
| timestamp | epoch seconds, >= NO_DAY for NULL | naive `datetime64[ns]` |
| date | epoch days, >= NO_DAY for NULL | `datetime64[ns]` at midnight |
| integer | whole numbers | int64 |
| boolean | truth values | bool |
| numeric | numbers | the builder's own: float64 for amounts, integer dtypes for counts |

A NOT NULL column of the contract with a missing value, or a builder that
misses or adds a column, is a bug of the generator and raises `RuntimeError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.contract import INPUT_TABLES, Column, TableSpec
from pipeline.synthetic.accounts import Accounts, plan_tier
from pipeline.synthetic.draws import Rows, format_ids, group_arange
from pipeline.synthetic.params import EVENT_TYPES, PRIORITIES, SEGMENTS, TICKET_CATEGORIES
from pipeline.synthetic.timeline import NO_DAY, SECONDS_PER_DAY

if TYPE_CHECKING:
    from pipeline.synthetic.simulation import ChunkSimulation

#: the contract tables the simulation fills; an optional contract table it does not
#: simulate is not generated (its feature families are off on demo data)
SIMULATED = ("accounts", "subscriptions", "usage_events", "support_tickets", "nps_responses")
_UNSIMULATED_REQUIRED = [n for n, spec in INPUT_TABLES.items() if spec.required and n not in SIMULATED]
if _UNSIMULATED_REQUIRED:
    raise RuntimeError(f"generator bug: required contract tables not simulated: {_UNSIMULATED_REQUIRED}")
TABLE_COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {name: spec.column_names for name, spec in INPUT_TABLES.items() if name in SIMULATED}
)
"""Tables in the order `generate` yields them, with their contract columns."""

TEXT_DTYPE = pd.Series(["text"]).dtype  # str with pandas >= 3, object before


def chunk_frames(sim: ChunkSimulation) -> dict[str, pd.DataFrame]:
    """Every contract table of a finished chunk, in contract order."""
    acc, state = sim.accounts, sim.book.state
    user_ids = _UserIds(acc, state.max_users)
    columns = {
        "accounts": _accounts(acc),
        "subscriptions": _subscriptions(acc, sim.book.subs),
        "usage_events": _usage(acc, sim.activity.usage, user_ids),
        "support_tickets": _tickets(acc, sim.support.tickets, state.churn_days, sim.cal.end_day),
        "nps_responses": _nps(acc, sim.support.nps, user_ids),
    }
    return {name: contract_frame(INPUT_TABLES[name], columns[name]) for name in TABLE_COLUMNS}


def contract_frame(spec: TableSpec, values: Mapping[str, object]) -> pd.DataFrame:
    """A DataFrame of the contract columns of ``spec``, typed from the contract."""
    if set(values) != set(spec.column_names):
        raise RuntimeError(
            f"generator bug: {spec.name} columns {sorted(values)} are not the contract's {list(spec.column_names)}"
        )
    frame = pd.DataFrame({c.name: _typed(c, values[c.name]) for c in spec.columns})
    text = [c.name for c in spec.columns if c.type == "text" and frame[c.name].dtype != TEXT_DTYPE]
    if text:  # empty or all-missing text columns are not inferred as text
        frame = frame.astype({name: TEXT_DTYPE for name in text})
    for c in spec.columns:
        if not c.nullable and frame[c.name].isna().any():
            raise RuntimeError(f"generator bug: {spec.name}.{c.name} is NOT NULL, has NULLs")
    return frame


def _typed(column: Column, values: object) -> object:
    """The builder's values as the pandas type of the column's logical type."""
    if column.type == "timestamp":
        return _datetimes(values, "s")
    if column.type == "date":
        return _datetimes(values, "D")
    if column.type == "integer":
        return np.asarray(values).astype(np.int64)
    if column.type == "boolean":
        return np.asarray(values, dtype=bool)
    if column.type == "numeric" and not pd.api.types.is_numeric_dtype(getattr(values, "dtype", "")):
        raise RuntimeError(f"generator bug: numeric column {column.name} is {values!r:.60}")
    return values  # text; numeric in the builder's dtype


def _datetimes(values: object, unit: str) -> np.ndarray:
    """Epoch seconds (unit "s") or days ("D") -> naive datetime64[ns]; >= NO_DAY -> NaT."""
    values = np.asarray(values, dtype=np.int64)
    never = values >= NO_DAY
    out = np.where(never, 0, values).astype(f"M8[{unit}]").astype("M8[ns]")
    out[never] = np.datetime64("NaT")
    return out


def _sequence_ids(acc: Accounts, rows: np.ndarray, tag: str, width: int) -> np.ndarray:
    """'A000123-S007': numbered per account, in row order (rows sorted by account)."""
    seq = group_arange(np.bincount(rows, minlength=len(acc))) + 1
    return format_ids(acc.account_id[rows] + tag, seq, width)


class _UserIds:
    """'A000123-U004' strings; None where user < 0. Formats each distinct user once."""

    def __init__(self, acc: Accounts, max_users: np.ndarray) -> None:
        self.max_users = np.maximum(max_users, 1)
        self.offset = np.cumsum(self.max_users) - self.max_users
        owner = np.repeat(np.arange(len(acc)), self.max_users)
        table = format_ids(acc.account_id[owner] + "-U", group_arange(self.max_users) + 1, 3)
        self.table = np.append(table, None)

    def __call__(self, acc: np.ndarray, user: np.ndarray) -> np.ndarray:
        code = np.where(
            user >= 0,
            self.offset[acc] + np.minimum(user, self.max_users[acc] - 1),
            len(self.table) - 1,
        )
        return self.table[code]


def _accounts(a: Accounts) -> dict[str, object]:
    return {
        "account_id": a.account_id,
        "created_at": a.created_day * SECONDS_PER_DAY + a.created_second,
        "account_name": a.account_name,
        "segment": np.array(SEGMENTS, dtype=object)[a.segment],
        "industry": a.industry,
        "region": a.region,
        "csm_owner": a.csm_owner,
    }


def _subscriptions(acc: Accounts, subs: Rows) -> dict[str, object]:
    r = subs.by_account("start", {"end": np.int64, "mrr": np.float64, "seats": np.float64, "auto_renew": bool})
    return {
        "subscription_id": _sequence_ids(acc, r["acc"], "-S", 3),
        "account_id": acc.account_id[r["acc"]],
        "start_date": r["start"],
        "end_date": r["end"],
        "mrr": r["mrr"],
        "plan": plan_tier(acc.segment[r["acc"]], r["mrr"]),
        "seats": pd.array(np.round(r["seats"]).astype(np.int64), dtype="Int64"),
        "auto_renew": r["auto_renew"],
    }


def _usage(acc: Accounts, usage: Rows, user_ids: _UserIds) -> dict[str, object]:
    rows = usage.column("acc", np.int64)
    return {
        "account_id": acc.account_id[rows],
        "event_time": usage.column("second", np.int64),
        "event_type": np.array(EVENT_TYPES, dtype=object)[usage.column("type", np.int64)],
        "user_id": user_ids(rows, usage.column("user", np.int64)),
        "quantity": usage.column("quantity", np.int64),
    }


def _tickets(acc: Accounts, tickets: Rows, churn_days: np.ndarray, end_day: int) -> dict[str, object]:
    r = tickets.by_account(
        "created",
        {"resolved": np.int64, "priority": np.int64, "category": np.int64, "csat": np.float64},
    )
    rows, created = r["acc"], r["created"]
    # nothing after the end of the history, nor after the account left
    interval_end = np.where(created // SECONDS_PER_DAY < churn_days[rows, 0], churn_days[rows, 0], churn_days[rows, 1])
    limit = np.minimum(interval_end, end_day) * SECONDS_PER_DAY
    still_open = r["resolved"] >= limit
    return {
        "ticket_id": _sequence_ids(acc, rows, "-T", 4),
        "account_id": acc.account_id[rows],
        "created_at": created,
        "resolved_at": np.where(still_open, NO_DAY, r["resolved"]),
        "priority": np.array(PRIORITIES, dtype=object)[r["priority"]],
        "category": np.array(TICKET_CATEGORIES, dtype=object)[r["category"]],
        "satisfaction": np.where(still_open, np.nan, r["csat"]),
    }


def _nps(acc: Accounts, nps: Rows, user_ids: _UserIds) -> dict[str, object]:
    r = nps.by_account("second", {"score": np.float64, "user": np.int64}, keep=nps.column("emit", bool))
    return {
        "account_id": acc.account_id[r["acc"]],
        "responded_at": r["second"],
        "score": r["score"],
        "user_id": user_ids(r["acc"], r["user"]),
    }
