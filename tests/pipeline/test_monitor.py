"""`churn monitor` on hand-made subscriptions with known answers, on DuckDB
and PostgreSQL: outcomes under the contract's churn definition (the label
training uses), maturity, metrics equal to scikit-learn's on the stored
outcomes, alerts, an idempotent rerun and the read copy.

Scored date T = 2024-03-01 (mature exactly when the data reaches T + 90 + 30
= 2024-06-29) and T2 = 2024-04-01 (never mature here). The accounts are
those of tests/features/test_labels.py, whose known labels are the
reference: churn at exactly T + 90 counts, a day later does not, a renewal
29 days late (inside the 30-day grace) is retained.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from features.contract import TableNames
from pipeline import monitor, outputs
from pipeline.settings import load_settings
from pipeline.warehouse import Warehouse
from tests import factories as f
from tests.conftest import load
from tests.features.test_labels import EXPECTED_DEFAULT, SUBSCRIPTIONS
from tests.pipeline.churn_data import settings_for

T, T2 = dt.date(2024, 3, 1), dt.date(2024, 4, 1)
MATURE_ON = dt.date(2024, 6, 29)  # T + 90 + 30
NAMES = TableNames()
ACTIVE_AT_T = [a for a in SUBSCRIPTIONS if a != "gone_before_T"]
#: a score per account: risky ones score higher, with one tie across classes
PROBABILITY = {a: 0.1 + 0.05 * i for i, a in enumerate(sorted(ACTIVE_AT_T))}
PROBABILITY["churn_next_day"] = PROBABILITY["on_time"]


def inputs() -> dict[str, pd.DataFrame]:
    subs = [
        (f"{a}-{i}", a, start, end, 10 * (i + 1))
        for a, spans in SUBSCRIPTIONS.items()
        for i, (start, end) in enumerate(spans)
    ]
    return dict(
        accounts=f.accounts(*SUBSCRIPTIONS, created_at="2021-06-01"),
        subscriptions=f.subscriptions(subs),
        # the data ends 2024-06-29 when validated as of that day (an event at exactly midnight)
        usage_events=f.events(
            [("on_time", "2024-05-15 10:00", "login", "u1"), ("on_time", "2024-06-29", "login", "u1")]
        ),
    )


def scores(probability: dict[str, float] | None = None, version: str = "1") -> pd.DataFrame:
    probability = probability or PROBABILITY
    rows = [(a, T, p) for a, p in probability.items()]
    rows.append(("gone_before_T", T, 0.5))  # scored, but no subscription covers T any more: unknown
    rows += [(a, T2, 0.3) for a in ACTIVE_AT_T]  # a later date, not mature yet
    frame = pd.DataFrame(rows, columns=["account_id", "as_of_date", "churn_probability"])
    frame["as_of_date"] = pd.to_datetime(frame["as_of_date"])
    frame["risk_tier"] = np.where(frame["churn_probability"] >= 0.5, "high", "low")
    frame["mrr"] = 100.0
    frame["segment"] = np.where(frame["account_id"].str.len() > 10, "Enterprise", "SMB")
    frame["model_name"] = "churn-model"
    frame["model_version"] = version
    for column in outputs.SCORES_SCHEMA:
        if column not in frame:
            frame[column] = None
    return outputs.as_stored(frame[list(outputs.SCORES_SCHEMA)], outputs.SCORES_SCHEMA)


def load_all(wh: Warehouse, score_rows: pd.DataFrame) -> None:
    load(wh, **inputs())
    outputs.prepare(wh, NAMES)
    wh.write_table(NAMES.churn_scores, score_rows, mode="append")


def run(wh: Warehouse, as_of: dt.date = MATURE_ON, test_auc: float = 0.6):
    settings = load_settings(env={})
    return monitor.monitor_in(wh, settings, as_of, test_auc={("churn-model", "1"): test_auc}, tracking=False)


def outcomes(wh: Warehouse) -> pd.DataFrame:
    return wh.query("SELECT * FROM churn_outcomes ORDER BY as_of_date, account_id")


def test_outcomes_have_the_contract_labels(wh):
    load_all(wh, scores())
    result = run(wh)
    got = outcomes(wh)
    at_t = got[got["as_of_date"] == pd.Timestamp(T)].set_index("account_id")
    for account, (churned, churn_date) in EXPECTED_DEFAULT.items():
        row = at_t.loc[account]
        assert row["outcome"] == ("churned" if churned else "retained"), account
        assert int(row["churned"]) == churned, account
        if churned:
            assert row["churn_date"] == pd.Timestamp(churn_date), account
        else:
            assert pd.isna(row["churn_date"]), account
    # the boundary cases spelled out
    assert at_t.loc["churn_at_horizon", "outcome"] == "churned"  # churn day exactly T + 90
    assert at_t.loc["churn_after_horizon", "outcome"] == "retained"  # a day later
    assert at_t.loc["late_29", "outcome"] == "retained"  # renewed inside the grace period
    assert at_t.loc["gone_before_T", "outcome"] == "unknown" and pd.isna(at_t.loc["gone_before_T", "churned"])
    # T2 is not mature: pending, no label, no churn date
    later = got[got["as_of_date"] == pd.Timestamp(T2)]
    assert len(later) == len(ACTIVE_AT_T) and (later["outcome"] == "pending").all()
    assert later["churned"].isna().all() and later["churn_date"].isna().all()
    assert (later["matures_on"] == pd.Timestamp("2024-07-30")).all()
    assert (at_t["arr"] == 1200.0).all() and (got["monitored_as_of"] == pd.Timestamp(MATURE_ON)).all()
    # one row per scored row, and only the mature date has performance rows
    assert len(got) == len(scores()) and not got.duplicated(["account_id", "as_of_date", "model_name"]).any()
    perf = result.performance
    assert set(perf["as_of_date"]) == {pd.Timestamp(T)}
    assert perf.loc[perf["slice"] == "all", "accounts"].item() == len(EXPECTED_DEFAULT)


def test_a_date_is_pending_until_the_data_reaches_its_maturity(wh):
    load_all(wh, scores())
    result = run(wh, as_of=MATURE_ON - dt.timedelta(days=1))  # one day short of T + 90 + 30
    assert result.known_by == MATURE_ON - dt.timedelta(days=1)
    got = outcomes(wh)
    assert set(got["outcome"]) == {"pending"} and got["churned"].isna().all()
    assert result.performance.empty and wh.row_count("churn_model_performance") == 0


def test_metrics_equal_sklearn_on_the_stored_outcomes(wh):
    load_all(wh, scores())
    run(wh)
    labelled = outcomes(wh).dropna(subset=["churned"])
    perf = wh.query("SELECT * FROM churn_model_performance").set_index("slice")
    y, p = labelled["churned"].astype(int), labelled["churn_probability"]
    overall = perf.loc["all"]
    assert overall["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert overall["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert overall["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert overall["churned"] == y.sum() and overall["observed_rate"] == pytest.approx(y.mean())
    assert overall["arr_churned"] == pytest.approx(1200.0 * y.sum())
    for segment, rows in labelled.groupby("segment"):
        row = perf.loc[f"segment={segment}"]
        assert row["accounts"] == len(rows)
        if rows["churned"].nunique() == 2:
            assert row["roc_auc"] == pytest.approx(roc_auc_score(rows["churned"], rows["churn_probability"]))
        else:
            assert pd.isna(row["roc_auc"])
    assert {"tier=low", "tier=high"} <= set(perf.index)
    assert perf.loc["all", "alert"] in (False, np.False_) and pd.isna(perf.loc["tier=low", "alert"])


def test_a_degraded_model_raises_the_alert(wh):
    """The same accounts scored upside down: the live AUC falls far below the
    test-window AUC."""
    churned = {a for a, (c, _) in EXPECTED_DEFAULT.items() if c}
    degraded = {a: (0.2 if a in churned else 0.6) for a in ACTIVE_AT_T}
    load_all(wh, scores(degraded))
    result = run(wh, test_auc=0.8)
    assert len(result.alerts) == 1 and "below the test-window AUC 0.800" in result.alert_lines()[0]
    stored = wh.query("SELECT alert, alert_reason, roc_auc FROM churn_model_performance WHERE slice = 'all'")
    assert bool(stored["alert"].item()) and stored["roc_auc"].item() == 0.0
    assert "outside the" not in stored["alert_reason"].item()  # 0.42 predicted vs 5 of 11 churned: plausible


def test_a_miscalibrated_model_raises_the_alert(wh):
    """Perfect ranking, but a predicted churn rate of about 2% where 5 of 11 churned."""
    churned = {a for a, (c, _) in EXPECTED_DEFAULT.items() if c}
    low = {a: (0.03 if a in churned else 0.01) for a in ACTIVE_AT_T}
    load_all(wh, scores(low))
    result = run(wh, test_auc=0.8)
    (line,) = result.alert_lines()
    assert "outside the 95% interval" in line and "ROC AUC" not in line
    assert result.overall["roc_auc"].item() == 1.0


def test_rerun_is_idempotent_and_published(tmp_path):
    """Through run_monitor on a DuckDB file: the second run leaves exactly the
    same rows, and both tables reach the read copy BI tools open."""
    import duckdb

    settings = settings_for(tmp_path)
    with Warehouse(settings.warehouse, create=True) as wh:
        load_all(wh, scores())

    def tables():
        with Warehouse(settings.warehouse) as wh:
            return {
                t: outcomes(wh) if t == "churn_outcomes" else wh.read_table(t)
                for t in ("churn_outcomes", "churn_model_performance")
            }

    first = monitor.run_monitor(settings, MATURE_ON, test_auc={("churn-model", "1"): 0.6}, tracking=False)
    before = tables()
    second = monitor.run_monitor(settings, MATURE_ON, test_auc={("churn-model", "1"): 0.6}, tracking=False)
    after = tables()
    for name, frame in before.items():
        pd.testing.assert_frame_equal(
            after[name].sort_values(list(after[name].columns)).reset_index(drop=True),
            frame.sort_values(list(frame.columns)).reset_index(drop=True),
            obj=name,
        )
    pd.testing.assert_frame_equal(first.track_record(), second.track_record())
    copy = duckdb.connect(str(tmp_path / "warehouse.outputs.duckdb"), read_only=True)
    try:
        assert copy.execute("SELECT COUNT(*) FROM churn_outcomes").fetchone()[0] == len(before["churn_outcomes"])
        assert copy.execute("SELECT COUNT(*) FROM churn_model_performance").fetchone()[0] > 0
    finally:
        copy.close()


def test_no_scores_is_a_clear_error(tmp_path):
    settings = settings_for(tmp_path)
    with Warehouse(settings.warehouse, create=True) as wh:
        load(wh, **inputs())
    with pytest.raises(monitor.NoScoresError, match="churn score"):
        monitor.run_monitor(settings, MATURE_ON, tracking=False)
