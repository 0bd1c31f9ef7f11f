"""Metrics per date and pooled with bootstrap intervals, and the markdown report of the external check."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: (key in models.evaluate.classification_metrics, column title); gap = mean predicted - observed rate
METRICS = [
    ("roc_auc", "ROC AUC"),
    ("pr_auc", "PR-AUC"),
    ("lift_top10", "lift@10%"),
    ("brier", "Brier"),
    ("ece", "ECE"),
    ("mean_predicted", "mean predicted"),
    ("gap", "mean pred. - observed"),
]
NAMES = {"ours": "ours (champion)", "reference": "reference (28-day counts + LightGBM)"}


def _metrics(fn: Callable, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    out = fn(y, p)
    missing = [k for k, _ in METRICS if k not in out and k != "gap"]
    if missing:
        raise KeyError(f"classification_metrics lacks {missing}")
    out["gap"] = out["mean_predicted"] - out["base_rate"]
    return out


def evaluate(frame: pd.DataFrame, models: list[str], draws: int, seed: int, fn: Callable) -> dict[str, Any]:
    """Metrics per date and pooled for each model's probability column; pooled ones with a
    percentile 90% interval from ``draws`` bootstrap samples of accounts (all of an account's rows
    go together), and the paired difference of each model from the first one on the same samples."""
    y = frame["churned"].to_numpy(int)
    per_date = {
        (str(pd.Timestamp(day).date()), m): _metrics(fn, y[idx], frame[m].to_numpy()[idx])
        for day, idx in frame.groupby("as_of_date").indices.items()
        for m in models
    }
    pooled = {m: _metrics(fn, y, frame[m].to_numpy()) for m in models}

    codes, _ = pd.factorize(frame["account_id"])
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rng = np.random.default_rng(seed)
    samples: dict[str, list[dict[str, float]]] = {m: [] for m in models}
    for _ in range(draws):
        pick = rng.integers(0, len(sizes), len(sizes))
        lengths = sizes[pick]
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        idx = order[np.repeat(starts[pick], lengths) + offsets]
        for m in models:
            samples[m].append(_metrics(fn, y[idx], frame[m].to_numpy()[idx]))
    keys = [k for k, _ in METRICS]
    interval = {m: {k: tuple(np.nanpercentile([s[k] for s in samples[m]], [5, 95])) for k in keys} for m in models}
    first = models[0]
    delta = {
        m: {
            k: (
                pooled[first][k] - pooled[m][k],
                *np.nanpercentile([a[k] - b[k] for a, b in zip(samples[first], samples[m])], [5, 95]),
            )
            for k in keys
        }
        for m in models[1:]
    }
    return {
        "per_date": per_date,
        "pooled": pooled,
        "interval": interval,
        "delta": delta,
        "models": models,
        "dates": sorted({d for d, _ in per_date}),
    }


def _f(value: float, digits: int = 3) -> str:
    return "nan" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def table(results: dict[str, Any]) -> str:
    """Per date and pooled, one row per model; pooled values with their 90% interval."""
    head = ["date", "model", "accounts", "churned", "observed rate"] + [title for _, title in METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for day in results["dates"]:
        for m in results["models"]:
            r = results["per_date"][(day, m)]
            cells = [day, NAMES[m], f"{r['n']:.0f}", f"{r['positives']:.0f}", _f(r["base_rate"], 4)]
            cells += [_f(r[k], 4 if k in ("brier", "ece", "mean_predicted", "gap") else 3) for k, _ in METRICS]
            lines.append("| " + " | ".join(cells) + " |")
    for m in results["models"]:
        r, ci = results["pooled"][m], results["interval"][m]
        cells = ["**pooled**", NAMES[m], f"{r['n']:.0f}", f"{r['positives']:.0f}", _f(r["base_rate"], 4)]
        for k, _ in METRICS:
            d = 4 if k in ("brier", "ece", "mean_predicted", "gap") else 3
            cells.append(f"**{_f(r[k], d)}** [{_f(ci[k][0], d)}, {_f(ci[k][1], d)}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def delta_table(results: dict[str, Any]) -> str:
    first = results["models"][0]
    lines = ["| metric | " + " | ".join(f"{NAMES[first]} - {NAMES[m]}" for m in results["delta"]) + " |", "|---|"]
    lines[1] += "---:|" * len(results["delta"])
    for k, title in METRICS:
        if k == "mean_predicted":  # the same difference as the gap's (both models see the same accounts)
            continue
        cells = [f"{_f(v[k][0], 4)} [{_f(v[k][1], 4)}, {_f(v[k][2], 4)}]" for v in results["delta"].values()]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def drift_flags(model, frame: pd.DataFrame, version: str) -> str:
    """The columns the pipeline's drift check flags on a scored date (a diagnostic only)."""
    try:
        from models.scoring import drift

        found = drift(model, frame, version)
        flagged = found.loc[found["drifted"], "column"].tolist()
        return ", ".join(f"`{c}`" for c in flagged) or "none"
    except Exception as exc:  # a diagnostic: the metrics do not depend on it
        return f"drift check failed: {type(exc).__name__}: {exc}"


