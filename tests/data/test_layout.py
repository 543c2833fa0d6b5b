"""A source's tables conformed to the documented schema (workbench/data/layout.py)."""
from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd
import pytest

from workbench.data.layout import conform, source_table
from workbench.errors import SchemaError


def _tables():
    a = pd.DataFrame({"customer": [1, 2], "arm": [0, 1],
                      "seen": pd.to_datetime(["2026-01-01 09:00", "2026-01-01 10:00"])
                      .tz_localize("Europe/Paris")})
    e = pd.DataFrame({"customer": [1], "event_time": [dt.date(2026, 1, 2)],
                      "event_type": ["order"], "revenue": [3.0]})
    return {"assignments": ibis.memtable(a), "events": ibis.memtable(e), "users": None}


def test_your_columns_are_renamed_and_times_made_utc():
    mapping = {"user_id": "customer", "variant": "arm", "assigned_at": "seen"}
    out, notes = conform(_tables(), mapping, "exp")
    a = out["assignments"].execute().sort_values("user_id")
    assert list(a.user_id) == [1, 2] and list(a.variant) == ["0", "1"]  # variant read as text
    assert list(a.experiment_id) == ["exp", "exp"]  # filled in, and said
    # 09:00 in Paris (UTC+1 in January) is 08:00 UTC
    assert pd.Timestamp(a.assigned_at.iloc[0]) == pd.Timestamp("2026-01-01 08:00")
    e = out["events"].execute()
    assert pd.Timestamp(e.event_time.iloc[0]) == pd.Timestamp("2026-01-02 00:00")
    assert out["users"] is None
    assert any("time-zone aware" in n for n in notes) and any("holds dates" in n for n in notes)
    assert any("has no experiment_id column" in n for n in notes)


def test_a_mapping_that_names_nothing_or_clashes_is_an_error_naming_the_column():
    with pytest.raises(SchemaError, match="'nope' \\(for user_id\\)"):
        conform(_tables(), {"user_id": "nope"}, "exp")
    t = _tables()
    t["events"] = t["events"].mutate(user_id=t["events"].customer)
    with pytest.raises(SchemaError, match="both 'customer'"):
        conform(t, {"user_id": "customer"}, "exp")


def test_an_optional_table_that_is_absent_is_none(tmp_path):
    con = ibis.duckdb.connect()
    con.raw_sql("CREATE TABLE events AS SELECT 1 AS user_id")
    assert source_table(con, None, "users", required=False) is None
    assert source_table(con, None, "events").count().execute() == 1
    f = tmp_path / "u.csv"
    pd.DataFrame({"user_id": [1, 2]}).to_csv(f, index=False)
    assert source_table(con, str(f), "users").count().execute() == 2
