"""Training: the out-of-time split and its embargo, clear errors on data that
cannot support a model, and what the default model learns from the synthetic
data (it beats both baselines, is calibrated, and ranks the generator's true
churn drivers above noise)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.evaluate import classification_metrics
from models.train import (
    LABEL,
    TrainConfig,
    TrainingDataError,
    TrainingResult,
    fit_calibrator,
    fit_model,
    level_shift,
    split_out_of_time,
    train_and_evaluate,
)

HORIZON = 90


# -- small hand-made training sets ---------------------------------------------------
def monthly(start: str, n: int) -> list[pd.Timestamp]:
    return list(pd.date_range(start, periods=n, freq="MS"))


def snapshots(
    dates, rows: int = 80, positives: int | dict = 16, mature: bool | dict = True, seed: int = 0
) -> pd.DataFrame:
    """``rows`` accounts per snapshot date, ``positives`` of them churned (an int,
    or a dict date -> int), with two informative features and a categorical."""
    rng = np.random.default_rng(seed)
    parts = []
    for d in dates:
        d = pd.Timestamp(d)
        k = positives.get(d, 16) if isinstance(positives, dict) else positives
        churned = np.r_[np.ones(k, int), np.zeros(rows - k, int)]
        parts.append(
            pd.DataFrame(
                {
                    "account_id": [f"A{i:04d}" for i in range(rows)],
                    "as_of_date": d,
                    "seat_utilization_30d": rng.uniform(0, 1, rows) - 0.3 * churned,
                    "days_to_renewal": rng.integers(0, 365, rows).astype(float),
                    "segment": pd.array(rng.choice(["SMB", "Mid-Market"], rows), dtype="string"),
                    "mrr": rng.uniform(100, 1000, rows),
                    LABEL: churned,
                    "mature": mature.get(d, True) if isinstance(mature, dict) else mature,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def window_dates(part: pd.DataFrame) -> list[pd.Timestamp]:
    return sorted(pd.Timestamp(d) for d in part["as_of_date"].unique())


# -- the out-of-time split ---------------------------------------------------------
def test_split_windows_are_the_latest_snapshots_in_order_with_embargo():
    dates = monthly("2024-01-01", 10)  # Jan .. Oct 2024
    split = split_out_of_time(snapshots(dates), TrainConfig(), HORIZON)
    assert window_dates(split.test) == [pd.Timestamp("2024-10-01")]
    assert window_dates(split.calib) == [pd.Timestamp("2024-09-01")]
    assert window_dates(split.valid) == [pd.Timestamp("2024-08-01")]
    # a training snapshot's label window (T, T + 90 days] must end by 2024-08-01:
    # May 1 + 90 = Jul 30 is kept, Jun 1 + 90 = Aug 30 and Jul 1 are dropped
    assert window_dates(split.train) == monthly("2024-01-01", 5)
    for part in (split.train, split.valid, split.calib, split.test):
        assert len(part) == 80 * part["as_of_date"].nunique()  # whole snapshots, no row lost


def test_split_without_embargo_trains_on_every_earlier_snapshot():
    dates = monthly("2024-01-01", 10)
    split = split_out_of_time(snapshots(dates), TrainConfig(embargo=False), HORIZON)
    assert window_dates(split.train) == monthly("2024-01-01", 7)  # up to Jul, right before valid
    assert window_dates(split.valid) == [pd.Timestamp("2024-08-01")]


def test_embargo_boundary_label_window_ending_on_the_first_evaluation_snapshot_is_kept():
    base = pd.Timestamp("2024-01-01")
    dates = [base + pd.Timedelta(days=30 * k) for k in range(10)]
    split = split_out_of_time(snapshots(dates), TrainConfig(), horizon_days=60)
    first_eval = dates[7]
    assert window_dates(split.valid) == [first_eval]
    assert window_dates(split.train) == dates[:6]  # dates[5] + 60 days == first_eval: kept
    assert all(d + pd.Timedelta(days=60) <= first_eval for d in window_dates(split.train))


def test_split_with_several_snapshots_per_window_never_shares_a_date():
    dates = monthly("2023-01-01", 14)
    config = TrainConfig(test_snapshots=2, calibration_snapshots=2, validation_snapshots=2)
    split = split_out_of_time(snapshots(dates), config, horizon_days=45)
    windows = [window_dates(getattr(split, name)) for name in ("train", "valid", "calib", "test")]
    assert windows[3] == dates[-2:] and windows[2] == dates[-4:-2] and windows[1] == dates[-6:-4]
    flat = [d for w in windows for d in w]
    assert len(flat) == len(set(flat))  # no date in two windows
    for earlier, later in zip(windows, windows[1:]):
        assert max(earlier) < min(later)  # train < valid < calib < test
    # validation starts 2023-09-01: Jul 1 + 45 days is kept, Aug 1 + 45 days is not
    assert windows[0] == dates[:7]


def test_split_ignores_immature_snapshots():
    dates = monthly("2024-01-01", 12)
    immature = {dates[-1]: False, dates[-2]: False}
    split = split_out_of_time(snapshots(dates, mature=immature), TrainConfig(), HORIZON)
    assert window_dates(split.test) == [dates[-3]]  # the latest *mature* snapshot
    all_dates = {d for name in ("train", "valid", "calib", "test") for d in window_dates(getattr(split, name))}
    assert not all_dates & {dates[-1], dates[-2]}


def test_walk_forward_windows_of_the_generated_data(trained: TrainingResult):
    """Three evaluation windows, each scored by a fold model whose recorded
    snapshots never include it (nor anything whose label reaches it); the
    shipped model learns from every mature snapshot."""
    assert [f.test_date for f in trained.folds] == ["2026-01-02", "2026-02-02", "2026-03-02"]
    latest = trained.folds[-1].windows
    assert latest["test"] == ["2026-03-02"] and latest["calib"] == ["2026-02-02"] and latest["valid"] == ["2026-01-02"]
    # 2025-11-02 and 2025-12-02 are embargoed: their 90-day label windows reach 2026-01-02
    assert latest["train"][0] == "2024-10-02" and latest["train"][-1] == "2025-10-02" and len(latest["train"]) == 13
    for fold in trained.folds:
        seen = {d for name in ("train", "valid", "calib") for d in fold.windows[name]}
        assert fold.test_date not in seen and fold.windows["test"] == [fold.test_date]
        gap = pd.Timedelta(days=trained.horizon_days)
        first_eval = pd.Timestamp(fold.windows["valid"][0])
        assert all(pd.Timestamp(d) + gap <= first_eval for d in fold.windows["train"])
    assert set(trained.heldout["window"]) == {f.test_date for f in trained.folds}
    # the shipped model: every mature snapshot (the freshest labels), calibrated on the held-out windows
    assert trained.refit.train[0] == "2024-10-02" and trained.refit.train[-1] == "2026-03-02"
    assert len(trained.refit.train) == 18
    assert trained.refit.calibration == ["2026-01-02", "2026-02-02", "2026-03-02"]


# -- data that cannot support a model -------------------------------------------------
def test_too_few_snapshots():
    frame = snapshots(monthly("2024-01-01", 4))
    with pytest.raises(TrainingDataError) as err:
        train_and_evaluate(frame)
    message = str(err.value)
    assert "Only 4 mature snapshot(s)" in message and "at least 5" in message
    assert "longer history" in message


def test_no_mature_snapshot():
    frame = snapshots(monthly("2024-01-01", 8), mature=False)
    with pytest.raises(TrainingDataError, match=r"Only 0 mature snapshot\(s\).*longer history"):
        train_and_evaluate(frame)


def test_embargo_leaves_too_few_training_snapshots():
    # 6 snapshots: 3 evaluate, and of the 3 before them only Jan 1 ends its label window by Apr 1
    frame = snapshots(monthly("2024-01-01", 6))
    with pytest.raises(TrainingDataError) as err:
        train_and_evaluate(frame)
    message = str(err.value)
    assert "Only 1 training snapshot(s)" in message and "90-day gap" in message
    assert "embargo" in message and "longer history" in message
    # without the embargo the same data trains
    train_and_evaluate(frame, TrainConfig(embargo=False))


@pytest.mark.parametrize(("window", "index"), [("test", -1), ("calib", -2), ("valid", -3)])
def test_single_class_in_an_evaluation_window(window, index):
    dates = monthly("2024-01-01", 10)
    frame = snapshots(dates, positives={dates[index]: 0})
    with pytest.raises(TrainingDataError) as err:
        train_and_evaluate(frame)
    message = str(err.value)
    # walk-forward: the fold whose window holds the snapshot names it (as its test, calib or valid window)
    assert f"window ({dates[index].date()})" in message
    assert "single class" in message and "80 rows, 0 churned" in message
    assert "longer history or more accounts" in message


def test_no_churn_in_training():
    dates = monthly("2024-01-01", 10)
    frame = snapshots(dates, positives={d: 0 for d in dates[:5]})
    with pytest.raises(TrainingDataError, match="train window .* single class.*longer history"):
        train_and_evaluate(frame)


def test_too_few_positives_in_training():
    dates = monthly("2024-01-01", 10)
    frame = snapshots(dates, positives={d: 2 for d in dates[:5]})  # 5 training snapshots x 2 churners
    with pytest.raises(TrainingDataError) as err:
        train_and_evaluate(frame)
    message = str(err.value)
    assert "Only 10 churned examples" in message and "need 20" in message
    assert "longer history or more accounts" in message
    train_and_evaluate(frame, TrainConfig(min_positives=10))  # the threshold is the only obstacle


def test_errors_are_value_errors_raised_before_lightgbm(monkeypatch):
    import models.train as train_module

    def no_fit(*args, **kwargs):
        raise AssertionError("LightGBM must not be reached with unusable data")

    monkeypatch.setattr(train_module, "_fit_booster", no_fit)
    for frame in (snapshots(monthly("2024-01-01", 3)), snapshots(monthly("2024-01-01", 10), positives=1)):
        with pytest.raises(TrainingDataError) as err:
            train_and_evaluate(frame)
        assert isinstance(err.value, ValueError)


# -- calibration ---------------------------------------------------------------------
@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibrator_is_monotone_probability_and_matches_the_observed_rate(method):
    rng = np.random.default_rng(1)
    raw = rng.uniform(0.01, 0.6, 5000)
    y = (rng.random(5000) < raw / 3).astype(int)  # raw scores overstate risk 3x
    calibrator = fit_calibrator(raw, y, method)
    assert calibrator.method == method
    p = calibrator(np.sort(raw))
    assert np.all((p >= 0) & (p <= 1))
    assert np.all(np.diff(p) >= -1e-12)  # keeps the ranking
    assert calibrator(raw).mean() == pytest.approx(y.mean(), abs=2e-3)  # mean raw is ~0.3, rate ~0.1


def test_auto_calibration_picks_isotonic_only_with_enough_positives():
    rng = np.random.default_rng(2)
    raw = rng.uniform(0, 1, 3000)
    assert fit_calibrator(raw, (rng.random(3000) < 0.05).astype(int)).method == "platt"  # ~150 positives
    assert fit_calibrator(raw, (rng.random(3000) < 0.2).astype(int)).method == "platt"  # ~600
    assert fit_calibrator(raw, (rng.random(3000) < 0.5).astype(int)).method == "isotonic"  # ~1,500 each
    iso = fit_calibrator(raw, (rng.random(3000) < 0.5).astype(int), "isotonic")
    assert 0 < iso(raw).min() and iso(raw).max() < 1  # never exactly "no risk" or "certain"


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_level_shift_moves_the_mean_to_the_rate_and_keeps_the_ranking(method):
    rng = np.random.default_rng(3)
    raw = rng.uniform(0.01, 0.6, 5000)
    calibrator = fit_calibrator(raw, (rng.random(5000) < raw / 3).astype(int), method)
    later = (rng.random(5000) < raw / 5).astype(int)  # the rate fell since the calibration windows
    before = calibrator(np.sort(raw))
    calibrator.shift = level_shift(calibrator, raw, later)
    assert calibrator.shift < 0
    assert calibrator(raw).mean() == pytest.approx(later.mean(), abs=1e-9)
    after = calibrator(np.sort(raw))
    assert np.all(np.diff(after) >= -1e-12) and np.all(after < before)


def test_the_shipped_model_averages_the_churn_rate_of_its_last_snapshots(
    trained: TrainingResult, training_frame: pd.DataFrame
):
    """Calibration in the large: the refit model's mean probability over the last
    ``level_snapshots`` mature snapshots is their observed churn rate."""
    model = trained.model
    assert model.config["level_snapshots"] == 12 and model.calibrator.shift != 0
    rows = training_frame[training_frame["mature"]]
    recent = rows[rows["as_of_date"].isin(sorted(rows["as_of_date"].unique())[-12:])]
    assert model.predict_proba(recent).mean() == pytest.approx(recent[LABEL].mean(), abs=1e-9)


# -- the model on the generated data ---------------------------------------------------
def test_model_beats_both_baselines_on_the_test_window(trained: TrainingResult):
    model = trained.metrics
    base_rate = trained.baselines["baseline_base_rate"]
    logistic = trained.baselines["baseline_logistic"]
    assert base_rate["roc_auc"] == pytest.approx(0.5)
    # measured (4,000 accounts, seed 7): ROC AUC 0.87 vs 0.81 logistic; PR AUC 0.32 vs 0.24 / 0.07
    assert model["roc_auc"] > logistic["roc_auc"] + 0.02
    assert model["pr_auc"] > logistic["pr_auc"] + 0.03
    assert model["pr_auc"] > 3 * base_rate["pr_auc"]
    # docs/synthetic-data.md: below ~0.75 misses drivers, far above ~0.9 most likely leaks
    assert 0.8 < model["roc_auc"] < 0.92
    assert model["lift_top10"] > logistic["lift_top10"] > 1.0
    assert model["positives"] > 100  # the comparison rests on enough churners


def test_model_is_calibrated_on_the_test_window(trained: TrainingResult):
    m = trained.metrics
    assert m["ece"] < 0.03  # measured ~0.01
    assert m["mean_predicted"] == pytest.approx(m["base_rate"], abs=0.01)  # measured 0.064 vs 0.068
    assert m["brier"] < trained.baselines["baseline_base_rate"]["brier"]


def test_early_stopping_used_the_validation_window(trained: TrainingResult):
    config = trained.model.config
    assert 10 < config["best_iteration"] < config["n_estimators"]


def test_predict_proba_is_a_calibrated_monotone_map_of_the_raw_score(trained: TrainingResult):
    model, test = trained.model, trained.split.test
    prob, raw = model.predict_proba(test), model.predict_raw(test)
    assert np.all((prob >= 0) & (prob <= 1))
    # the reported probabilities are the fold models' (held out), not the shipped model's
    assert not np.array_equal(prob, trained.test_prob)
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(prob[order]) >= -1e-12)  # calibration keeps the ranking
    assert len(np.unique(prob)) > 50  # real probabilities, not labels


DRIVERS = {  # the generator's true churn drivers (docs/synthetic-data.md) and their features
    "approaching renewal": {"days_to_renewal"},
    "low seat utilisation": {"seat_utilization_30d"},
    "NPS detractor": {"nps_latest", "nps_avg_365d", "nps_detractor_share_365d"},
    "open urgent tickets": {"open_urgent_tickets"},
    "usage decline": {"active_users_trend_30d", "events_trend_30d"},
    "short tenure": {"tenure_days"},
    "no auto-renew": {"is_auto_renew"},
    "feature breadth (engagement)": {"event_types_used_30d"},
}
NOISE = ("industry", "region")


def mean_abs_shap(trained: TrainingResult) -> pd.Series:
    contributions = trained.model.contributions(trained.split.test)
    return contributions.drop(columns="base_value").abs().mean().sort_values(ascending=False)


def test_top_features_are_the_true_drivers_not_noise(trained: TrainingResult):
    ranking = mean_abs_shap(trained)
    top10 = set(ranking.index[:10])
    found = [driver for driver, features in DRIVERS.items() if features & top10]
    assert len(found) >= 3, f"true drivers in the top 10 by mean |SHAP|: {found}; top 10: {list(ranking.index[:10])}"
    # annual contracts can only churn at renewal: the strongest signal by far
    assert ranking.index[0] == "days_to_renewal"
    for noise in NOISE:
        rank = list(ranking.index).index(noise) + 1
        assert rank > 10, f"{noise} ranks {rank}"  # measured: industry 34th, region 47th


def test_contributions_sum_to_the_raw_margin(trained: TrainingResult):
    model, test = trained.model, trained.split.test
    contributions = model.contributions(test)
    assert list(contributions.columns) == [*model.features, "base_value"]
    assert contributions.index.equals(test.index)
    assert contributions["base_value"].nunique() == 1
    margin = model.booster.predict(model.matrix(test), raw_score=True)
    assert np.allclose(contributions.sum(axis=1).to_numpy(), margin, rtol=0, atol=1e-9)
    raw = model.predict_raw(test)
    assert np.allclose(margin, np.log(raw / (1 - raw)), rtol=0, atol=1e-6)


def test_unseen_category_is_treated_as_missing_and_missing_feature_is_an_error(trained: TrainingResult):
    model = trained.model
    rows = trained.split.test.head(200).copy()
    unseen = model.predict_proba(rows.assign(industry="Aerospace"))
    missing = model.predict_proba(rows.assign(industry=pd.NA))
    assert np.isfinite(unseen).all()
    assert np.array_equal(unseen, missing)
    with pytest.raises(KeyError, match="seat_utilization_30d"):
        model.predict_proba(rows.drop(columns="seat_utilization_30d"))


def test_training_is_reproducible_for_a_seed(trained: TrainingResult, training_frame: pd.DataFrame):
    from models.walkforward import refit

    test = trained.split.test
    again, _ = refit(training_frame, TrainConfig(), trained.folds, trained.heldout)
    assert again.booster.model_to_string() == trained.model.booster.model_to_string()
    assert np.array_equal(again.predict_proba(test), trained.model.predict_proba(test))
    other, _ = refit(training_frame, TrainConfig(seed=43), trained.folds, trained.heldout)
    other_prob = other.predict_proba(test)
    assert not np.array_equal(other_prob, trained.model.predict_proba(test))  # subsampling follows the seed
    assert classification_metrics(test[LABEL], other_prob)["roc_auc"] > 0.8


def test_min_positives_applies_to_the_generated_data(training_frame: pd.DataFrame):
    with pytest.raises(TrainingDataError, match="churned examples in the training window"):
        train_and_evaluate(training_frame, TrainConfig(min_positives=10**6))


def test_summary_lists_model_and_baselines(trained: TrainingResult):
    summary = trained.summary()
    assert list(summary.index) == ["model", "baseline_base_rate", "baseline_logistic"]
    assert summary.loc["model", "roc_auc"] == trained.metrics["roc_auc"]
    base = trained.heldout.assign(base=trained.baseline_prob["baseline_base_rate"])
    # each window's base rate is its fold's training churn rate: one value per window
    assert (base.groupby("window")["base"].nunique() == 1).all()


def test_search_records_every_trial_and_trains_with_the_best_one():
    from sklearn.metrics import log_loss

    split = split_out_of_time(snapshots(monthly("2024-01-01", 8), rows=200, positives=40), TrainConfig(), HORIZON)
    config = TrainConfig(search_trials=3, n_estimators=40, early_stopping_rounds=10)
    model = fit_model(split, config)
    trials = model.config["trials"]
    assert [t["trial"] for t in trials] == [0, 1, 2]
    best = min(trials, key=lambda t: t["valid_log_loss"])
    assert [t["chosen"] for t in trials] == [t is best for t in trials]
    for key in ("num_leaves", "max_depth", "min_child_samples", "learning_rate", "reg_lambda"):
        assert model.config["params"][key] == best[key], key
    # the score is the validation log loss of a model with the chosen parameters
    again = fit_model(
        split,
        TrainConfig(
            **{
                **{k: best[k] for k in ("num_leaves", "max_depth", "min_child_samples", "learning_rate", "reg_lambda")},
                "n_estimators": 40,
                "early_stopping_rounds": 10,
            }
        ),
    )
    assert again.booster.model_to_string() == model.booster.model_to_string()
    raw = model.predict_raw(split.valid)
    assert log_loss(split.valid[LABEL], raw, labels=[0, 1]) == pytest.approx(best["valid_log_loss"], rel=1e-9)
    assert fit_model(split, TrainConfig(n_estimators=40)).config["trials"] == []
