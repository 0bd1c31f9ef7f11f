"""Item 7 of issue #11 end to end on PostgreSQL: event types that are not
ASCII, or so long that their feature name passes PostgreSQL's 63-character
limit. Before: '登录' became `usage_blank_per_seat_30d` with reasons like
"'blank x' used 0.14 times per seat", and a long type was silently truncated
by PostgreSQL, so training succeeded and every later score failed."""

from __future__ import annotations

import pytest

from pipeline import steps
from pipeline.warehouse import Warehouse
from tests.pipeline.churn_data import END, mlflow_restored, read
from tests.reliability.pg import postgres_copy

pytestmark = pytest.mark.postgres

LONG = "report_" + "quarterly_pipeline_export_to_the_finance_warehouse_" * 2  # ~110 characters


def test_unicode_and_long_event_types_train_score_and_read_as_the_data_says(trained_env, tmp_path):
    with mlflow_restored(), postgres_copy(trained_env, tmp_path, model_name="churn-model-event-names") as settings:
        with Warehouse(settings.warehouse) as wh:
            types = wh.query("SELECT event_type, COUNT(*) AS n FROM usage_events GROUP BY 1 ORDER BY 2 DESC")
            first, second, third = types["event_type"].iloc[:3]
            wh.execute("UPDATE usage_events SET event_type = $t WHERE event_type = $f", {"t": "登录", "f": first})
            wh.execute(
                "UPDATE usage_events SET event_type = $t WHERE event_type = $f", {"t": "エクスポート", "f": second}
            )
            wh.execute("UPDATE usage_events SET event_type = $t WHERE event_type = $f", {"t": LONG, "f": third})
        outcome = steps.train_model(settings, END)
        columns = outcome.result.model.event_types
        assert {"登录", "エクスポート", LONG} <= set(columns.values())
        assert len(set(columns)) == len(columns)  # unique
        assert all(name.isascii() and len(name.encode()) <= 63 for name in columns)
        version, model = steps.load_champion(settings) if outcome.run.decision.promoted else (None, None)
        assert version is not None, outcome.run.decision.reason
        scored = steps.score_accounts(settings, END)  # before: failed on the truncated column
        assert scored.accounts > 0
        reasons = read(settings, "SELECT reason FROM churn_risk_reasons WHERE feature LIKE 'usage_%'")["reason"]
        assert not reasons.str.contains("blank").any()
        texts = " ".join(reasons)
        named = [t for t in ("登录", "エクスポート", LONG) if t in texts]
        assert named, reasons.head(20).tolist()  # at least one per-type reason names its type as the data does
