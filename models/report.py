"""What a training run records, built without MLflow: its parameters, its
figures and tables, and the model card (:mod:`models.tracking` logs them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from models import plots
from models.train import LABEL, TrainingResult


def run_params(result: TrainingResult, extra: dict[str, Any], families: list[str] | None) -> dict[str, Any]:
    """The parameters of a training run, flat and as text (MLflow params):
    the model's configuration, its data windows and sizes, and ``extra``."""
    split, model = result.split, result.model
    used = model.config["params"]  # after a search, the chosen trial's, not TrainConfig's
    params: dict[str, Any] = {k: used.get(k, v) for k, v in model.config.items() if k not in ("params", "trials")}
    params.update({f"lgb_{k}": v for k, v in used.items()})
    params.update(
        {
            "n_features": len(model.features),
            "horizon_days": result.horizon_days,
            "calibration_method": model.calibrator.method,
            "baseline_features": ",".join(result.baseline_features),
            "families": ",".join(sorted(families)) if families else "",
        }
    )
    for name in ("train", "valid", "calib", "test"):
        part = getattr(split, name)
        if part.empty:
            continue  # the shipped model has no early-stopping window
        params[f"{name}_rows"] = len(part)
        params[f"{name}_positive_rate"] = round(float(part[LABEL].mean()), 5)
    params.update({f"window_{k}": v for k, v in windows(result).items()})
    params.update(extra)
    return {k: (str(v)[:500]) for k, v in params.items()}


def windows(result: TrainingResult) -> dict[str, str]:
    """First..last snapshot of each out-of-time window (train, valid, calib, test)."""
    return {k: f"{v[0]}..{v[-1]}" for k, v in result.split.windows().items() if v}


def write_artifacts(result: TrainingResult, directory: Path) -> None:
    """Write a training run's figures (``plots/``), tables (``tables/``), the
    feature list and the model card into ``directory``."""
    split, model = result.split, result.model
    y = split.test[LABEL].to_numpy()
    scores = {"model": result.test_prob, "logistic baseline": result.baseline_prob["baseline_logistic"]}
    figures = {
        "plots/roc.png": plots.roc_figure(y, scores),
        "plots/pr.png": plots.pr_figure(y, scores),
        "plots/calibration.png": plots.calibration_figure(y, scores),
        "plots/lift.png": plots.lift_figure(y, result.test_prob),
    }
    importance = pd.Series(model.booster.feature_importance("gain"), index=model.features).sort_values(ascending=False)
    figures["plots/feature_importance.png"] = plots.importance_figure(importance)
    sample = split.test.sample(min(len(split.test), 2000), random_state=0)
    contributions = model.contributions(sample)
    figures["plots/shap_summary.png"] = plots.shap_summary_figure(contributions, model.matrix(sample))
    for rel, fig in figures.items():
        fig.savefig(_new_file(directory, rel), dpi=110)
        plots.close(fig)
    mean_abs = contributions.drop(columns="base_value").abs().mean().sort_values(ascending=False)
    tables = {
        "tables/feature_importance.csv": importance.rename("gain").to_frame(),
        "tables/shap_mean_abs.csv": mean_abs.rename("mean_abs_shap").to_frame(),
        "tables/metrics_by_segment.csv": result.by_segment,
        "tables/metrics_vs_baselines.csv": result.summary(),
    }
    for rel, frame in tables.items():
        frame.to_csv(_new_file(directory, rel))
    (directory / "features.json").write_text(json.dumps(model.features, indent=1))
    (directory / "model_card.md").write_text(model_card(result, mean_abs))


def _new_file(directory: Path, relative: str) -> Path:
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def model_card(result: TrainingResult, mean_abs_shap: pd.Series) -> str:
    """A short markdown model card."""
    spans = windows(result)
    summary = result.summary().round(4).to_markdown()
    top = ", ".join(f"`{f}`" for f in mean_abs_shap.head(8).index)
    trials = result.model.config.get("trials", [])
    search = (
        f"\nParameters chosen by a {len(trials)}-trial random search on the early-stopping window "
        "(`tables/search_trials.csv`)."
        if trials
        else ""
    )
    return f"""# Churn model card

**What it predicts:** the calibrated probability that an active account churns
within {result.horizon_days} days of the as-of date (contract definition).

**Evaluation (walk-forward, out of time):** each window below was scored by
a model that never saw it: trained on the snapshots listed, early-stopped on
the next one and calibrated on the one after, the window last. When the
embargo is on, every training label was known (horizon + grace days after its
snapshot) before the first evaluation snapshot, as in production.

{_folds_table(result)}

**The shipped model:** trained on every mature snapshot ({spans.get("train")}:
the freshest labels) with the folds' median number of trees, calibrated on the
held-out predictions of the evaluation windows ({spans.get("calib")}){_level(result)}. Its own
metrics are not reported: it has seen those windows.

**Model:** LightGBM ({result.model.config["params"]["num_leaves"]} leaves, depth
{result.model.config["params"]["max_depth"]}, {result.model.config["best_iteration"]} trees),
{result.model.calibrator.method} calibration, {len(result.model.features)} features.{search}

**Evaluation windows, against baselines** (mean over the windows):

{summary}

{_intervals(result)}

**Strongest drivers (mean |SHAP|):** {top}.

**Limits:** trained on the accounts and history in this warehouse; probabilities
are calibrated on recent held-out months and drift as the customer base changes (see
the drift check at scoring time). Not a causal model: reasons explain the score,
they do not prove what will prevent churn.
"""


def _level(result: TrainingResult) -> str:
    """The level shift of the shipped model's calibration, in words."""
    n, shift = result.model.config.get("level_snapshots", 0), getattr(result.model.calibrator, "shift", 0.0)
    if not n:
        return ""
    return (
        f", then shifted by {shift:+.3f} log-odds so that its mean probability over the last {n} mature "
        "snapshots equals their churn rate (calibration in the large: the level from a year of labels, not "
        "from the three evaluation windows alone)"
    )


def _folds_table(result: TrainingResult) -> str:
    rows = [
        {
            "window": f.test_date,
            "trained on": f"{f.windows['train'][0]}..{f.windows['train'][-1]} ({len(f.windows['train'])})",
            "early stopping": ", ".join(f.windows["valid"]),
            "calibration": ", ".join(f.windows["calib"]),
        }
        for f in result.folds
    ]
    table = pd.DataFrame(rows)
    if len(result.window_metrics):
        metrics = result.window_metrics.set_index("window")[["accounts", "churned", "roc_auc", "pr_auc", "lift_top10"]]
        table = table.join(metrics.round(4), on="window")
    return table.to_markdown(index=False) if len(table) else "(no folds)"


def _intervals(result: TrainingResult) -> str:
    if not result.intervals:
        return ""
    parts = [f"{k} {result.metrics[k]:.4f} [{lo:.4f}, {hi:.4f}]" for k, (lo, hi) in result.intervals.items()]
    return "90% bootstrap intervals (accounts resampled within each window): " + "; ".join(parts) + "."
