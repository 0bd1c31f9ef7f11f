"""Known answers, computed by hand, for the metric functions and the gate rule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.evaluate import (
    classification_metrics,
    expected_calibration_error,
    lift_table,
    metrics_by_segment,
    top_share_capture,
)
from models.gate import decide


# -- expected calibration error ------------------------------------------------------
def test_ece_two_bins_by_hand():
    # sorted by score: bin 1 = rows (0.1, 0.2) with no churn, bin 2 = (0.6, 0.9) both churned
    # |0 - 0.15| * 2 + |1 - 0.75| * 2 = 0.8, over 4 rows
    y, p = [0, 0, 1, 1], [0.1, 0.2, 0.6, 0.9]
    assert expected_calibration_error(y, p, bins=2) == pytest.approx(0.2)


def test_ece_sorts_by_score_and_weights_unequal_bins():
    # 5 rows in 2 bins: 3 lowest scores (mean 0.2, 1 of 3 churned), then 2 (mean 0.85, both churned)
    # (3 * |1/3 - 0.2| + 2 * |1 - 0.85|) / 5 = (0.4 + 0.3) / 5
    y = np.array([1, 0, 1, 0, 1])
    p = np.array([0.9, 0.1, 0.3, 0.2, 0.8])
    assert expected_calibration_error(y, p, bins=2) == pytest.approx(0.14)


def test_ece_more_bins_than_rows_is_mean_absolute_error():
    y, p = [0, 0, 0, 1], [0.25] * 3 + [0.3]
    assert expected_calibration_error(y, p, bins=10) == pytest.approx((3 * 0.25 + 0.7) / 4)


def test_ece_of_perfectly_calibrated_bins_is_zero():
    y = [0, 0, 0, 1] + [0, 1, 1, 1]
    p = [0.25] * 4 + [0.75] * 4
    assert expected_calibration_error(y, p, bins=2) == pytest.approx(0.0)


def test_ece_constant_score_at_the_observed_rate_is_zero_whatever_the_row_order():
    # A constant score equal to the churn rate is calibrated. Tied scores must not
    # be cut into bins by row order: churners first would otherwise give 0.18.
    y = np.array([1] * 10 + [0] * 90)
    p = np.full(100, 0.1)
    assert expected_calibration_error(y, p) == pytest.approx(0.0)
    assert expected_calibration_error(y[::-1], p) == pytest.approx(0.0)
    assert expected_calibration_error(y, np.full(100, 0.3)) == pytest.approx(0.2)


def test_ece_does_not_depend_on_row_order():
    rng = np.random.default_rng(0)
    p = rng.choice([0.05, 0.1, 0.2, 0.5], size=500)  # heavy ties, like isotonic output
    y = (rng.random(500) < p).astype(int)
    expected = expected_calibration_error(y, p)
    for _ in range(5):
        perm = rng.permutation(500)
        assert expected_calibration_error(y[perm], p[perm]) == pytest.approx(expected, abs=1e-12)


def test_ece_empty_is_nan():
    assert math.isnan(expected_calibration_error([], []))


# -- top-share capture -------------------------------------------------------------
def test_top_share_capture_distinct_scores():
    values = np.arange(1.0, 11.0)  # 1..10
    prob = values / 10  # highest score = largest value
    assert top_share_capture(values, prob, share=0.2) == 19.0  # 10 + 9
    assert top_share_capture(values, prob[::-1], share=0.2) == 3.0  # 1 + 2


def test_top_share_capture_shares_ties_at_the_cut_off():
    # k = 2 rows: the 0.9 row (10), then one of three rows tied at 0.5 (values 1, 2, 3):
    # the tie contributes their mean, 2
    prob = np.array([0.9, 0.5, 0.5, 0.5] + [0.1] * 6)
    values = np.array([10.0, 1.0, 2.0, 3.0] + [100.0] * 6)
    assert top_share_capture(values, prob, share=0.2) == pytest.approx(12.0)


@pytest.mark.parametrize(("n", "share"), [(100, 0.1), (100, 0.25), (40, 0.1), (1000, 0.05)])
def test_top_share_capture_constant_score_captures_exactly_the_share(n, share):
    values = np.random.default_rng(n).exponential(100.0, size=n)
    assert top_share_capture(values, np.full(n, 0.3), share) == pytest.approx(share * values.sum())


def test_top_share_capture_takes_at_least_one_row():
    assert top_share_capture([5.0, 1.0, 2.0], [0.9, 0.2, 0.1], share=0.01) == 5.0


# -- classification metrics --------------------------------------------------------
def test_perfect_ranking():
    y = np.array([1] * 10 + [0] * 90)
    prob = np.linspace(0.99, 0.01, 100)  # every churner above every non-churner
    arr = np.where(y == 1, 1200.0, 50_000.0)
    m = classification_metrics(y, prob, arr)
    assert m["roc_auc"] == 1.0
    assert m["pr_auc"] == pytest.approx(1.0)
    assert m["n"] == 100 and m["positives"] == 10 and m["base_rate"] == pytest.approx(0.1)
    assert m["lift_top10"] == pytest.approx(10.0)  # top 10 rows: rate 1.0 vs base 0.1
    assert m["recall_top10"] == pytest.approx(1.0)
    assert m["arr_captured_top10"] == pytest.approx(1.0)  # non-churned ARR does not count


def test_small_example_by_hand():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    m = classification_metrics(y, p, top_share=0.25)  # top share = the single highest score
    assert m["roc_auc"] == pytest.approx(0.75)  # 3 of 4 (churner, non-churner) pairs ordered
    assert m["pr_auc"] == pytest.approx((1 / 1 + 2 / 3) / 2)  # precision at each churner
    assert m["brier"] == pytest.approx((0.1**2 + 0.4**2 + 0.65**2 + 0.2**2) / 4)
    assert m["log_loss"] == pytest.approx(-(np.log(0.9) + np.log(0.6) + np.log(0.35) + np.log(0.8)) / 4)
    assert m["mean_predicted"] == pytest.approx(0.4125)
    assert m["lift_top25"] == pytest.approx(2.0)  # 1 churner in 1 row vs base rate 0.5
    assert m["recall_top25"] == pytest.approx(0.5)
    assert "arr_captured_top25" not in m  # no ARR given


def test_lift_recall_and_arr_at_top_ten_percent():
    # 20 rows, 4 churners (base 0.2); the top 2 scores hold one churner (ARR 400)
    # and one non-churner (ARR 9,999, not churned ARR)
    y = np.array([1, 0] + [0] * 15 + [1, 1, 1])
    prob = np.array([0.9, 0.8] + [0.5] * 15 + [0.3, 0.2, 0.1])
    arr = np.array([400.0, 9999.0] + [10.0] * 15 + [100.0, 200.0, 300.0])
    m = classification_metrics(y, prob, arr)
    assert m["lift_top10"] == pytest.approx(0.5 / 0.2)
    assert m["recall_top10"] == pytest.approx(0.25)
    assert m["arr_captured_top10"] == pytest.approx(400 / 1000)


def test_single_class_gives_nan_ranking_metrics_not_an_error():
    m = classification_metrics(np.zeros(10), np.linspace(0.1, 0.5, 10), np.full(10, 100.0))
    assert math.isnan(m["roc_auc"]) and math.isnan(m["pr_auc"])
    assert math.isnan(m["recall_top10"]) and math.isnan(m["lift_top10"])
    assert math.isnan(m["arr_captured_top10"])
    assert m["brier"] == pytest.approx(np.mean(np.linspace(0.1, 0.5, 10) ** 2))


def test_probabilities_are_clipped_before_log_loss():
    m = classification_metrics(np.array([0, 1]), np.array([1.0, 0.0]))  # confidently wrong
    assert np.isfinite(m["log_loss"])
    assert m["log_loss"] == pytest.approx(-np.log(1e-6))


# -- lift table ----------------------------------------------------------------------
def test_lift_table_by_hand():
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0])  # base rate 0.3
    prob = np.linspace(1.0, 0.1, 10)  # already in risk order
    table = lift_table(y, prob, bins=5)
    assert table["decile"].tolist() == [1, 2, 3, 4, 5]
    assert table["n"].tolist() == [2] * 5
    assert table["churn_rate"].tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0, 0.0])
    assert table["lift"].tolist() == pytest.approx([1 / 0.3, 0.5 / 0.3, 0.0, 0.0, 0.0])
    assert table["cumulative_recall"].tolist() == pytest.approx([2 / 3, 1.0, 1.0, 1.0, 1.0])


def test_lift_table_orders_by_score_not_by_row():
    y = np.array([0, 0, 0, 1, 1])
    prob = np.array([0.1, 0.2, 0.3, 0.9, 0.8])
    table = lift_table(y, prob, bins=5)
    assert table["churn_rate"].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert table["cumulative_recall"].iloc[1] == pytest.approx(1.0)


# -- metrics by segment --------------------------------------------------------------
def test_metrics_by_segment():
    frame = pd.DataFrame(
        {
            "segment": ["SMB"] * 4 + ["Enterprise"] * 4 + [None, None],
            "churned": [1, 0, 1, 0] + [1, 0, 1, 0] + [1, 0],
            # SMB ranked perfectly, Enterprise exactly backwards
            "prob": [0.9, 0.1, 0.8, 0.2] + [0.1, 0.9, 0.2, 0.8] + [0.6, 0.4],
            "arr": [100.0] * 10,
        }
    )
    table = metrics_by_segment(frame).set_index("segment")
    assert table.index[0] == "all"
    assert set(table.index) == {"all", "SMB", "Enterprise", "unknown"}
    assert table.loc["all", "n"] == 10
    assert table.loc["SMB", "n"] == 4 and table.loc["unknown", "n"] == 2
    assert table.loc["SMB", "roc_auc"] == 1.0
    assert table.loc["Enterprise", "roc_auc"] == 0.0
    assert table.loc["unknown", "roc_auc"] == 1.0
    assert table.loc["all", "positives"] == 5
    expected_all = classification_metrics(frame["churned"], frame["prob"], frame["arr"])
    assert table.loc["all", "brier"] == pytest.approx(expected_all["brier"])
    assert table.loc["all", "arr_captured_top10"] == pytest.approx(expected_all["arr_captured_top10"])


# -- the champion / challenger rule ----------------------------------------------------
def test_decide_without_champion_promotes():
    for champion in (None,):  # a NaN score is an undefined metric, not a missing champion
        d = decide("pr_auc", 0.01, challenger=0.2, champion=champion)
        assert d.promoted
        assert d.reason == "no champion yet"
        assert d.champion_score is None and d.champion_version is None
        assert d.challenger_score == 0.2 and d.metric == "pr_auc" and d.margin == 0.01


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc", "lift_top10"])
def test_decide_higher_is_better(metric):
    assert decide(metric, 0.0, challenger=0.75, champion=0.5, champion_version="3").promoted
    assert not decide(metric, 0.0, challenger=0.5, champion=0.75, champion_version="3").promoted
    # a tie keeps the champion
    assert not decide(metric, 0.0, challenger=0.5, champion=0.5, champion_version="3").promoted
    # margin: the gain must exceed it
    assert decide(metric, 0.125, challenger=0.75, champion=0.5).promoted
    assert not decide(metric, 0.25, challenger=0.75, champion=0.5).promoted  # gain == margin
    assert not decide(metric, 0.5, challenger=0.75, champion=0.5).promoted


@pytest.mark.parametrize("metric", ["brier", "log_loss", "ece"])
def test_decide_lower_is_better(metric):
    assert decide(metric, 0.0, challenger=0.25, champion=0.5).promoted
    assert not decide(metric, 0.0, challenger=0.5, champion=0.25).promoted
    assert decide(metric, 0.125, challenger=0.25, champion=0.5).promoted
    assert not decide(metric, 0.25, challenger=0.25, champion=0.5).promoted  # gain == margin
    assert not decide(metric, 0.5, challenger=0.25, champion=0.5).promoted


def test_decide_reports_what_it_compared():
    d = decide("pr_auc", 0.01, challenger=0.2, champion=0.3, champion_version="4")
    assert not d.promoted
    assert (d.challenger_score, d.champion_score, d.champion_version) == (0.2, 0.3, "4")
    assert "v4" in d.reason and "pr_auc" in d.reason and "does not beat" in d.reason
    assert "0.2000 vs 0.3000" in d.reason
