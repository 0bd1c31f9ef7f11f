"""Generated data and a trained champion shared by the scoring, write-back and
CLI tests: generated, trained and scored ONCE per session (about 10 s), then
copied (one DuckDB file) by every test that changes the warehouse.

Layout of the shared directory: ``warehouse.duckdb`` (contract tables plus
churn_scores / churn_risk_reasons for two dates) and ``mlflow.db`` (the
registry holding the champion). Copies get their own warehouse and reuse the
registry read-only.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features import catalog
from models.explain import MIN_CONTRIBUTION
from models.train import ChurnModel
from pipeline import steps
from pipeline.generate import generate_data
from pipeline.settings import Settings, load_settings
from pipeline.synthetic import GeneratorConfig
from pipeline.warehouse import Warehouse
from tests.mlflow_state import mlflow_restored  # noqa: F401  (re-exported for the tests)

END = dt.date(2026, 6, 30)  # last day of the generated history = the scoring date
EARLIER = dt.date(2026, 5, 31)  # an earlier scoring date kept as history
N_ACCOUNTS = 1000
SEED = 7


def settings_for(data_dir: Path, **overrides) -> Settings:
    """Settings independent of the process environment."""
    return load_settings(env={}, data_dir=data_dir, **overrides)


@dataclass(frozen=True)
class Trained:
    root: Path
    settings: Settings
    version: str
    model: ChurnModel

    def copy(self, dest: Path, **overrides) -> Settings:
        """A private copy of the warehouse (scores included), same registry."""
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.root / "warehouse.duckdb", dest / "warehouse.duckdb")
        return settings_for(dest, mlflow_tracking_uri=self.settings.tracking_uri, **overrides)


_BUILT: dict[str, Trained] = {}


def trained(tmp_path_factory) -> Trained:
    """Generate, train and score once per session (memoised, so fixtures in
    different test packages share it)."""
    key = str(tmp_path_factory.getbasetemp())
    if key not in _BUILT:
        root = tmp_path_factory.mktemp("churn-trained")
        settings = settings_for(root)
        with mlflow_restored():
            generate_data(settings, GeneratorConfig(n_accounts=N_ACCOUNTS, months=24, seed=SEED, end_date=END))
            outcome = steps.train_model(settings, END)
            assert outcome.run.decision.promoted, outcome.run.decision.reason
            steps.score_accounts(settings, EARLIER)
            steps.score_accounts(settings, END)
            version, model = steps.load_champion(settings)
        _BUILT[key] = Trained(root, settings, version, model)
    return _BUILT[key]


def churn_executable() -> str:
    """The `churn` console script of the running interpreter's environment."""
    import sys

    path = Path(sys.executable).parent / "churn"
    assert path.exists(), f"{path} missing: run `make install`"
    return str(path)


