"""docs/features.md is generated from the catalog and must not drift from it."""

from pathlib import Path

from features import catalog

DOC = Path(__file__).resolve().parents[2] / "docs" / "features.md"


def test_feature_docs_are_generated_from_the_catalog():
    assert DOC.read_text() == catalog.to_markdown() + "\n", "run `make docs` and commit docs/features.md"


def test_every_feature_has_group_description_unit_and_template():
    for feature in catalog.FEATURES:
        assert feature.group and feature.description and feature.unit and feature.template, feature.name
