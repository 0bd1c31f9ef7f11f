"""The compiled TreeSHAP (models.treeshap) gives LightGBM's own pred_contrib
values to 1e-9, base value column included: on small models with categorical
splits and missing values (NaN where training had some and where it had
none, zero as missing, unseen and missing categories), and on the pipeline's
own model over the generated training set."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.treeshap import TreeShap

TOLERANCE = 1e-9
CATEGORIES = list("pqrstuvw")


def _data(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "usage": rng.normal(size=n),
            "seats": rng.integers(0, 6, n).astype(float),
            "tickets": np.where(rng.random(n) < 0.3, 0.0, rng.exponential(size=n)),
            "nps": rng.normal(size=n),
            "plan": pd.Categorical(rng.choice(CATEGORIES, n), categories=CATEGORIES),
        }
    )
    x.loc[rng.random(n) < 0.2, "usage"] = np.nan
    x.loc[rng.random(n) < 0.1, "plan"] = np.nan
    noise = rng.normal(size=n)
    signal = x["usage"].fillna(1.5) + x["plan"].isin(["p", "r", "u"]) * 1.2 + x["seats"] * x["nps"] * 0.3
    return x, ((signal + x["tickets"] + noise) > 1.2).astype(int)


def _scoring_rows(x: pd.DataFrame) -> pd.DataFrame:
    """The training rows plus what scoring meets: NaN in a column training had
    none of, missing and unseen categories, exact zeros and tiny values."""
    out = x.copy()
    out.loc[:40, "nps"] = np.nan  # never missing in training: LightGBM reads NaN as 0 there
    out.loc[41:60, "plan"] = np.nan
    out.loc[61:70, "tickets"] = 0.0
    out.loc[71:75, "tickets"] = 1e-40
    out.loc[76:80, "seats"] = -0.0
    return out


@pytest.mark.parametrize(
    "params",
    [
        {"num_leaves": 15, "max_depth": 5},  # the pipeline's shape
        {"num_leaves": 31, "max_depth": -1},  # deeper, unbalanced trees
        {"num_leaves": 7, "max_depth": 3, "zero_as_missing": True},
        {"num_leaves": 15, "max_depth": 5, "use_missing": False},
    ],
)
def test_same_values_as_lightgbm_pred_contrib(params) -> None:
    x, y = _data(3000, seed=1)
    model = lgb.LGBMClassifier(n_estimators=60, min_child_samples=10, verbose=-1, random_state=0, **params)
    booster = model.fit(x, y).booster_
    rows = _scoring_rows(x)
    explainer = TreeShap(booster)
    assert explainer.fast
    assert any(n["decision_type"] == "==" for n in _split_nodes(booster))  # categorical splits are exercised
    ours = explainer.contributions(rows)
    theirs = booster.predict(rows, pred_contrib=True)
    assert ours.shape == theirs.shape == (len(rows), x.shape[1] + 1)
    assert np.abs(ours - theirs).max() < TOLERANCE
    assert np.abs(ours.sum(axis=1) - booster.predict(rows, raw_score=True)).max() < TOLERANCE
    assert np.abs(explainer.contributions(rows, threads=1) - theirs).max() < TOLERANCE


def test_best_iteration_and_empty_input() -> None:
    """Early stopping: the booster predicts with its best iteration, and so does TreeShap."""
    x, y = _data(3000, seed=2)
    params = {"objective": "binary", "learning_rate": 0.3, "verbose": -1, "seed": 0}
    train, valid = lgb.Dataset(x[:2000], y[:2000]), lgb.Dataset(x[2000:], y[2000:])
    booster = lgb.train(
        params,
        train,
        300,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(5, verbose=False)],
        keep_training_booster=True,  # keeps the trees after the best iteration
    )
    assert 0 < booster.best_iteration < booster.num_trees()
    ours = TreeShap(booster).contributions(x)
    assert np.abs(ours - booster.predict(x, pred_contrib=True)).max() < TOLERANCE
    assert TreeShap(booster).contributions(x.iloc[:0]).shape == (0, x.shape[1] + 1)


def test_too_deep_falls_back_to_lightgbm(monkeypatch) -> None:
    import models.treeshap as treeshap

    monkeypatch.setattr(treeshap, "MAX_TABLE_DEPTH", 1)
    x, y = _data(1000, seed=3)
    booster = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(x, y).booster_
    explainer = TreeShap(booster)
    assert not explainer.fast
    assert np.abs(explainer.contributions(x) - booster.predict(x, pred_contrib=True)).max() == 0


def test_the_pipeline_model(trained, training_frame) -> None:
    """ChurnModel.contributions on the real model and features equals pred_contrib."""
    model = trained.model
    frame = training_frame.iloc[:5000]
    theirs = model.booster.predict(model.matrix(frame), pred_contrib=True)
    ours = model.contributions(frame)
    assert list(ours.columns) == [*model.features, "base_value"]
    assert np.abs(ours.to_numpy() - theirs).max() < TOLERANCE


def _split_nodes(booster: lgb.Booster):
    def walk(node):
        if "split_index" in node:
            yield node
            yield from walk(node["left_child"])
            yield from walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        yield from walk(tree["tree_structure"])
