"""Population stability index (PSI) of features and scores against the
training data. Pure functions: a reference profile is built at training time
and stored with the model; scoring compares the current population to it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

#: conventional PSI reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift
PSI_WARN = 0.2
_EPS = 1e-4
MISSING = "__missing__"


def _numeric_profile(values: pd.Series, bins: int) -> dict[str, Any]:
    clean = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    finite = clean[np.isfinite(clean)]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])) if len(finite) else np.array([])
    return {"kind": "numeric", "edges": edges.tolist(), "expected": _numeric_shares(clean, edges).tolist()}


def _numeric_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares per bin (len(edges) + 1 bins) plus a last bin for missing values."""
    values = np.asarray(values, dtype=float)
    missing = ~np.isfinite(values)
    counts = np.bincount(np.searchsorted(edges, values[~missing], side="right"), minlength=len(edges) + 1)
    counts = np.append(counts, missing.sum()).astype(float)
    return counts / max(len(values), 1)


def _categorical_profile(values: pd.Series) -> dict[str, Any]:
    shares = values.astype("object").where(values.notna(), MISSING).astype(str).value_counts(normalize=True)
    return {"kind": "categorical", "expected": shares.to_dict()}


def reference_profile(
    matrix: pd.DataFrame, scores: np.ndarray, categorical: set[str], bins: int = 10
) -> dict[str, dict[str, Any]]:
    """Per-feature (and ``__score__``) distributions of the training data."""
    profile = {
        col: _categorical_profile(matrix[col]) if col in categorical else _numeric_profile(matrix[col], bins)
        for col in matrix.columns
    }
    profile["__score__"] = _numeric_profile(pd.Series(scores), bins)
    return profile


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """sum((a - e) * ln(a / e)) over bins, with a small floor for empty bins."""
    e = np.clip(np.asarray(expected, float), _EPS, None)
    a = np.clip(np.asarray(actual, float), _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def column_psi(entry: dict[str, Any], values: pd.Series) -> float:
    if entry["kind"] == "numeric":
        actual = _numeric_shares(
            pd.to_numeric(values, errors="coerce").to_numpy(dtype=float), np.asarray(entry["edges"])
        )
        return psi(np.asarray(entry["expected"]), actual)
    current = values.astype("object").where(values.notna(), MISSING).astype(str).value_counts(normalize=True)
    keys = sorted(set(entry["expected"]) | set(current.index))
    return psi(np.array([entry["expected"].get(k, 0.0) for k in keys]), np.array([current.get(k, 0.0) for k in keys]))


def drift_report(
    profile: dict[str, dict[str, Any]], matrix: pd.DataFrame, scores: np.ndarray, threshold: float = PSI_WARN
) -> pd.DataFrame:
    """PSI per feature and for the score, sorted worst first, with a flag."""
    rows = [
        {"column": col, "psi": column_psi(entry, matrix[col] if col != "__score__" else pd.Series(scores))}
        for col, entry in profile.items()
        if col == "__score__" or col in matrix.columns
    ]
    report = pd.DataFrame(rows, columns=["column", "psi"]).sort_values("psi", ascending=False, ignore_index=True)
    report["drifted"] = report["psi"] > threshold
    return report
