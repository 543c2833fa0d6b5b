"""Incremental readouts (workbench.metrics.incremental) equal a full recompute.

Arrival is simulated: a working DuckDB file receives the generated sample's assignments and
events day by day (some events one day late, within the lookback; one batch six days late; one
assignment four days late), and after each day the incremental statistics are compared with a
full recompute of the same file by the metric compiler.
"""
from __future__ import annotations

import datetime as dt
import warnings

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from workbench.data.sample import generate
from workbench.errors import ParameterError
from workbench.metrics import incremental
from workbench.metrics.definition import SAMPLE_METRICS

EXPERIMENT = "checkout_redesign"
START = dt.datetime(2026, 10, 5)
REL = 1e-9


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("incremental") / "source.duckdb"
    generate(path, seed=11, n_users=3000, progress=False)
    return path


@pytest.fixture(scope="module")
def metrics_file(tmp_path_factory):
    """The sample's metrics (caps, CUPED, ratio, hurdle statistics) plus an attribution window,
    a distinct count and regression covariates."""
    spec = yaml.safe_load(open(SAMPLE_METRICS))
    spec["metrics"] += [
        {"name": "orders_3d", "kind": "mean", "event_type": "order", "aggregation": "count",
         "window_days": 3},
        {"name": "distinct_items", "kind": "mean", "event_type": "order",
         "aggregation": "distinct", "column": "items"},
        {"name": "sessions_adj", "kind": "mean", "event_type": "session",
         "aggregation": "count", "cuped": False,
         "covariates": ["sessions_per_user", "revenue_per_user"]},
    ]
    path = tmp_path_factory.mktemp("metrics") / "metrics.yml"
    path.write_text(yaml.safe_dump(spec))
    return path


class Arrival:
    """A working warehouse that receives the source's rows day by day."""

    def __init__(self, source, path):
        self.source, self.path, self.cutoff = source, path, None
        with duckdb.connect(str(path)) as con:
            con.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
            for t in ("users", "experiments"):
                con.execute(f"CREATE TABLE {t} AS SELECT * FROM src.{t}")
            for t in ("assignments", "events"):
                con.execute(f"CREATE TABLE {t} AS SELECT * FROM src.{t} LIMIT 0")

    def add(self, table: str, where: str) -> int:
        with duckdb.connect(str(self.path)) as con:
            con.execute(f"ATTACH '{self.source}' AS src (READ_ONLY)")
            n = con.execute(f"SELECT count(*) FROM src.{table} WHERE {where}").fetchone()[0]
            con.execute(f"INSERT INTO {table} SELECT * FROM src.{table} WHERE {where}")
        return n

    def day(self, cutoff: dt.datetime, held: str = "FALSE", held_users: str = "FALSE"):
        """Rows before ``cutoff`` not yet copied, except the ``held`` events and the
        assignments of ``held_users``."""
        lo = f"'{self.cutoff}'" if self.cutoff else "'1900-01-01'"
        self.add("events", f"event_time >= {lo} AND event_time < '{cutoff}' AND NOT ({held})")
        self.add("assignments", f"assigned_at >= {lo} AND assigned_at < '{cutoff}' "
                 f"AND NOT ({held_users})")
        self.cutoff = cutoff


def _open(path, metrics, **kw):
    import workbench as wb

    return wb.Experiment.from_source(path, EXPERIMENT, metrics, **kw)


def _full(path, metrics, **kw):
    exp = _open(path, metrics, **kw)
    try:
        return exp.compiler.sufficient_stats()
    finally:
        exp.con.disconnect()


def _both(path, metrics, state):
    """The incremental statistics, the full recompute of the same experiment (the compiler
    without the state) and the update. The metrics without ``distinct`` aggregations (read
    from the state's ``unit_table``; with one, the compiler joins ``settled`` + ``pending`` to
    the units) and the per-day series (from the state's rows per day) are compared here."""
    from dataclasses import replace

    exp = _open(path, metrics, incremental=state)
    try:
        c = exp.compiler
        additive = [m for m in c.metrics if all(a.aggregation != "distinct" for _, a, _ in m.parts)]
        if len(additive) < len(c.metrics):
            _assert_equal(replace(c, per_unit=None, metrics=additive).sufficient_stats(),
                          c.with_metrics(additive).sufficient_stats())
        full = replace(c, per_unit=None).sufficient_stats()
        # the per-day series from the state's rows per day, against the events
        _assert_equal(replace(c, per_unit=None, per_day=None).daily_stats(), c.daily_stats())
        return c.sufficient_stats(), full, exp.incremental
    finally:
        exp.con.disconnect()


