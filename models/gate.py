"""The champion/challenger gate: whether a newly trained model replaces the
champion. Pure: it compares the two models on the challenger's test window;
:mod:`models.tracking` looks the champion up in the registry and records the
decision."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from models.evaluate import classification_metrics
from models.train import LABEL, ChurnModel, TrainingResult, annual_value

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
    result: TrainingResult, champion: tuple[str, ChurnModel] | None, metric: str, margin: float, version: str
) -> GateDecision:
    """Score the ``champion`` (version, model), if any, on the challenger's
    test window and decide. A champion that cannot score that window is
    kept: no comparison, no promotion."""
    challenger = result.metrics[metric]
    if champion is None:
        return decide(metric, margin, challenger, None)
    champion_version, model = champion
    test = result.split.test
    try:
        prob = model.predict_proba(test)
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
    score = classification_metrics(test[LABEL].to_numpy(), prob, annual_value(test))[metric]
    return decide(metric, margin, challenger, score, champion_version)


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
