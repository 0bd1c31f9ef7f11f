"""Putting a feature matrix together from the families' parts, in pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd

KEY = ["account_id", "as_of_date"]


def normalise_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """Keys as str and dates, in place: the frames are the build's own."""
    out = frame
    out["account_id"] = out["account_id"].astype(str)
    out["as_of_date"] = pd.to_datetime(out["as_of_date"]).dt.normalize().astype("datetime64[ns]")
    return out


def side_by_side(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The families' rows (and the labels) as one matrix. They are the
    spine's rows in the same order (``KEY_ORDER``), so their columns are put
    side by side: a join of a million rows per family costs seconds. Parts
    whose keys do not line up are joined. Each part is let go once used: a
    training set's parts are as big as the matrix."""
    frame = normalise_keys(parts.pop(0))
    side = [frame]
    while parts:
        part = normalise_keys(parts.pop(0))
        if len(part) == len(frame) and all(np.array_equal(part[k].to_numpy(), frame[k].to_numpy()) for k in KEY):
            side.append(part.drop(columns=KEY))
        else:
            frame = pd.concat(side, axis=1) if len(side) > 1 else frame
            frame = frame.merge(part, on=KEY, how="left", validate="one_to_one")
            side = [frame]
    return pd.concat(side, axis=1) if len(side) > 1 else side[0]


def is_in_key_order(frame: pd.DataFrame) -> bool:
    """Rows already sorted by (account_id, as_of_date), as ``sort_values``
    would put them, on a default index: the sort can be skipped."""
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0 or frame.index.step != 1:
        return False
    ids, dates = frame["account_id"].to_numpy(), frame["as_of_date"].to_numpy()
    if len(ids) < 2:
        return True
    a, b = ids[:-1], ids[1:]
    try:
        return bool(np.all((a < b) | ((a == b) & (dates[:-1] <= dates[1:]))))
    except TypeError:  # keys that do not compare: let sort_values decide
        return False
