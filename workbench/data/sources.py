"""Connections to experiment data through Ibis: a DuckDB file by default, any Ibis backend by URL.

>>> con = connect()                                  # the settings' warehouse, read-only
>>> con = connect("data/warehouse.duckdb")
>>> con = connect("duckdb://data/warehouse.duckdb?read_only=true")
>>> con = connect(spark_session)                     # a pyspark SparkSession
>>> con = connect("sc://127.0.0.1:15002")             # a Spark Connect server (a cluster)
>>> con = register_files(connect(":memory:"), {"events": "events.parquet"})
>>> t = units_table(df)                              # a per-unit table (DataFrame, file, Ibis)
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workbench.errors import SourceError

FILE_SUFFIXES = (".parquet", ".csv", ".csv.gz", ".tsv")


def _is_backend(obj: Any) -> bool:
    from ibis.backends import BaseBackend

    return isinstance(obj, BaseBackend)


def connect(source: Any = None, *, read_only: bool = True):
    """Open an Ibis backend.

    Parameters
    ----------
    source : None, str, Path, ibis backend or SparkSession
        None: the settings' warehouse DuckDB file; a path ending in ``.duckdb``/``.db``;
        ``":memory:"``; an Ibis URL (``duckdb://...``, ``postgres://...``, ``pyspark://``...);
        a Spark Connect URL ``sc://host:port`` (a Spark cluster's Connect endpoint);
        an Ibis backend (returned as is); a ``pyspark.sql.SparkSession``.
    read_only : bool
        Open DuckDB files read-only (default), so a readout never locks out a writer.

    Raises
    ------
    SourceError
        Naming the source when it cannot be opened.
    """
    import ibis

    if source is not None and _is_backend(source):
        return source
    if source is not None and type(source).__name__ == "SparkSession":
        try:
            return ibis.pyspark.connect(source)
        except Exception as exc:
            raise SourceError(f"cannot connect Ibis to the Spark session: {exc}") from exc
    if source is None:
        from workbench.config import get_settings

        source = get_settings().warehouse
        if not Path(source).exists():
            raise SourceError(
                f"the default warehouse {str(source)!r} does not exist; "
                "run `workbench sample-data` or pass a source")
    if isinstance(source, Path) or (isinstance(source, str) and "://" not in source):
        text = str(source)
        if text == ":memory:":
            return ibis.duckdb.connect(**duckdb_config())
        path = Path(text).expanduser()
        if not path.exists():
            raise SourceError(f"source {text!r} does not exist")
        if path.is_dir() or text.endswith(FILE_SUFFIXES):
            raise SourceError(
                f"source {text!r} is a data file or folder; use "
                "register_files(connect(':memory:'), {'events': path, ...})")
        try:
            return ibis.duckdb.connect(str(path), read_only=read_only, **duckdb_config())
        except Exception as exc:
            raise SourceError(f"cannot open DuckDB file {text!r}: {exc}") from exc
    if isinstance(source, str) and source.lower().startswith("sc://"):
        return _spark_connect(source)
    if isinstance(source, str):
        try:
            return ibis.connect(source)
        except Exception as exc:
            raise SourceError(f"cannot connect to {source!r}: {exc}") from exc
    if _frame_kind(source) is not None:
        raise SourceError(
            f"unsupported source: a {_frame_kind(source)} is a per-unit table; use "
            "wb.Experiment.from_units(df, variant=..., metrics=...)")
    raise SourceError(f"unsupported source {source!r}: give a path, an Ibis URL or a backend")


def duckdb_config() -> dict:
    """DuckDB settings of the connections opened here: the memory limit of the settings
    (``WORKBENCH_DUCKDB_MEMORY_LIMIT``) and, with it, a spill folder under the cache."""
    from workbench.config import get_settings

    s = get_settings()
    if not s.duckdb_memory_limit:
        return {}
    spill = Path(s.cache_dir or Path.cwd() / ".cache") / "duckdb"
    spill.mkdir(parents=True, exist_ok=True)
    return {"memory_limit": s.duckdb_memory_limit, "temp_directory": str(spill)}


def _spark_connect(url: str):
    """An Ibis backend on a Spark Connect server: ``sc://host:port[/;token=...;use_ssl=true]``.

    The port is probed first, so a server that is not there fails at once (the Connect client
    itself retries for minutes). Opening a Connect session switches PySpark to Connect mode for
    the whole process (``SPARK_CONNECT_MODE_ENABLED``): do not mix it with a local
    ``SparkSession`` in one process.
    """
    import socket
    from urllib.parse import urlsplit

    import ibis

    try:
        parts = urlsplit(url.split(";", 1)[0])
        host, port = parts.hostname, parts.port or 15002
    except ValueError as exc:
        raise SourceError(f"source {url!r}: not a Spark Connect URL ({exc})") from exc
    if not host:
        raise SourceError(f"source {url!r}: no host in the Spark Connect URL (sc://host:port)")
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as exc:
        raise SourceError(f"no Spark Connect server at {url!r}: {host}:{port} does not answer "
                          f"({exc.strerror or exc})") from exc
    try:
        from pyspark.sql import SparkSession

        session = SparkSession.builder.remote(url).getOrCreate()
    except ImportError as exc:
        raise SourceError(f"source {url!r} needs the Spark Connect client: "
                          f"pip install 'pyspark[connect]' ({exc})") from exc
    except Exception as exc:
        raise SourceError(f"cannot open a Spark Connect session on {url!r}: {_short(exc)}") \
            from exc
    try:
        return ibis.pyspark.connect(session)
    except Exception as exc:
        raise SourceError(f"cannot connect Ibis to the Spark Connect session {url!r}: "
                          f"{_short(exc)}") from exc


def register_files(con, files: Mapping[str, str | Path]):
    """Register Parquet/CSV files (or globs) as tables of ``con`` and return ``con``.

    Raises
    ------
    SourceError
        Naming the table and file when a file cannot be read.
    """
    for table, path in files.items():
        text = str(path)
        if "*" not in text and not Path(text).exists():
            raise SourceError(f"file {text!r} for table {table!r} does not exist")
        try:
            if text.endswith(".parquet") or (Path(text).is_dir()):
                con.read_parquet(text, table_name=table)
            elif text.endswith((".csv", ".csv.gz", ".tsv")):
                con.read_csv(text, table_name=table)
            else:
                raise SourceError(f"file {text!r} for table {table!r}: expected .parquet or .csv")
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"cannot register {text!r} as table {table!r}: {exc}") from exc
    return con


def table(con, name: str):
    """The Ibis table ``name`` of ``con``, or a :class:`SourceError` naming it."""
    try:
        return con.table(name)
    except Exception as exc:
        try:
            known = ", ".join(sorted(con.list_tables())) or "none"
        except Exception:  # ibis 12 list_tables fails on duckdb 2.0; ask DuckDB itself
            try:
                known = ", ".join(sorted(r[0] for r in con.con.execute("SHOW TABLES")
                                         .fetchall()))
            except Exception:
                known = "unknown"
        raise SourceError(f"table {name!r} not found in the source (tables: {known})") from exc


def execute(expr):
    """Run an Ibis expression and return a DataFrame; engine failures become a short
    :class:`~workbench.errors.SourceError` (the engine's own message, without its SQL dump)."""
    try:
        return expr.execute()
    except Exception as exc:
        raise SourceError(f"the engine failed to compute the statistics: {_short(exc)}") \
            from exc


def _short(exc: Exception, limit: int = 300) -> str:
    """The first line of an engine's error: DuckDB appends the SQL and a caret, Spark a plan
    and a JVM stack; the full text stays on ``__cause__``."""
    text = str(exc).strip().split("\n", 1)[0].strip() or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."



def _frame_kind(obj: Any) -> str | None:
    """'pandas DataFrame', 'polars DataFrame', 'pyarrow Table', 'Spark DataFrame' or None."""
    mod = type(obj).__module__.split(".")[0]
    name = type(obj).__name__
    if mod == "pandas" and name == "DataFrame":
        return "pandas DataFrame"
    if mod == "polars" and name in ("DataFrame", "LazyFrame"):
        return f"polars {name}"
    if mod == "pyarrow" and name in ("Table", "RecordBatch"):
        return f"pyarrow {name}"
    if mod == "pyspark" and name == "DataFrame":
        return "Spark DataFrame"
    return None


def units_table(data: Any, name: str = "units"):
    """A per-unit table (one row per unit) as an Ibis table, aggregated by its engine.

    Parameters
    ----------
    data : DataFrame, path or Ibis table
        A pandas or polars DataFrame or a pyarrow Table (through ``ibis.memtable``, i.e.
        DuckDB in memory); a ``.parquet``/``.csv``/``.tsv`` file or glob (read by an in-memory
        DuckDB); a Spark DataFrame (a temporary view ``name`` of its session, through
        ``ibis.pyspark``); or any Ibis table (DuckDB, Spark, Postgres...), used as it is.
    name : str
        Table (view) name for files and Spark DataFrames.

    Raises
    ------
    SourceError
        Naming the file or the type that cannot be read.
    """
    import ibis

    if isinstance(data, ibis.expr.types.Table):
        return data
    kind = _frame_kind(data)
    if kind == "Spark DataFrame":
        try:
            con = ibis.pyspark.connect(data.sparkSession)
            data.createOrReplaceTempView(name)
            return con.table(name)
        except Exception as exc:
            raise SourceError(f"cannot read the Spark DataFrame through Ibis: {_short(exc)}") \
                from exc
    if kind is not None:
        if kind == "pandas DataFrame":
            bad = [c for c in data.columns if not isinstance(c, str)]
            if bad:
                data = data.rename(columns={c: str(c) for c in bad})
        try:
            return ibis.memtable(data.collect() if kind == "polars LazyFrame" else data)
        except Exception as exc:
            raise SourceError(f"cannot read the {kind} as a table: {_short(exc)}") from exc
    if isinstance(data, str | Path):
        text = str(Path(data).expanduser())
        if not text.endswith(FILE_SUFFIXES) and not Path(text).is_dir():
            raise SourceError(f"per-unit file {text!r}: expected .parquet, .csv or .tsv")
        con = register_files(connect(":memory:"), {name: text})
        return table(con, name)
    raise SourceError(
        f"unsupported per-unit table of type {type(data).__name__}: give a pandas/polars "
        "DataFrame, a pyarrow Table, a Parquet/CSV path or an Ibis table")
