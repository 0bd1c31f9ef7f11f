"""Bad input on Spark gets the same clear errors as on DuckDB and PostgreSQL
(test_staging.py): a missing or mis-mapped table and a missing column name
themselves, a column that cannot be cast is a contract error, and mapped
table names are read from the catalog. Bad rows are counted the same way:
test_spark_parity.py compares the whole validation report with DuckDB's."""

from __future__ import annotations

import pytest

from features.contract import TableNames
from features.staging import ContractError, validate
from tests.conftest import load
from tests.features.test_staging import AS_OF, CAST_CASES, clean_tables

pytestmark = pytest.mark.spark


def test_missing_and_mapped_tables_name_themselves(spark_wh):
    tables = clean_tables()
    tables["product_events_daily"] = tables.pop("usage_events")
    tables.pop("accounts")
    load(spark_wh, **tables)
    with pytest.raises(ContractError, match="Required table 'accounts'"):
        validate(spark_wh, AS_OF, TableNames(usage_events="product_events_daily"))
    load(spark_wh, accounts=clean_tables()["accounts"])
    with pytest.raises(ContractError, match=r"'product_events_dly' \(usage_events\) is missing"):
        validate(spark_wh, AS_OF, TableNames(usage_events="product_events_dly"))
    report = validate(spark_wh, AS_OF, TableNames(usage_events="product_events_daily"))
    assert report.tables["usage_events"].physical == "product_events_daily"
    assert report.tables["usage_events"].kept == 3


def test_a_missing_column_and_a_column_that_cannot_be_cast_name_themselves(spark_wh):
    tables = clean_tables()
    tables["nps_responses"] = tables["nps_responses"].drop(columns=["score"])
    load(spark_wh, **tables)
    with pytest.raises(ContractError, match=r"'nps_responses'.*missing required column\(s\): score"):
        validate(spark_wh, AS_OF)
    table, column, values = CAST_CASES["text in a timestamp"]
    tables = clean_tables()
    tables[table] = tables[table].assign(**{column: values})
    load(spark_wh, **tables)
    with pytest.raises(ContractError, match=f"Column '{column}' of table '{table}'.*cannot be cast"):
        validate(spark_wh, AS_OF)