def _assert_equal(full: pd.DataFrame, inc: pd.DataFrame):
    assert list(full.columns) == list(inc.columns)
    text = [c for c in full.columns if not pd.api.types.is_numeric_dtype(full[c])]
    pd.testing.assert_frame_equal(full[text], inc[text])
    num = [c for c in full.columns if c not in text]
    a, b = full[num].to_numpy(float), inc[num].to_numpy(float)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(a)
    np.testing.assert_allclose(b[ok], a[ok], rtol=REL, atol=0)


def _scenario(source, metrics_file, tmp_path, days: int, definitions: int = 99,
              too_late: int = 99, late_assignment: int = 99) -> dict:
    """Daily runs (lookback 2) over ``days`` days: a tenth of each day's events arrive one day
    late (within the lookback); the metric definitions change on day ``definitions``; events of
    the pre-period held back since the start arrive on day ``too_late`` (later than the
    lookback: the fingerprint detects them); the assignments of some units exposed early arrive
    on day ``late_assignment``. Every day the statistics equal a full recompute."""
    work, state = tmp_path / "work.duckdb", tmp_path / "state.duckdb"
    arrival = Arrival(source, work)
    pre = START - dt.timedelta(days=14)
    held_pre = (f"event_time >= '{pre + dt.timedelta(days=3)}' AND "
                f"event_time < '{pre + dt.timedelta(days=4)}' AND user_id % 7 = 0")
    arrival.day(START, held=held_pre)
    late_user = (f"user_id % 97 = 5 AND assigned_at < "
                 f"'{START + dt.timedelta(days=late_assignment - 4)}'")
    spec = yaml.safe_load(open(metrics_file))
    for m in spec["metrics"]:
        if m["name"] == "sessions_adj":
            m["event_type"] = "add_to_cart"  # counted over add_to_cart instead
    changed = tmp_path / "changed.yml"
    changed.write_text(yaml.safe_dump(spec))
    reasons = {}
    for d in range(1, days + 1):
        cutoff = START + dt.timedelta(days=d)
        arrival.add("events", f"event_time >= '{cutoff - dt.timedelta(days=2)}' AND "
                    f"event_time < '{cutoff - dt.timedelta(days=1)}' AND user_id % 10 = 3")
        arrival.day(cutoff, held=f"event_time >= '{cutoff - dt.timedelta(days=1)}' "
                    "AND user_id % 10 = 3",
                    held_users=late_user if d < late_assignment else "FALSE")
        if d == late_assignment:
            arrival.add("assignments", late_user)
        if d == too_late:
            arrival.add("events", held_pre)
        metrics = changed if d >= definitions else metrics_file
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inc, full, update = _both(work, metrics, state)
        _assert_equal(full, inc)
        reasons[d] = update.reason if update.rebuilt else ""
        if not update.rebuilt:  # this run read the events of the newest day and of the day
            # before it (late events arrived for it) only: the other days' rows were kept
            assert update.scanned_from == cutoff - dt.timedelta(days=2)
    assert reasons[1] == "no state"
    assert "definitions_hash" in reasons.get(definitions, "definitions_hash")
    assert "settled events changed" in reasons.get(too_late, "settled events changed")
    assert "exposure" in reasons.get(late_assignment, "exposure")
    others = set(range(2, days + 1)) - {definitions, too_late, late_assignment}
    assert not any(reasons[d] for d in others), reasons
    return reasons


def test_next_days_equal_full_recompute(source, metrics_file, tmp_path):
    """Two daily runs, late events within the lookback (the slow tests add the rebuilds)."""
    _scenario(source, metrics_file, tmp_path, days=2)


@pytest.mark.slow
def test_daily_runs_equal_full_recompute(source, metrics_file, tmp_path):
    """Six daily runs: a definitions change, late events beyond the lookback, a late
    assignment (each rebuilds), late events within the lookback (no rebuild)."""
    _scenario(source, metrics_file, tmp_path, days=6, definitions=2, too_late=3,
              late_assignment=5)


