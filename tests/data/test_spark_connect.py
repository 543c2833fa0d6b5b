"""A Spark cluster the workbench does not own: a Spark Connect server in its own JVM (started by
`.ci/run`, found through $WORKBENCH_SPARK_CONNECT; else started here by `.ci/spark_connect.sh`).
The sample is loaded into the server as persistent parquet tables (any new session sees them),
then `workbench readout --source sc://...` and `workbench run ab_test -p source sc://...` give the
same statistics as DuckDB on the same rows (1e-9 relative) and the same decision.

Every Connect client runs in a subprocess: opening a Connect session switches PySpark to Connect
mode for the whole process (SPARK_CONNECT_MODE_ENABLED), which would break the local `spark`
fixture of the other tests in this pytest process."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from workbench import tracking
from workbench.errors import SourceError

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "spark_connect.sh"
ENV = "WORKBENCH_SPARK_CONNECT"
TABLES = ("assignments", "events", "users", "experiments")
EXPERIMENT = "checkout_redesign"

LOADER = """
import sys
from pyspark.sql import SparkSession
url, folder, *tables = sys.argv[1:]
session = SparkSession.builder.remote(url).getOrCreate()
for t in tables:
    session.sql(f"DROP TABLE IF EXISTS {t}")
    session.sql(f"CREATE TABLE {t} USING parquet LOCATION '{folder}/{t}.parquet'")
