"""A fingerprint of the input data, to tell later which data a run read.

The hash is computed inside DuckDB, so a large file is never read into Python.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from workbench.errors import SourceError

_LOCK_ATTEMPTS = 20  # another process may hold the file's write lock for a moment


def fingerprint(source_path: str | os.PathLike, tables: list[str] | None = None) -> str:
    """A hash of the content of tables in a DuckDB file, computed inside DuckDB.

    Per table: column names and types, the row count and the sum of the row hashes (order
    independent), so any change of a value changes the fingerprint without reading the rows
    into Python.

    Parameters
    ----------
    source_path : path
        DuckDB file (opened read-only).
    tables : list of str, optional
        Tables to include (default: all tables of the file).

    Returns
    -------
    str
        ``sha256:<16 hex digits>``.

    Raises
    ------
    SourceError
        No such file, the file cannot be opened, or a table is not in it.
    """
    import duckdb

    path = Path(source_path)
    if not path.is_file():
        raise SourceError(f"fingerprint: no DuckDB file at {path}")
    # plain DuckDB rather than data.sources: a read-only hash needs no Ibis (seconds to import)
    con = None
    for attempt in range(_LOCK_ATTEMPTS):
        try:
            con = duckdb.connect(str(path), read_only=True)
            break
        except duckdb.Error as exc:
            if "lock" not in str(exc).lower() or attempt == _LOCK_ATTEMPTS - 1:
                raise SourceError(f"fingerprint: cannot open {path}: {exc}") from exc
            time.sleep(0.25)
    try:
        known = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables ORDER BY table_name").fetchall()]
        names = sorted(tables) if tables else known
        digest = hashlib.sha256()
        for name in names:
            if name not in known:
                raise SourceError(f"fingerprint: table {name!r} not in {path} (has {known})")
            cols = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = ? ORDER BY ordinal_position", [name]).fetchall()
            count, hsum = con.execute(
                f'SELECT count(*), sum(hash(t)::HUGEINT) FROM "{name}" AS t').fetchone()
            digest.update(repr((name, cols, count, hsum)).encode())
        return f"sha256:{digest.hexdigest()[:16]}"
    finally:
        con.close()