@pytest.mark.slow
def test_fourteen_daily_runs_equal_full_recompute(source, metrics_file, tmp_path):
    """The whole 14-day experiment, day by day."""
    _scenario(source, metrics_file, tmp_path, days=14, definitions=11, too_late=9,
              late_assignment=6)


@pytest.mark.slow
def test_dates_change_rebuilds_and_missed_late_events_without_verify(source, tmp_path):
    """A change of the end date rebuilds; with verify='none' an event later than the lookback
    is missed (documented), so the statistics differ from a full recompute by exactly it."""
    work, state = tmp_path / "work.duckdb", tmp_path / "state.duckdb"
    arrival = Arrival(source, work)
    arrival.day(START + dt.timedelta(days=5),
                held=f"event_time >= '{START + dt.timedelta(days=1)}' AND event_time < "
                     f"'{START + dt.timedelta(days=2)}' AND event_type = 'order'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = _open(work, None)
        first = incremental.attach(exp.compiler, state, verify="none")
        exp.con.disconnect()
        assert first.rebuilt
        arrival.add("events", f"event_time >= '{START + dt.timedelta(days=1)}' AND event_time"
                    f" < '{START + dt.timedelta(days=2)}' AND event_type = 'order'")
        exp = _open(work, None)
        again = incremental.attach(exp.compiler, state, verify="none")
        inc = exp.compiler.sufficient_stats()
        exp.con.disconnect()
        full = _full(work, None)
        assert not again.rebuilt
        orders = full["metric"] == "orders_per_user"
        with duckdb.connect(str(work), read_only=True) as con:  # the missed orders, by hand
            missed = con.execute(
                "SELECT count(*) FROM events e JOIN (SELECT user_id, min(assigned_at) t FROM "
                "assignments GROUP BY 1) a USING (user_id) WHERE e.event_type = 'order' AND "
                f"e.event_time >= a.t AND e.event_time >= '{START + dt.timedelta(days=1)}' "
                f"AND e.event_time < '{START + dt.timedelta(days=2)}'").fetchone()[0]
        assert missed > 0
        assert full.loc[orders, "sum"].sum() - inc.loc[orders, "sum"].sum() == missed
        # the default verify detects it
        exp = _open(work, None)
        checked = incremental.attach(exp.compiler, state)
        _assert_equal(full, exp.compiler.sufficient_stats())
        exp.con.disconnect()
        assert checked.rebuilt and "settled events" in checked.reason
        # another end date: rebuilt
        exp = _open(work, None, end_date="2026-10-17", incremental=state)
        assert exp.incremental.rebuilt and "end_date" in exp.incremental.reason
        _assert_equal(_full(work, None, end_date="2026-10-17"), exp.compiler.sufficient_stats())
        exp.con.disconnect()


@pytest.mark.slow
def test_readout_segments_and_cli(source, tmp_path, capsys):
    """The facade's segment statistics read the state too; the CLI takes --incremental."""
    from workbench.cli import main

    state = tmp_path / "state.duckdb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = _open(source, None, incremental=state)
        seg = exp.sufficient_stats(segments=["device"])
        assert any("incremental" in n for n in exp.notes)
        exp.con.disconnect()
        exp = _open(source, None)
        _assert_equal(exp.sufficient_stats(segments=["device"]), seg)
        exp.con.disconnect()
        code = main(["readout", "--source", str(source), "--experiment", EXPERIMENT,
                     "--incremental", str(state)])
    assert code in (0, 4)
    out = capsys.readouterr().out
    assert "note: incremental: state" in out and "updated" in out
    with duckdb.connect(str(state), read_only=True) as con:
        import json

        manifest = json.loads(con.execute("SELECT body FROM manifest").fetchone()[0])
    assert manifest["runs"] == 2 and manifest["lookback_days"] == 2
    assert manifest["settled_until"] == "2026-10-16T00:00:00"


def test_new_days_are_added_in_place_and_kept_per_day(source, metrics_file, tmp_path):
    """Days that arrive complete (no late events): each run aggregates the new day only and
    adds its rows to the units' rows in place; ``settled`` holds per user the pre-period days
    settled at the first run (the lookback's 2 days before the start are kept per day), and
    ``pending`` every later day so far, per user (the per-day series reads the experiment's).
    Every run equals a full recompute; a day without a run (day 4) is added with the next."""
    import json

    work, state = tmp_path / "work.duckdb", tmp_path / "state.duckdb"
    arrival = Arrival(source, work)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for before, d in zip((0, 1, 2, 3, 5), (1, 2, 3, 5, 6)):
            cutoff = START + dt.timedelta(days=d)
            arrival.day(cutoff)
            inc, full, update = _both(work, metrics_file, state)
            _assert_equal(full, inc)
            assert update.rebuilt == (d == 1)
            if d > 1:
                assert update.scanned_from == START + dt.timedelta(days=before)
            with duckdb.connect(str(state), read_only=True) as con:
                manifest = json.loads(con.execute("SELECT body FROM manifest").fetchone()[0])
                n_units = con.execute("SELECT count(*) FROM unit_table").fetchone()[0]
                days = [r[0] for r in con.execute(
                    "SELECT DISTINCT day FROM pending ORDER BY 1").fetchall()]
                settled = con.execute("SELECT count(*) FROM settled").fetchone()[0]
            with duckdb.connect(str(work), read_only=True) as con:  # by hand
                want = con.execute(
                    f"SELECT count(*) FROM (SELECT user_id FROM assignments WHERE experiment_id"
                    f" = '{EXPERIMENT}' GROUP BY 1 HAVING min(variant) = max(variant))"
                ).fetchone()[0]
                pre_users = con.execute(
                    "SELECT count(DISTINCT user_id) FROM events WHERE event_time >= "
                    f"'{START - dt.timedelta(days=14)}' AND event_time < "
                    f"'{START - dt.timedelta(days=2)}'").fetchone()[0]
            assert n_units == want
            assert days == [START + dt.timedelta(days=i) for i in range(-2, d)]
            assert settled == pre_users
            assert manifest["settled_until"] == (cutoff - dt.timedelta(days=3)).isoformat() \
                or d < 3


def test_crossovers_kept_in_their_first_variant(source, tmp_path):
    """With ``exclude_crossovers=False`` the state's units keep each crossover in the variant
    of its first exposure, as a full recompute does; a day later still equal."""
    from dataclasses import replace

    work, state = tmp_path / "work.duckdb", tmp_path / "state.duckdb"
    arrival = Arrival(source, work)
    lo = dt.datetime(1900, 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for d in (3, 4):
            cutoff = START + dt.timedelta(days=d)
            arrival.day(cutoff)
            hi = cutoff - dt.timedelta(hours=1)
            with duckdb.connect(str(work)) as con:  # some units also seen an hour later in
                # another variant (crossovers: the sample has none)
                con.execute(
                    "INSERT INTO assignments SELECT a.* REPLACE (CASE WHEN a.variant = v.lo "
                    "THEN v.hi ELSE v.lo END AS variant, a.assigned_at + INTERVAL 1 HOUR AS "
                    "assigned_at) FROM assignments a, (SELECT min(variant) lo, max(variant) hi "
                    f"FROM assignments) v WHERE a.user_id % 17 = 2 AND a.assigned_at >= '{lo}' "
                    f"AND a.assigned_at < '{hi}'")
                assert con.execute("SELECT count(*) FROM (SELECT user_id FROM assignments "
                                   "GROUP BY 1 HAVING min(variant) <> max(variant))"
                                   ).fetchone()[0] > 0
            lo = hi
            exp = _open(work, None, exclude_crossovers=False, incremental=state)
            try:
                c = exp.compiler
                _assert_equal(replace(c, per_unit=None).sufficient_stats(),
                              c.sufficient_stats())
                assert exp.incremental.rebuilt == (d == 3)
            finally:
                exp.con.disconnect()


def test_pending_days_reused_until_their_events_or_exposures_change(source, metrics_file,
                                                                     tmp_path):
    """The days of the lookback are fingerprinted per day (table ``pending``): a run with no
    new rows re-reads no event; assignments that arrive late for units exposed during those
    days re-aggregate those days only (no rebuild: the settled days do not depend on them);
    every run equals a full recompute."""
    work, state = tmp_path / "work.duckdb", tmp_path / "state.duckdb"
    arrival = Arrival(source, work)
    held = f"user_id % 13 = 4 AND assigned_at >= '{START + dt.timedelta(days=3)}'"
    arrival.day(START + dt.timedelta(days=5), held_users=held)
    end = START + dt.timedelta(days=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inc, full, first = _both(work, metrics_file, state)
        _assert_equal(full, inc)
        assert first.rebuilt and first.settled_until == START + dt.timedelta(days=2)
        inc, full, again = _both(work, metrics_file, state)
        _assert_equal(full, inc)
        assert not again.rebuilt and again.scanned_from == end  # nothing re-read
        assert arrival.add("assignments", held) > 0
        inc, full, late = _both(work, metrics_file, state)
        _assert_equal(full, inc)
        assert not late.rebuilt and late.scanned_from == START + dt.timedelta(days=3)
    with duckdb.connect(str(state), read_only=True) as con:
        import json

        manifest = json.loads(con.execute("SELECT body FROM manifest").fetchone()[0])
        days = [r[0] for r in con.execute("SELECT DISTINCT day FROM pending ORDER BY 1")
                .fetchall()]
    # every day of the experiment is kept per day; the lookback's are fingerprinted
    assert days == [START + dt.timedelta(days=d) for d in range(5)]
    assert sorted(manifest["pending"]) == [(START + dt.timedelta(days=d)).isoformat()
                                           for d in (2, 3, 4)]
    assert manifest["runs"] == 3 and manifest["rebuilt_at_run"] == 1


def test_a_run_that_fails_half_way_leaves_the_state_as_it_was(source, metrics_file, tmp_path,
                                                               monkeypatch):
    """The writes of a run are one transaction: a failure after ``settled`` was updated rolls
    them back, and the next run equals a full recompute."""
    work, state = tmp_path / "work.duckdb", tmp_path / "state.duckdb"
    arrival = Arrival(source, work)
    arrival.day(START + dt.timedelta(days=4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _both(work, metrics_file, state)

        def snapshot():
            with duckdb.connect(str(state), read_only=True) as con:
                return (con.execute("SELECT body FROM manifest").fetchone()[0],
                        con.execute("SELECT * FROM settled ORDER BY user_id").df(),
                        con.execute("SELECT * FROM pending ORDER BY day, user_id").df())

        before = snapshot()
        arrival.day(START + dt.timedelta(days=5))

        def boom(self, m):
            raise RuntimeError("disk full")

        monkeypatch.setattr(incremental.IncrementalState, "_write_manifest", boom)
        with pytest.raises(RuntimeError, match="disk full"):
            _open(work, metrics_file, incremental=state)
        monkeypatch.undo()
        after = snapshot()
        assert after[0] == before[0]
        pd.testing.assert_frame_equal(after[1], before[1])
        pd.testing.assert_frame_equal(after[2], before[2])
        inc, full, update = _both(work, metrics_file, state)
        _assert_equal(full, inc)
        assert not update.rebuilt


def test_bad_parameters(tmp_path):
    with pytest.raises(ParameterError, match="lookback_days"):
        incremental.IncrementalState(tmp_path / "s.duckdb", lookback_days=-1)
    with pytest.raises(ParameterError, match="verify"):
        incremental.IncrementalState(tmp_path / "s.duckdb", verify="maybe")


def test_metrics_the_state_does_not_hold_are_named(source, tmp_path):
    """A compiler reading the state with an aggregate the state was not made for: the unit
    table and the per-day series both name it instead of computing something else."""
    from dataclasses import replace

    from workbench.errors import SourceError
    from workbench.metrics import load_metrics

    exp = _open(source, None, incremental=tmp_path / "state.duckdb")
    try:
        other = load_metrics({"metrics": [{"name": "carts", "kind": "mean",
                                           "event_type": "add_to_cart"}]})
        c = replace(exp.compiler, metrics=other)  # still reading the state
        assert c.per_unit is not None and c.per_day is not None
        with pytest.raises(SourceError, match="holds no aggregate.*add_to_cart"):
            c.sufficient_stats()
        with pytest.raises(SourceError, match="holds no aggregate.*add_to_cart"):
            c.daily_stats()
    finally:
        exp.con.disconnect()
