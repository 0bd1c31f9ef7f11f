"""Probability calibration: the held-out calibrator (isotonic or Platt) and
its level shift (calibration in the large)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression


@dataclass
class Calibrator:
    """Maps raw LightGBM probabilities to calibrated ones."""

    method: Literal["isotonic", "platt"]
    model: Any
    #: log-odds added after the mapping: the level of the shipped model (see :func:`level_shift`)
    shift: float = 0.0

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, float)
        if self.method == "isotonic":
            prob = np.clip(self.model.predict(raw), 0.0, 1.0)
        else:
            prob = self.model.predict_proba(_logit(raw).reshape(-1, 1))[:, 1]
        if self.shift:
            prob = 1.0 / (1.0 + np.exp(-(_logit(prob) + self.shift)))
        return prob


def level_shift(calibrator: Calibrator, raw: np.ndarray, y: np.ndarray) -> float:
    """The log-odds shift that makes the calibrated probabilities of ``raw``
    average the observed rate of ``y`` (calibration in the large)."""
    from scipy.optimize import brentq

    z = _logit(calibrator(raw))
    target = float(np.mean(y))
    if not 0 < target < 1:
        return 0.0

    def gap(shift: float) -> float:
        return float(np.mean(1.0 / (1.0 + np.exp(-(z + shift))))) - target

    return float(brentq(gap, -10.0, 10.0, xtol=1e-10))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


#: isotonic calibration needs this many churners (and retained accounts): below, its steps
#: are coarse and its lowest step is often exactly 0 ("no risk at all"), so Platt is used
ISOTONIC_MIN_POSITIVES = 1000
#: an isotonic probability never reads exactly 0 or 1
PROBABILITY_FLOOR = 1e-4


def fit_calibrator(raw: np.ndarray, y: np.ndarray, method: str = "auto") -> Calibrator:
    """Isotonic when the held-out rows have enough churners and retained
    accounts (ISOTONIC_MIN_POSITIVES each), else Platt."""
    if method == "auto":
        enough = min(y.sum(), len(y) - y.sum()) >= ISOTONIC_MIN_POSITIVES
        method = "isotonic" if enough else "platt"
    if method == "isotonic":
        iso = IsotonicRegression(y_min=PROBABILITY_FLOOR, y_max=1 - PROBABILITY_FLOOR, out_of_bounds="clip")
        iso.fit(np.asarray(raw, float), y)
        return Calibrator("isotonic", iso)
    lr = LogisticRegression(C=1e6)
    lr.fit(_logit(np.asarray(raw, float)).reshape(-1, 1), y)
    return Calibrator("platt", lr)
