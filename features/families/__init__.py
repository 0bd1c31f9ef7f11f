"""The feature families: one module per family in this package, each declaring
one :class:`~features.families.base.Family` named ``FAMILY``.

:data:`FAMILIES` holds them in build order (``Family.order``). Everything that
depends on which families exist reads it: staging (which families are off and
why), the build (which SQL to run, which run tables to drop, which columns are
context), the catalog (``features.catalog.FEATURES``), the docs
(``python -m features.catalog``) and the tests. Adding a family is adding a
module here (see docs/adding-a-feature.md); nothing lists them by hand.
"""

from __future__ import annotations

import importlib
import pkgutil

from features.families.base import BuildRequest, Family, Feature, FeaturePattern, Topic, create_temp

__all__ = ["FAMILIES", "BuildRequest", "Family", "Feature", "FeaturePattern", "Topic", "by_name", "create_temp"]

#: modules of this package that hold no family
_NOT_FAMILIES = {"base"}


def _discover() -> tuple[Family, ...]:
    """Every family module's ``FAMILY``, in build order, checked for clashes."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_FAMILIES or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        family = getattr(module, "FAMILY", None)
        if not isinstance(family, Family):
            raise TypeError(f"{module.__name__} declares no FAMILY (a features.families.base.Family)")
        found.append(family)
    families = tuple(sorted(found, key=lambda f: f.order))
    _check(families)
    return families


def _check(families: tuple[Family, ...]) -> None:
    """One name, title and order per family; every column and topic declared once."""
    for attribute in ("name", "title", "order"):
        values = [getattr(f, attribute) for f in families]
        clashes = {v for v in values if values.count(v) > 1}
        if clashes:
            raise ValueError(f"feature families share a {attribute}: {sorted(map(str, clashes))}")
    names = [feature.name for family in families for feature in family.features]
    names += [column for family in families for column in family.context]
    clashes = {n for n in names if names.count(n) > 1}
    if clashes:
        raise ValueError(f"columns declared by more than one feature or family: {sorted(clashes)}")
    topics = [topic.name for family in families for topic in family.topics]
    clashes = {n for n in topics if topics.count(n) > 1}
    if clashes:
        raise ValueError(f"topics declared by more than one family: {sorted(clashes)}")


FAMILIES: tuple[Family, ...] = _discover()


def by_name(name: str) -> Family:
    """The family called ``name`` (lower case, e.g. ``"support"``)."""
    for family in FAMILIES:
        if family.name == name:
            return family
    raise KeyError(f"No feature family {name!r}: the families are {[f.name for f in FAMILIES]}")
