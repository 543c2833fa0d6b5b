"""Deterministic assignment: uniformity (chi-square, binomial), ramp stability, namespaces,
numpy == DuckDB == Spark, schema of the rows, bad input."""
from __future__ import annotations

import ibis
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

import workbench as wb
from workbench.data import schema
from workbench.data.assignment import (
    Namespace,
    assign,
    assign_expr,
    experiments_frame,
    parse_weights,
    variants_numpy,
    variants_table,
    write,
)
from workbench.errors import DataError, ParameterError

W3 = {"control": 0.5, "a": 0.3, "b": 0.2}


@pytest.mark.parametrize("n", [1_000_000, pytest.param(10_000_000, marks=pytest.mark.slow)])
def test_uniform_over_millions_of_ids_and_shares_within_binomial_error(n):
    ids = np.arange(n) * 3 + 17
    v = variants_numpy(ids, "uniformity", W3, seed=4)
    counts = pd.Series(v).value_counts().reindex(list(W3)).to_numpy()
    expected = np.array(list(W3.values())) * len(ids)
    assert sps.chisquare(counts, expected).pvalue > 1e-3
    for n, p in zip(counts, W3.values()):  # each arm within 4 binomial standard errors
        assert abs(n / len(ids) - p) < 4 * np.sqrt(p * (1 - p) / len(ids))


def test_traffic_share_and_arm_independent_of_being_in():
    ids = np.arange(500_000)
    full = variants_numpy(ids, "indep", W3)
    part = variants_numpy(ids, "indep", W3, traffic=0.3)
    inside = pd.notna(part)
    p = 0.3
    assert abs(inside.mean() - p) < 4 * np.sqrt(p * (1 - p) / len(ids))
    # the arm a unit would get is independent of whether it is in (chi-square of independence)
    table = pd.crosstab(inside, full).to_numpy()
    assert sps.chi2_contingency(table).pvalue > 1e-3


def test_ramp_10_25_50_100_only_adds_units_and_never_changes_a_variant():
    ids = np.arange(300_000)
    before = None
    for traffic in (0.10, 0.25, 0.50, 1.0):
        now = variants_numpy(ids, "ramp", {"control": 0.5, "treatment": 0.5}, 7, traffic=traffic)
        assert abs(pd.notna(now).mean() - traffic) < 0.01
        if before is not None:
            was_in = pd.notna(before)
            assert pd.notna(now[was_in]).all()            # nobody leaves
            assert (now[was_in] == before[was_in]).all()  # nobody changes variant
        before = now


def test_weight_change_moves_only_the_band_between_cut_points():
    ids = np.arange(500_000)
    old = variants_numpy(ids, "w", {"control": 0.5, "treatment": 0.5})
    new = variants_numpy(ids, "w", {"control": 0.6, "treatment": 0.4})
    moved = old != new
    assert set(zip(old[moved], new[moved])) == {("treatment", "control")}
    assert abs(moved.mean() - 0.10) < 4 * np.sqrt(0.1 * 0.9 / len(ids))


def test_namespace_slices_are_mutually_exclusive_and_sized():
    ids = np.arange(400_000)
    ns = Namespace.allocate("checkout", {"x": 0.5, "y": 0.3})
    x = pd.notna(variants_numpy(ids, "x", W3, namespace=ns))
    y = pd.notna(variants_numpy(ids, "y", W3, seed=9, traffic=0.8, namespace=ns))
    assert not (x & y).any()
    assert abs(x.mean() - 0.5) < 0.005 and abs(y.mean() - 0.3 * 0.8) < 0.005
    # another namespace is independent of this one: overlap ~ product of shares
    z = pd.notna(variants_numpy(ids, "z", W3, namespace=("pricing", 0.0, 0.5)))
    assert abs((x & z).mean() - 0.25) < 0.005


def test_duckdb_equals_numpy_for_int_and_string_ids():
    con = ibis.duckdb.connect()
    ids = np.r_[np.arange(-100, 30_000), 2**40 + np.arange(100)].astype(np.int64)
    ns = Namespace("n", {"e": (0.1, 0.9)})
    kw = dict(traffic=0.4, namespace=ns)
    got = con.execute(variants_table(ibis.memtable({"user_id": ids}), "e", W3, 3, **kw))
    want = variants_numpy(got["user_id"].to_numpy(), "e", W3, 3, **kw)
    assert (got["variant"].isna().to_numpy() == pd.isna(want)).all()
    assert (got["variant"].dropna().to_numpy() == want[pd.notna(want)]).all()
    words = np.array([f"u-{i}" for i in range(5_000)] + ["", "é", "日本"], object)
    got = con.execute(variants_table(ibis.memtable({"uid": words}), "e", W3, unit_column="uid"))
    want = variants_numpy(got["uid"].to_numpy(), "e", W3)
    assert (got["variant"].to_numpy() == want).all()


