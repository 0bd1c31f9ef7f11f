"""The BI queries printed in the README run as-is against scored output
tables, on DuckDB and on PostgreSQL, and answer the questions they promise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.warehouse import Warehouse

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_queries() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.S)
    return [b.strip().rstrip(";") for b in blocks]


def test_readme_has_the_four_bi_queries():
    titles = [q.splitlines()[0] for q in readme_queries()]
    assert len(titles) == 4
    for words in ("per CSM owner", "by segment and tier", "common risk reasons", "jumped"):
        assert any(words in t for t in titles), (words, titles)


def _check(wh: Warehouse) -> None:
    top, by_tier, reasons, jumped = (wh.query(q) for q in readme_queries())
    assert len(top) > 0 and top.groupby("csm_owner", dropna=False).size().max() <= 5
    assert {"account_id", "risk_tier", "arr_at_risk", "top_reasons"} <= set(top.columns)
    latest = wh.query("SELECT COUNT(*) AS n, SUM(arr_at_risk) AS arr FROM churn_scores_latest").iloc[0]
    assert by_tier["accounts"].sum() == latest["n"]
    assert by_tier["arr_at_risk"].sum() == pytest.approx(latest["arr"], rel=1e-6, abs=len(by_tier))
    assert len(reasons) > 0 and (reasons["accounts"].diff().dropna() <= 0).all()
    assert set(jumped.columns) >= {"account_id", "week_ago", "now", "top_reasons"}


def test_queries_on_duckdb(trained_env, tmp_path):
    settings = trained_env.copy(tmp_path)
    with Warehouse(settings.warehouse) as wh:
        _check(wh)


@pytest.mark.postgres
def test_queries_on_postgres(trained_env, tmp_path, pg_wh):
    """Copy the scored tables to PostgreSQL, recreate the latest view the way
    the pipeline does, and run the same text."""
    from pipeline.steps import _create_latest_view, _dates

    settings = trained_env.copy(tmp_path)
    with Warehouse(settings.warehouse) as source:
        for table in ("churn_scores", "churn_risk_reasons"):
            pg_wh.write_table(table, _dates(source.read_table(table)))
    _create_latest_view(pg_wh, "churn_scores")
    _check(pg_wh)
