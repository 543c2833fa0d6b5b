"""The experiment window: its timestamps and the units it holds (crossovers handled)."""
from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd

from workbench.data.sources import execute
from workbench.metrics import ExperimentWindow

WINDOW = ExperimentWindow("e", dt.date(2026, 1, 10), dt.date(2026, 1, 12),
                          ("control", "treatment"), (0.5, 0.5))


def ts(day, hour=12):
    return dt.datetime(2026, 1, day, hour)


ASSIGNMENTS = ibis.memtable(pd.DataFrame([
    ("e", 1, "control", ts(10, 8)),
    ("e", 1, "control", ts(11, 8)),          # seen twice in one variant: first exposure counts
    ("e", 3, "treatment", ts(10, 8)),
    ("e", 5, "treatment", ts(11, 8)),        # crossover, first seen in control
    ("e", 5, "control", ts(10, 8)),
    ("other", 6, "control", ts(10, 8)),      # another experiment
], columns=["experiment_id", "user_id", "variant", "assigned_at"]))


def test_timestamps():
    assert WINDOW.start_ts == dt.datetime(2026, 1, 10)
    assert WINDOW.end_ts == dt.datetime(2026, 1, 13)       # exclusive: the day after end_date
    assert WINDOW.pre_start_ts(14) == dt.datetime(2025, 12, 27)


def test_units_exclude_crossovers_by_default():
    units = execute(WINDOW.units(ASSIGNMENTS)).set_index("user_id").sort_index()
    assert list(units.index) == [1, 3]
    assert units.loc[1, "variant"] == "control"
    assert units.loc[1, "assigned_at"] == pd.Timestamp(ts(10, 8))


def test_crossovers_can_be_kept_in_their_first_variant():
    units = execute(WINDOW.units(ASSIGNMENTS, exclude_crossovers=False)).set_index("user_id")
    assert sorted(units.index) == [1, 3, 5]
    assert units.loc[5, "variant"] == "control"
    assert units.loc[5, "assigned_at"] == pd.Timestamp(ts(10, 8))
