"""The gate knows noise: walk-forward evaluation with intervals, and a paired
bootstrap comparison that never promotes a retrain on unchanged data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.evaluate import classification_metrics
from models.gate import judge
from models.train import LABEL, TrainingResult
from models.walkforward import INTERVAL_METRICS, fast_metrics, paired_bootstrap


def test_fast_metrics_equal_sklearns_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(30):
        n = int(rng.integers(30, 2000))
        y = (rng.random(n) < 0.08).astype(int)
        y[:2] = [0, 1]
        p = np.round(rng.random(n) * rng.choice([5, 50, 1000])) / 1000 + y * rng.random(n) * 0.3
        fast, slow = fast_metrics(y, p, INTERVAL_METRICS), classification_metrics(y, p)
        for name in INTERVAL_METRICS:
            assert fast[name] == pytest.approx(slow[name], rel=1e-12, abs=1e-12), name


def test_reported_metrics_are_window_means_with_intervals(trained: TrainingResult):
    per = trained.window_metrics
    assert len(per) == 3 and (per["churned"] > 20).all()
    for name in INTERVAL_METRICS:
        assert trained.metrics[name] == pytest.approx(per[name].mean())
        low, high = trained.intervals[name]
        assert high - low > 0, name
        if name not in ("ece", "log_loss"):  # resampling biases those two upwards
            assert low <= trained.metrics[name] <= high, name
    assert {"accounts", "churned"} <= set(trained.by_segment.columns)


def test_the_gate_does_not_promote_a_challenger_identical_to_the_champion(trained: TrainingResult):
    """A retrain on unchanged data: the same held-out predictions gain exactly 0."""
    champion = ("3", trained.model)
    decision = judge(trained, champion, "pr_auc", 0.0, "4", champion_heldout=trained.heldout, n_boot=200)
    assert not decision.promoted
    assert decision.gain == 0 and decision.gain_low == 0 and decision.gain_high == 0
    assert decision.windows == sorted(trained.heldout["window"].unique()) and decision.rows == len(trained.heldout)
    assert "held-out predictions of both training runs" in decision.comparison


def test_the_gate_promotes_only_beyond_noise(trained: TrainingResult):
    rows = trained.heldout
    rng = np.random.default_rng(0)
    # a clearly worse champion: its predictions are noise
    noise = rows.assign(prob=rng.random(len(rows)))
    decision = judge(trained, ("3", trained.model), "pr_auc", 0.0, "4", champion_heldout=noise, n_boot=200)
    assert decision.promoted and decision.gain_low > 0, decision.reason
    # a champion a hair worse (the challenger's predictions with tiny noise): not beyond noise
    close = rows.assign(prob=np.clip(rows["prob"] + rng.normal(0, 0.002, len(rows)), 0, 1))
    decision = judge(trained, ("3", trained.model), "roc_auc", 0.0, "4", champion_heldout=close, n_boot=200)
    assert decision.gain_low <= 0 <= decision.gain_high, decision.reason
    assert not decision.promoted


def test_paired_bootstrap_on_hand_made_windows():
    y = np.array([0, 0, 1, 1] * 50 + [0, 1] * 50)
    good = np.array([0.1, 0.2, 0.8, 0.9] * 50 + [0.2, 0.7] * 50)
    flipped = 1 - good
    frame = pd.DataFrame({LABEL: y, "a": good, "b": flipped, "window": ["w1"] * 200 + ["w2"] * 100})
    gain, (low, high) = paired_bootstrap(frame, "a", "b", "roc_auc", lambda a, b: a - b, n_boot=100)
    assert gain == pytest.approx(1.0) and low == pytest.approx(1.0) and high == pytest.approx(1.0)
    same, interval = paired_bootstrap(frame, "a", "a", "roc_auc", lambda a, b: a - b, n_boot=50)
    assert same == 0 and interval == (0.0, 0.0)


def test_the_reason_says_whether_the_champion_can_have_seen_the_windows(trained: TrainingResult):
    """Without shared windows the champion model scores the challenger's: the
    reason says whether it trained on them (its training ran to its last
    held-out window)."""
    rows = trained.heldout
    first = pd.to_datetime(rows["as_of_date"]).min()
    year_before = first - pd.DateOffset(years=1)
    older = rows.assign(as_of_date=year_before)  # an old champion: never saw these windows
    decision = judge(trained, ("3", trained.model), "pr_auc", 0.0, "4", champion_heldout=older, n_boot=50)
    assert "the champion model on the challenger's evaluation windows" in decision.comparison
    assert (
        f"never trained on them: they are later than its last training snapshot {year_before.date()}"
        in decision.comparison
    )
    later = rows.assign(as_of_date=first + pd.DateOffset(years=1))  # shares no window, trained past them
    decision = judge(trained, ("3", trained.model), "pr_auc", 0.0, "4", champion_heldout=later, n_boot=50)
    assert "it may have trained on them: its training snapshots run to" in decision.comparison
    decision = judge(trained, ("3", trained.model), "pr_auc", 0.0, "4", champion_heldout=None, n_boot=50)
    assert "its held-out windows are not on record" in decision.comparison
