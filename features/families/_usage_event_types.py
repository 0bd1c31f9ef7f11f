"""The usage family's per-event-type columns: one feature per event type found
in the data, named by :func:`features.event_types.event_type_feature_name`."""

from __future__ import annotations

from collections.abc import Mapping

from features.event_types import (
    EVENT_TYPE_COLUMN,
    EVENT_TYPE_PREFIX,
    EVENT_TYPE_SUFFIX,
    event_type_feature_name,
    event_type_label,
)
from features.families.base import Feature, FeaturePattern

SEATS = "subscriptions.seats"
#: the reason topic of breadth and of the per-event-type columns
FEATURE_USAGE = "feature_usage"


def _event_type_feature(name: str, event_types: Mapping[str, str] | None) -> Feature | None:
    """The feature of one per-event-type column; ``event_types`` (column ->
    original event type) names the type in its texts."""
    match = EVENT_TYPE_COLUMN.match(name)
    if not match:
        return None
    label = event_type_label(name, match.group(1), event_types)
    literal = label.replace("{", "{{").replace("}", "}}")  # the templates are format strings
    return Feature(
        name,
        f"Events of type '{label}' in the last 30 days per licensed seat",
        "per_seat",
        f"'{literal}' used {{value}} times per seat in the last 30 days",
        topic=FEATURE_USAGE,
        zero_template=f"'{literal}' not used in the last 30 days",
        missing_template="Seat count unknown",
        needs=(SEATS,),
        window=30,
    )


PER_EVENT_TYPE = FeaturePattern(
    name=f"{EVENT_TYPE_PREFIX}<event_type>{EVENT_TYPE_SUFFIX}",
    description=(
        "Events of each type in the last 30 days per licensed seat; one column per event type found in the data "
        "(the most used ones). A type written as a lower-case identifier (`report_created`) is its own name; any "
        "other type is named by its ASCII slug, shortened to fit 63 bytes, and a hash of the type "
        f"(`'Report Created'` -> `{event_type_feature_name('Report Created')}`), so names are valid on every "
        "engine, unique and stable; reasons show the original type"
    ),
    unit="per_seat",
    topic=FEATURE_USAGE,
    template="'<event type>' used {value} times per seat in the last 30 days",
    needs=(SEATS,),
    window=30,
    resolve=_event_type_feature,
)
