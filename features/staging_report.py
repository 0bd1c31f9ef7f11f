"""What validation found (:func:`features.staging.validate`): per table its
row counts, per rule the rows that break it, which feature families are off
and why, and a content fingerprint of the inputs. Plus the two errors that
stop a run."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

import pandas as pd

from features import catalog
from features.contract import INPUT_TABLES
from features.families import FAMILIES


class ContractError(ValueError):
    """The input does not follow the data contract (missing table/column, bad type)."""


class DataQualityError(ValueError):
    """Too many rows break a validation rule; the report says which."""

    def __init__(self, message: str, report: ValidationReport | None = None):
        super().__init__(message)
        self.report = report

    def __reduce__(self):  # picklable across processes (e.g. Dask workers)
        return (type(self), (str(self), self.report))


@dataclass
class RuleCount:
    table: str
    rule: str
    description: str
    rows: int
    integrity: bool
    #: a few keys of rows that break the rule (the table's key, else account and time)
    samples: list[str] = field(default_factory=list)


@dataclass
class TableStatus:
    table: str
    physical: str
    present: bool
    rows: int = 0
    kept: int = 0
    bad: int = 0
    ignored: int = 0
    first_time: dt.datetime | None = None  # earliest/latest timestamp among clean rows,
    last_time: dt.datetime | None = None  # including rows after the as-of cutoff
    #: order-independent hash of every row's typed contract columns (all rows, kept or
    #: not); "absent" for an absent table. Engine-specific: compare within one engine.
    content_hash: str = ""
    #: nullable column -> the earliest time-column value among the kept rows where
    #: it is not NULL (None: NULL in every kept row). A feature that needs the column
    #: is unknown at an as-of before that time (see features.build).
    first_known: dict[str, dt.datetime | None] = field(default_factory=dict)
    #: nullable contract columns that are NULL in every kept row (none if no row is kept)
    null_columns: list[str] = field(default_factory=list)

    @property
    def bad_share(self) -> float:
        return self.bad / self.rows if self.rows else 0.0


@dataclass
class ValidationReport:
    """What validation found: per table, per rule, and which feature families run."""

    as_of: dt.date | None
    tables: dict[str, TableStatus] = field(default_factory=dict)
    rules: list[RuleCount] = field(default_factory=list)
    max_bad_share: float = 0.05
    #: the UTC time the "in the future" rule compared against (kept to re-stage identically)
    checked_at: dt.datetime | None = None

    @property
    def available(self) -> set[str]:
        """Logical names of the tables that are present and non-empty after staging."""
        return {t for t, s in self.tables.items() if s.present and s.kept > 0}

    @property
    def data_start(self) -> dt.date | None:
        """The first day of the data: the earliest account creation."""
        accounts = self.tables.get("accounts")
        return accounts.first_time.date() if accounts and accounts.first_time else None

    @property
    def data_end(self) -> dt.date | None:
        """The last as-of date the data supports: the day bucket (see features.sql)
        of the latest clean row of an event log (usage, tickets, NPS)."""
        times = [s.last_time for name, s in self.tables.items() if INPUT_TABLES[name].event_log and s.last_time]
        if not times:
            return None
        latest = max(times)
        return latest.date() if latest.time() == dt.time() else latest.date() + dt.timedelta(days=1)

    @property
    def families_off(self) -> dict[str, str]:
        """Feature family (by its title, as the docs and reasons show it) -> why it is off."""
        off = {}
        for family in FAMILIES:
            why = family.off_reason(self)
            if why:
                off[family.title] = why
        return off

    @property
    def null_columns(self) -> dict[str, list[str]]:
        """Per table, the contract columns that are NULL in every kept row. The
        features that need one of them (``catalog.Feature.needs``) are unknown."""
        return {t: list(s.null_columns) for t, s in self.tables.items() if s.null_columns}

    @property
    def fingerprint(self) -> str:
        """A content fingerprint of the inputs as validated: per table its row
        counts and content hash (absent tables as 'absent'), plus the as-of
        date. Any change to any row - an in-place UPDATE included - changes it,
        so it is a safe cache key for anything built from the staged views."""
        parts = [f"as_of={self.as_of}"]
        for logical in INPUT_TABLES:
            s = self.tables.get(logical)
            if s is None:
                parts.append(f"{logical}:not validated")
            elif not s.present:
                parts.append(f"{logical}:absent")
            else:
                parts.append(f"{logical}:{s.rows}:{s.kept}:{s.bad}:{s.ignored}:{s.content_hash}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]

    def problems(self) -> list[RuleCount]:
        return [r for r in self.rules if r.rows > 0]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([r.__dict__ for r in self.rules])

    def to_dict(self) -> dict:
        return {
            "as_of": str(self.as_of) if self.as_of else None,
            "max_bad_share": self.max_bad_share,
            "tables": {t: {**s.__dict__, "bad_share": s.bad_share} for t, s in self.tables.items()},
            "rules": [r.__dict__ for r in self.problems()],
            "families_off": self.families_off,
            "data_start": str(self.data_start) if self.data_start else None,
            "data_end": str(self.data_end) if self.data_end else None,
            "null_columns": self.null_columns,
            "fingerprint": self.fingerprint,
        }

    def to_markdown(self) -> str:
        lines = [
            f"## Input validation (as of {self.as_of})",
            "",
            "| table | rows | kept | bad | bad share | ignored after as-of |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for s in self.tables.values():
            if not s.present:
                lines.append(f"| {s.table} | absent | | | | |")
                continue
            lines.append(f"| {s.table} | {s.rows:,} | {s.kept:,} | {s.bad:,} | {s.bad_share:.2%} | {s.ignored:,} |")
        problems = self.problems()
        if problems:
            lines += ["", "| table | rule | rows excluded | sample keys |", "|---|---|---:|---|"]
            lines += [f"| {r.table} | {r.description} | {r.rows:,} | {', '.join(r.samples)} |" for r in problems]
        else:
            lines += ["", "No row broke a rule."]
        for family, why in self.families_off.items():
            lines.append(f"\nFeature family **{family}** is off: {why}.")
        for table, columns in self.null_columns.items():
            for column in columns:
                lines.append(f"\n{null_column_message(table, column)}.")
        return "\n".join(lines)


def null_column_message(table: str, column: str) -> str:
    """What an all-NULL column means for the features, in one sentence."""
    needing = catalog.features_needing(f"{table}.{column}")
    if needing:
        effect = f"{', '.join(needing)} {'is' if len(needing) == 1 else 'are'} unknown (left empty, not 0)"
    else:
        meaning = INPUT_TABLES[table].column(column).description
        effect = "no feature is left unknown by it" + (f" ({column}: {meaning})" if meaning else "")
    return f"Column {table}.{column} is NULL in every kept row: {effect}"
