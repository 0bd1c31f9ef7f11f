"""Item 2 of issue #11: two runs scoring the same date at the same time on
PostgreSQL. Before: delete-then-append without a lock left twice the rows,
and two first-ever runs failed on CREATE TABLE (duplicate key
pg_type_typname_nsp_index). Now writers of one date take turns and the second
replaces the first's rows."""

from __future__ import annotations

import threading

import pytest

from pipeline import steps
from tests.pipeline.churn_data import END, mlflow_restored, read
from tests.reliability.pg import postgres_copy

pytestmark = pytest.mark.postgres


def _write_concurrently(settings, trained_env, n: int = 2) -> list[BaseException]:
    """``n`` writers of the same date, started together, each with many small
    chunks so that their transactions overlap."""
    frame, report = steps.feature_matrix(settings, END, dict(trained_env.model.event_types))
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def write():
        try:
            barrier.wait()
            steps.write_scores(settings, END, trained_env.version, trained_env.model, frame, report, chunk_rows=40)
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return errors


def _counts(settings):
    return read(settings, "SELECT COUNT(*) AS n, COUNT(DISTINCT account_id) AS d FROM churn_scores").iloc[0]


def test_first_ever_concurrent_runs_both_succeed_with_one_set_of_rows(trained_env, tmp_path):
    with mlflow_restored(), postgres_copy(trained_env, tmp_path) as settings:
        errors = _write_concurrently(settings, trained_env)
        assert not errors, errors
        counts = _counts(settings)
        assert counts["n"] == counts["d"] > 0
        reasons = read(
            settings,
            "SELECT COUNT(*) AS n FROM churn_risk_reasons "
            "GROUP BY account_id, as_of_date, model_name, rank HAVING COUNT(*) > 1",
        )
        assert reasons.empty
        latest = read(settings, "SELECT COUNT(*) AS n FROM churn_scores_latest").iloc[0]["n"]
        assert latest == counts["d"]


def test_overlapping_reruns_of_a_date_replace_instead_of_adding(trained_env, tmp_path):
    with mlflow_restored(), postgres_copy(trained_env, tmp_path) as settings:
        steps.score_accounts(settings, END)  # the tables and view exist: the hot path
        once = _counts(settings)
        errors = _write_concurrently(settings, trained_env, n=3)
        assert not errors, errors
        assert (_counts(settings) == once).all()
