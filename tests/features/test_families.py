"""The feature-family registry (features.families): every family is found,
declared once, and is what staging, the build and the catalog read."""

from __future__ import annotations

import inspect
import re
import sys

import pytest

from features import build, catalog
from features.contract import INPUT_TABLES
from features.event_types import EVENT_TYPE_PREFIX
from features.families import FAMILIES, by_name
from features.staging_report import TableStatus, ValidationReport
from tests.features.data import row, stage
from tests.features.test_features import VALIDATE_AS_OF, T, rich_tables

RUN_TABLE = re.compile(r"\b_churn_\w+")


def test_families_are_found_in_build_order_with_one_lower_case_name():
    names = [family.name for family in FAMILIES]
    assert names[:5] == ["contract", "account", "usage", "support", "sentiment"]
    assert all(name == name.lower() and name.isidentifier() for name in names)
    assert [f.order for f in FAMILIES] == sorted(f.order for f in FAMILIES)
    assert by_name("support").title == "Support"
    with pytest.raises(KeyError, match="No feature family 'Support'"):
        by_name("Support")


def test_every_family_reads_contract_tables_and_declares_its_features():
    for family in FAMILIES:
        assert family.tables and set(family.tables) <= set(INPUT_TABLES), family.name
        assert family.features, family.name
        for feature in family.features:
            assert (feature.family, feature.group) == (family.name, family.title), feature.name
            assert feature.topic and feature.description and feature.template, feature.name


def test_the_catalog_is_the_families_features():
    assert catalog.FEATURES == tuple(f for family in FAMILIES for f in family.features)
    assert catalog.get("usage_login_per_seat_30d").family == "usage"


def test_a_family_reads_run_tables_of_earlier_families_only():
    """A family may read the temp tables a family before it keeps (the contract's
    ``_churn_contract``), never one of a later family."""
    owner = {table: family for family in FAMILIES for table in family.all_run_tables}
    for family in FAMILIES:
        for table in set(RUN_TABLE.findall(_source(family))) & set(owner):
            assert owner[table].order <= family.order, f"{family.name} reads {table} of {owner[table].name}"


def _source(family) -> str:
    """The text of the module that declares a family (its SQL included)."""
    module = next(m for m in list(sys.modules.values()) if getattr(m, "FAMILY", None) is family)
    return inspect.getsource(module)


def test_build_and_staging_read_the_registry():
    assert set(build.RUN_TABLES) >= {t for family in FAMILIES for t in family.all_run_tables}
    assert build.CONTEXT_COLUMNS == [c for family in FAMILIES for c in family.context]
    report = ValidationReport(
        as_of=T,
        tables={
            name: TableStatus(name, name, present=False) for name, spec in INPUT_TABLES.items() if not spec.required
        },
    )
    off = {family.title: f"{family.optional_tables[0]} is absent" for family in FAMILIES if family.optional_tables}
    assert report.families_off == off
    assert build.families(report) == {family.name for family in FAMILIES if not family.optional_tables}


def test_a_build_yields_the_declared_columns_of_the_families_that_are_on(duckdb_wh):
    report = stage(duckdb_wh, VALIDATE_AS_OF, **rich_tables())
    frame = build.build_features(duckdb_wh, [T], report)
    on = build.families_on(report)
    declared = {f.name for family in on for f in family.features} | {c for family in on for c in family.context}
    per_type = {c for c in frame.columns if c.startswith(EVENT_TYPE_PREFIX)}
    assert set(frame.columns) == set(build.KEY) | declared | per_type
    assert per_type and all(catalog.get(c).family == "usage" for c in per_type)
    assert not row(frame, "A")[sorted(declared - set(build.CONTEXT_COLUMNS))].isna().all()
