"""Issue #11 item 3 (second half): the feature matrix carries account_name and
csm_owner from the validated account rows, as context columns that are never
model features, so scoring copies them from the same rows it scored."""

from __future__ import annotations

import pandas as pd

from features.build import CONTEXT_COLUMNS, build_features, feature_columns
from tests import factories as f
from tests.features.data import stage
from tests.features.test_features import VALIDATE_AS_OF, T, rich_tables


def test_account_name_and_csm_owner_are_context_columns(wh):
    tables = rich_tables()
    tables["accounts"] = pd.concat(
        [
            tables["accounts"].assign(account_name=["Acme GmbH", "Bärbel & Co"], csm_owner=["Dana", None]),
            # a duplicate of A created later: the validated (earliest) row must be the one read
            f.accounts("A", created_at="2024-02-01", account_name="Acme (old)", csm_owner="Eve"),
        ],
        ignore_index=True,
    )
    report = stage(wh, VALIDATE_AS_OF, max_bad_share=1.0, **tables)
    frame = build_features(wh, [T], report).set_index("account_id")

    assert frame.loc["A", "account_name"] == "Acme GmbH" and frame.loc["A", "csm_owner"] == "Dana"
    assert frame.loc["B", "account_name"] == "Bärbel & Co" and pd.isna(frame.loc["B", "csm_owner"])
    for column in ("account_name", "csm_owner"):
        assert column in CONTEXT_COLUMNS
        assert pd.api.types.is_string_dtype(frame[column]), column
    assert not {"account_name", "csm_owner", "renewal_date"} & set(feature_columns(frame.reset_index()))
