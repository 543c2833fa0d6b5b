"""workbench.data.fingerprint: a hash of a DuckDB file's content, computed in DuckDB."""
from __future__ import annotations

import duckdb
import pytest

from workbench.data.fingerprint import fingerprint
from workbench.errors import SourceError, WorkbenchError


def test_fingerprint_tracks_content_not_row_order(tmp_path):
    def make(path, sql):
        with duckdb.connect(str(path)) as con:
            con.execute(f"CREATE TABLE a AS {sql}")
        return fingerprint(path, ["a"])

    base = "SELECT range AS id, range * 1.5 AS x, 'u' || range AS s FROM range(1000)"
    original = make(tmp_path / "1.duckdb", base)
    assert original.startswith("sha256:") and len(original) == len("sha256:") + 16
    assert make(tmp_path / "2.duckdb", base + " ORDER BY random()") == original
    changed = f"SELECT id, CASE WHEN id = 500 THEN x + 1e-9 ELSE x END AS x, s FROM ({base})"
    assert make(tmp_path / "3.duckdb", changed) != original
    assert make(tmp_path / "4.duckdb", base + " LIMIT 999") != original
    assert make(tmp_path / "5.duckdb", base.replace(" AS s", " AS t")) != original
    with pytest.raises(SourceError, match="nope"):
        fingerprint(tmp_path / "1.duckdb", ["nope"])
    assert issubclass(SourceError, WorkbenchError)
    with pytest.raises(SourceError, match="no DuckDB file"):
        fingerprint(tmp_path / "missing.duckdb")


def test_all_tables_by_default(tmp_path):
    path = tmp_path / "two.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE a AS SELECT 1 AS x")
        con.execute("CREATE TABLE b AS SELECT 2 AS y")
    assert fingerprint(path) == fingerprint(path, ["b", "a"])
    assert fingerprint(path) != fingerprint(path, ["a"])
