"""Incremental readouts: per-unit running aggregates kept in a state file, updated each run with
the events and assignments that arrived since the last one.

The state is a local DuckDB file ATTACHed to the source's DuckDB session (not tables in the
source): the source stays read-only and untouched (a team's warehouse often is), nothing is
copied out of the engine (the per-unit tables are written by the same DuckDB that reads the
events, in the same queries), and the file is small (1M users: ~80 MB). Tables of the state:

- ``assigned``: one row per user assigned to the experiment (smallest and largest variant, the
  first exposure's variant, first and last exposure): the units are a projection of it, so the
  assignments are not grouped again each run (only the users with an assignment on the newest
  days are summarised again; see :meth:`IncrementalState._assigned`).
- ``unit_table``: one row per unit, ``user_id, variant, assigned_at`` and its aggregates
  (``settled`` + all its ``pending`` rows): the table the statistics are computed from, read by
  the compiler as its unit table (:attr:`MetricCompiler.per_unit`), kept up to date in place.
- ``settled``: one row per user with events in the pre-period, as of the state's (re)build:
  ``user_id`` and one column per additive aggregate of the metrics (``count``, ``any``, ``sum``).
- ``pending``: one row per day x user with the same columns, for every day after those: the
  experiment's days (the per-day series reads them: :meth:`IncrementalState.per_day`; each
  taken with the users' exposures at the time it was aggregated: a user who was no unit then has
  no 'during' events there), and the pre-period days of a state made before the start. The
  lookback days and the newest day are kept with the fingerprints of their events and of the
  units exposed before their end (in the manifest); the older days are settled: their rows stay.
- ``manifest``: one JSON row (:class:`Manifest`): definitions hash (the aggregates held),
  experiment and window, lookback, ``settled_until``, watermark, the fingerprints of the settled
  events, of the units (before ``settled_until`` and per day of first exposure), of the pending
  days and of the assignments per day.

A run, in one transaction of the state file (one commit; a run that fails half-way leaves the
state as it was; DuckDB lets one process at a time open the file for writing): update
``assigned``; check the fingerprints; re-aggregate from the events only the days whose events
or exposures changed (the newest day, a day that received late events: an event arriving up to
``lookback_days`` after its day is counted); add a new day's rows to its users' rows of
``unit_table`` (an UPDATE of the aggregates that can change), or make the rows of the users of
a re-aggregated day again from ``settled`` + ``pending``, and those of the units whose exposure
changed (new units). The days that leave the lookback are settled (their fingerprints join the
settled one; no event is read again, no row moved). Caps, CUPED, covariates, quantiles and
segments are then computed from ``unit_table`` as in a full recompute, and the per-day series
from ``pending``'s rows of the experiment's days, so the statistics are the same (to float
rounding).

Rebuild rule: the state is rebuilt from all events when there is no state, or the aggregates of
the metrics (definitions hash), the experiment, its dates, ``exclude_crossovers`` or the lookback
differ from the manifest, or the fingerprint of the settled events differs (an event that arrived
later than the lookback, or was changed or deleted), or the fingerprint of the units exposed
before ``settled_until`` differs (a late or changed assignment, a unit that left the experiment).
With ``verify="none"`` the events' fingerprint is not checked and events later than the
lookback are missed.

Fingerprints, without a join: events ``[pre_start, settled_until)``: row count, ``sum(user_id)``
and ``sum(epoch_us(event_time))`` (exact, in DuckDB's 128-bit integers; ``hash(user_id)`` mod
``2^31 - 1`` for a non-integer ``user_id``), one scan of two columns, and the same per pending
day; assignments and units per day: count and the sum of ``hash(user_id, variant,
assigned_at)`` mod ``2^31 - 1`` (a day's aggregates depend only on the exposures before its end).

``distinct`` aggregations do not add over days: a compiler with one reads ``settled`` +
``pending`` joined to the units and recomputes them from all events each run.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from workbench.errors import ParameterError, SourceError

VERSION = 5  # 5: the experiment's days stay in `pending`, with cumulative values
ALIAS = "wb_incremental"
VERIFY = ("rows", "none")
_PRIME = 2147483647  # hashes are summed modulo-reduced


@dataclass
class Manifest:
    """What the state holds (stored as JSON in the state's ``manifest`` table)."""

    version: int
    experiment_id: str
    definitions_hash: str  # sha256 of the aggregates held (their repr), see aggregate_keys()
    start_date: str
    end_date: str
    exclude_crossovers: bool
    lookback_days: int
    columns: dict[str, str]  # aggregate key (repr) -> column of `settled`
    pre_start: str  # lower end of the settled region
    settled_until: str  # upper end (exclusive) of the settled region
    watermark: str  # newest event_time seen
    fingerprint: dict[str, int] = field(default_factory=dict)  # of the settled events
    units_fingerprint: dict[str, int] = field(default_factory=dict)  # units before settled_until
    pending: dict[str, dict] = field(default_factory=dict)  # day -> fingerprints of its rows
    unit_days: dict | None = None  # day of first exposure -> [n, h] of the units (unit_table)
    assign_days: dict[str, list] = field(default_factory=dict)  # day -> [n, h], assignments
    runs: int = 0
    rebuilt_at_run: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Update:
    """What one run did: ``rebuilt`` (and why), the settled region and the events scanned."""

    path: str
    rebuilt: bool
    reason: str
    settled_until: dt.datetime
    scanned_from: dt.datetime  # the earliest day this run aggregated from the events
    watermark: dt.datetime

    def note(self) -> str:
        """One sentence for the experiment's notes."""
        how = f"rebuilt ({self.reason})" if self.rebuilt else "updated"
        return (f"incremental: state {self.path} {how}; events from {self.scanned_from} "
                f"aggregated, settled until {self.settled_until}, watermark {self.watermark}")


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _midnight(t: dt.datetime) -> dt.datetime:
    return dt.datetime.combine(t.date(), dt.time())


def _additive(key) -> bool:
    return key[0].aggregation != "distinct"


def aggregate_keys(compiler) -> list:
    """The aggregate keys ``(Aggregate, period, days)`` of the compiler's metrics, in order
    (from the expressions only: the units are not needed)."""
    e = compiler.events
    _, source = compiler.unit_aggregates(e.mutate(assigned_at=e.event_time))
    return [k for k in source if len(k) == 3]


def definitions_hash(keys) -> str:
    """sha256 of the aggregates: a change of what is aggregated forces a rebuild; a change of
    caps, roles or analysis options does not (they apply to the per-unit values each run)."""
    return "sha256:" + hashlib.sha256(repr(sorted(repr(k) for k in keys)).encode()).hexdigest()[:16]


class IncrementalState:
    """A state file of per-unit running aggregates for one experiment.

    Parameters
    ----------
    path : str or Path
        Local DuckDB file (created if absent).
    lookback_days : int
        Days before the newest event's day that are re-aggregated from the events each run.
    verify : {'rows', 'none'}
        Check the fingerprint of the settled events each run (row count and sums of
        ``user_id`` and ``event_time``: a late, deleted or moved event is detected; a scan of
        those two columns of the settled events, no join), or not.
    """

    def __init__(self, path: str | os.PathLike, lookback_days: int = 2, verify: str = "rows"):
        if isinstance(lookback_days, bool) or not isinstance(lookback_days, int) \
                or lookback_days < 0:
            raise ParameterError(f"lookback_days must be an integer >= 0, got {lookback_days!r}")
        if verify not in VERIFY:
            raise ParameterError(f"verify must be one of {VERIFY}, got {verify!r}")
        self.path = Path(path).expanduser()
        self.lookback_days = lookback_days
        self.verify = verify
        self.manifest: Manifest | None = None
        self.con = None
        self._days = None  # this run's per-day event fingerprints: (from, {day: ...})

    # -- engine ----------------------------------------------------------------------------
    def _attach(self, compiler) -> None:
        con = compiler.events.get_backend()
        if getattr(con, "name", "") != "duckdb":
            raise SourceError("incremental readouts need a DuckDB source (the state file is "
                              f"attached to its session); got a {getattr(con, 'name', con)!r} "
                              "backend")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        attached = [r[0] for r in con.raw_sql(
            "SELECT database_name FROM duckdb_databases()").fetchall()]
        if ALIAS in attached:
            con.raw_sql(f"DETACH {ALIAS}")
        path = str(self.path).replace("'", "''")
        con.raw_sql(f"ATTACH '{path}' AS {ALIAS} (READ_WRITE)")
        self.con = con

    def _sql(self, expr) -> str:
        return str(self.con.compile(expr))

    def _tables(self) -> list[str]:
        return [r[0] for r in self.con.raw_sql(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = "
            f"'{ALIAS}'").fetchall()]

    def _read_manifest(self) -> Manifest | None:
        if not {"manifest", "settled", "pending"} <= set(self._tables()):
            return None
        row = self.con.raw_sql(f"SELECT body FROM {ALIAS}.manifest").fetchone()
        if row is None:
            return None
        try:
            body = json.loads(row[0])
            known = {f.name for f in fields(Manifest)}  # an older version's: rebuilt, it says so
            return Manifest(**{k: v for k, v in body.items() if k in known})
        except (TypeError, ValueError, AttributeError):
            return None

    def _write_manifest(self, m: Manifest) -> None:
        body = json.dumps(asdict(m)).replace("'", "''")
        self.con.raw_sql(f"CREATE OR REPLACE TABLE {ALIAS}.manifest AS SELECT '{body}' AS body")

    # -- pieces ----------------------------------------------------------------------------
    def _event_days(self, compiler, lo: dt.datetime) -> dict:
        """Per day of the events from ``lo`` on (no upper end), in one scan of two columns:
        ``{day: {n, u, t, max}}``, the fingerprint (row count and exact sums, in DuckDB's
        HUGEINT, of ``user_id`` and ``event_time`` in microseconds) and the newest event time.
        Cached per run; a later call with an earlier ``lo`` scans again."""
        if self._days is not None and self._days[0] <= lo:
            return {d: v for d, v in self._days[1].items() if _ts(d) >= lo}
        e = compiler.events
        f = self._sql(e.filter(e.event_time >= lo).select("user_id", "event_time"))
        rows = self.con.raw_sql(
            f"SELECT date_trunc('day', event_time), count(*), sum({self._uid(compiler)}), "
            f"sum(epoch_us(event_time)), max(event_time) FROM ({f}) GROUP BY 1").fetchall()
        days = {_midnight(r[0]).isoformat(): {**dict(zip("nut", map(int, r[1:4]))),
                                              "max": r[4]} for r in rows}
        self._days = (lo, days)
        return days

    def _fingerprint(self, compiler, lo: dt.datetime, hi: dt.datetime) -> dict[str, int]:
        """Fingerprint ``{n, u, t}`` of the events of ``[lo, hi)`` (midnights): the same
        sums, one scan without grouping (cheaper than by day over all the settled days)."""
        if self._days is not None and self._days[0] <= lo:  # the days were scanned already
            days = self._event_days(compiler, lo)
            return {k: sum(v[k] for d, v in days.items() if _ts(d) < hi) for k in "nut"}
        e = compiler.events
        f = self._sql(e.filter((e.event_time >= lo) & (e.event_time < hi))
                      .select("user_id", "event_time"))
        got = self.con.raw_sql(f"SELECT count(*), sum({self._uid(compiler)}), "
                               f"sum(epoch_us(event_time)) FROM ({f})").fetchone()
        return {k: int(v or 0) for k, v in zip("nut", got)}

    @staticmethod
    def _uid(compiler) -> str:
        integer = compiler.events.user_id.type().is_integer()
        return "user_id" if integer else f"hash(user_id) % {_PRIME}"

    def _day_fingerprints(self, compiler, lo: dt.datetime, hi: dt.datetime) -> dict:
        """The fingerprint of each day of ``[lo, hi)`` that has events."""
        return {d: {k: v[k] for k in "nut"} for d, v in self._event_days(compiler, lo).items()
                if _ts(d) < hi}

    def _watermark(self, compiler, lo: dt.datetime) -> dt.datetime | None:
        """The newest event time at or after ``lo`` (None when there is none)."""
        got = [v["max"] for v in self._event_days(compiler, _midnight(lo)).values()
               if v["max"] >= lo]
        if not got:
            return None
        import pandas as pd

        return pd.Timestamp(max(got)).to_pydatetime()

    # -- units -----------------------------------------------------------------------------
    def _assignments_sql(self, compiler) -> str:
        a = compiler.assignments
        a = a.filter(a.experiment_id == compiler.window.experiment_id)
        return self._sql(a.select("user_id", "variant", "assigned_at"))

    def _assigned(self, compiler, m: Manifest | None) -> dict:
        """Bring table ``assigned`` (one row per user assigned to the experiment: smallest and
        largest variant, the first exposure's variant if crossovers are kept, first and last
        exposure) up to date with the assignments; returns their fingerprint per day.

        The assignments are fingerprinted per day (count and sum of ``hash(user_id, variant,
        assigned_at)`` mod ``2^31 - 1``; a scan of three columns). The users with an
        assignment from the earliest changed day on, now or at the last run (``last_at``: a
        deleted assignment), are summarised again from all their assignments (the usual case:
        the newest day's users); without ``m`` (or when an assignment without a time changed)
        the table is made again from every assignment."""
        a = self._assignments_sql(compiler)
        rows = self.con.raw_sql(
            "SELECT date_trunc('day', assigned_at), count(*), "
            f"sum(hash(user_id, variant, assigned_at) % {_PRIME}) FROM ({a}) GROUP BY 1"
        ).fetchall()
        now = {("" if r[0] is None else _midnight(r[0]).isoformat()): [int(r[1]), int(r[2])]
               for r in rows}
        first = ("min(variant) FILTER (WHERE FALSE)"  # unused (a change of it rebuilds)
                 if compiler.exclude_crossovers else "arg_min(variant, assigned_at)")
        summary = ("SELECT user_id, min(variant) AS v_min, max(variant) AS v_max, "
                   f"{first} AS v_first, min(assigned_at) AS assigned_at, "
                   f"max(assigned_at) AS last_at FROM ({a}) AS a{{where}} GROUP BY user_id")
        old = {} if m is None else m.assign_days
        changed = {d for d in set(now) | set(old) if now.get(d) != old.get(d)}
        if m is None or "assigned" not in self._tables() or "" in changed:
            self.con.raw_sql(f"CREATE OR REPLACE TABLE {ALIAS}.assigned AS "
                             + summary.format(where=""))
        elif changed:
            at = f"TIMESTAMP '{_ts(min(changed)).isoformat(sep=' ')}'"
            self.con.raw_sql(
                f"CREATE OR REPLACE TABLE {ALIAS}._wb_changed AS SELECT user_id FROM ({a}) AS a "
                f"WHERE assigned_at >= {at} UNION SELECT user_id FROM {ALIAS}.assigned "
                f"WHERE last_at >= {at}")
            chg = f"user_id IN (SELECT user_id FROM {ALIAS}._wb_changed)"
            self.con.raw_sql(f"DELETE FROM {ALIAS}.assigned WHERE {chg}")
            self.con.raw_sql(f"INSERT INTO {ALIAS}.assigned "
                             + summary.format(where=f" WHERE {chg}"))
            self.con.raw_sql(f"DROP TABLE {ALIAS}._wb_changed")
        return now

    def _units(self, compiler):
        """The units of the experiment (``user_id, variant, assigned_at``) from ``assigned``,
        as :meth:`ExperimentWindow.units` makes them from the assignments."""
        import ibis

        s = self.con.table("assigned", database=ALIAS)
        if compiler.exclude_crossovers:
            s = s.filter(s.v_min == s.v_max)
        return s.select("user_id", variant=s.v_min if compiler.exclude_crossovers else s.v_first,
                        assigned_at=s.assigned_at.cast(ibis.dtype("timestamp")))

    def _units_fingerprints(self, units: str):
        """The units' fingerprint per day of first exposure ``{day: [n, h]}`` (count and sum
        of ``hash(user_id, variant, assigned_at)`` mod ``2^31 - 1``) and a function ``before ->
        {n, h}``: that of the units exposed before midnight ``before`` (the aggregates of a
        day, settled or pending, depend on the exposures before its end only). One query."""
        rows = self.con.raw_sql(
            f"SELECT date_trunc('day', assigned_at), count(*), "
            f"sum(hash(user_id, variant, assigned_at) % {_PRIME}) FROM ({units}) GROUP BY 1"
        ).fetchall()
        rows = [(_midnight(r[0]), int(r[1]), int(r[2])) for r in rows if r[0] is not None]

        def before(t: dt.datetime) -> dict[str, int]:
            return {"n": sum(r[1] for r in rows if r[0] < t),
                    "h": sum(r[2] for r in rows if r[0] < t)}
        return {r[0].isoformat(): [r[1], r[2]] for r in rows}, before

    def _events_in(self, compiler, lo: dt.datetime, hi: dt.datetime):
        """Events of ``[lo, hi)`` with the exposure of their user when it is a unit, else the
        window's end (so no 'during' aggregate counts them): pre-period aggregates are kept for
        every user, as a unit exposed later needs its own."""
        units = compiler.units()
        ev = compiler.events
        ev = ev.filter((ev.event_time >= lo) & (ev.event_time < hi))
        j = ev.left_join(units, ev.user_id == units.user_id)
        return j.select(*[j[c] for c in ev.columns],
                        assigned_at=units.assigned_at.fill_null(compiler.window.end_ts))

    def _aggregates(self, compiler, e, columns: dict[str, str], by: tuple = ()):
        """Per-user (and per ``by`` column) additive aggregates of events ``e`` under the
        state's column names."""
        aggs, source = compiler.unit_aggregates(e)
        named = {columns[repr(k)]: aggs[source[k]].cast("float64")
                 for k in source if len(k) == 3 and _additive(k)}
        return e.group_by(*by, "user_id").aggregate(**named)

    def _settle(self, compiler, lo, hi, columns: dict[str, str], during: list[str]) -> None:
        """New ``settled`` and ``pending`` tables for the events of ``[lo, hi)``: per user
        those before the experiment's start, per day x user those after it (the per-day
        series reads them, :meth:`per_day`); ``pending`` also holds the user's cumulative
        value of each ``during`` aggregate as of the day (``c_<column>``, set by
        :meth:`_aggregate_days`)."""
        cols = list(columns.values())
        start = min(max(lo, compiler.window.start_ts), hi)
        inc = self._sql(self._aggregates(compiler, self._events_in(compiler, lo, start),
                                         columns))
        self.con.raw_sql(f"CREATE OR REPLACE TABLE {ALIAS}.settled AS "
                         f"SELECT user_id, {', '.join(cols)} FROM ({inc})")
        cum = "".join(f", CAST(NULL AS DOUBLE) AS c_{c}" for c in during)
        self.con.raw_sql(f"CREATE OR REPLACE TABLE {ALIAS}.pending AS SELECT CAST(NULL AS "
                         f"TIMESTAMP) AS day, *{cum} FROM {ALIAS}.settled LIMIT 0")
        if hi > start:
            self._aggregate_days(compiler, [start + dt.timedelta(days=i)
                                            for i in range((hi - start).days)], columns, during)

    def _aggregate_days(self, compiler, days: list[dt.datetime], columns: dict[str, str],
                        during: list[str], current: bool = False):
        """Replace the ``pending`` rows of ``days`` with their per-user aggregates from the
        events (one query over the days' events), with the cumulative columns of the rows
        from the first of them on: each user's ``during`` aggregates before that day plus a
        running sum (one window over those rows only). The sums before it are ``unit_table``'s
        less the rows from it on when ``unit_table`` is ``current`` (it holds every row's sum),
        else those rows' sums. Rows after the first day that are kept are written again (DuckDB
        appends far faster than it updates)."""
        cols = list(columns.values())
        day_list = ", ".join(f"TIMESTAMP '{d.isoformat(sep=' ')}'" for d in days)
        first = f"TIMESTAMP '{min(days).isoformat(sep=' ')}'"
        e = self._events_in(compiler, min(days), max(days) + dt.timedelta(days=1))
        e = e.mutate(_wb_day=e.event_time.truncate("D").cast("timestamp"))
        e = e.filter(e._wb_day.isin(days))
        inc = self._sql(self._aggregates(compiler, e, columns, by=("_wb_day",)))
        later = self.con.raw_sql(f"SELECT count(*) FROM {ALIAS}.pending WHERE day >= {first}"
                                 ).fetchone()[0]
        listed = ", ".join(cols)
        rows = f"SELECT _wb_day AS day, user_id, {listed} FROM ({inc})"
        if later:
            rows += (f" UNION ALL SELECT day, user_id, {listed} FROM {ALIAS}.pending "
                     f"WHERE day >= {first} AND day NOT IN ({day_list})")
        sums = ", ".join(f"sum({c}) AS {c}" for c in during)
        after = f"(SELECT user_id, {sums} FROM {ALIAS}.pending WHERE day >= {first} GROUP BY 1)"
        if not during:  # nothing to cumulate (distinct aggregates only): no sums before
            base = f"SELECT user_id FROM {ALIAS}.settled LIMIT 0"
        elif current:
            less = ", ".join(f"t.{c} - coalesce(a.{c}, 0) AS {c}" if later else f"t.{c}"
                             for c in during)
            base = (f"SELECT t.user_id, {less} FROM {ALIAS}.unit_table AS t"
                    + (f" LEFT JOIN {after} AS a ON a.user_id = t.user_id" if later else ""))
        else:
            base = f"SELECT user_id, {sums} FROM {ALIAS}.pending WHERE day < {first} GROUP BY 1"
        one = len(days) == 1 and not later  # one row per user: no running sum to take
        run = "r.{c}" if one else "sum(r.{c}) OVER w"
        cum = "".join(f", coalesce(b.{c}, 0) + {run.format(c=c)} AS c_{c}" for c in during)
        select = (f"WITH r AS ({rows}), b AS ({base}) SELECT r.day, r.user_id, "
                  f"{', '.join(f'r.{c}' for c in cols)}{cum} FROM r LEFT JOIN b ON "
                  "b.user_id = r.user_id"
                  + ("" if one else " WINDOW w AS (PARTITION BY r.user_id ORDER BY r.day)"))
        if not later:
            self.con.raw_sql(f"INSERT INTO {ALIAS}.pending {select}")
            return
        tail = f"{ALIAS}._wb_tail"
        self.con.raw_sql(f"CREATE OR REPLACE TABLE {tail} AS {select}")
        self.con.raw_sql(f"DELETE FROM {ALIAS}.pending WHERE day >= {first}")
        self.con.raw_sql(f"INSERT INTO {ALIAS}.pending SELECT * FROM {tail}")
        self.con.raw_sql(f"DROP TABLE {tail}")

    def _unit_rows(self, units: str, columns: dict[str, str], only: str = "") -> str:
        """The rows of table ``unit_table``: each unit (of query ``units``) with its aggregates,
        ``settled`` plus the sum of its ``pending`` rows; ``only``: a table of the users to
        make (the others are not read)."""
        cols = list(columns.values())
        f = f" WHERE user_id IN (SELECT user_id FROM {only})" if only else ""
        vals = "".join(f", coalesce(s.{c} + p.{c}, s.{c}, p.{c}) AS {c}" for c in cols)
        sums = "".join(f", sum({c}) AS {c}" for c in cols)
        return (f"SELECT u.user_id, u.variant, u.assigned_at{vals} FROM "
                f"(SELECT * FROM ({units}) AS u0{f}) AS u "
                f"LEFT JOIN (SELECT * FROM {ALIAS}.settled{f}) AS s ON s.user_id = u.user_id "
                f"LEFT JOIN (SELECT user_id{sums} FROM {ALIAS}.pending{f} GROUP BY user_id) AS p "
                "ON p.user_id = u.user_id")

    def _update_unit_table(self, units: str, m: Manifest, in_days: str, fresh: bool,
                           unit_days: dict, touched: str, fixed: set[str]) -> None:
        """Bring ``unit_table`` up to date in place. The rows of re-aggregated days (``in_days``)
        that had none before (``fresh``) are added to their users' rows (an UPDATE); else the
        rows of those days' users, before and after, are made again from ``settled`` and
        ``pending``; so are the rows of the units whose exposure changed (found by their days
        of first exposure whose fingerprint changed: new units, a unit that left). Columns
        ``fixed`` (pre-period aggregates, when the days are in the experiment) are zero in
        those days' rows and left as they are."""
        cols = [c for c in m.columns.values() if c not in fixed]
        if in_days and fresh:
            sums = ", ".join(f"sum({c}) AS {c}" for c in cols)
            add = ", ".join(f"{c} = coalesce(t.{c} + d.{c}, t.{c}, d.{c})" for c in cols)
            if cols:
                self.con.raw_sql(
                    f"UPDATE {ALIAS}.unit_table AS t SET {add} FROM (SELECT user_id, {sums} "
                    f"FROM {ALIAS}.pending WHERE day IN ({in_days}) GROUP BY user_id) AS d "
                    "WHERE t.user_id = d.user_id")
        elif in_days:
            self.con.raw_sql(f"INSERT INTO {touched} SELECT user_id FROM {ALIAS}.pending "
                             f"WHERE day IN ({in_days})")
        moved = [d for d in set(unit_days) | set(m.unit_days)
                 if unit_days.get(d) != m.unit_days.get(d)]
        if moved:
            on = ", ".join(f"TIMESTAMP '{_ts(d).isoformat(sep=' ')}'" for d in moved)
            for t in (f"({units}) AS u", f"{ALIAS}.unit_table"):
                self.con.raw_sql(f"INSERT INTO {touched} SELECT user_id FROM {t} "
                                 f"WHERE date_trunc('day', assigned_at) IN ({on})")
        if moved or (in_days and not fresh):
            self.con.raw_sql(f"DELETE FROM {ALIAS}.unit_table WHERE user_id IN "
                             f"(SELECT user_id FROM {touched})")
            self.con.raw_sql(f"INSERT INTO {ALIAS}.unit_table "
                             + self._unit_rows(units, m.columns, only=touched))
        self.con.raw_sql(f"DROP TABLE {touched}")

    # -- the run ---------------------------------------------------------------------------
    def update(self, compiler, as_of: dt.datetime | None = None) -> Update:
        """Bring the state up to date with the compiler's events and set
        ``compiler.per_unit`` so its statistics read the state.

        ``as_of``: the newest event time to settle against (default: the newest event).
        """
        self._attach(compiler)
        self._days = None
        # Every write of this run in one transaction of the state file: one commit, and a run
        # that fails half-way leaves the state as it was. (DuckDB lets one process at a time
        # open the file for writing: a second concurrent run fails at ATTACH.)
        # The commit writes the write-ahead log only: DuckDB's checkpoint of the file (its
        # compressed tables written again) is left to the session's end (DETACH or close),
        # which costs less than the automatic checkpoint at the commit (the WAL is over its
        # 16 MiB threshold), measured in benchmarks/README.md. The session's setting is put back.
        threshold = self.con.raw_sql(
            "SELECT current_setting('checkpoint_threshold')").fetchone()[0]
        self.con.raw_sql("SET checkpoint_threshold = '1000 GiB'")
        try:
            self.con.raw_sql("BEGIN TRANSACTION")
            try:
                out = self._run(compiler, as_of)
            except BaseException:
                self.con.raw_sql("ROLLBACK")
                raise
            self.con.raw_sql("COMMIT")
        finally:
            self.con.raw_sql(f"SET checkpoint_threshold = '{threshold}'")
        compiler.per_unit, compiler.per_day = self.per_unit, self.per_day
        return out

    def _run(self, compiler, as_of: dt.datetime | None) -> Update:
        w = compiler.window
        keys = aggregate_keys(compiler)
        max_pre = max([m.pre_period_days for m in compiler.metrics
                       if m.cuped or m.covariate_parts] or [0])
        pre_start = w.pre_start_ts(max_pre)
        want = dict(version=VERSION, experiment_id=w.experiment_id,
                    definitions_hash=definitions_hash(keys), start_date=str(w.start_date),
                    end_date=str(w.end_date), exclude_crossovers=compiler.exclude_crossovers,
                    lookback_days=self.lookback_days, pre_start=pre_start.isoformat())
        m = self._read_manifest()
        reason = ""
        if m is None:
            reason = "no state"
        else:
            for k, v in want.items():
                if getattr(m, k) != v:
                    reason = f"{k} changed ({getattr(m, k)!r} -> {v!r})"
                    break
        # The units: table `assigned` of the state, updated with the new assignments.
        assign_days = self._assigned(compiler, None if reason else m)
        units = self._units(compiler)
        compiler._units = units
        unit_days, ufp = self._units_fingerprints(self._sql(units))
        if not reason and self.verify == "rows":
            got = self._fingerprint(compiler, pre_start, _ts(m.settled_until))
            if got != m.fingerprint:
                reason = ("the settled events changed (an event later than the lookback, or "
                          "a changed or deleted one)")
        if not reason:
            got = ufp(_ts(m.settled_until))
            if got != m.units_fingerprint:
                reason = (f"the units exposed before {m.settled_until} changed ({got['n']} now, "
                          f"{m.units_fingerprint.get('n', 0)} then): an exposure changed or "
                          "arrived late, or a unit left the experiment")
        rebuild = bool(reason)
        zero = {"n": 0, "u": 0, "t": 0}
        if rebuild:
            columns = {repr(k): f"s{i}" for i, k in enumerate(k for k in keys if _additive(k))}
            runs = 0 if m is None else m.runs
            m = Manifest(**want, columns=columns, settled_until=pre_start.isoformat(),
                         watermark=pre_start.isoformat(), fingerprint=dict(zero), runs=runs)
        old_until = _ts(m.settled_until)
        newest = as_of if as_of is not None else self._watermark(compiler, old_until)
        watermark = max(_ts(m.watermark), newest) if newest is not None else _ts(m.watermark)
        until = min(max(old_until, _midnight(watermark) - dt.timedelta(days=self.lookback_days)),
                    w.end_ts)
        fixed = {m.columns[repr(k)] for k in keys if _additive(k) and k[1] == "pre"}
        stale, end = self._write(compiler, m, ufp, rebuild, reason, old_until, until,
                                 watermark, unit_days, fixed)
        m.assign_days = assign_days
        self._write_manifest(m)
        for t in ("current", "units"):  # tables of version 1, now temporary or not kept
            self.con.raw_sql(f"DROP TABLE IF EXISTS {ALIAS}.{t}")
        self.manifest = m
        scanned = old_until if rebuild else (min(stale) if stale else end)
        return Update(str(self.path), rebuild, reason, until, scanned, watermark)

    def _write(self, compiler, m: Manifest, ufp, rebuild: bool, reason: str,
               old_until: dt.datetime, until: dt.datetime, watermark: dt.datetime,
               unit_days: dict, pre: set[str]):
        """The state's writes of one run (see :meth:`update`); returns the days aggregated
        from the events and the end of the pending days."""
        w = compiler.window
        zero = {"n": 0, "u": 0, "t": 0}
        cumulated = [c for c in m.columns.values() if c not in pre]  # the 'during' ones
        if rebuild:
            self._settle(compiler, old_until, until, m.columns, cumulated)
            m.fingerprint = (self._fingerprint(compiler, old_until, until)
                             if self.verify == "rows" else dict(zero))
        # The days after the settled region: per-user aggregates kept in `pending`, one set
        # per day with the fingerprints of its events and of the units exposed before its
        # end; a day is re-aggregated from the events only when either changed (new or late
        # events, a changed exposure), else its stored rows are reused.
        first = until if rebuild else old_until
        last = self._watermark(compiler, until)
        end = until if last is None else _midnight(last) + dt.timedelta(days=1)
        end = min(max(end, until), w.end_ts)
        days = {first + dt.timedelta(days=i) for i in range((end - first).days)}
        days |= {_ts(d) for d in m.pending if first <= _ts(d) < w.end_ts}
        days = sorted(days)
        day_fp = (self._day_fingerprints(compiler, days[0], days[-1] + dt.timedelta(days=1))
                  if days else {})
        now = {d.isoformat(): {**day_fp.get(d.isoformat(), zero),
                               **{f"units_{k}": v for k, v in ufp(d + dt.timedelta(days=1))
                                  .items()}} for d in days}
        stale = [d for d in days if m.pending.get(d.isoformat()) != now[d.isoformat()]]
        units = self._sql(compiler.units())
        # The users whose row of `unit_table` changes: those of the re-aggregated days (their
        # rows before and after) and the units whose exposure changed (per day of exposure).
        incremental = not rebuild and "unit_table" in self._tables() and m.unit_days is not None
        in_days = ", ".join(f"TIMESTAMP '{d.isoformat(sep=' ')}'" for d in stale)
        touched = f"{ALIAS}._wb_touched"
        fresh = True  # the re-aggregated days had no rows before (a new day, the usual case)
        if incremental:
            self.con.raw_sql(f"CREATE OR REPLACE TABLE {touched} AS SELECT user_id FROM "
                             f"{ALIAS}.settled LIMIT 0")
            if stale:
                old = f"SELECT user_id FROM {ALIAS}.pending WHERE day IN ({in_days})"
                fresh = self.con.raw_sql(f"SELECT count(*) FROM ({old})").fetchone()[0] == 0
                if not fresh:
                    self.con.raw_sql(f"INSERT INTO {touched} {old}")
        if stale:
            self._aggregate_days(compiler, stale, m.columns, cumulated, current=incremental)
        if incremental:
            during = bool(stale) and min(stale) >= w.start_ts  # no pre-period event in them
            fixed = pre if during else set()
            self._update_unit_table(units, m, in_days if stale else "", fresh, unit_days,
                                    touched, fixed)
        else:
            self.con.raw_sql(f"CREATE OR REPLACE TABLE {ALIAS}.unit_table AS "
                             + self._unit_rows(units, m.columns))
        m.unit_days = unit_days
        m.pending = now
        if not rebuild and until > old_until:
            # The days that leave the lookback are settled: their fingerprints join that of the
            # settled events; their rows stay in `pending` (summed into `unit_table` already; the
            # per-day series reads those of the experiment's days), no row is moved.
            if self.verify == "rows":
                for d in days:
                    if d < until:
                        m.fingerprint = {k: m.fingerprint.get(k, 0) + now[d.isoformat()][k]
                                         for k in zero}
        m.pending = {d: v for d, v in m.pending.items() if _ts(d) >= until}
        m.units_fingerprint = ufp(until)
        m.settled_until = until.isoformat()
        m.watermark = watermark.isoformat()
        m.runs += 1
        if rebuild:
            m.rebuilt_at_run, m.reason = m.runs, reason
        return stale, end

    def _require(self, keys) -> None:
        """A :class:`SourceError` naming the first aggregate ``keys`` holds that the state does
        not (the state was made for other metrics)."""
        missing = [repr(k) for k in keys if repr(k) not in self.manifest.columns]
        if missing:
            raise SourceError(f"incremental state {self.path} holds no aggregate {missing[0]}: "
                              "update it with these metrics first")

    def per_day(self, compiler, keys: dict):
        """The per-user x day (``user_id, day``) aggregates ``keys`` (column -> aggregate key
        ``(Aggregate, 'during', window_days)``) of the experiment's days and their cumulative
        values (``cum_<column>``), from ``pending``: the per-day series' increments, no event
        read, no window taken."""
        m = self.manifest
        self._require(keys.values())
        p = self.con.table("pending", database=ALIAS)
        p = p.filter(p.day >= compiler.window.start_ts)
        cols = {n: m.columns[repr(k)] for n, k in keys.items()}
        return p.select("user_id", day=p.day.date(),
                        **{n: p[c].cast("float64").fill_null(0.0) for n, c in cols.items()},
                        **{f"cum_{n}": p[f"c_{c}"].fill_null(0.0) for n, c in cols.items()})

    def per_unit(self, compiler, e):
        """The per-unit aggregates of ``compiler`` (any subset of the state's metrics).

        Without ``distinct`` aggregations: ``unit_table`` itself (the units with their
        ``variant`` and ``assigned_at`` and the aggregates), read by the compiler as its unit
        table. Else ``settled`` plus the ``pending`` days, and the distinct counts from its
        joined events ``e`` (the compiler joins them to the units)."""
        import ibis

        m = self.manifest
        aggs, source = compiler.unit_aggregates(e)
        keys = {source[k]: k for k in source if len(k) == 3}
        self._require(k for k in keys.values() if _additive(k))
        add = [n for n, k in keys.items() if _additive(k)]
        rest = [n for n in keys if n not in add]
        if not rest:
            u = self.con.table("unit_table", database=ALIAS)
            return u.select("user_id", "variant", "assigned_at",
                            **{n: u[m.columns[repr(keys[n])]] for n in add})
        s = self.con.table("settled", database=ALIAS)
        s = s.select(s_uid=s.user_id, **{f"s_{n}": s[m.columns[repr(keys[n])]] for n in add})
        p = self.con.table("pending", database=ALIAS)
        p = p.group_by("user_id").aggregate(
            **{f"t_{n}": p[m.columns[repr(keys[n])]].sum() for n in add})
        j = s.outer_join(p, s.s_uid == p.user_id)
        out = j.select(user_id=ibis.coalesce(j.s_uid, j.user_id),
                       **{n: ibis.coalesce(j[f"s_{n}"] + j[f"t_{n}"], j[f"s_{n}"], j[f"t_{n}"])
                          for n in add})
        # distinct counts: from all events
        full = e.group_by(f_uid=e.user_id).aggregate(**{n: aggs[n] for n in rest})
        out = out.view()
        return out.outer_join(full, out.user_id == full.f_uid).select(
            user_id=out.user_id.fill_null(full.f_uid), **{n: out[n] for n in add},
            **{n: full[n] for n in rest})


def attach(compiler, path: str | os.PathLike, *, lookback_days: int = 2, verify: str = "rows",
           as_of: Any = None) -> Update:
    """Update the state at ``path`` and make ``compiler`` read its per-unit aggregates.

    Returns the :class:`Update` (rebuilt or not, and why; the events scanned).
    """
    if as_of is not None:
        import pandas as pd

        as_of = pd.Timestamp(as_of).to_pydatetime()
    return IncrementalState(path, lookback_days, verify).update(compiler, as_of=as_of)
