"""The SQL every feature family shares (DuckDB dialect; transpiled for other
engines): the as-of cutoff, the snapshot dates, the spine and the labels.
Each family's own statement lives in its module under :mod:`features.families`.

Grain of every feature statement's result: one row per (account_id,
as_of_date). Inputs are the staged views (``stg_*``) and small run tables
written by :mod:`features.build`:

- ``_churn_snapshots(as_of_date, cutoff, horizon_end, mature)``: the snapshot
  dates; ``cutoff`` is the as-of timestamp (date 00:00, see
  :func:`as_of_cutoff`): rows at or before it are visible.
- ``_churn_spine(as_of_date, cutoff, account_id)``: the accounts active on
  each snapshot date (:data:`SPINE`), the rows every family fills.
- ``_churn_subscriptions``: the staged subscriptions, evaluated once
  (:data:`SUBSCRIPTIONS`): the staged view deduplicates with a window over
  every subscription, which each reference would otherwise run again.

A family may keep its rows as a run table for later ones (the contract
family's ``_churn_contract``, read for the seat counts) or create its own
(the usage family's look-back spans and rollups); :mod:`features.families`
lists them all.
"""

from __future__ import annotations

import datetime as dt

WINDOW_DAYS = 90  # the longest look-back window of the usage features


def as_of_cutoff(as_of: dt.date) -> dt.datetime:
    """The timestamp that closes an as-of date: rows at or before it are visible.

    An as-of date D means ``D 00:00:00`` UTC (staged timestamps are naive UTC):
    an event exactly then counts, one a second later does not (a morning batch
    sees every full day before D).
    """
    return dt.datetime.combine(as_of, dt.time())


# -- the staged subscriptions, once per build ----------------------------------
SUBSCRIPTIONS = "SELECT * FROM stg_subscriptions"

# -- the spine: accounts active on each snapshot date -----------------------
SPINE = """
SELECT DISTINCT s.as_of_date, s.cutoff, sub.account_id
FROM _churn_snapshots AS s
JOIN _churn_subscriptions AS sub
  ON sub.start_date <= s.as_of_date
 AND (sub.end_date IS NULL OR sub.end_date > s.as_of_date)
JOIN stg_accounts AS a ON a.account_id = sub.account_id
"""


# -- labels --------------------------------------------------------------------
COVERAGE_SPELLS = """
WITH subs AS (
  SELECT account_id, start_date, COALESCE(end_date, DATE '9999-12-31') AS end_date
  FROM {subscriptions}
  WHERE end_date IS NULL OR end_date > start_date
), ordered AS (
  SELECT *, MAX(end_date) OVER (PARTITION BY account_id ORDER BY start_date, end_date
                                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
  FROM subs
), flagged AS (
  -- a new spell starts after a real gap (start after the previous end) of at least
  -- grace_days; back-to-back or overlapping coverage never starts one, even with grace 0
  SELECT *, CASE WHEN prev_end IS NULL
                   OR (start_date > prev_end AND DATE_DIFF('day', prev_end, start_date) >= $grace_days)
                 THEN 1 ELSE 0 END AS new_spell
  FROM ordered
), numbered AS (
  SELECT *, SUM(new_spell) OVER (PARTITION BY account_id ORDER BY start_date, end_date
                                 ROWS UNBOUNDED PRECEDING) AS spell
  FROM flagged
)
SELECT account_id, spell, MIN(start_date) AS spell_start, MAX(end_date) AS spell_end
FROM numbered GROUP BY 1, 2
"""

#: the contract's label of a row ``s`` (account_id, as_of_date, horizon_end) given the
#: coverage spell ``sp`` that covers its as-of date: churn day = the spell's end
CHURN_DATE = "CASE WHEN sp.spell_end < DATE '9999-12-31' THEN sp.spell_end END"
CHURNED = "CASE WHEN sp.spell_end > s.as_of_date AND sp.spell_end <= s.horizon_end THEN 1 ELSE 0 END"


def label_select(
    rows: str, keep: tuple[str, ...] = (), outer: bool = False, subscriptions: str = "stg_subscriptions"
) -> str:
    """The one implementation of the contract's churn label, for each row of
    the relation ``rows`` (columns account_id, as_of_date, horizon_end and the
    ``keep`` columns, passed through): ``churn_date`` and ``churned`` from the
    coverage spell (grace gaps bridged, ``$grace_days``) that covers the
    as-of date. Training labels the spine (:data:`LABELS`); the monitor labels
    the scored accounts (``outer``: a row no spell covers is kept, with
    ``covered`` false). ``subscriptions``: the staged subscriptions (a build
    reads its own copy, ``_churn_subscriptions``)."""
    kept = "".join(f", s.{column}" for column in keep)
    covered = ", sp.account_id IS NOT NULL AS covered" if outer else ""
    return f"""
WITH spells AS ({COVERAGE_SPELLS.format(subscriptions=subscriptions)})
SELECT s.account_id, s.as_of_date,
       {CHURN_DATE} AS churn_date,
       {CHURNED} AS churned{kept}{covered}
FROM ({rows}) AS s
{"LEFT JOIN" if outer else "JOIN"} spells AS sp
  ON sp.account_id = s.account_id AND sp.spell_start <= s.as_of_date AND sp.spell_end > s.as_of_date
"""


LABELS = label_select(
    "SELECT sp.account_id, sn.as_of_date, sn.horizon_end, sn.mature "
    "FROM _churn_spine AS sp JOIN _churn_snapshots AS sn ON sn.as_of_date = sp.as_of_date",
    keep=("mature",),
    subscriptions="_churn_subscriptions",
)
