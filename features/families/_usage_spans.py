"""The usage family's look-back *spans*.

The days of all look-back windows are cut at every window edge (T, T-7, T-30,
T-60, T-90 of every snapshot T) into spans, so each window is a union of
whole spans:

- ``_churn_spans(day, span)``: which span a day belongs to;
- ``_churn_span_window(span, as_of_date, in_7d, in_30d, in_prev_30d)``: the
  spans in each snapshot's 90-day window, flagged by the shorter ones;
- ``_churn_span_next(span, as_of_date)``: each span mapped to the first
  snapshot that sees it (for "days since last activity").

Distinct counts (active users, active days, event types used) are not
summed over spans: a user active in three spans of a window is one user.
They use bit masks instead (:func:`day_bits`): one bit per (snapshot,
window), OR-aggregated per counted thing, then counted per account. No row
per (account, snapshot, user) is ever made.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd

from features.sql import WINDOW_DAYS

#: look-back window edges (days before as-of) of the usage features
WINDOW_EDGES = (0, 7, 30, 60, WINDOW_DAYS)


def spans(dates: Sequence[dt.date]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Cut the days of all look-back windows at every window edge.

    Span ``j`` holds the days in ``(edges[j-1], edges[j]]``; a window
    ``(T - L, T]`` is exactly the spans with ``edges[j-1] >= T - L`` and
    ``edges[j] <= T``. Returns (day -> span, span x snapshot window flags,
    span -> first snapshot on or after its end)."""
    edges = sorted({d - dt.timedelta(days=k) for d in dates for k in WINDOW_EDGES})
    days = [
        (edges[j - 1] + dt.timedelta(days=k), j)
        for j in range(1, len(edges))
        for k in range(1, (edges[j] - edges[j - 1]).days + 1)
    ]
    rows = []
    for d in dates:
        for j in range(1, len(edges)):
            lo, hi = edges[j - 1], edges[j]
            if hi <= d and lo >= d - dt.timedelta(days=WINDOW_DAYS):
                rows.append(
                    (
                        j,
                        d,
                        lo >= d - dt.timedelta(days=7),
                        lo >= d - dt.timedelta(days=30),
                        lo >= d - dt.timedelta(days=60) and hi <= d - dt.timedelta(days=30),
                    )
                )
    day_spans = pd.DataFrame(days, columns=["day", "span"]).astype({"span": "int32"})
    window = pd.DataFrame(rows, columns=["span", "as_of_date", "in_7d", "in_30d", "in_prev_30d"])
    following = pd.DataFrame(
        [(j, min(d for d in dates if d >= edges[j])) for j in range(1, len(edges))],
        columns=["span", "as_of_date"],
    )
    return day_spans, window.astype({"span": "int32"}), following.astype({"span": "int32"})


SPAN_TABLES = ("_churn_spans", "_churn_span_window", "_churn_span_next")


#: the windows a day-bit mask flags, per snapshot, in bit order: (name, first
#: and last day back from the as-of date); day ``T - k`` is bucket ``T - k``
BIT_WINDOWS = (("7d", 0, 6), ("30d", 0, 29), ("90d", 0, WINDOW_DAYS - 1), ("prev_30d", 30, 59))
#: snapshots per mask: 4 bits each, 60 of a BIGINT's 63 value bits
SNAPSHOTS_PER_CHUNK = 15


def day_bits(dates: Sequence[dt.date]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Which snapshot windows each day falls in, as bit masks.

    Snapshots (sorted) are cut into chunks of :data:`SNAPSHOTS_PER_CHUNK`;
    snapshot ``i`` of a chunk owns bits ``4 i .. 4 i + 3``, one per window of
    :data:`BIT_WINDOWS`. Returns (day, chunk, mask): the day's bits in that
    chunk (only days in some window), and (as_of_date, chunk, pos): where each
    snapshot's bits are. A distinct count over a window (users, days) is then
    one ``BIT_OR`` per counted thing and a count of set bits per account, not
    a row per thing and snapshot."""
    masks: dict[tuple[dt.date, int], int] = {}
    snapshots = []
    for i, d in enumerate(sorted(set(dates))):
        chunk, pos = divmod(i, SNAPSHOTS_PER_CHUNK)
        snapshots.append((d, chunk, pos))
        for bit, (_, first, last) in enumerate(BIT_WINDOWS):
            for k in range(first, last + 1):
                key = (d - dt.timedelta(days=k), chunk)
                masks[key] = masks.get(key, 0) | (1 << (4 * pos + bit))
    days = pd.DataFrame([(d, c, m) for (d, c), m in sorted(masks.items())], columns=["day", "chunk", "mask"])
    positions = pd.DataFrame(snapshots, columns=["as_of_date", "chunk", "pos"])
    return days.astype({"chunk": "int32", "mask": "int64"}), positions.astype({"chunk": "int32", "pos": "int32"})


BIT_TABLES = ("_churn_day_bits", "_churn_snapshot_bits")

#: days per block of an account's active-day bitmap: one BIGINT holds 63 days
#: (its value bits on every engine: PostgreSQL's BIGINT is signed)
DAYS_PER_BLOCK = 63
#: the run table of :func:`day_blocks`
DAY_WINDOWS_TABLE = "_churn_day_windows"
#: the windows active days are counted over, as (column, days back from the as-of date)
DAY_WINDOWS = (("active_days_30d", 30), ("active_days_90d", WINDOW_DAYS))


def first_day(dates: Sequence[dt.date]) -> dt.date:
    """The earliest day bucket any look-back window of ``dates`` holds: bit 0
    of block 0 of the active-day bitmaps."""
    return min(dates) - dt.timedelta(days=WINDOW_DAYS - 1)


def day_blocks(dates: Sequence[dt.date]) -> pd.DataFrame:
    """Each snapshot's windows over the active-day bitmaps: (as_of_date,
    block, one mask per :data:`DAY_WINDOWS`), for the blocks a window touches.

    An account's active days are kept as bitmaps, one per block of
    :data:`DAYS_PER_BLOCK` days from :func:`first_day` (day ``first + k`` is
    bit ``k % 63`` of block ``k // 63``): a few rows per account instead of a
    row per active day. Its active days in a window are then the set bits of
    (bitmap AND window mask), summed over the blocks."""
    first = first_day(dates)
    rows = []
    for d in sorted(set(dates)):
        masks: dict[int, list[int]] = {}
        for i, (_, length) in enumerate(DAY_WINDOWS):
            for k in range(length):
                block, bit = divmod((d - dt.timedelta(days=k) - first).days, DAYS_PER_BLOCK)
                masks.setdefault(block, [0] * len(DAY_WINDOWS))[i] |= 1 << bit
        rows += [(d, block, *m) for block, m in sorted(masks.items())]
    columns = ["as_of_date", "block", *(f"mask_{name.removeprefix('active_days_')}" for name, _ in DAY_WINDOWS)]
    return pd.DataFrame(rows, columns=columns).astype({"block": "int32", **{c: "int64" for c in columns[2:]}})
