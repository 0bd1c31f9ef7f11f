"""What a feature family declares: its features, its source tables, when it
is on, and how its rows are built. One module per family in this package
declares one :class:`Family` named ``FAMILY``; the registry
(:mod:`features.families`) finds them.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import pyarrow as pa

from features.contract import INPUT_TABLES
from features.engine import SqlEngine
from features.event_types import EventTypes

if TYPE_CHECKING:
    from features.staging_report import ValidationReport

Unit = Literal[
    "count", "days", "hours", "ratio", "share", "currency", "score", "per_seat", "category", "flag", "months"
]
#: how a context column (carried along, never a model input) is typed in the matrix
ContextType = Literal["text", "date"]
#: the health areas a CSM's scorecard shows: every driver feature falls in one
#: (its family's ``area``); every context feature falls in ``CONTEXT``
DRIVER_AREAS = ("usage", "support", "sentiment", "contract")
CONTEXT = "context"
AREAS = (*DRIVER_AREAS, CONTEXT)


@dataclass(frozen=True)
class Topic:
    """A story several features tell (every active-user count, say): the unit
    of a reason, of a change since the last score and of a CSM's next step.

    A *driver* topic is behaviour the customer or the CSM can change, or the
    renewal's status; it can be a risk reason or a protective factor and has a
    default ``action`` (the playbook's, overridable in ``[churn.playbook]``).
    A *context* topic (``context=True``) is who the account is (segment, size,
    tenure): never a reason or an action, summed into the score's context text.
    """

    name: str
    #: how a change names it, lower case: "active users in the last 30 days"
    label: str
    #: the feature whose values a change compares ("down from 28 to 9"); "" = none
    measure: str = ""
    context: bool = False
    #: the suggested next step when this topic is an account's risk reason (drivers only)
    action: str = ""


@dataclass(frozen=True)
class Feature:
    """One column of the feature matrix, named for what it holds.

    ``template`` is the reason a CSM reads, a ``str.format`` string over the
    account's row of features plus ``{value}`` (this feature's value formatted
    by its unit), ``{change}`` for ratios ("down 48%") and ``{s}`` (plural s);
    ``zero_template`` replaces it when the value is exactly 0 and
    ``missing_template`` when the value is missing.
    """

    name: str
    description: str  # one line, with its window
    unit: Unit
    template: str
    #: the reason topic: features that tell the same story (e.g. every active-user
    #: count) are summed into one reason, so a CSM never reads the same cause twice.
    #: SHAP values add up, so a topic's sum is exact. Default: the feature's name.
    topic: str = ""
    zero_template: str = ""
    missing_template: str = ""
    #: input columns (``table.column``) the feature cannot be computed without: when
    #: validation finds one NULL in every kept row, the feature is unknown (NaN), not 0
    needs: tuple[str, ...] = ()
    #: days its value looks back (its window, or the history it needs to be comparable
    #: across snapshots); 0 = none. At a snapshot whose look-back starts before the
    #: first row of the family's ``window_table``, the value is unknown (NaN): a
    #: window cut short by the start of the data is not a small count
    window: int = 0
    family: str = ""  # set by the Family that declares it
    group: str = ""  # the family's title ("Product usage"), set by the Family
    #: the health area: the family's (usage, support, ...) or "context", set by the Family
    area: str = ""

    def __post_init__(self) -> None:
        if not self.topic:
            object.__setattr__(self, "topic", self.name)

    @property
    def kind(self) -> Literal["numeric", "categorical"]:
        return "categorical" if self.unit == "category" else "numeric"

    @property
    def is_context(self) -> bool:
        """Who the account is, not what it does: never a reason on its own."""
        return self.area == CONTEXT


@dataclass(frozen=True)
class FeaturePattern:
    """Columns named after values found in the data (one per event type): the
    docs show the pattern, ``resolve`` gives the feature of one column name
    (``None`` when the name is not of this pattern)."""

    name: str  # as the docs show it, e.g. usage_<event_type>_per_seat_30d
    description: str
    unit: Unit
    topic: str
    template: str
    needs: tuple[str, ...]
    resolve: Callable[[str, Mapping[str, str] | None], Feature | None]
    window: int = 0  # as Feature.window, for every column of the pattern


@dataclass(frozen=True)
class BuildRequest:
    """What one feature build asks for; the run tables of :mod:`features.sql`
    (snapshots, spine) exist while a family builds."""

    engine: SqlEngine
    as_of_dates: tuple[dt.date, ...]
    #: per-event-type columns (usage): types, a model's column -> type mapping, or None for the top ones
    event_types: EventTypes | None = None
    max_event_types: int = 20
    extra_event_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class Family:
    """One feature family: everything staging, the build, the catalog and the
    docs need to know about it.

    Its rows come from ``sql`` (one statement over the ``stg_*`` views and the
    run tables; grain: one row per (account_id, as_of_date) of the spine) or,
    when it takes several steps, from ``run``.
    """

    name: str  # lower case, the one spelling in code: "support"
    title: str  # as the docs and the reasons (feature_group) show it: "Support"
    #: build order: the matrix's columns follow it, and a family may read the run
    #: tables of the families before it (the contract family, 10, comes first)
    order: int
    #: logical contract tables it reads; an optional one (``TableSpec.required``)
    #: that is absent or has no usable rows switches the family off
    tables: tuple[str, ...]
    features: tuple[Feature, ...]
    #: the topics its features (and patterns) name, each declared once, here
    topics: tuple[Topic, ...] = ()
    #: the health area of its driver topics (one of DRIVER_AREAS); "" when all are context
    area: str = ""
    #: the contract table whose first row bounds its features' windows (Feature.window)
    window_table: str = ""
    sql: str = ""
    #: builds the rows in steps; returns them in :data:`KEY_ORDER`, like ``sql``'s
    run: Callable[[BuildRequest], pd.DataFrame] | None = None
    #: keep the rows as this temp table too, for the families after it
    keep_as: str = ""
    #: temp tables ``run`` creates, dropped as soon as the family is built (a later
    #: family cannot read them: ``keep_as`` is for that)
    run_tables: tuple[str, ...] = ()
    patterns: tuple[FeaturePattern, ...] = ()
    #: columns carried along that are not model inputs (e.g. the account's name), with their type
    context: Mapping[str, ContextType] = field(default_factory=dict)
    #: input column -> (a feature that is missing exactly when the column is unknown,
    #: the reason text to use instead of a feature's usual "missing" text)
    unknown_inputs: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    #: extra template fields its reasons use, from the account's row
    reason_fields: Callable[[Mapping[str, Any]], Mapping[str, str]] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "context", MappingProxyType(dict(self.context)))
        object.__setattr__(self, "unknown_inputs", MappingProxyType(dict(self.unknown_inputs)))
        if bool(self.sql) == bool(self.run):
            raise ValueError(f"family {self.name}: give exactly one of sql and run")
        unknown = [t for t in self.tables if t not in INPUT_TABLES]
        if unknown:
            raise ValueError(f"family {self.name}: {unknown} are not contract tables (features/contract.py)")
        self._check_topics()
        object.__setattr__(self, "features", tuple(self._bind(f) for f in self.features))

    def _check_topics(self) -> None:
        """Every feature names a declared topic; a driver topic has an action and
        the family an area; a measure is a feature of its own topic."""
        declared = {t.name: t for t in self.topics}
        used = {f.topic for f in self.features} | {p.topic for p in self.patterns}
        if used - set(declared):
            raise ValueError(f"family {self.name}: undeclared topic(s) {sorted(used - set(declared))} (add a Topic)")
        if set(declared) - used:
            raise ValueError(f"family {self.name}: topic(s) {sorted(set(declared) - used)} have no feature")
        by_name = {f.name: f for f in self.features}
        windowed = [f.name for f in self.features if f.window] + [p.name for p in self.patterns if p.window]
        if windowed and self.window_table not in self.tables:
            raise ValueError(f"family {self.name}: {windowed} have a window: name one of {self.tables} as window_table")
        for topic in self.topics:
            if not topic.context and not (topic.action and self.area in DRIVER_AREAS):
                raise ValueError(
                    f"family {self.name}: driver topic {topic.name!r} needs an action and the family an area "
                    f"(one of {DRIVER_AREAS})"
                )
            if topic.context and topic.action:
                raise ValueError(f"family {self.name}: context topic {topic.name!r} takes no action")
            if topic.measure and getattr(by_name.get(topic.measure), "topic", None) != topic.name:
                raise ValueError(f"family {self.name}: measure {topic.measure!r} is not a feature of {topic.name!r}")

    def topic(self, name: str) -> Topic:
        for topic in self.topics:
            if topic.name == name:
                return topic
        raise KeyError(f"family {self.name} declares no topic {name!r}")

    def _bind(self, feature: Feature) -> Feature:
        area = CONTEXT if self.topic(feature.topic).context else self.area
        return replace(feature, family=self.name, group=self.title, area=area)

    @property
    def optional_tables(self) -> tuple[str, ...]:
        return tuple(t for t in self.tables if not INPUT_TABLES[t].required)

    @property
    def all_run_tables(self) -> tuple[str, ...]:
        """Every temp table a build of this family creates."""
        return ((self.keep_as,) if self.keep_as else ()) + self.run_tables

    def off_reason(self, report: ValidationReport) -> str | None:
        """Why the family is off for the validated inputs, or None when it is on.
        A required table never switches it off: validation stops first."""
        for table in self.optional_tables:
            status = report.tables.get(table)
            if status is None or not status.present:
                return f"{table} is absent"
            if status.kept == 0:
                return f"{table} has no usable rows"
        return None

    def build(self, request: BuildRequest) -> pd.DataFrame:
        """The family's rows for the snapshots of ``request``, in key order
        (:data:`KEY_ORDER`: every family's rows line up, see ``run``)."""
        if self.run is not None:
            return self.run(request)
        if self.keep_as:
            create_temp(request.engine, self.keep_as, self.sql)
            return request.engine.query(f"SELECT * FROM {self.keep_as} {KEY_ORDER}")
        return request.engine.query(in_key_order(self.sql))

    def pattern_feature(self, name: str, event_types: Mapping[str, str] | None = None) -> Feature | None:
        """The feature of a column named by one of the family's patterns, if any."""
        for pattern in self.patterns:
            feature = pattern.resolve(name, event_types)
            if feature is not None:
                return self._bind(feature)
        return None


def is_missing(value: Any) -> bool:
    """True for None, pandas' NA and NaN: a value a reason must not print."""
    if value is None or value is pd.NA:
        return True
    try:
        return isinstance(value, (float, int)) and math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def write_run_table(
    engine: SqlEngine, name: str, frame: pd.DataFrame, dates: tuple[str, ...] = ("as_of_date", "day", "horizon_end")
) -> None:
    """Write a small run table (temporary); its ``dates`` columns as SQL dates."""
    out = frame.copy()
    date32 = pd.ArrowDtype(pa.date32())
    for column in dates:
        if column in out:
            out[column] = pd.to_datetime(out[column]).astype(date32)
    engine.write_table(name, out, temporary=True)


#: the order a family's rows come back in: the spine's rows, so every
#: family's line up and the matrix is put together side by side, not joined
KEY_ORDER = "ORDER BY account_id, as_of_date"


def in_key_order(select: str) -> str:
    """``select`` (columns ``account_id`` and ``as_of_date``) in :data:`KEY_ORDER`."""
    return f"SELECT * FROM ({select}) AS rows_in_key_order {KEY_ORDER}"


def create_temp(engine: SqlEngine, name: str, select: str, params: Mapping[str, Any] | None = None) -> None:
    """(Re)create a temp table from a query."""
    engine.drop(name)
    engine.execute(f"CREATE TEMP TABLE {name} AS {select}", params)
