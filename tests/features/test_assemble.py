"""Putting the families' parts side by side (features/assemble.py)."""

from __future__ import annotations

import pandas as pd

from features.assemble import is_in_key_order, side_by_side


def _part(ids, dates, **columns) -> pd.DataFrame:
    return pd.DataFrame({"account_id": ids, "as_of_date": pd.to_datetime(dates), **columns})


def test_parts_in_the_same_order_are_put_side_by_side():
    ids, dates = ["a", "a", "b"], ["2024-01-01", "2024-02-01", "2024-01-01"]
    out = side_by_side([_part(ids, dates, x=[1, 2, 3]), _part(ids, dates, y=[4, 5, 6]), _part(ids, dates, z=[7, 8, 9])])
    assert list(out.columns) == ["account_id", "as_of_date", "x", "y", "z"]
    assert out[["x", "y", "z"]].to_numpy().tolist() == [[1, 4, 7], [2, 5, 8], [3, 6, 9]]


def test_parts_whose_keys_do_not_line_up_are_joined_on_the_keys():
    """A part in another order, or with fewer rows (a left join from the first)."""
    first = _part(["a", "b", "c"], ["2024-01-01"] * 3, x=[1, 2, 3])
    shuffled = _part(["c", "a", "b"], ["2024-01-01"] * 3, y=[30, 10, 20])
    fewer = _part(["b"], ["2024-01-01"], z=[200])
    out = side_by_side([first, shuffled, fewer]).set_index("account_id")
    assert out["y"].to_dict() == {"a": 10, "b": 20, "c": 30}
    assert out.loc["b", "z"] == 200 and pd.isna(out.loc["a", "z"]) and len(out) == 3


def test_key_order_is_recognised_only_when_sort_values_would_keep_it():
    ids, dates = ["a", "a", "b"], ["2024-01-01", "2024-02-01", "2024-01-01"]
    assert is_in_key_order(_part(ids, dates))
    assert not is_in_key_order(_part(["a", "a", "b"], ["2024-02-01", "2024-01-01", "2024-01-01"]))
    assert not is_in_key_order(_part(["b", "a"], ["2024-01-01"] * 2))
    assert not is_in_key_order(_part(["B", "a"], ["2024-01-01"] * 2)[::-1])  # not a default index
    assert is_in_key_order(_part(["B", "a"], ["2024-01-01"] * 2))  # code point order, as sort_values
