"""Incremental readouts: per-unit running aggregates kept in a state file, updated each run with
the events that arrived since the last one.

The state is a local DuckDB file ATTACHed to the source's DuckDB session: the source stays
read-only and untouched (a team's warehouse often is), nothing is copied out of the engine (the
per-unit table, about one row per user, is written by the same DuckDB that reads the events), and
the file is small (1M users: ~100 MB). Tables of the state:

- ``settled``: one row per user with events in the settled region ``[pre_start, settled_until)``
  (or a unit of the experiment): ``user_id, assigned_at`` (the exposure the aggregates were taken
  with) and one column per additive aggregate of the metrics (``count``, ``any``, ``sum``).
- ``current``: this run's per-user aggregates, ``settled`` plus the tail.
- ``units``: this run's units of the experiment (computed once, read by every query).
- ``manifest``: one JSON row (:class:`Manifest`): definitions hash (the aggregates held),
  experiment and window, lookback, ``settled_until``, watermark and the fingerprint of the
  settled events.

Each run re-aggregates the tail ``[settled_until, end)`` from the events (the newest day plus the
``lookback_days`` before it, so an event arriving up to ``lookback_days`` late is counted), moves
the days that leave the lookback into ``settled`` (a sum per user), and the compiler reads the
per-unit aggregates as ``settled + tail`` (:attr:`MetricCompiler.per_unit`). Caps, CUPED,
covariates, quantiles and segments are then computed from the per-unit values as in a full
recompute, so the statistics are the same (to float rounding).

Rebuild rule: the state is rebuilt from all events when there is no state, or the aggregates of
the metrics (definitions hash), the experiment, its dates, ``exclude_crossovers`` or the lookback
differ from the manifest, or the fingerprint of the settled events differs (an event that arrived
later than the lookback, or was changed or deleted), or a unit's exposure time differs from the
one its settled aggregates were taken with (a late or changed assignment). With ``verify="none"``
the fingerprint is not checked and events later than the lookback are missed.

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

VERSION = 1
ALIAS = "wb_incremental"
VERIFY = ("rows", "none")
_PRIME = 2147483647  # hashes are summed modulo-reduced, so the sums stay exact in int64


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
    scanned_from: dt.datetime  # events at or after this time were aggregated by this run
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
        Check the fingerprint of the settled events each run (row count and sums of row hashes
        of ``user_id`` and ``event_time``: a late, deleted or moved event is detected; a scan
        of those two columns of the settled events, no join), or not.
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
        if "manifest" not in self._tables() or "settled" not in self._tables():
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
    def _fingerprint(self, compiler, lo: dt.datetime, hi: dt.datetime) -> dict[str, int]:
        e = compiler.events
        f = e.filter((e.event_time >= lo) & (e.event_time < hi))
        got = f.aggregate(n=f.count(), u=(f.user_id.hash() % _PRIME).sum(),
                          t=(f.event_time.hash() % _PRIME).sum()).execute().iloc[0]
        return {k: int(0 if v != v or v is None else v) for k, v in got.items()}

    def _watermark(self, compiler, lo: dt.datetime) -> dt.datetime | None:
        e = compiler.events
        f = e.filter(e.event_time >= lo)
        v = f.aggregate(t=f.event_time.max()).execute()["t"].iloc[0]
        import pandas as pd

        return None if pd.isna(v) else pd.Timestamp(v).to_pydatetime()

    def _stale_units(self, compiler, settled_until: dt.datetime) -> int:
        """Units whose exposure differs from the one their settled aggregates were taken with,
        where that matters (exposed before ``settled_until``, or aggregated with another)."""
        u = compiler.units()
        s = self.con.table("settled", database=ALIAS)
        s = s.select(s_uid=s.user_id, s_old=s.assigned_at)
        j = u.left_join(s, u.user_id == s.s_uid)
        old, new = j.s_old, j.assigned_at
        bad = (((new < settled_until) & (old.isnull() | (old != new)))
               | (old.notnull() & (old != new)))
        return int(j.filter(bad).count().execute())

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

    def _aggregates(self, compiler, e, columns: dict[str, str]):
        """Per-user additive aggregates of events ``e`` under the state's column names."""
        aggs, source = compiler.unit_aggregates(e)
        named = {columns[repr(k)]: aggs[source[k]].cast("float64")
                 for k in source if len(k) == 3 and _additive(k)}
        return e.group_by("user_id").aggregate(**named)

    def _settle(self, compiler, lo, hi, columns: dict[str, str], fresh: bool) -> None:
        cols = list(columns.values())
        inc = self._sql(self._aggregates(compiler, self._events_in(compiler, lo, hi), columns))
        units = self._sql(compiler.units().select("user_id", "assigned_at"))
        old = ("" if fresh else
               f"SELECT user_id, {', '.join(cols)} FROM {ALIAS}.settled UNION ALL ")
        sums = ", ".join(f"sum({c}) AS {c}" for c in cols)
        pick = ", ".join(f"a.{c}" for c in cols)
        # the exposure the aggregates were taken with: the unit's now, else the one before
        at, join = "u.assigned_at", ""
        if not fresh:
            at = "coalesce(u.assigned_at, o.assigned_at)"
            join = (f"LEFT JOIN {ALIAS}.settled o "
                    "ON o.user_id = coalesce(a.user_id, u.user_id)")
        self.con.raw_sql(f"""
            CREATE OR REPLACE TABLE {ALIAS}.settled_new AS
            WITH a AS (SELECT user_id, {sums} FROM ({old} SELECT user_id, {', '.join(cols)}
                       FROM ({inc})) GROUP BY user_id),
                 u AS ({units})
            SELECT coalesce(a.user_id, u.user_id) AS user_id, {at} AS assigned_at, {pick}
            FROM a FULL OUTER JOIN u ON a.user_id = u.user_id {join}
        """)
        self.con.raw_sql(f"DROP TABLE IF EXISTS {ALIAS}.settled")
        self.con.raw_sql(f"ALTER TABLE {ALIAS}.settled_new RENAME TO settled")

    # -- the run ---------------------------------------------------------------------------
    def update(self, compiler, as_of: dt.datetime | None = None) -> Update:
        """Bring the state up to date with the compiler's events and set
        ``compiler.per_unit`` so its statistics read the state.

        ``as_of``: the newest event time to settle against (default: the newest event).
        """
        self._attach(compiler)
        # The units, computed once per run (every query below and the statistics read them).
        self.con.raw_sql(f"CREATE OR REPLACE TABLE {ALIAS}.units AS "
                         f"{self._sql(compiler.units())}")
        compiler._units = self.con.table("units", database=ALIAS)
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
        if not reason:
            stale = self._stale_units(compiler, _ts(m.settled_until))
            if stale:
                reason = f"{stale} units' exposure changed or arrived late"
        rebuild = bool(reason)
        if rebuild:
            columns = {repr(k): f"s{i}" for i, k in enumerate(k for k in keys if _additive(k))}
            old_until = pre_start
            runs = 0 if m is None else m.runs
            m = Manifest(**want, columns=columns, settled_until=pre_start.isoformat(),
                         watermark=pre_start.isoformat(), fingerprint={"n": 0, "u": 0, "t": 0},
                         runs=runs)
        old_until = _ts(m.settled_until)
        newest = as_of if as_of is not None else self._watermark(compiler, old_until)
        watermark = max(_ts(m.watermark), newest) if newest is not None else _ts(m.watermark)
        until = min(max(old_until, _midnight(watermark) - dt.timedelta(days=self.lookback_days)),
                    w.end_ts)
        if rebuild or until > old_until:
            self._settle(compiler, old_until, until, m.columns, fresh=rebuild)
            inc = (self._fingerprint(compiler, old_until, until) if self.verify == "rows"
                   else {"n": 0, "u": 0, "t": 0})
            m.fingerprint = {k: m.fingerprint.get(k, 0) + inc[k] for k in inc}
        m.settled_until = until.isoformat()
        m.watermark = watermark.isoformat()
        m.runs += 1
        if rebuild:
            m.rebuilt_at_run, m.reason = m.runs, reason
        self._write_manifest(m)
        self.manifest = m
        self._current(compiler, until, m.columns)
        compiler.per_unit = self.per_unit
        return Update(str(self.path), rebuild, reason, until, old_until, watermark)

    def _current(self, compiler, until: dt.datetime, columns: dict[str, str]) -> None:
        """Table ``current``: the settled sums plus the tail ``[until, end)`` re-aggregated
        from the events, per user, made once per run (caps and statistics both read it)."""
        e = compiler._joined_events()
        tail = self._sql(self._aggregates(compiler, e.filter(e.event_time >= until), columns))
        cols = list(columns.values())
        sums = ", ".join(f"sum({c}) AS {c}" for c in cols)
        self.con.raw_sql(f"""
            CREATE OR REPLACE TABLE {ALIAS}.current AS
            SELECT user_id, {sums} FROM (
                SELECT user_id, {', '.join(cols)} FROM {ALIAS}.settled UNION ALL
                SELECT user_id, {', '.join(cols)} FROM ({tail})) GROUP BY user_id""")

    def per_unit(self, compiler, e):
        """The per-unit aggregates of ``compiler`` (any subset of the state's metrics) over its
        joined events ``e``: table ``current`` (settled sums plus this run's tail)."""
        m = self.manifest
        aggs, source = compiler.unit_aggregates(e)
        keys = {source[k]: k for k in source if len(k) == 3}
        missing = [repr(k) for k in keys.values() if _additive(k) and repr(k) not in m.columns]
        if missing:
            raise SourceError(f"incremental state {self.path} holds no aggregate {missing[0]}: "
                              "update it with these metrics first")
        add = [n for n, k in keys.items() if _additive(k)]
        s = self.con.table("current", database=ALIAS)
        out = s.select("user_id", **{n: s[m.columns[repr(keys[n])]] for n in add})
        rest = [n for n in keys if n not in add]
        if rest:  # distinct counts: from all events
            full = e.group_by("user_id").aggregate(**{n: aggs[n] for n in rest})
            out = out.outer_join(full, out.user_id == full.user_id).select(
                user_id=out.user_id.fill_null(full.user_id), **{n: out[n] for n in add},
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
