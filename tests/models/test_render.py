"""The feature-by-feature rendering (features.render) writes exactly the
sentences the row-by-row catalog.render_reason writes, on random (row,
feature) pairs of the generated training set with missing values, zeros and
ones put in; and the per-row joins give what a join row by row gives."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import catalog
from features.build import EVENT_TYPES_ATTR, feature_columns
from features.render import render_reasons
from models.explain import join_by_row


def _with_edge_values(frame: pd.DataFrame, names: list[str], seed: int) -> pd.DataFrame:
    """A copy where some cells are missing, 0 or 1 (the templates' special cases)."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    for name in names:
        column = out[name]
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        draw = rng.random(len(out))
        out.loc[draw < 0.1, name] = np.nan if numeric else None
        if numeric:
            out.loc[(draw >= 0.1) & (draw < 0.15), name] = 0
            out.loc[(draw >= 0.15) & (draw < 0.2), name] = 1
    return out


def test_render_reasons_equals_render_reason_row_by_row(training_frame) -> None:
    names = feature_columns(training_frame)
    frame = _with_edge_values(training_frame.iloc[:3000].reset_index(drop=True), names, seed=3)
    event_types = training_frame.attrs.get(EVENT_TYPES_ATTR) or {}
    rng = np.random.default_rng(0)
    pairs = 6000
    rows = rng.integers(0, len(frame), pairs)
    picked = np.asarray(names, dtype=object)[rng.integers(0, len(names), pairs)]
    fast = render_reasons(picked, rows, frame, event_types)
    records = frame.to_dict("records")
    slow = [catalog.render_reason(f, records[r], event_types) for f, r in zip(picked, rows)]
    assert list(fast) == slow
    assert render_reasons([], [], frame).shape == (0,)


def test_join_by_row_equals_a_join_per_row() -> None:
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 50, 400)
    texts = np.asarray([f"t{i}" for i in range(len(rows))], dtype=object)
    expected = np.full(60, None, dtype=object)
    for row in range(60):
        mine = [t for r, t in zip(rows, texts) if r == row]
        expected[row] = "; ".join(mine) if mine else None
    assert join_by_row(rows, texts, 60).tolist() == expected.tolist()
    assert join_by_row(np.zeros(0, int), np.zeros(0, object), 3).tolist() == [None, None, None]
