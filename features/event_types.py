"""Per-event-type usage columns: their names and the column -> event type
mapping that travels with a matrix and a trained model.

A column is named from its event type alone (:func:`event_type_feature_name`),
so the same type always gets the same column whichever other types are built
with it, and the name is valid on every engine. The original type is kept next
to the name (``DataFrame.attrs[EVENT_TYPES_ATTR]``, ``ChurnModel.event_types``)
for the reason texts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

EVENT_TYPE_PREFIX = "usage_"
EVENT_TYPE_SUFFIX = "_per_seat_30d"
#: the kinds of per-event-type column, by suffix: per licensed seat, per
#: active user, change against the 30 days before, share of all events
PER_SEAT, PER_USER, TREND, SHARE = EVENT_TYPE_SUFFIX, "_per_user_30d", "_trend_30d", "_share_30d"
EVENT_TYPE_KINDS = (PER_SEAT, PER_USER, TREND, SHARE)
#: ``DataFrame.attrs`` key: per-event-type column -> the raw event type it counts
EVENT_TYPES_ATTR = "event_types"
#: per-event-type columns asked for: event types, or column -> event type
EventTypes = Sequence[str] | Mapping[str, str]

#: the longest column name every supported engine keeps as is (PostgreSQL
#: truncates identifiers past 63 bytes, silently)
MAX_COLUMN_BYTES = 63
_SLUG_MAX = MAX_COLUMN_BYTES - len(EVENT_TYPE_PREFIX) - max(len(k) for k in EVENT_TYPE_KINDS)
_HASH_CHARS = 8
#: an event type that is its own column-name body: lower-case ASCII words joined
#: by single underscores (so it never contains the "__" before a hash)
_CLEAN_TYPE = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")
#: a column-name body that carries a hash of the event type
_HASHED_BODY = re.compile(rf"(.+)__([0-9a-f]{{{_HASH_CHARS}}})")
#: any column name every engine keeps as is
SAFE_COLUMN = re.compile(rf"[a-z0-9_]{{1,{MAX_COLUMN_BYTES}}}")
#: a per-event-type column name; group 1 is its body, group 2 its kind (suffix)
EVENT_TYPE_COLUMN = re.compile(rf"^{EVENT_TYPE_PREFIX}(.+)({'|'.join(EVENT_TYPE_KINDS)})$")


def event_type_feature_name(event_type: str, kind: str = PER_SEAT) -> str:
    """Column name of the per-seat usage of one event type.

    Valid on every engine (ASCII ``[a-z0-9_]``, at most 63 bytes), unique and
    stable: it depends on the event type alone, never on which other types
    exist. A clean type (``report_created``) is its own name; any other type
    gets a readable ASCII slug, shortened to fit, plus ``__`` and a hash of the
    original type (``'登录'`` -> ``usage_type__1e2df9c3_per_seat_30d``). The
    original type is kept next to the name (``DataFrame.attrs['event_types']``,
    ``ChurnModel.event_types``) for the reason texts.
    """
    if _CLEAN_TYPE.fullmatch(event_type) and len(event_type) <= _SLUG_MAX:
        body = event_type
    else:
        digest = hashlib.sha256(event_type.encode("utf-8")).hexdigest()[:_HASH_CHARS]
        slug = re.sub(r"[^0-9a-z]+", "_", event_type.lower()).strip("_") or "type"
        body = f"{slug[: _SLUG_MAX - _HASH_CHARS - 2].rstrip('_')}__{digest}"
    return f"{EVENT_TYPE_PREFIX}{body}{kind}"


def event_type_label(name: str, body: str, event_types: Mapping[str, str] | None) -> str:
    """The event type a per-event-type column counts, as reason texts show it:
    the original type when the mapping is known ('登录', 'Report Created'), its
    words spaced when it is written as an identifier ('dashboard_view' ->
    'dashboard view': a reason never shows an identifier); without the mapping,
    read back from the name (a hashed name: its slug and hash)."""
    if event_types and name in event_types:
        original = str(event_types[name])
        return original.replace("_", " ") if _CLEAN_TYPE.fullmatch(original) else original
    hashed = _HASHED_BODY.fullmatch(body)
    if hashed:
        return f"{hashed.group(1).replace('_', ' ')} #{hashed.group(2)}"
    return body.replace("_", " ")


def event_type_columns(event_types: Sequence[str], kind: str = PER_SEAT) -> list[str]:
    """Column names of the event types for one kind: each from its own type
    alone (see :func:`event_type_feature_name`), so the same type always gets
    the same column whichever other types are built with it."""
    columns = [event_type_feature_name(t, kind) for t in event_types]
    seen: dict[str, str] = {}
    for name, event_type in zip(columns, event_types):
        if name in seen and seen[name] != event_type:  # a hash collision: never silently merge
            raise ValueError(f"Event types {seen[name]!r} and {event_type!r} map to the same column {name}")
        seen[name] = event_type
    return columns


def is_event_type_column(name: str) -> bool:
    """Whether ``name`` is a per-event-type column (of any kind)."""
    return EVENT_TYPE_COLUMN.match(name) is not None


def checked_columns(event_types: Mapping[str, str]) -> tuple[list[str], dict[str, list[str]]]:
    """(event types, columns by kind) of a column -> event type mapping (a
    trained model's): every kind of column is built for each type, under the
    mapping's own name where it has one (a model keeps the names it was trained
    with), refusing names an engine would not keep as they are."""
    given: dict[tuple[str, str], str] = {}
    for name, event_type in event_types.items():
        match = EVENT_TYPE_COLUMN.match(name)
        if not (SAFE_COLUMN.fullmatch(name) and match):
            raise ValueError(
                f"{name!r} is not a valid column name for a per-event-type feature "
                f"(ASCII a-z, 0-9 and _, at most {MAX_COLUMN_BYTES} bytes)"
            )
        given[(str(event_type), match.group(2))] = name
    types = list(dict.fromkeys(t for t, _ in given))
    columns = {
        kind: [given.get((t, kind)) or event_type_feature_name(t, kind) for t in types] for kind in EVENT_TYPE_KINDS
    }
    return types, columns