def unset(monkeypatch, *names: str) -> None:
    """Remove environment variables so that whatever the code under test sets
    later is undone too (``delenv`` alone records nothing for an absent one)."""
    for name in names:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def clean_env(**extra: str) -> dict[str, str]:
    """The process environment without any churn / MLflow / Prefect API setting."""
    drop = ("CHURN_", "MLFLOW_", "PREFECT_API_URL", "PREFECT_HOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


def run_churn(settings: Settings, args: list[str], prefect_api_url: str, home: Path, timeout: float = 300):
    """Run the real `churn` console script (its own process) on ``settings``'
    data against the session's Prefect server; ``home`` is its working
    directory and holds its PREFECT_HOME."""
    env = clean_env(
        CHURN_DATA_DIR=str(settings.data_dir),
        MLFLOW_TRACKING_URI=settings.tracking_uri,
        PREFECT_API_URL=prefect_api_url,
        PREFECT_HOME=str(home / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return subprocess.run(
        [churn_executable(), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=home
    )


# -- reading tables ---------------------------------------------------------------
def read(settings: Settings, sql: str) -> pd.DataFrame:
    with Warehouse(settings.warehouse) as wh:
        return wh.query(sql)


def assert_same_scores(settings: Settings, reference: Settings, as_of: dt.date, accounts: int) -> None:
    """The scores and reasons ``settings``'s warehouse holds for ``as_of`` are
    the reference's: same rows, probabilities and contributions to 1e-12."""

    def rows(settings: Settings, sql: str) -> pd.DataFrame:
        frame = read(settings, sql)
        return frame.sort_values(list(frame.columns[:5])).reset_index(drop=True)

    where = f"WHERE as_of_date = DATE '{as_of}'"
    for table, cols in (
        (
            "churn_scores",
            "account_id, as_of_date, model_name, model_version, churn_probability, risk_tier, risk_rank, mrr, "
            "arr_at_risk, renewal_date, days_to_renewal, top_reasons, account_name, segment, csm_owner",
        ),
        (
            "churn_risk_reasons",
            "account_id, as_of_date, model_name, rank, model_version, feature, feature_group, feature_value, "
            "contribution, direction, reason",
        ),
    ):
        got, expected = (rows(s, f"SELECT {cols} FROM {table} {where}") for s in (settings, reference))
        if table == "churn_scores":
            assert len(got) == len(expected) == accounts > 0
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=0, atol=1e-12)


def snapshot(settings: Settings) -> dict[str, pd.DataFrame]:
    """What the warehouse holds, to compare before/after: every table and view
    by name, the output tables (and anything else small) row by row, sorted;
    the large input tables by their columns and row count."""
    inputs = {"usage_events", "support_tickets", "nps_responses", "subscriptions"}
    with Warehouse(settings.warehouse) as wh:
        names = wh.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name"
        )["table_name"]
        out = {}
        for name in names:
            if name in inputs:
                out[name] = pd.DataFrame({"columns": [",".join(wh.column_types(name))], "rows": [wh.row_count(name)]})
                continue
            frame = wh.read_table(name)
            out[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return out


def assert_same_tables(before: dict[str, pd.DataFrame], after: dict[str, pd.DataFrame]) -> None:
    assert sorted(before) == sorted(after)
    for name, frame in before.items():
        pd.testing.assert_frame_equal(after[name], frame, obj=name)


# -- independent recomputation of the reasons --------------------------------------------
def topic_sums(model: ChurnModel, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(contributions, topic sums) per row, topics from the catalog."""
    contrib = model.contributions(frame)
    topics: dict[str, list[str]] = {}
    for name in model.features:
        topics.setdefault(catalog.get(name).topic, []).append(name)
    sums = pd.DataFrame({t: contrib[cols].sum(axis=1) for t, cols in topics.items()}, index=frame.index)
    return contrib, sums


def expected_reasons(contrib: pd.Series, sums: pd.Series, n_risk: int = 3) -> list[dict]:
    """The reasons of one account as the contract defines them: the strongest
    driver topics (sum >= MIN_CONTRIBUTION, ranked), then the most protective
    driver topic. Context topics (who the account is) are never reasons."""
    topic_of = {f: catalog.get(f).topic for f in contrib.index if f != "base_value"}
    sums = sums[[t for t in sums.index if not catalog.topic(t).context]]
    rows = []
    ranked = sums.sort_values(ascending=False, kind="stable")
    for topic, value in ranked.head(n_risk).items():
        if value >= MIN_CONTRIBUTION:
            members = [f for f, t in topic_of.items() if t == topic]
            rows.append(
                {
                    "topic": topic,
                    "contribution": value,
                    "direction": "increases_risk",
                    "feature": contrib[members].astype(float).idxmax(),
                }
            )
    lowest_topic, lowest = sums.idxmin(), sums.min()
    if lowest <= -MIN_CONTRIBUTION:
        members = [f for f, t in topic_of.items() if t == lowest_topic]
        rows.append(
            {
                "topic": lowest_topic,
                "contribution": lowest,
                "direction": "decreases_risk",
                "feature": contrib[members].astype(float).idxmin(),
            }
        )
    return rows


def check_reasons(model: ChurnModel, features: pd.DataFrame, reasons: pd.DataFrame, scores: pd.DataFrame) -> int:
    """Assert that every account's stored reasons are its SHAP topics (sign,
    rank, exact sum, representative feature) and that top_reasons joins the
    risk reasons in rank order. Returns the number of accounts checked."""
    contrib, sums = topic_sums(model, features)
    by_account = {a: g.sort_values("rank") for a, g in reasons.groupby("account_id")}
    top = scores.set_index("account_id")["top_reasons"]
    for i, account in enumerate(features["account_id"].astype(str)):
        want = expected_reasons(contrib.iloc[i], sums.iloc[i])
        got = by_account.get(account, reasons.iloc[:0])
        assert list(got["rank"]) == list(range(1, len(want) + 1)), account
        assert list(got["direction"]) == [w["direction"] for w in want], account
        assert list(got["feature"]) == [w["feature"] for w in want], account
        np.testing.assert_allclose(
            got["contribution"].to_numpy(float), [w["contribution"] for w in want], rtol=0, atol=1e-9, err_msg=account
        )
        # the sign of the stored contribution is the direction
        assert ((got["contribution"] > 0) == (got["direction"] == "increases_risk")).all(), account
        risk_text = "; ".join(got.loc[got["direction"] == "increases_risk", "reason"])
        stored = top.get(account)
        assert (stored if isinstance(stored, str) else "") == risk_text, account
    return len(features)


#: a raw feature identifier (snake_case word) must never reach a CSM
RAW_NAME = re.compile(r"\b[a-z0-9]+_[a-z0-9_]+\b")
