"""A PostgreSQL copy of the trained environment's inputs in a fresh schema,
with settings pointing at it (same champion, same registry)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from pipeline.settings import Settings
from pipeline.warehouse import Warehouse
from tests.conftest import _postgres_or_skip
from tests.pipeline.churn_data import Trained, settings_for

INPUTS = ("accounts", "subscriptions", "usage_events", "support_tickets", "nps_responses")


def schema_url(schema: str) -> str:
    base = _postgres_or_skip()
    options = quote(f"-csearch_path={schema} -cjit=off")
    return f"{base}{'&' if '?' in base else '?'}options={options}"


@contextmanager
def postgres_copy(trained: Trained, data_dir: Path, **overrides) -> Iterator[Settings]:
    """Settings whose warehouse is a new PostgreSQL schema holding the inputs
    (no output tables yet); the schema is dropped afterwards."""
    schema = f"r_{uuid.uuid4().hex[:10]}"
    url = schema_url(schema)
    with Warehouse(os.environ["CHURN_TEST_POSTGRES_URL"]) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        with Warehouse(trained.settings.warehouse) as duck, Warehouse(url) as pg:
            for table in INPUTS:
                pg.write_table(table, duck.read_table(table))
        yield settings_for(data_dir, warehouse_url=url, mlflow_tracking_uri=trained.settings.tracking_uri, **overrides)
    finally:
        with Warehouse(os.environ["CHURN_TEST_POSTGRES_URL"]) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
