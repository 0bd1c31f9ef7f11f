"""Helpers shared by the feature tests: stage hand-made tables, pick rows out
of a matrix, and a seeded random (but realistic) multi-account data set."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

from features.staging import ValidationReport, validate
from pipeline.warehouse import Warehouse
from tests import factories as f
from tests.conftest import _postgres_warehouse, load

#: engine parameters for module-scoped fixtures (the `wh` fixture is per test)
ENGINES = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def engine_warehouse(engine: str) -> Iterator[Warehouse]:
    """A fresh warehouse on one engine (PostgreSQL: a throw-away schema)."""
    if engine == "duckdb":
        with Warehouse("duckdb:///:memory:") as wh:
            yield wh
        return
    gen = _postgres_warehouse()
    try:
        yield next(gen)
    finally:
        gen.close()


def stage(wh, as_of: dt.date, max_bad_share: float = 0.05, **tables: pd.DataFrame) -> ValidationReport:
    """Load the given contract tables and validate them as of ``as_of``."""
    load(wh, **tables)
    return validate(wh, as_of, max_bad_share=max_bad_share)


def row(frame: pd.DataFrame, account_id: str, as_of: dt.date | None = None) -> pd.Series:
    """The one row of ``frame`` for an account (and as-of date)."""
    mask = frame["account_id"] == account_id
    if as_of is not None:
        mask &= frame["as_of_date"] == pd.Timestamp(as_of)
    hits = frame[mask]
    assert len(hits) == 1, f"expected one row for {account_id} {as_of}, got {len(hits)}"
    return hits.iloc[0]


EVENT_TYPES = ["login", "Report Created", "export", "api-call"]


def random_tables(seed: int, n_accounts: int = 10, start: str = "2023-06-01", days: int = 400) -> dict:
    """A small but varied data set: renewals on time, late and never; open-ended
    and overlapping subscriptions; events at random times and exactly at
    midnight (bucket edges); open, late-resolved and rated tickets; NPS."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start)
    end = t0 + pd.Timedelta(days=days)
    ids = [f"acc{i:02d}" for i in range(n_accounts)]
    accounts = f.accounts(*ids)
    accounts["created_at"] = [t0 + pd.Timedelta(hours=int(rng.integers(0, 60 * 24))) for _ in ids]
    accounts["segment"] = rng.choice(["SMB", "Mid-Market", "Enterprise"], n_accounts)
    subs: list[tuple] = []
    for account, created in zip(ids, accounts["created_at"]):
        begin = created.normalize()
        while begin < end:
            term = int(rng.choice([30, 91, 365]))
            stop = begin + pd.Timedelta(days=term)
            open_ended = rng.random() < 0.1
            subs.append(
                (
                    f"s{len(subs)}",
                    account,
                    str(begin.date()),
                    None if open_ended else str(stop.date()),
                    float(rng.integers(0, 500)),
                    float(rng.integers(1, 20)),
                    bool(rng.random() < 0.5),
                    str(rng.choice(["Basic", "Pro"])),
                )
            )
            if open_ended:
                break
            if rng.random() < 0.2:  # an overlapping add-on
                subs.append(
                    (
                        f"s{len(subs)}",
                        account,
                        str((begin + pd.Timedelta(days=5)).date()),
                        str((begin + pd.Timedelta(days=35)).date()),
                        20.0,
                        2.0,
                    )
                )
            begin = stop + pd.Timedelta(days=int(rng.choice([0, 0, 0, 10, 29, 30, 60, 200])))
    events = []
    for _ in range(600):
        when = t0 + pd.Timedelta(seconds=int(rng.integers(0, days * 86400)))
        if rng.random() < 0.2:
            when = when.normalize()  # exactly midnight: the edge of a day bucket
        events.append(
            (
                str(rng.choice(ids)),
                str(when),
                str(rng.choice(EVENT_TYPES)),
                None if rng.random() < 0.1 else f"u{rng.integers(0, 6)}",
                None if rng.random() < 0.5 else float(rng.integers(0, 5)),
            )
        )
    tickets = []
    for i in range(60):
        created = t0 + pd.Timedelta(seconds=int(rng.integers(0, days * 86400)))
        resolved = None if rng.random() < 0.3 else str(created + pd.Timedelta(hours=int(rng.integers(1, 600))))
        tickets.append(
            (
                f"t{i}",
                str(rng.choice(ids)),
                str(created),
                resolved,
                str(rng.choice(["low", "normal", "High", " urgent "])),
                None if rng.random() < 0.4 else int(rng.integers(1, 6)),
            )
        )
    nps = [
        (
            str(rng.choice(ids)),
            str(t0 + pd.Timedelta(seconds=int(rng.integers(0, days * 86400)))),
            int(rng.integers(0, 11)),
        )
        for _ in range(40)
    ]
    # a dormant customer: paying throughout, used the product only in its first 20 days
    # ("days since last activity" then comes from long before every look-back window)
    accounts = pd.concat([accounts, f.accounts("dormant", created_at=start)], ignore_index=True)
    subs.append(("s-dormant", "dormant", str(t0.date()), None, 99.0, 3.0))
    events += [
        ("dormant", str(t0 + pd.Timedelta(hours=int(rng.integers(0, 20 * 24)))), "login", "d1", None) for _ in range(5)
    ]
    return dict(
        accounts=accounts,
        subscriptions=f.subscriptions(subs),
        usage_events=f.events(events),
        support_tickets=f.tickets(tickets),
        nps_responses=f.nps(nps),
    )


def with_history(tables: dict[str, pd.DataFrame], first: str = "2022-01-01") -> dict[str, pd.DataFrame]:
    """``tables`` plus one long-gone account whose rows are the first of every
    table, on ``first``: windows of a year are then complete at the tests'
    as-of dates (honest windows: a window that starts before a table's first
    row is unknown). The account is inactive at any later as-of date, so no
    feature of the others changes."""
    out = dict(tables)
    ids = tables["accounts"]["account_id"]
    old = 999_999 if pd.api.types.is_integer_dtype(ids) else "zz-history"
    history = {
        "accounts": f.accounts(old, created_at=first),
        "subscriptions": f.subscriptions([(f"s-{old}", old, first, "2022-02-01", 1)]),
        "usage_events": f.events([(old, f"{first} 12:00", "login", "u-old")]),
        "support_tickets": f.tickets([(f"t-{old}", old, f"{first} 12:00", f"{first} 13:00", "low")]),
        "nps_responses": f.nps([(old, f"{first} 12:00", 8)]),
    }
    for table, rows in history.items():
        if table in out:
            given = out[table]["account_id"]
            as_text = len(given) and isinstance(given.iloc[0], str)
            rows["account_id"] = str(old) if as_text else old  # the table's own id type
            out[table] = pd.concat([out[table], rows], ignore_index=True)
    return out
