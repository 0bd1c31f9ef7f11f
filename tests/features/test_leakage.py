"""Point-in-time property: rows dated after the as-of cutoff never change a
feature at that as-of.

Hypothesis draws a small base data set (everything at or before the cutoff,
with many timestamps exactly on window edges), builds the features at T, then
appends arbitrary rows dated after T to every input table - usage events,
tickets, NPS responses, subscriptions starting after T and accounts created
after T, reusing existing keys or not - and rebuilds at T twice:

1. validated again as of T (the new rows are set aside by staging), and
2. validated as of a much later date, so the staged views DO hold the new rows:
   this is the real point-in-time guarantee of the feature SQL.

DuckDB only, to stay fast; test_parity.py checks PostgreSQL gives the same.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from features import catalog
from features.build import build_features
from features.staging import validate
from pipeline.warehouse import Warehouse
from tests import factories as f
from tests.conftest import load

T = dt.date(2024, 6, 1)
CUTOFF = pd.Timestamp(T)
LATER = dt.date(2025, 6, 1)  # validation as-of that stages every appended row
DAY = 86400
EDGES = [
    0,
    1,
    DAY - 1,
    DAY,
    7 * DAY - 1,
    7 * DAY,
    7 * DAY + 1,
    30 * DAY - 1,
    30 * DAY,
    30 * DAY + 1,
    60 * DAY - 1,
    60 * DAY,
    60 * DAY + 1,
    90 * DAY - 1,
    90 * DAY,
    90 * DAY + 1,
    365 * DAY - 1,
    365 * DAY,
    365 * DAY + 1,
]

BASE_ACCOUNTS = ["a0", "a1", "a2", "a3"]
EVENT_TYPES = ["login", "export", "Report Created"]
USERS = [None, "u1", "u2", "u3"]

# -- strategies ----------------------------------------------------------------
seconds_before = st.one_of(st.sampled_from(EDGES), st.integers(0, 400 * DAY))  # at or before the cutoff
seconds_after = st.one_of(
    st.sampled_from([1, 2, DAY - 1, DAY, DAY + 1, 30 * DAY]), st.integers(1, 360 * DAY)
)  # strictly after the cutoff, before LATER


def before(seconds: int) -> pd.Timestamp:
    return CUTOFF - pd.Timedelta(seconds=seconds)


def after(seconds: int) -> pd.Timestamp:
    return CUTOFF + pd.Timedelta(seconds=seconds)


quantity = st.one_of(st.none(), st.integers(0, 5).map(float))
priority = st.sampled_from([None, "low", "normal", "high", "urgent"])
csat = st.one_of(st.none(), st.integers(1, 5))
score = st.integers(0, 10)


@st.composite
def base_data(draw) -> dict[str, pd.DataFrame]:
    n = draw(st.integers(1, len(BASE_ACCOUNTS)))
    ids = BASE_ACCOUNTS[:n]
    account = st.sampled_from(ids)
    accounts = pd.concat(
        [f.accounts(a, created_at=str(before(draw(st.integers(0, 500)) * DAY))) for a in ids], ignore_index=True
    )
    # a0 is always active at T and has an event exactly at the cutoff (so the data reaches T)
    subs = [("s-fixed", "a0", "2023-01-01", None, 10.0, 4.0)]
    seats = [4.0]
    for i in range(draw(st.integers(0, 5))):
        start = before(draw(st.integers(0, 500)) * DAY).normalize()
        length = draw(st.one_of(st.none(), st.integers(0, 500)))
        end = None if length is None else str((start + pd.Timedelta(days=length)).date())
        seats.append(draw(st.sampled_from([None, 0.0, 1.0, 5.0])))
        subs.append(
            (
                f"s{i}",
                draw(account),
                str(start.date()),
                end,
                float(draw(st.integers(0, 300))),
                0.0,
                draw(st.sampled_from([None, True, False])),
                draw(st.sampled_from(["Basic", "Pro"])),
            )
        )
    events = [("a0", str(CUTOFF), "login", "u1")]
    events += [
        (
            draw(account),
            str(before(draw(seconds_before))),
            draw(st.sampled_from(EVENT_TYPES)),
            draw(st.sampled_from(USERS)),
            draw(quantity),
        )
        for _ in range(draw(st.integers(0, 12)))
    ]
    tickets = []
    for i in range(draw(st.integers(0, 5))):
        created = before(draw(seconds_before))
        resolved = draw(st.one_of(st.none(), st.integers(0, 60 * DAY)))  # may resolve after T
        tickets.append(
            (
                f"t{i}",
                draw(account),
                str(created),
                None if resolved is None else str(created + pd.Timedelta(seconds=resolved)),
                draw(priority),
                draw(csat),
            )
        )
    nps = [(draw(account), str(before(draw(seconds_before))), draw(score)) for _ in range(draw(st.integers(0, 4)))]
    subscriptions = f.subscriptions(subs).assign(seats=pd.Series(seats, dtype="float64"))  # seats may be NULL
    tables = dict(accounts=accounts, subscriptions=subscriptions, usage_events=f.events(events))
    if tickets or draw(st.booleans()):
        tables["support_tickets"] = (
            f.tickets(tickets) if tickets else f.tickets([("x", "a0", "2024-01-01", None, "low")]).iloc[:0]
        )
    if nps or draw(st.booleans()):
        tables["nps_responses"] = f.nps(nps) if nps else f.nps([("a0", "2024-01-01", 1)]).iloc[:0]
    return tables


@st.composite
def later_rows(draw) -> dict[str, pd.DataFrame]:
    """Rows dated strictly after T: for existing and new accounts, with new keys
    and with keys that already exist (a later duplicate)."""
    new_ids = ["n0", "n1"]
    account = st.sampled_from(BASE_ACCOUNTS + new_ids)
    accounts = pd.concat(
        [
            f.accounts(a, created_at=str(after(draw(seconds_after))))
            for a in draw(st.lists(st.sampled_from(BASE_ACCOUNTS + new_ids), max_size=3, unique=True))
        ]
        or [f.accounts("n0", created_at=str(after(DAY)))],
        ignore_index=True,
    )
    subs = []
    for i in range(draw(st.integers(0, 3))):
        start = (after(draw(seconds_after)) + pd.Timedelta(days=1)).normalize()  # from T + 1 day on
        length = draw(st.one_of(st.none(), st.integers(0, 400)))
        subs.append(
            (
                draw(st.sampled_from([f"later-s{i}", "s-fixed", "s0"])),
                draw(account),
                str(start.date()),
                None if length is None else str((start + pd.Timedelta(days=length)).date()),
                float(draw(st.integers(0, 300))),
                3.0,
            )
        )
    events = [
        (
            draw(account),
            str(after(draw(seconds_after))),
            draw(st.sampled_from(EVENT_TYPES + ["new type"])),
            draw(st.sampled_from(USERS + ["u-new"])),
            draw(quantity),
        )
        for _ in range(draw(st.integers(1, 8)))
    ]
    tickets = []
    for i in range(draw(st.integers(0, 3))):
        created = after(draw(seconds_after))
        tickets.append(
            (
                draw(st.sampled_from([f"later-t{i}", "t0"])),
                draw(account),
                str(created),
                draw(st.sampled_from([None, str(created + pd.Timedelta(hours=5))])),
                draw(priority),
                draw(csat),
            )
        )
    nps = [(draw(account), str(after(draw(seconds_after))), draw(score)) for _ in range(draw(st.integers(0, 3)))]
    rows = dict(accounts=accounts, usage_events=f.events(events))
    if subs:
        rows["subscriptions"] = f.subscriptions(subs)
    if tickets:
        rows["support_tickets"] = f.tickets(tickets)
    if nps:
        rows["nps_responses"] = f.nps(nps)
    return rows


def _features(wh: Warehouse, validate_as_of: dt.date) -> tuple[pd.DataFrame, dict]:
    report = validate(wh, validate_as_of, max_bad_share=1.0)  # later duplicates are bad rows: allowed here
    return build_features(wh, [T], report), report.families_off


def _assert_only_empty_extra_families(before_frame, after_frame, families_off_before) -> None:
    """A family switched off at T (its table had no usable row by T) may switch
    on when later rows arrive; its columns must then be empty at T."""
    extra = set(after_frame.columns) - set(before_frame.columns)
    family_of = {feature.name: feature.group for feature in catalog.FEATURES}
    for column in extra:
        assert family_of.get(column) in families_off_before, f"{column} appeared from later rows"
        values = after_frame[column]
        assert (values.isna() | (values == 0)).all(), f"{column} is not empty at T: {values.tolist()}"


# no shrinking: each example costs ~0.8 s, and the drawn data sets are small enough to read as they are
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(base=base_data(), later=later_rows())
def test_rows_after_the_cutoff_never_change_features_at_the_cutoff(base, later):
    with Warehouse("duckdb:///:memory:") as wh:
        load(wh, **base)
        expected, families_off = _features(wh, T)
        assert not expected.empty

        for name, frame in later.items():
            if name in base:
                wh.write_table(name, frame, mode="append")
            else:  # an optional table absent from the base: it now exists
                wh.write_table(name, frame)

        # 1. same as-of: the new rows are set aside by staging
        same, _ = _features(wh, T)
        pd.testing.assert_frame_equal(same, expected)

        # 2. later as-of: the new rows are staged, the feature SQL must ignore them at T
        later_frame, _ = _features(wh, LATER)
        _assert_only_empty_extra_families(expected, later_frame, families_off)
        pd.testing.assert_frame_equal(later_frame[list(expected.columns)], expected)
