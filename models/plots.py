"""Evaluation figures (matplotlib, headless). Each function draws on a new
Figure of its own and returns it."""

from __future__ import annotations

# No backend is forced here: on a headless machine matplotlib falls back to
# Agg by itself, and a notebook keeps its inline backend.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from models.evaluate import calibration_table, lift_table


def _curve_figure(scores: dict[str, np.ndarray], curve, reference, legend: str, **labels):
    """One line per model of ``curve(p) -> (x, y)``, a ``reference(ax)`` line, labels."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in scores.items():
        ax.plot(*curve(p), label=name)
    reference(ax)
    return _finish(fig, ax, legend, **labels)


def _finish(fig, ax, legend: str | None = None, **labels):
    ax.set(**labels)
    if legend:
        ax.legend(loc=legend)
    fig.tight_layout()
    return fig


def roc_figure(y: np.ndarray, scores: dict[str, np.ndarray]):
    return _curve_figure(
        scores,
        lambda p: roc_curve(y, p)[:2],
        lambda ax: ax.plot([0, 1], [0, 1], "k--", lw=0.8),
        "lower right",
        xlabel="False positive rate",
        ylabel="True positive rate",
        title="ROC (test window)",
    )


def pr_figure(y: np.ndarray, scores: dict[str, np.ndarray]):
    def recall_precision(p):
        precision, recall, _ = precision_recall_curve(y, p)
        return recall, precision

    return _curve_figure(
        scores,
        recall_precision,
        lambda ax: ax.axhline(np.mean(y), color="k", ls="--", lw=0.8, label="base rate"),
        "upper right",
        xlabel="Recall",
        ylabel="Precision",
        title="Precision-recall (test window)",
    )


def calibration_figure(y: np.ndarray, scores: dict[str, np.ndarray]):
    tables = {name: calibration_table(y, p) for name, p in scores.items()}
    top = max([0.0] + [max(t["predicted"].max(), t["observed"].max()) for t in tables.values()])
    return _curve_figure(
        tables,
        lambda t: (t["predicted"], t["observed"], "o-"),
        lambda ax: ax.plot([0, top], [0, top], "k--", lw=0.8, label="perfect"),
        "upper left",
        xlabel="Mean predicted probability",
        ylabel="Observed churn rate",
        title="Calibration (deciles)",
    )


def lift_figure(y: np.ndarray, prob: np.ndarray):
    table = lift_table(y, prob)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(table["decile"], table["lift"])
    ax.set_xticks(table["decile"])
    ax.axhline(1.0, color="k", ls="--", lw=0.8)
    return _finish(fig, ax, xlabel="Risk decile (1 = highest)", ylabel="Lift over base rate", title="Lift by decile")


def importance_figure(importance: pd.Series, top: int = 20):
    data = importance.sort_values().tail(top)
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(data) + 1))
    ax.barh(data.index, data.values)
    return _finish(fig, ax, xlabel="Gain", title="Feature importance (gain)")


def shap_summary_figure(contributions: pd.DataFrame, matrix: pd.DataFrame, top: int = 20):
    """SHAP beeswarm from precomputed contributions (LightGBM's TreeSHAP)."""
    import shap

    values = contributions.drop(columns="base_value")
    numeric = matrix.apply(lambda s: s.cat.codes.where(s.notna()) if hasattr(s, "cat") else s)
    # shap draws on pyplot's current figure: make it a new one of our own, or
    # the beeswarm lands on whichever figure was opened last
    fig = plt.figure()
    shap.summary_plot(values.to_numpy(), numeric, max_display=top, show=False)
    fig.axes[0].set_title("SHAP values (test window sample, log-odds)")
    fig.tight_layout()
    return fig


def close(fig) -> None:
    plt.close(fig)
