"""The usage family's per-event-type columns: one feature per event type found
in the data, named by :func:`features.event_types.event_type_feature_name`."""

from __future__ import annotations

from collections.abc import Mapping

from features.event_types import (
    EVENT_TYPE_COLUMN,
    EVENT_TYPE_KINDS,
    EVENT_TYPE_PREFIX,
    PER_SEAT,
    PER_USER,
    SHARE,
    TREND,
    event_type_feature_name,
    event_type_label,
)
from features.families.base import Feature, FeaturePattern

SEATS = "subscriptions.seats"
USER_ID = "usage_events.user_id"
#: the reason topic of breadth and of the per-event-type columns
FEATURE_USAGE = "feature_usage"


#: per kind: (description, unit, template, zero template, missing template, needs)
_KINDS = {
    PER_SEAT: (
        "Events of type '{label}' in the last 30 days per licensed seat",
        "per_seat",
        "'{literal}' used {{value}} times per seat in the last 30 days",
        "'{literal}' not used in the last 30 days",
        "Seat count unknown",
        (SEATS,),
    ),
    PER_USER: (
        "Events of type '{label}' in the last 30 days per active user",
        "per_seat",
        "'{literal}' used {{value}} times per active user in the last 30 days",
        "'{literal}' not used in the last 30 days",
        "No active users in the last 30 days",
        (USER_ID,),
    ),
    TREND: (
        "Events of type '{label}' in the last 30 days / in the 30 days before",
        "ratio",
        "'{literal}' use {{change}} in the last 30 days",
        "'{literal}' not used in the last 30 days",
        "'{literal}' not used in the 30 days before last month to compare with",
        (),
    ),
    SHARE: (
        "Share of the last 30 days' events that are of type '{label}'",
        "share",
        "'{literal}' is {{value}} of product events in the last 30 days",
        "'{literal}' not used in the last 30 days",
        "No product events in the last 30 days",
        (),
    ),
}


def _event_type_feature(name: str, event_types: Mapping[str, str] | None) -> Feature | None:
    """The feature of one per-event-type column; ``event_types`` (column ->
    original event type) names the type in its texts."""
    match = EVENT_TYPE_COLUMN.match(name)
    if not match:
        return None
    label = event_type_label(name, match.group(1), event_types)
    literal = label.replace("{", "{{").replace("}", "}}")  # the templates are format strings
    description, unit, template, zero, missing, needs = _KINDS[match.group(2)]
    return Feature(
        name,
        description.format(label=label),
        unit,
        template.format(literal=literal),
        topic=FEATURE_USAGE,
        zero_template=zero.format(literal=literal),
        missing_template=missing.format(literal=literal),
        needs=needs,
        window=60 if match.group(2) == TREND else 30,
    )


_NAMING = (
    "A type written as a lower-case identifier (`report_created`) is its own name; any other type is named by its "
    "ASCII slug, shortened to fit 63 bytes, and a hash of the type "
    f"(`'Report Created'` -> `{event_type_feature_name('Report Created')}`), so names are valid on every engine, "
    "unique and stable; reasons show the original type"
)
#: the per-event-type columns, one pattern per kind; each built for the same event types
PER_EVENT_TYPE_KINDS = tuple(
    FeaturePattern(
        name=f"{EVENT_TYPE_PREFIX}<event_type>{kind}",
        description=f"{_KINDS[kind][0].format(label='<event type>')}; one column per event type found in the data "
        f"(the most used ones). {_NAMING}",
        unit=_KINDS[kind][1],
        topic=FEATURE_USAGE,
        template=_KINDS[kind][2].format(literal="<event type>"),
        needs=_KINDS[kind][5],
        window=60 if kind == TREND else 30,
        resolve=_event_type_feature,
    )
    for kind in EVENT_TYPE_KINDS
)
