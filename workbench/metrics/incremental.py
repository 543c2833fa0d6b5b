"""Incremental readouts: per-unit running aggregates kept in a state file, updated each run with
the events that arrived since the last one.

The state is a local DuckDB file ATTACHed to the source's DuckDB session: the source stays
read-only and untouched (a team's warehouse often is), nothing is copied out of the engine (the
per-unit table, about one row per user, is written by the same DuckDB that reads the events), and
the file is small (1M users: ~100 MB). Tables of the state:

- ``settled``: one row per user with events in the settled region ``[pre_start, settled_until)``:
  ``user_id`` and one column per additive aggregate of the metrics (``count``, ``any``, ``sum``),
  taken with the user's exposure at the time the day was settled (a user who was no unit then
  has no 'during' events there).
- ``pending``: the days after the settled region (the lookback days and the newest day), one
  row per day x user with the same columns, each day kept with the fingerprints of its events
  and of the units exposed before its end (in the manifest).
- ``manifest``: one JSON row (:class:`Manifest`): definitions hash (the aggregates held),
  experiment and window, lookback, ``settled_until``, watermark, the fingerprint of the settled
  events, that of the units exposed before ``settled_until`` and those of the pending days.

This run's units are a temporary table of the session (computed once, read by every query).

Each run checks the fingerprint of each day from ``settled_until`` on (one scan of those days'
two columns) and re-aggregates from the events only the days whose events or exposures changed
(the newest day, a day that received late events; an event arriving up to ``lookback_days``
after its day is counted); the other pending days' rows are reused. The days that leave the
lookback move from ``pending`` to ``settled`` in place (a sum per user of their pending rows, an
UPDATE of the users already settled and an INSERT of the others: no event is read again and the
table is never rewritten); a run's writes are one transaction of the state file (one commit; a
run that fails half-way leaves the state as it was). The compiler reads the per-unit aggregates
as ``settled + pending`` (:attr:`MetricCompiler.per_unit`; its unit table made from them once
per run). Caps, CUPED, covariates, quantiles and segments are then computed from the per-unit
values as in a full recompute, so the statistics are the same (to float rounding).

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
day; units exposed before a time: count and the sum of ``hash(user_id, assigned_at)`` mod
``2^31 - 1`` (a day's aggregates depend only on the exposures before its end).

``distinct`` aggregations do not add over days: they are recomputed from all events each run.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import ParameterError, SourceError

VERSION = 2  # 2: pending days, settled updated in place (no assigned_at), units fingerprints
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
    """The aggregate keys ``(Aggregate, period, days)`` of the compiler's metrics, in order."""
    _, source = compiler.unit_aggregates(compiler._joined_events())
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
            return Manifest(**json.loads(row[0]))
        except (TypeError, ValueError):
            return None

    def _write_manifest(self, m: Manifest) -> None:
        body = json.dumps(asdict(m)).replace("'", "''")
        self.con.raw_sql(f"CREATE OR REPLACE TABLE {ALIAS}.manifest AS SELECT '{body}' AS body")

    # -- pieces ----------------------------------------------------------------------------
    def _fingerprint_sql(self, compiler, lo: dt.datetime, hi: dt.datetime, by: str = "") -> str:
        """The query of the fingerprint of the events of ``[lo, hi)``: row count and exact
        sums (DuckDB's HUGEINT) of ``user_id`` and ``event_time`` in microseconds, a scan of
        those two columns; ``by``: an expression to group by."""
        e = compiler.events
        f = self._sql(e.filter((e.event_time >= lo) & (e.event_time < hi))
                      .select("user_id", "event_time"))
        uid = "user_id" if e.user_id.type().is_integer() else f"hash(user_id) % {_PRIME}"
        group = f" GROUP BY {by}" if by else ""
        return (f"SELECT {by + ', ' if by else ''}count(*), sum({uid}), "
                f"sum(epoch_us(event_time)) FROM ({f}){group}")

    def _fingerprint(self, compiler, lo: dt.datetime, hi: dt.datetime) -> dict[str, int]:
        """Fingerprint ``{n, u, t}`` of the events of ``[lo, hi)``."""
        got = self.con.raw_sql(self._fingerprint_sql(compiler, lo, hi)).fetchone()
        return {k: int(v or 0) for k, v in zip("nut", got)}

    def _day_fingerprints(self, compiler, lo: dt.datetime, hi: dt.datetime) -> dict:
        """The fingerprint of each day of ``[lo, hi)`` that has events, in one scan."""
        rows = self.con.raw_sql(self._fingerprint_sql(
            compiler, lo, hi, by="date_trunc('day', event_time)")).fetchall()
        return {_midnight(r[0]).isoformat(): dict(zip("nut", map(int, r[1:]))) for r in rows}

    def _units_fingerprints(self, units: str):
        """A function ``before -> {n, h}``: count and sum of ``hash(user_id, assigned_at)``
        mod ``2^31 - 1`` of the units exposed before midnight ``before`` (the aggregates of a
        day, settled or pending, depend on the exposures before its end only). One query."""
        rows = self.con.raw_sql(
            f"SELECT date_trunc('day', assigned_at), count(*), "
            f"sum(hash(user_id, assigned_at) % {_PRIME}) FROM {units} GROUP BY 1").fetchall()
        rows = [(_midnight(r[0]), int(r[1]), int(r[2])) for r in rows if r[0] is not None]

        def before(t: dt.datetime) -> dict[str, int]:
            return {"n": sum(r[1] for r in rows if r[0] < t),
                    "h": sum(r[2] for r in rows if r[0] < t)}
        return before

    def _watermark(self, compiler, lo: dt.datetime) -> dt.datetime | None:
        e = compiler.events
        f = e.filter(e.event_time >= lo)
        v = f.aggregate(t=f.event_time.max()).execute()["t"].iloc[0]
        import pandas as pd

        return None if pd.isna(v) else pd.Timestamp(v).to_pydatetime()

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

    def _settle(self, compiler, lo, hi, columns: dict[str, str]) -> None:
        """A new ``settled`` table: the per-user aggregates of the events of ``[lo, hi)``."""
        cols = list(columns.values())
        inc = self._sql(self._aggregates(compiler, self._events_in(compiler, lo, hi), columns))
        self.con.raw_sql(f"CREATE OR REPLACE TABLE {ALIAS}.settled AS "
                         f"SELECT user_id, {', '.join(cols)} FROM ({inc})")
        self.con.raw_sql(f"CREATE OR REPLACE TABLE {ALIAS}.pending AS SELECT "
                         f"CAST(NULL AS TIMESTAMP) AS day, * FROM {ALIAS}.settled LIMIT 0")

    def _aggregate_days(self, compiler, days: list[dt.datetime], columns: dict[str, str]):
        """Replace the ``pending`` rows of ``days`` with their per-user aggregates from the
        events (one query over the days' events)."""
        cols = list(columns.values())
        day_list = ", ".join(f"TIMESTAMP '{d.isoformat(sep=' ')}'" for d in days)
        self.con.raw_sql(f"DELETE FROM {ALIAS}.pending WHERE day IN ({day_list})")
        e = self._events_in(compiler, min(days), max(days) + dt.timedelta(days=1))
        e = e.mutate(_wb_day=e.event_time.truncate("D").cast("timestamp"))
        e = e.filter(e._wb_day.isin(days))
        inc = self._sql(self._aggregates(compiler, e, columns, by=("_wb_day",)))
        self.con.raw_sql(f"INSERT INTO {ALIAS}.pending (day, user_id, {', '.join(cols)}) "
                         f"SELECT _wb_day, user_id, {', '.join(cols)} FROM ({inc})")

    def _move_to_settled(self, until: dt.datetime, columns: dict[str, str]) -> None:
        """Add the ``pending`` days before ``until`` to ``settled`` in place (UPDATE of the
        users already there, INSERT of the others) and drop them from ``pending``: no event
        is read again."""
        cols = list(columns.values())
        at = f"TIMESTAMP '{until.isoformat(sep=' ')}'"
        sums = ", ".join(f"sum({c}) AS {c}" for c in cols)
        delta = (f"(SELECT user_id, {sums} FROM {ALIAS}.pending WHERE day < {at} "
                 "GROUP BY user_id)")
        add = ", ".join(f"{c} = coalesce(s.{c} + d.{c}, s.{c}, d.{c})" for c in cols)
        self.con.raw_sql(f"UPDATE {ALIAS}.settled AS s SET {add} FROM {delta} AS d "
                         "WHERE s.user_id = d.user_id")
        self.con.raw_sql(f"INSERT INTO {ALIAS}.settled (user_id, {', '.join(cols)}) "
                         f"SELECT user_id, {', '.join(cols)} FROM {delta} AS d WHERE NOT EXISTS "
                         f"(SELECT 1 FROM {ALIAS}.settled s WHERE s.user_id = d.user_id)")
        self.con.raw_sql(f"DELETE FROM {ALIAS}.pending WHERE day < {at}")

    # -- the run ---------------------------------------------------------------------------
    def update(self, compiler, as_of: dt.datetime | None = None) -> Update:
        """Bring the state up to date with the compiler's events and set
        ``compiler.per_unit`` so its statistics read the state.

        ``as_of``: the newest event time to settle against (default: the newest event).
        """
        import uuid

        self._attach(compiler)
        # The units, computed once per run into a temporary table (every query below and the
        # statistics read it).
        name = f"_wb_inc_units_{uuid.uuid4().hex[:12]}"
        units = compiler.window.units(compiler.assignments, compiler.exclude_crossovers)
        self.con.raw_sql(f"CREATE TEMP TABLE {name} AS {self._sql(units)}")
        compiler._units = self.con.table(name, database=("temp", "main"))
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
        if not reason and self.verify == "rows":
            got = self._fingerprint(compiler, pre_start, _ts(m.settled_until))
            if got != m.fingerprint:
                reason = ("the settled events changed (an event later than the lookback, or "
                          "a changed or deleted one)")
        ufp = self._units_fingerprints(name)
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
        # Every write of this run in one transaction of the state file: one commit, and a run
        # that fails half-way leaves the state as it was.
        self.con.raw_sql("BEGIN TRANSACTION")
        try:
            stale, end = self._write(compiler, m, ufp, rebuild, reason, old_until, until,
                                     watermark)
        except BaseException:
            self.con.raw_sql("ROLLBACK")
            raise
        self.con.raw_sql("COMMIT")
        self.manifest = m
        compiler.per_unit = self.per_unit
        scanned = old_until if rebuild else (min(stale) if stale else end)
        return Update(str(self.path), rebuild, reason, until, scanned, watermark)

    def _write(self, compiler, m: Manifest, ufp, rebuild: bool, reason: str,
               old_until: dt.datetime, until: dt.datetime, watermark: dt.datetime):
        """The state's writes of one run (see :meth:`update`); returns the days aggregated
        from the events and the end of the pending days."""
        w = compiler.window
        zero = {"n": 0, "u": 0, "t": 0}
        if rebuild:
            self._settle(compiler, old_until, until, m.columns)
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
        if stale:
            self._aggregate_days(compiler, stale, m.columns)
        m.pending = now
        if not rebuild and until > old_until:
            self._move_to_settled(until, m.columns)
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
        self._write_manifest(m)
        for t in ("current", "units"):  # tables of version 1, now temporary or not kept
            self.con.raw_sql(f"DROP TABLE IF EXISTS {ALIAS}.{t}")
        return stale, end

    def per_unit(self, compiler, e):
        """The per-unit aggregates of ``compiler`` (any subset of the state's metrics):
        ``settled`` plus the ``pending`` days (an expression over the state: the compiler makes
        its unit table from it once); distinct counts from its joined events ``e``."""
        import ibis

        m = self.manifest
        aggs, source = compiler.unit_aggregates(e)
        keys = {source[k]: k for k in source if len(k) == 3}
        missing = [repr(k) for k in keys.values() if _additive(k) and repr(k) not in m.columns]
        if missing:
            raise SourceError(f"incremental state {self.path} holds no aggregate {missing[0]}: "
                              "update it with these metrics first")
        add = [n for n, k in keys.items() if _additive(k)]
        s = self.con.table("settled", database=ALIAS)
        s = s.select(s_uid=s.user_id, **{f"s_{n}": s[m.columns[repr(keys[n])]] for n in add})
        p = self.con.table("pending", database=ALIAS)
        p = p.group_by("user_id").aggregate(
            **{f"t_{n}": p[m.columns[repr(keys[n])]].sum() for n in add})
        j = s.outer_join(p, s.s_uid == p.user_id)
        out = j.select(user_id=ibis.coalesce(j.s_uid, j.user_id),
                       **{n: ibis.coalesce(j[f"s_{n}"] + j[f"t_{n}"], j[f"s_{n}"], j[f"t_{n}"])
                          for n in add})
        rest = [n for n in keys if n not in add]
        if rest:  # distinct counts: from all events
            full = e.group_by(f_uid=e.user_id).aggregate(**{n: aggs[n] for n in rest})
            out = out.view()
            out = out.outer_join(full, out.user_id == full.f_uid).select(
                user_id=out.user_id.fill_null(full.f_uid), **{n: out[n] for n in add},
                **{n: full[n] for n in rest})
        return out


def attach(compiler, path: str | os.PathLike, *, lookback_days: int = 2, verify: str = "rows",
           as_of: Any = None) -> Update:
    """Update the state at ``path`` and make ``compiler`` read its per-unit aggregates.

    Returns the :class:`Update` (rebuilt or not, and why; the events scanned).
    """
    if as_of is not None:
        import pandas as pd

        as_of = pd.Timestamp(as_of).to_pydatetime()
    return IncrementalState(path, lookback_days, verify).update(compiler, as_of=as_of)