print({t: session.table(t).count() for t in tables})
"""


@pytest.fixture(scope="session")
def spark_connect(tmp_path_factory):
    """The sc:// URL of a Spark Connect server: $WORKBENCH_SPARK_CONNECT, else one started here
    (and stopped at the end of the session)."""
    url = os.environ.get(ENV)
    if url:
        yield url
        return
    folder = tmp_path_factory.mktemp("spark_connect")
    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run(["bash", str(SCRIPT), "start", str(folder)], capture_output=True,
                         text=True, timeout=420, env=env)
    try:
        assert out.returncode == 0, f"the Spark Connect server did not start:\n{out.stderr}"
        yield out.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], capture_output=True,
                       timeout=120, env=env)


@pytest.fixture(scope="module")
def loaded(spark_connect, small_warehouse, tmp_path_factory):
    """The sample's tables, copied from DuckDB to parquet, as tables of the Connect server."""
    folder = tmp_path_factory.mktemp("connect_tables")
    src = duckdb.connect(str(small_warehouse), read_only=True)
    counts = {t: src.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    for t in TABLES:
        src.execute(f"COPY {t} TO '{folder / t}.parquet' (FORMAT parquet)")
    src.close()
    out = subprocess.run([sys.executable, "-c", LOADER, spark_connect, str(folder), *TABLES],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    # the server read every row of every table
    assert out.stdout.strip().splitlines()[-1] == str(counts)
    return spark_connect


PLANS = """
import json, sys, warnings
from ibis.backends.pyspark import Backend
from workbench.readout.experiment import Experiment
sql, run = [], Backend.execute
def execute(self, expr, *args, **kwargs):
    sql.append(self.compile(expr, params=kwargs.get("params")))
    return run(self, expr, *args, **kwargs)
Backend.execute = execute
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    exp = Experiment.from_source(sys.argv[1], sys.argv[2])
    exp.analyze()
c = exp.compiler
session = c.assignments._find_backend()._session
print(json.dumps({"units": c.units().get_name(), "values": c.unit_values(capped=False).get_name(),
                  "plans": [session.sql(q)._explain_string(mode="simple") for q in sql]}))
"""


def _cli(*args, cwd, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _assert_same_frame(a: pd.DataFrame, b: pd.DataFrame, keys=("metric", "variant")):
    """Same rows, the same text/boolean columns, numbers equal to 1e-9 relative."""
    keys = list(keys)
    a = a.sort_values(keys).reset_index(drop=True)
    b = b.sort_values(keys).reset_index(drop=True)
    assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
    num = [c for c in a.columns if pd.api.types.is_numeric_dtype(a[c])
           and not pd.api.types.is_bool_dtype(a[c])]
    other = [c for c in a.columns if c not in num]
    pd.testing.assert_frame_equal(a[other], b[other], check_dtype=False)
    x, y = a[num].to_numpy(float), b[num].to_numpy(float)
    assert (np.isnan(x) == np.isnan(y)).all()
    ok = ~np.isnan(x)
    np.testing.assert_allclose(y[ok], x[ok], rtol=1e-9, atol=0)


def _decision(stdout: str) -> list[str]:
    """The printed decision lines (everything but the 'wrote ...' lines)."""
    return [line for line in stdout.splitlines() if not line.startswith("wrote ")]


def test_a_missing_server_is_a_source_error_at_once():
    from workbench.data.sources import connect

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(SourceError, match=rf"no Spark Connect server at 'sc://127.0.0.1:{port}'"):
        connect(f"sc://127.0.0.1:{port}")
    with pytest.raises(SourceError, match="no host"):
        connect("sc://:15002")


@pytest.mark.slow  # ~2 min (loading the server, 13 queries on Spark); CI runs it (make test-slow)
def test_readout_on_spark_connect_equals_duckdb(loaded, small_warehouse, tmp_path):
    """`workbench readout --source sc://...` (a new process, its own Connect session) against
    the same command on the DuckDB file: same statistics to 1e-9, same decision, same exit."""
    common = ["--experiment", EXPERIMENT]
    on_sc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "readout", "--source", loaded, *common,
         "--output", str(tmp_path / "sc.parquet")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    on_duckdb = _cli("readout", "--source", str(small_warehouse), *common,
                     "--output", str(tmp_path / "duckdb.parquet"), cwd=tmp_path)
    sc_out, sc_err = on_sc.communicate(timeout=900)
    assert on_duckdb.returncode == 0, on_duckdb.stderr[-3000:]
    assert on_sc.returncode == on_duckdb.returncode, sc_err[-3000:]
    assert _decision(sc_out) == _decision(on_duckdb.stdout)
    _assert_same_frame(pd.read_parquet(tmp_path / "duckdb.parquet"),
                       pd.read_parquet(tmp_path / "sc.parquet"))
    # and the user counts are those of the raw assignments (a hand-written DuckDB count)
    con = duckdb.connect(str(small_warehouse), read_only=True)
    n = dict(con.execute("SELECT variant, count(DISTINCT user_id) FROM assignments "
                         f"WHERE experiment_id = '{EXPERIMENT}' GROUP BY 1").fetchall())
    con.close()
    res = pd.read_parquet(tmp_path / "sc.parquet")
    conv = res[res.metric == "conversion"].set_index("variant")
    for variant, row in conv.iterrows():
        assert row["n_variant"] <= n[variant] and row["n_control"] <= n["control"]
        assert row["n_variant"] >= 0.95 * n[variant]  # only crossovers/bad rows left out


@pytest.mark.slow  # two template runs (no PyMC): ~1-3 min on a loaded 2-core machine
def test_ab_test_template_on_spark_connect_equals_duckdb(loaded, small_warehouse, tmp_path):
    """`workbench run ab_test -p source sc://...` and the same run on the DuckDB file record the
    same results table (1e-9) and the same decision."""
    params = ["-p", "pymc_draws", "0", "-p", "segments", '["device"]', "--no-progress"]
    procs = {}
    for key, source in (("sc", loaded), ("duckdb", str(small_warehouse))):
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / key / 'mlflow.db'}",
               "WORKBENCH_REPORTS_DIR": str(tmp_path / key / "reports")}
        env.pop(tracking.ENV_RUN_DIR, None)
        (tmp_path / key).mkdir()
        procs[key] = subprocess.Popen(
            [sys.executable, "-m", "workbench.cli", "run", "ab_test", "-p", "source", source,
             *params], cwd=tmp_path / key, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
    runs = {}
    for key, proc in procs.items():
        text = proc.communicate(timeout=1200)[0]
        assert proc.returncode == 0 and "FINISHED (exit 0)" in text, text[-3000:]
        (run_json,) = sorted((tmp_path / key / "reports").glob("*/*/*/run.json"))
        runs[key] = json.loads(run_json.read_text()) | {"dir": run_json.parent}
    sc, dd = runs["sc"], runs["duckdb"]
    assert sc["parameters"]["source"] == loaded
    assert set(sc["tables"]) == set(dd["tables"])
    for name, keys in (("results", ("metric", "variant")),
                       ("segments", ("metric", "variant", "dimension", "segment"))):
        _assert_same_frame(pd.read_parquet(dd["dir"] / "tables" / f"{name}.parquet"),
                           pd.read_parquet(sc["dir"] / "tables" / f"{name}.parquet"), keys)
    decision = {k: r["summary"].get("decision") for k, r in runs.items()}
    assert decision["sc"] == decision["duckdb"] and decision["sc"]
    assert (sc["dir"] / "report.html").exists()


@pytest.mark.slow  # one readout on the server (~1 min on a loaded 2-core machine)
def test_spark_plans_read_the_units_once_and_join_by_key(loaded, tmp_path):
    """The physical plans of every query a readout sends to the server (Spark's own EXPLAIN):
    no nested-loop join or cartesian product (a ``NOT IN`` subquery is planned as one: at 1M
    users the readout did not finish in 40 min), and the units and unit values are tables
    computed once (a checkpointed temporary view), so the statistics queries no longer group
    all the assignments each time."""
    out = subprocess.run([sys.executable, "-c", PLANS, loaded, EXPERIMENT], cwd=tmp_path,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["units"].startswith("_wb_a_") and res["values"].startswith("_wb_units_")
    plans = res["plans"]
    assert len(plans) >= 10
    for plan in plans:
        assert "NestedLoopJoin" not in plan and "CartesianProduct" not in plan, plan
    # the assignments are scanned by the checks only: the statistics read the stored units
    reading = [p for p in plans if "spark_catalog.default.assignments" in p]
    assert 0 < len(reading) <= 3, len(reading)
    assert not any("spark_catalog.default.assignments" in p for p in plans[-3:])
