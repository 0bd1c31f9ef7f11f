"""Item 3 of issue #11: the BI columns of churn_scores (account_name,
csm_owner, segment) come from the validated account rows, not from the raw
table in scan order. Before: with a duplicated account id, the copy that came
first in the raw table was written, even though validation kept the other."""

from __future__ import annotations

from pipeline import steps
from pipeline.warehouse import Warehouse
from tests.pipeline.churn_data import END, mlflow_restored, read


def test_a_duplicated_account_shows_the_copy_validation_kept(trained_env, tmp_path):
    settings = trained_env.copy(tmp_path)
    account = read(
        settings, f"SELECT account_id FROM churn_scores WHERE as_of_date = DATE '{END}' ORDER BY risk_rank LIMIT 1"
    ).iloc[0]["account_id"]
    with Warehouse(settings.warehouse) as wh:
        original = wh.query("SELECT * FROM accounts WHERE account_id = $a", {"a": account}).iloc[0]
        # a later, conflicting copy placed FIRST in the table's scan order
        wh.execute(
            """CREATE TABLE accounts_dup AS
            SELECT * FROM (
              SELECT 0 AS _o, account_id, created_at + INTERVAL 30 DAY AS created_at,
                     'Wrong Name' AS account_name, 'Wrong Segment' AS segment, industry, region,
                     'Wrong Owner' AS csm_owner
              FROM accounts WHERE account_id = $a
              UNION ALL SELECT 1 AS _o, * FROM accounts) ORDER BY _o""",
            {"a": account},
        )
        wh.execute("DROP TABLE accounts")
        wh.execute("CREATE TABLE accounts AS SELECT * EXCLUDE (_o) FROM accounts_dup ORDER BY _o")
        wh.execute("DROP TABLE accounts_dup")
        first = wh.query("SELECT csm_owner FROM accounts LIMIT 1").iloc[0]["csm_owner"]
        assert first == "Wrong Owner"  # what a scan-order reader would have picked
    with mlflow_restored():
        outcome = steps.score_accounts(settings, END)
    assert outcome.report.tables["accounts"].bad == 1
    row = read(
        settings,
        f"SELECT account_name, segment, csm_owner FROM churn_scores "
        f"WHERE account_id = '{account}' AND as_of_date = DATE '{END}'",
    ).iloc[0]
    assert row["csm_owner"] == original["csm_owner"]
    assert row["account_name"] == original["account_name"]
    assert row["segment"] == original["segment"]
