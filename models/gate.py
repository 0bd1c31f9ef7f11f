"""The champion/challenger gate: whether a newly trained model replaces the
champion. Pure: :mod:`models.tracking` looks the champion up in the registry
and records the decision (``gate_decision.json``).

The rule: both models are scored on the same rows of the same evaluation
windows, each by a model that never saw them when possible: the held-out
(walk-forward) predictions of both training runs on the windows they share;
otherwise the champion model on the challenger's windows (when they are
not all later than the champion's last training snapshot it may have
trained on them, which only favours the champion; the reason says which). The challenger is
promoted only when its gain on the gate metric (mean over the windows) is
above the margin beyond noise: the lower end of the 90% paired bootstrap
interval (accounts resampled within each window, both models on the same
draw) must exceed the margin. A retrain on unchanged data gains exactly 0:
never promoted. A champion that cannot score the challenger's rows (a
feature the data no longer has) is kept: promotion is then by hand."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.evaluate import classification_metrics
from models.train import LABEL, ChurnModel, TrainingResult, annual_value

KEY = ["account_id", "as_of_date"]
RULE = (
    "promote when the lower end of the 90% paired bootstrap interval of the challenger's gain on the gate "
    "metric (mean over the shared evaluation windows, accounts resampled within each window) exceeds the margin"
)

log = logging.getLogger(__name__)

#: metrics where lower is better; for every other one higher is better
LOWER_IS_BETTER = ("brier", "log_loss", "ece")


@dataclass
class GateDecision:
    promoted: bool
    reason: str
    metric: str
    margin: float
    challenger_score: float
    champion_score: float | None
    champion_version: str | None
    rule: str = RULE
    comparison: str | None = None  # which predictions were compared
    windows: list[str] | None = None
    rows: int | None = None
    gain: float | None = None  # challenger over champion (positive = better), mean over windows
    gain_low: float | None = None  # 90% paired bootstrap interval of the gain
    gain_high: float | None = None
    n_boot: int | None = None


def decide(
    metric: str, margin: float, challenger: float, champion: float | None, champion_version: str | None = None
) -> GateDecision:
    """Promote when there is no champion, or when the challenger beats it by
    ``margin`` on ``metric`` (lower is better for brier/log_loss/ece)."""
    if champion is None:
        return GateDecision(True, "no champion yet", metric, margin, challenger, None, None)
    if np.isnan(champion) or np.isnan(challenger):
        # undefined on this window (e.g. one class): no evidence either way, keep the champion
        return GateDecision(
            False,
            f"{metric} is undefined on the evaluation window for the champion "
            f"v{champion_version} or the challenger: champion kept",
            metric,
            margin,
            challenger,
            champion,
            champion_version,
        )
    gain = (champion - challenger) if metric in LOWER_IS_BETTER else (challenger - champion)
    promoted = gain > margin
    verdict = "beats" if promoted else "does not beat"
    return GateDecision(
        promoted,
        f"challenger {verdict} champion v{champion_version} on {metric}: "
        f"{challenger:.4f} vs {champion:.4f} (margin {margin})",
        metric,
        margin,
        challenger,
        champion,
        champion_version,
    )


def judge(
    result: TrainingResult,
    champion: tuple[str, ChurnModel] | None,
    metric: str,
    margin: float,
    version: str,
    champion_heldout: pd.DataFrame | None = None,
    n_boot: int = 500,
) -> GateDecision:
    """Compare the challenger (``result``) with the ``champion`` (version,
    model) on the same rows, beyond noise (see the module docstring).
    ``champion_heldout`` holds the champion run's held-out predictions
    (account_id, as_of_date, prob). A champion that cannot score the rows is
    kept: no comparison, no promotion."""
    from models.walkforward import INTERVAL_METRICS, fast_metrics, paired_bootstrap

    challenger = result.metrics[metric]
    if champion is None:
        return decide(metric, margin, challenger, None)
    champion_version, model = champion
    rows = result.heldout[[*KEY, LABEL, "window", "prob"]]
    try:  # a champion that cannot score the current data is never replaced automatically
        prob = model.predict_proba(result.split.test)
    except Exception as exc:
        log.warning(
            "Champion v%s cannot score the new window (%s): challenger v%s not promoted", champion_version, exc, version
        )
        return kept(
            f"champion v{champion_version} cannot score the current data ({type(exc).__name__}: {exc})",
            version,
            metric,
            margin,
            challenger,
            champion_version,
        )
    shared = pd.DataFrame()
    if champion_heldout is not None and len(champion_heldout):
        theirs = champion_heldout[[*KEY, "prob"]].rename(columns={"prob": "champion"})
        theirs = theirs.assign(as_of_date=pd.to_datetime(theirs["as_of_date"]))
        shared = rows.merge(theirs, on=KEY, how="inner")
        comparison = "held-out predictions of both training runs on the windows they share"
    if shared.empty:
        shared = rows.assign(champion=prob)
        comparison = f"the champion model on the challenger's evaluation windows ({_seen(champion_heldout, rows)})"
    if metric not in INTERVAL_METRICS:
        test = result.split.test
        score = classification_metrics(test[LABEL].to_numpy(), shared["champion"].to_numpy(), annual_value(test))[
            metric
        ]
        return decide(metric, margin, challenger, score, champion_version)

    def better(a: float, b: float) -> float:
        return (b - a) if metric in LOWER_IS_BETTER else (a - b)

    shared = shared.reset_index(drop=True)
    gain, (low, high) = paired_bootstrap(shared, "prob", "champion", metric, better, n_boot)
    windows = sorted(shared["window"].unique())
    if np.isnan(gain):
        return decide(metric, margin, challenger, float("nan"), champion_version)
    promoted = bool(low > margin)
    verdict = "beats" if promoted else "does not beat"
    reason = (
        f"challenger {verdict} champion v{champion_version} on {metric} beyond noise: gain {gain:+.4f}, "
        f"90% interval [{low:+.4f}, {high:+.4f}] over {len(windows)} window(s) and {len(shared)} rows "
        f"(margin {margin}; {comparison})"
    )
    by_window = shared.groupby("window", sort=True)
    champion_score = np.nanmean([fast_metrics(w[LABEL], w["champion"], (metric,))[metric] for _, w in by_window])
    return GateDecision(
        promoted,
        reason,
        metric,
        margin,
        challenger,
        float(champion_score),
        champion_version,
        comparison=comparison,
        windows=[str(w) for w in windows],
        rows=len(shared),
        gain=float(gain),
        gain_low=low,
        gain_high=high,
        n_boot=n_boot,
    )


def _seen(champion_heldout: pd.DataFrame | None, rows: pd.DataFrame) -> str:
    """Whether the champion can have trained on the challenger's windows: its
    shipped model trained on every mature snapshot up to its last held-out
    window, so windows after that one are new to it."""
    if champion_heldout is None or not len(champion_heldout):
        return "it may have trained on them: its held-out windows are not on record"
    last = pd.to_datetime(champion_heldout["as_of_date"]).max()
    if pd.to_datetime(rows["as_of_date"]).min() > last:
        return f"it never trained on them: they are later than its last training snapshot {last.date()}"
    return f"it may have trained on them: its training snapshots run to {last.date()}"


def kept(
    why: str, version: str, metric: str, margin: float, challenger: float, champion_version: str | None
) -> GateDecision:
    """No promotion without a comparison: the reason says how to promote by hand."""
    if len(why) > 1000:  # the reason is a tag value too
        why = why[:1000] + "..."
    return GateDecision(
        False,
        f"{why}: challenger v{version} not promoted without a comparison; check it and run "
        f"`churn promote {version}` to make it champion",
        metric,
        margin,
        challenger,
        None,
        champion_version,
    )
