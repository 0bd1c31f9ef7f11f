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


def test_render_reasons_tells_repeated_values_once_without_mixing_them_up(training_frame) -> None:
    """Sentences are rendered once per distinct (value, companion values, family
    fields): many repeated rows, 0.0 next to -0.0 and object columns mixing ints,
    floats and text still give exactly catalog.render_reason's sentence per pair."""
    names = feature_columns(training_frame)
    base = training_frame.iloc[:200].reset_index(drop=True)
    frame = _with_edge_values(pd.concat([base] * 5, ignore_index=True), names, seed=5)
    rng = np.random.default_rng(2)
    for name in names:
        column = frame[name]
        if column.dtype == np.float64:
            flip = rng.random(len(frame)) < 0.3
            frame.loc[flip & (column == 0).to_numpy(), name] = -0.0
    mixed = next(n for n in names if frame[n].dtype == np.float64)
    frame[mixed] = pd.Series([1, 1.0, "1", None, -0.0, 0.0, 0, 2.5] * (len(frame) // 8), dtype=object)
    event_types = training_frame.attrs.get(EVENT_TYPES_ATTR) or {}
    pairs = 8000
    rows = rng.integers(0, len(frame), pairs)
    picked = np.asarray([*names, mixed, "days_to_renewal"], dtype=object)[rng.integers(0, len(names) + 2, pairs)]
    picked = np.asarray([p if p in frame.columns else mixed for p in picked], dtype=object)
    records = frame.to_dict("records")
    slow = []
    for f, r in zip(picked, rows):
        try:
            slow.append(catalog.render_reason(f, records[r], event_types))
        except (TypeError, ValueError):  # a text value where the unit is a number: not comparable
            slow.append(None)
    keep = np.asarray([s is not None for s in slow])
    fast = render_reasons(picked[keep], rows[keep], frame, event_types)
    assert list(fast) == [s for s in slow if s is not None]


def test_family_fields_are_grouped_by_every_column_they_read() -> None:
    """A family that reads a second column only for some rows: rows are grouped
    by both, so each group's rows get the same fields as when asked one by one."""
    from features.render import _Columns, _family_groups, _RowView

    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"a": rng.integers(-1, 2, 500).astype(float), "b": rng.integers(0, 3, 500).astype(float)})
    frame.loc[rng.random(500) < 0.1, "a"] = np.nan

    def fields(row):
        a = row.get("a")
        return {"x": f"{a} {row['b']}" if a == a and a > 0 else str(a), "y": str(row.get("missing"))}

    rows = np.arange(len(frame))[::-1].copy()
    columns = _Columns(frame, rows, frozenset(frame.columns))
    members = np.arange(len(rows))
    group = _family_groups(fields, frame, rows, columns, members)
    asked = [fields(_RowView(columns, int(i))) for i in members]
    for g in np.unique(group):
        assert len({tuple(asked[i].items()) for i in np.flatnonzero(group == g)}) == 1
    assert len(np.unique(group)) <= 4 * 3  # grouped by (a, b) at most (a: -1, 0, 1 or missing)
