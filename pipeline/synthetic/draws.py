"""Small vectorised helpers for drawing values, and the collector of generated
rows (kept int-coded until the chunk is finished)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def group_arange(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for each count c, concatenated."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


def hash_uniform(a: np.ndarray, b: np.ndarray, seed: int) -> np.ndarray:
    """Uniform(0, 1) numbers that depend only on (a, b, seed) (splitmix64)."""
    x = (np.asarray(a, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (
        np.asarray(b, dtype=np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
    )
    x = x ^ np.uint64((seed * 0x94D049BB133111EB) % 2**64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / float(2**53)


def choice_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category index per row of a (rows, categories) probability matrix."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cum[:, -1]
    return np.minimum((u[:, None] >= cum).sum(axis=1), probs.shape[1] - 1)


def business_seconds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds into the day, centred on office hours."""
    hours = np.clip(rng.normal(13.5, 2.8, n), 0.0, 23.999)
    return (hours * 3600).astype(np.int64)


def format_ids(prefix: np.ndarray, numbers: np.ndarray, width: int) -> np.ndarray:
    """prefix + zero-padded number, vectorised (object array of str)."""
    if len(numbers) == 0:
        return np.zeros(0, dtype=object)
    padded = pd.Series(np.asarray(numbers, dtype=np.int64)).astype(str).str.zfill(width)
    return (pd.Series(prefix, dtype=object).astype(str) + padded).to_numpy(dtype=object)


@dataclass
class Rows:
    """Column-wise parts appended month by month, concatenated at the end.

    Every collector has an ``acc`` column: the account's index in the chunk.
    """

    parts: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, **columns: np.ndarray) -> None:
        for name, values in columns.items():
            self.parts.setdefault(name, []).append(np.asarray(values))

    def column(self, name: str, dtype: type | str) -> np.ndarray:
        chunks = self.parts.get(name)
        if not chunks:
            return np.zeros(0, dtype=dtype)
        return np.concatenate(chunks).astype(dtype, copy=False)

    def by_account(
        self, time: str, dtypes: dict[str, type | str], keep: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """``acc``, ``time`` and the ``dtypes`` columns, ordered by account, then
        by ``time``; only the rows where ``keep`` is true when it is given."""
        columns = {"acc": np.int64, time: np.int64, **dtypes}
        out = {name: self.column(name, dtype) for name, dtype in columns.items()}
        if keep is not None:
            out = {name: values[keep] for name, values in out.items()}
        order = np.lexsort((out[time], out["acc"]))
        return {name: values[order] for name, values in out.items()}
