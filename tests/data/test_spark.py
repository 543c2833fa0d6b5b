"""Spark as a source: the same compiled metric expressions on PySpark (local[2], through Ibis) and
on DuckDB give the same sufficient statistics, to 1e-9 relative, and the same uplift frame, on the
generated sample; and the same phase statistics and phases table on the ramp scenario."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.modeling import uplift_frame

pytestmark = pytest.mark.spark

TABLES = ("assignments", "events", "users", "experiments")


@pytest.fixture(scope="module")
def engines(spark, small_warehouse, tmp_path_factory):
    """Experiments on DuckDB and on Spark over the very same rows (via parquet)."""
    d = tmp_path_factory.mktemp("spark_tables")
    src = duckdb.connect(str(small_warehouse), read_only=True)
    for t in TABLES:
        src.execute(f"COPY {t} TO '{d / t}.parquet' (FORMAT parquet)")
    src.close()
    for t in TABLES:
        spark.read.parquet(str(d / f"{t}.parquet")).cache().createOrReplaceTempView(t)
    on_spark = wb.Experiment.from_source(spark)  # a SparkSession goes through ibis.pyspark
    on_duckdb = wb.Experiment.from_source(small_warehouse)
    return on_duckdb, on_spark


def _assert_same(a: pd.DataFrame, b: pd.DataFrame, keys):
    a = a.sort_values(keys).reset_index(drop=True)
    b = b.sort_values(keys).reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a[keys], b[keys], check_dtype=False)
    num = [c for c in a.columns if c not in keys and c != "kind"]
    x, y = a[num].to_numpy(float), b[num].to_numpy(float)
    assert (np.isnan(x) == np.isnan(y)).all()
    ok = ~np.isnan(x)
    np.testing.assert_allclose(x[ok], y[ok], rtol=1e-9, atol=0)


def test_overall_statistics_agree(engines):
    on_duckdb, on_spark = engines
    # Spark's exact `percentile` and DuckDB's quantile_cont interpolate the same way
    pd.testing.assert_frame_equal(on_spark.compiler.cap_thresholds(),
                                  on_duckdb.compiler.cap_thresholds(), rtol=1e-9)
    _assert_same(on_spark.sufficient_stats(), on_duckdb.sufficient_stats(),
                 ["metric", "variant"])


def test_segment_statistics_agree(engines):
    on_duckdb, on_spark = engines
    _assert_same(on_spark.sufficient_stats(segments=["device"]),
                 on_duckdb.sufficient_stats(segments=["device"]),
                 ["metric", "variant", "dimension", "segment"])


@pytest.mark.slow  # ~10 s more of Spark jobs; the overall and segment checks run always
def test_daily_statistics_agree(engines):
    on_duckdb, on_spark = engines
    a, b = on_spark.sufficient_stats(by_day=True), on_duckdb.sufficient_stats(by_day=True)
    _assert_same(a, b, ["metric", "variant", "date"])


def test_uplift_frame_agrees(engines):
    on_duckdb, on_spark = engines
    a = uplift_frame(on_spark, variant="treatment_a")
    b = uplift_frame(on_duckdb, variant="treatment_a")
    assert len(a) > 10_000 and list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True),
                                  check_dtype=False, check_categorical=False, rtol=1e-12)


def test_ramp_phase_statistics_and_phases_table_agree(spark, tmp_path_factory):
    """The ramp scenario (3 phases, 3,000 users) read from the same parquet files by Spark and
    by DuckDB: the phases, their statistics and the whole phases table agree to 1e-9."""
    import warnings

    from workbench.data.sample import RAMP_EXPERIMENT, RAMP_METRICS, generate_ramp

    d = tmp_path_factory.mktemp("ramp_spark")
    generate_ramp(d / "ramp.duckdb", seed=4, n_per_phase=1000)
    src = duckdb.connect(str(d / "ramp.duckdb"), read_only=True)
    for t in ("assignments", "events", "experiments"):
        src.execute(f"COPY {t} TO '{d / t}.parquet' (FORMAT parquet)")
        spark.read.parquet(str(d / f"{t}.parquet")).createOrReplaceTempView(f"ramp_{t}")
    src.close()
    on_duckdb = wb.Experiment.from_source(d / "ramp.duckdb", RAMP_EXPERIMENT, RAMP_METRICS)
    on_spark = wb.Experiment.from_source(spark, RAMP_EXPERIMENT, RAMP_METRICS,
                                         assignments="ramp_assignments", events="ramp_events",
                                         experiments="ramp_experiments")
    assert len(on_duckdb.phases) == 3 and on_spark.phases == on_duckdb.phases
    _assert_same(on_spark.phase_stats(), on_duckdb.phase_stats(), ["metric", "variant", "phase"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = (e.analyze(timeseries=False).phases for e in (on_spark, on_duckdb))
    keys = ["metric", "variant", "phase", "start_date", "end_date", "note", "error_message"]
    pd.testing.assert_frame_equal(a[keys], b[keys])
    num = [c for c in b.columns if c not in keys]
    x, y = a[num].to_numpy(float), b[num].to_numpy(float)
    assert (np.isnan(x) == np.isnan(y)).all() and np.isfinite(y[:, num.index("effect")]).all()
    np.testing.assert_allclose(x[~np.isnan(x)], y[~np.isnan(y)], rtol=1e-9, atol=0)
