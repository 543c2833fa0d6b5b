"""Opening sources: DuckDB files (read-only by default), Ibis URLs, backends, files as tables;
failures are short SourceErrors naming what could not be opened."""
from __future__ import annotations

import duckdb
import ibis
import pandas as pd
import pytest

from workbench.data.sources import connect, execute, register_files, table
from workbench.errors import SourceError

EVENTS = pd.DataFrame({"user_id": [1, 2, 2], "event_type": ["session", "order", "order"],
                       "revenue": [None, 10.0, 32.5]})
ASSIGNMENTS = pd.DataFrame({"experiment_id": ["e"] * 3, "user_id": [1, 2, 3],
                            "variant": ["control", "treatment", "control"]})


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE events AS SELECT * FROM EVENTS")
        con.execute("CREATE TABLE assignments AS SELECT * FROM ASSIGNMENTS")
    return path


def test_a_duckdb_file_opens_read_only_by_default(warehouse):
    con = connect(warehouse)
    got = execute(table(con, "events").order_by("user_id"))
    pd.testing.assert_frame_equal(got, EVENTS, check_dtype=False)
    with pytest.raises(duckdb.Error, match="read-only"):
        con.raw_sql("CREATE TABLE t (x INTEGER)")
    con.disconnect()  # DuckDB opens a file one way at a time in a process
    writable = connect(str(warehouse), read_only=False)
    writable.raw_sql("CREATE TABLE t AS SELECT 1 AS x")
    assert execute(table(writable, "t"))["x"].tolist() == [1]


def test_the_default_source_is_the_settings_warehouse(warehouse, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_WAREHOUSE", str(warehouse))
    assert execute(table(connect(), "assignments").count()) == 3
    monkeypatch.setenv("WORKBENCH_WAREHOUSE", str(tmp_path / "none.duckdb"))
    with pytest.raises(SourceError, match="sample-data"):
        connect()


def test_urls_backends_and_memory(warehouse):
    url = connect(f"duckdb://{warehouse}?read_only=true")
    assert execute(table(url, "events").count()) == 3
    assert connect(url) is url                          # a backend is returned as is
    mem = connect(":memory:")
    assert isinstance(mem, ibis.backends.BaseBackend) and mem is not connect(":memory:")


def test_files_are_registered_as_tables(warehouse, tmp_path):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute(f"COPY assignments TO '{tmp_path / 'a.parquet'}' (FORMAT parquet)")
        con.execute(f"COPY events TO '{tmp_path / 'e.csv'}' (HEADER)")
    mem = register_files(connect(":memory:"), {"assignments": tmp_path / "a.parquet",
                                               "events": str(tmp_path / "e.csv")})
    assert execute(table(mem, "assignments").count()) == 3
    rev = execute(table(mem, "events").revenue.sum())
    assert rev == pytest.approx(EVENTS.revenue.sum())
    with pytest.raises(SourceError, match="'users'"):
        table(mem, "users")
    with pytest.raises(SourceError, match="missing.parquet"):
        register_files(mem, {"x": tmp_path / "missing.parquet"})
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(SourceError, match="expected .parquet or .csv"):
        register_files(mem, {"x": tmp_path / "x.json"})
    with pytest.raises(SourceError, match="data file"):
        connect(tmp_path / "a.parquet")             # a file is registered, not connected to


@pytest.mark.parametrize("source, match", [
    (42, "unsupported source 42"),
    (["a.duckdb"], "unsupported source"),
    ("nope.duckdb", "'nope.duckdb' does not exist"),
    ("nosuchengine://x", "cannot connect to 'nosuchengine://x'"),
])
def test_unsupported_sources_give_a_short_source_error(source, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError, match=match) as err:
        connect(source)
    assert len(str(err.value)) < 300 and "\n" not in str(err.value).strip()


def test_execute_wraps_engine_errors(warehouse):
    events = table(connect(warehouse), "events")
    # a cast the engine refuses at run time, not at expression-building time
    bad = events.event_type.cast("int64").sum()
    with pytest.raises(SourceError, match="the engine failed") as err:
        execute(bad)
    assert isinstance(err.value.__cause__, duckdb.Error)
    assert "Conversion Error" in str(err.value)
    assert "SELECT" not in str(err.value)           # the engine's message, not its SQL dump
    assert "SELECT" in str(err.value.__cause__)      # which stays on the cause


def test_the_duckdb_memory_limit_applies_to_opened_connections(warehouse, tmp_path,
                                                                monkeypatch):
    monkeypatch.setenv("WORKBENCH_DUCKDB_MEMORY_LIMIT", "300MB")
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    for source in (warehouse, ":memory:"):
        con = connect(source)
        limit, spill = con.raw_sql("SELECT current_setting('memory_limit'), "
                                   "current_setting('temp_directory')").fetchone()
        # DuckDB reports the limit in MiB: 300 MB = 286.1 MiB
        assert limit == "286.1 MiB"
        assert spill == str(tmp_path / "cache" / "duckdb")
    monkeypatch.delenv("WORKBENCH_DUCKDB_MEMORY_LIMIT")
    con = connect(warehouse)
    assert con.raw_sql("SELECT current_setting('memory_limit')").fetchone()[0] != "286.1 MiB"