def test_rows_follow_the_schema_and_engine_rows_equal_python_rows(tmp_path):
    ids = np.arange(50_000)
    rows = assign(ids, "exp", "control=0.5,treatment=0.5", traffic=0.2,
                  assigned_at="2026-03-01 10:00")
    assert tuple(rows.columns) == tuple(c.name for c in schema.ASSIGNMENTS)
    assert rows["user_id"].dtype.kind == "i" and rows["assigned_at"].dtype.kind == "M"
    assert (rows["experiment_id"] == "exp").all() and rows["variant"].notna().all()
    con = ibis.duckdb.connect(str(tmp_path / "w.duckdb"))
    con.create_table("users", ibis.memtable({"user_id": ids}))
    expr = assign_expr(con.table("users"), "exp", "control=0.5,treatment=0.5", traffic=0.2,
                       assigned_at="2026-03-01 10:00")
    write(expr, con, "assignments")
    write(experiments_frame("exp", "control=1,treatment=1", "2026-03-01", "2026-03-14"), con,
          "experiments")
    got = con.table("assignments").execute().sort_values("user_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, rows, check_dtype=False)
    e = con.table("experiments").execute()
    assert e["planned_weight"].tolist() == [0.5, 0.5] and e["is_control"].tolist() == [1, 0]
    # the written tables have the documented logical types (the quality module's type check)
    from workbench.data.quality import _type_ok

    for name, columns in (("assignments", schema.ASSIGNMENTS), ("experiments", schema.EXPERIMENTS)):
        types = con.table(name).schema()
        assert [c.name for c in columns] == list(types.names)
        assert all(_type_ok(types[c.name], c.dtype) for c in columns), (name, types)


def test_wb_assign_is_the_function():
    assert wb.assign is assign


@pytest.mark.parametrize("kw, word", [
    (dict(weights={"control": 0.0, "t": 0.0}), "weights"),
    (dict(weights={"control": -0.5, "t": 1.5}), "weights"),
    (dict(weights={}), "weights"),
    (dict(weights="control=0.5,t"), "weights"),
    (dict(traffic=0.0), "traffic"),
    (dict(traffic=1.5), "traffic"),
    (dict(traffic=True), "traffic"),
    (dict(seed=1.5), "seed"),
    (dict(experiment=""), "experiment"),
    (dict(namespace=Namespace("n", {"other": (0, 0.5)})), "no slice"),
    (dict(namespace=("n", 0.6, 0.4)), "empty"),
    (dict(unit_ids=[1.5, 2.0]), "unit_ids"),
])
def test_bad_input_names_the_parameter(kw, word):
    args = dict(unit_ids=[1, 2, 3], experiment="e", weights="control=1,t=1")
    args.update(kw)
    with pytest.raises(ParameterError, match=word):
        assign(args.pop("unit_ids"), args.pop("experiment"), args.pop("weights"), **args)


def test_overlapping_namespace_slices_are_refused():
    with pytest.raises(ParameterError, match="overlap"):
        Namespace("n", {"a": (0.0, 0.5), "b": (0.4, 0.9)})
    with pytest.raises(ParameterError, match="sum"):
        Namespace.allocate("n", {"a": 0.7, "b": 0.5})


def test_engine_refuses_a_unit_column_of_another_type():
    t = ibis.memtable({"user_id": [0.5, 1.5]})
    with pytest.raises(DataError, match="unit_column 'user_id'"):
        variants_table(t, "e", "control=1,t=1")
    assert parse_weights("a=1,b=3") == {"a": 0.25, "b": 0.75}


@pytest.mark.spark
def test_spark_equals_duckdb_equals_numpy(spark):
    ids = np.arange(100_000, dtype=np.int64) * 13 - 500
    words = np.array([f"s{i}" for i in range(5_000)] + ["é"], object)
    kw = dict(traffic=0.5, namespace=("n", 0.2, 0.7))
    sp = ibis.pyspark.connect(spark)
    dk = ibis.duckdb.connect()
    df = pd.DataFrame({"user_id": ids})
    spark.createDataFrame(df).createOrReplaceTempView("assign_ids")  # no managed table
    got_s = sp.execute(assign_expr(sp.table("assign_ids"), "e", W3, 2,
                                   assigned_at="2026-01-01", **kw))
    got_d = dk.execute(assign_expr(ibis.memtable(df), "e", W3, 2, assigned_at="2026-01-01", **kw))
    want = assign(ids, "e", W3, 2, assigned_at="2026-01-01", **kw)
    for got in (got_s, got_d):
        got = got.sort_values("user_id").reset_index(drop=True)
        assert got["user_id"].tolist() == want.sort_values("user_id")["user_id"].tolist()
        assert got["variant"].tolist() == want.sort_values("user_id")["variant"].tolist()
    spark.createDataFrame(pd.DataFrame({"uid": words})).createOrReplaceTempView("assign_words")
    ws = sp.table("assign_words")
    got = sp.execute(variants_table(ws, "e", W3, unit_column="uid"))
    assert (got["variant"].to_numpy() == variants_numpy(got["uid"].to_numpy(), "e", W3)).all()
