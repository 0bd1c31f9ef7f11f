"""Tiny hand-made contract tables with sensible defaults, for known-answer tests."""

from __future__ import annotations

import pandas as pd

T = pd.Timestamp


def accounts(*ids: str, created_at: str = "2024-01-01", **extra) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "account_id": list(ids),
            "created_at": T(created_at),
            "account_name": [f"Account {i}" for i in ids],
            "segment": "SMB",
            "industry": "Software",
            "region": "EMEA",
            "csm_owner": "Dana",
        }
    )
    for col, value in extra.items():
        frame[col] = value
    return frame


def subscriptions(rows: list[tuple]) -> pd.DataFrame:
    """rows: (subscription_id, account_id, start, end_or_None, mrr[, seats[, auto_renew[, plan]]])"""
    out = []
    for row in rows:
        sid, aid, start, end, mrr, *rest = row
        seats = rest[0] if len(rest) > 0 else 10.0
        auto = rest[1] if len(rest) > 1 else True
        plan = rest[2] if len(rest) > 2 else "Growth"
        out.append(
            {
                "subscription_id": sid,
                "account_id": aid,
                "start_date": T(start),
                "end_date": T(end) if end else pd.NaT,
                "mrr": float(mrr),
                "plan": plan,
                "seats": float(seats),
                "auto_renew": auto,
            }
        )
    return pd.DataFrame(out)


def events(rows: list[tuple]) -> pd.DataFrame:
    """rows: (account_id, event_time, event_type, user_id[, quantity])"""
    out = []
    for row in rows:
        aid, when, etype, user, *rest = row
        out.append(
            {
                "account_id": aid,
                "event_time": T(when),
                "event_type": etype,
                "user_id": user,
                "quantity": rest[0] if rest else None,
            }
        )
    frame = pd.DataFrame(out, columns=["account_id", "event_time", "event_type", "user_id", "quantity"])
    frame["quantity"] = frame["quantity"].astype("float64")
    return frame


def tickets(rows: list[tuple]) -> pd.DataFrame:
    """rows: (ticket_id, account_id, created_at, resolved_at_or_None, priority[, satisfaction])"""
    out = []
    for row in rows:
        tid, aid, created, resolved, priority, *rest = row
        out.append(
            {
                "ticket_id": tid,
                "account_id": aid,
                "created_at": T(created),
                "resolved_at": T(resolved) if resolved else pd.NaT,
                "priority": priority,
                "category": "bug",
                "satisfaction": float(rest[0]) if rest and rest[0] is not None else None,
            }
        )
    frame = pd.DataFrame(
        out, columns=["ticket_id", "account_id", "created_at", "resolved_at", "priority", "category", "satisfaction"]
    )
    frame["satisfaction"] = frame["satisfaction"].astype("float64")
    return frame


def nps(rows: list[tuple]) -> pd.DataFrame:
    """rows: (account_id, responded_at, score[, user_id])"""
    out = [
        {"account_id": r[0], "responded_at": T(r[1]), "score": int(r[2]), "user_id": r[3] if len(r) > 3 else "u1"}
        for r in rows
    ]
    return pd.DataFrame(out, columns=["account_id", "responded_at", "score", "user_id"])
