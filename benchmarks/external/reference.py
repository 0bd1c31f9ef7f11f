"""The reference peer: a plain LightGBM on fightchurn-style 28-day metrics.

The metrics are the book's simplest ones (*Fighting Churn with Data*, chapter 3): for each
event type, the number of events in the 28 days up to the observation date. They are computed
here in pandas from the raw ``usage_events`` rows, for each snapshot: an event counts at as-of
date T when ``T - 28 days < event_time <= T 00:00`` (the pipeline's point-in-time rule). The
model is ``lightgbm.LGBMClassifier`` with its default parameters (a fixed seed), trained on every
mature training snapshot, and its probabilities are used as they come (no calibration).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WINDOW = pd.Timedelta(days=28)


class EventCounts:
    """28-day event counts per (account, event type) at any as-of date, from the raw events."""

    def __init__(self, events: pd.DataFrame):
        order = np.argsort(events["event_time"].to_numpy(), kind="stable")
        self.account = events["account_id"].to_numpy()[order]
        self.time = events["event_time"].to_numpy()[order]
        types = events["event_type"].astype("category")
        self.types = [str(t) for t in types.cat.categories]
        self.code = types.cat.codes.to_numpy()[order]

    def columns(self) -> list[str]:
        return [f"count_28d_{t}" for t in self.types]

    def at(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The counts for ``rows`` (account_id, as_of_date): one column per event type, 0 without events."""
        parts = []
        for as_of, group in rows.groupby("as_of_date", sort=True):
            cutoff = np.datetime64(pd.Timestamp(as_of).normalize().to_datetime64())
            lo = np.searchsorted(self.time, cutoff - WINDOW.to_timedelta64(), side="right")
            hi = np.searchsorted(self.time, cutoff, side="right")
            window = pd.DataFrame({"account_id": self.account[lo:hi], "code": self.code[lo:hi]})
            counts = window.groupby(["account_id", "code"]).size().unstack(fill_value=0)
            counts = counts.reindex(columns=range(len(self.types)), fill_value=0)
            counts.columns = self.columns()
            counts.index = counts.index.astype(str)
            wanted = group[["account_id", "as_of_date"]].copy()
            part = wanted.join(counts, on="account_id").fillna(0)
            parts.append(part)
        out = pd.concat(parts).loc[rows.index]
        return out[self.columns()].astype(float)


def fit(x: pd.DataFrame, y: np.ndarray, seed: int):
    import lightgbm as lgb

    model = lgb.LGBMClassifier(random_state=seed, n_jobs=2, verbose=-1)
    model.fit(x, y)
    return model
