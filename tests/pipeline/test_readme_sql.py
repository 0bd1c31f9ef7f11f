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
    # no stale account: every row is from the latest scored date, renewal still ahead
    newest = wh.scalar("SELECT MAX(as_of_date) FROM churn_scores")
    shown = wh.query("SELECT account_id, as_of_date, renewal_date FROM churn_scores_latest")
    assert (shown["as_of_date"] == newest).all()
    assert (shown["renewal_date"].isna() | (shown["renewal_date"] > shown["as_of_date"])).all()
    assert set(top["account_id"]) <= set(shown["account_id"])


def test_queries_on_duckdb(trained_env, tmp_path):
    settings = trained_env.copy(tmp_path)
    with Warehouse(settings.warehouse) as wh:
        _check(wh)


def test_queries_on_the_duckdb_read_copy(trained_env):
    """BI tools open the published copy of a DuckDB warehouse's outputs
    (read-only); the same queries run there."""
    import duckdb

    copy = trained_env.root / "warehouse.outputs.duckdb"
    assert copy.exists()
    conn = duckdb.connect(str(copy), read_only=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert {"churn_scores", "churn_risk_reasons", "churn_scores_latest"} <= tables
        for query in readme_queries():
            conn.execute(query).fetchall()
    finally:
        conn.close()


@pytest.mark.postgres
def test_queries_on_postgres(trained_env, tmp_path, pg_wh):
    """Copy the scored tables to PostgreSQL, recreate the latest view the way
    the pipeline does, and run the same text."""
    from features.contract import TableNames
    from pipeline import outputs

    settings = trained_env.copy(tmp_path)
    names = TableNames()
    with Warehouse(settings.warehouse) as source:
        outputs.prepare(pg_wh, names)
        for table, schema in (
            (names.churn_scores, outputs.SCORES_SCHEMA),
            (names.churn_risk_reasons, outputs.REASONS_SCHEMA),
        ):
            pg_wh.write_table(table, outputs.as_stored(source.read_table(table), schema), mode="append")
    _check(pg_wh)
