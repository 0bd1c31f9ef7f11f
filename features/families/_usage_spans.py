"""The usage family's look-back *spans*.

The days of all look-back windows are cut at every window edge (T, T-7, T-30,
T-60, T-90 of every snapshot T) into spans, so each window is a union of
whole spans:

- ``_churn_spans(day, span)``: which span a day belongs to;
- ``_churn_span_window(span, as_of_date, in_7d, in_30d, in_prev_30d)``: the
  spans in each snapshot's 90-day window, flagged by the shorter ones;
- ``_churn_span_next(span, as_of_date)``: each span mapped to the first
  snapshot that sees it (for "days since last activity").
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