def _machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024**2:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    system = f"{platform.system()} {platform.machine()}, Python {platform.python_version()}"
    return f"{os.cpu_count()} cores (nproc), {cpu}{mem}, {system}"


def source_commit() -> str:
    """The commit of the code that ran (read-only git), and whether features/models/pipeline differ from it."""
    import pipeline

    root = Path(pipeline.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "diff", "--quiet", "HEAD", "--", "features", "models", "pipeline"],
            capture_output=True,
        ).returncode
        state = "with uncommitted changes in features/models/pipeline" if dirty else "clean"
        return f"`{commit}` ({state}; code imported from `{root}`)"
    except (OSError, subprocess.CalledProcessError):
        given = os.environ.get("CHURN_SOURCE_COMMIT", "unknown")
        return f"`{given}` (given in CHURN_SOURCE_COMMIT: code imported from `{root}`, not a git checkout)"


def markdown(**kw: Any) -> str:
    sim, results, outcome, model = kw["sim"], kw["results"], kw["outcome"], kw["model"]
    tables = sim.tables
    ev, subs, acc = tables.usage_events, tables.subscriptions, tables.accounts
    cfg = sim.config
    windows = "not available"
    try:
        windows = "; ".join(f"{k}: {', '.join(v)}" for k, v in outcome.result.split.windows().items())
    except AttributeError:
        pass
    gate = getattr(getattr(outcome, "run", None), "decision", None)
    importance = pd.Series(model.booster.feature_importance("gain"), index=model.booster.feature_name())
    top = ", ".join(f"`{k}`" for k in importance.sort_values(ascending=False).head(10).index)
    times = "\n".join(f"| {k} | {v:.1f} |" for k, v in kw["seconds"].items())
    drift = "\n".join(f"- {d}: {flags}" for d, flags in kw["drift"].items())
    nulls = ", ".join(
        f"`{t}.{c}`" for t, status in kw["validation"].tables.items() if status.present for c in status.null_columns
    )
    rules = ", ".join(f"{r.table}.{r.rule}: {r.rows}" for r in kw["validation"].rules if r.rows) or "none"
    period = f"{sim.start_date} to {sim.end_date}"
    users = "yes" if sim.has_users else "no"
    mid_term = tables.notes.get("mid_term_churns", 0)
    scored_on = ", ".join(str(d) for d in kw["dates"])
    seed = cfg["random_seed"]
    counts = (
        "the utility reads each month's events (the live simulation's rule, see the README)"
        if cfg.get("monthly_event_counts", True)
        else "the utility reads every event since the customer started (the release's end-to-end loop)"
    )
    return f"""# External check: ChurnSim `{sim.model}` (Fighting Churn with Data simulator) mapped onto our contract

- Date: {dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}
- Machine: {_machine()}
- Code: {source_commit()}
- Command: `{kw["command"]}`
- Runtime: {kw["seconds"]["total"]:.0f} s in total (table below)

## Data (not written by us)
ChurnSim `{sim.model}` ({"cached simulation" if sim.cached else "simulated in this run"}), vendored under
`benchmarks/external/churnsim/` from the `fightchurn` 1.2.0 release of carl24k/fight-churn (MIT), mapped by
`benchmarks/external/mapping.py`: {cfg["init_customers"]} initial customers growing {cfg["growth_rate"]:.0%} a month,
seed {seed}, {period}; {counts}. Usage and subscriptions only (no tickets, no NPS).

| accounts | subscription rows | usage events | event types | users known | mid-term churns (contracted end kept) |
|---:|---:|---:|---:|---|---:|
| {len(acc)} | {len(subs)} | {len(ev):,} | {ev["event_type"].nunique()} | {users} | {mid_term} |

## Task
Trained as of **{kw["d0"]}** with `pipeline.steps.train_model` (champion v{kw["version"]}); scored on
{scored_on} with `pipeline.steps.feature_matrix` + `model.predict_proba`; realised labels from
`features.build.build_labels` (churn within 90 days, 30 days' grace). Every active account on each date is scored.

- Our model's own windows: {windows}
- Gate: {getattr(gate, "reason", "not available")}
- Reference peer: `lightgbm.LGBMClassifier` (defaults, seed {seed}) on the 28-day count of each event type,
  computed in pandas from the raw events, trained on every mature snapshot as of {kw["d0"]}
  ({len(kw["peer_dates"])} snapshots, {kw["peer_rows"]} rows: {", ".join(kw["peer_dates"])}), uncalibrated.

## Results
Metrics from `models.evaluate.classification_metrics`; pooled over the three dates with a bootstrap 90% interval
(accounts resampled, {kw["bootstrap"]} draws, seed {seed}).

{table(results)}

Paired difference on the same bootstrap samples (90% interval):

{delta_table(results)}

## Diagnostics
- Our model's top features by gain: {top}
- All-NULL columns reported by validation: {nulls or "none"}; rows excluded by rules: {rules}
- Drift flagged by the pipeline's drift check on each scored date:
{drift}

| stage | seconds |
|---|---:|
{times}
"""
