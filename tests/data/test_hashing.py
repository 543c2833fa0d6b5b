"""THE hash (workbench.data.hashing): engine == numpy, uniform, independent salts, string keys
against Python's hashlib, linear SQL size."""
from __future__ import annotations

import hashlib

import ibis
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from workbench.data.hashing import (
    PRIME,
    hash_columns,
    hash_expr,
    hash_numpy,
    name_key,
    string_key_expr,
    string_key_numpy,
    thresholds,
)

IDS = np.r_[np.arange(-50, 3000), 2**40 + np.arange(50), PRIME - 1, PRIME, PRIME + 1]


def _mix_reference(x: int) -> int:
    """The rounds written out in plain Python integers (independent of numpy's int64)."""
    for m in (48_271, 1_103_515_245, 69_621):
        x = (x * m + 1_013_904_223) % PRIME
        x = (x ^ (x >> 16)) % PRIME
    return x


def _hash_reference(unit: int, r: int, seed: int, salt: int) -> int:
    start = (seed % PRIME * (2_654_435_761 % PRIME) + salt * 97_787) % PRIME
    x = _mix_reference(unit % PRIME)
    x = _mix_reference((x + start) % PRIME)
    return _mix_reference((x + r % PRIME * 40_503 % PRIME) % PRIME)


def test_numpy_matches_plain_python_integers():
    got = hash_numpy(IDS, 7, seed=3, salt=4)
    want = [_hash_reference(int(u), 7, 3, 4) for u in IDS]
    np.testing.assert_array_equal(got, want)


def test_engine_column_and_table_forms_match_numpy_on_duckdb():
    con = ibis.duckdb.connect()
    t = ibis.memtable({"u": IDS.astype(np.int64), "r": np.arange(len(IDS), dtype=np.int64) % 5})
    got = con.execute(hash_columns(t, "u", {"a": (123456789, 2, 3), "b": ("r", 9, 0)})
                      .order_by("u"))
    u, r = got["u"].to_numpy(), got["r"].to_numpy()
    np.testing.assert_array_equal(got["a"], hash_numpy(u, 123456789, 2, 3))
    np.testing.assert_array_equal(got["b"], hash_numpy(u, r, 9, 0))
    small = t.limit(20)  # the column form (hash_expr, exponential SQL) on a few rows
    c = con.execute(small.mutate(c=hash_expr(small.u, 2**33 + 5, 1, 2)))
    np.testing.assert_array_equal(c["c"], hash_numpy(c["u"].to_numpy(), 2**33 + 5, 1, 2))


def test_table_form_sql_is_linear_in_the_rounds():
    t = ibis.table({"u": "int64"}, name="units")
    one = len(ibis.to_sql(hash_columns(t, "u", {"a": (1, 0, 2)}), dialect="duckdb"))
    three = len(ibis.to_sql(hash_columns(t, "u", {k: (1, 0, i) for i, k in enumerate("abc")}),
                            dialect="duckdb"))
    assert one < 10_000 and three < 3 * one  # hash_expr: 2^9 copies of x, megabytes


def test_uniform_and_salts_independent():
    h = hash_numpy(np.arange(1_000_000), 0, seed=1, salt=2)
    assert h.min() >= 0 and h.max() < PRIME
    counts = np.bincount((h * 100 // PRIME).astype(int), minlength=100)
    assert sps.chisquare(counts).pvalue > 1e-3
    g = hash_numpy(np.arange(1_000_000), 0, seed=1, salt=3)
    table = pd.crosstab(h * 4 // PRIME, g * 4 // PRIME).to_numpy()
    assert sps.chi2_contingency(table).pvalue > 1e-3


def test_thresholds_cut_the_space_by_weight():
    cut = thresholds([1, 1, 2])
    np.testing.assert_array_equal(cut, [round(PRIME / 4), round(PRIME / 2), PRIME])


def test_string_keys_equal_hashlib_and_duckdb():
    words = ["", "a", "user_42", "é", "日本", "x" * 300]
    want = [int(hashlib.md5(w.encode()).hexdigest()[:8], 16) for w in words]
    np.testing.assert_array_equal(string_key_numpy(words), want)
    assert name_key("user_42") == want[2]
    t = ibis.memtable({"s": words})
    got = ibis.duckdb.connect().execute(t.mutate(k=string_key_expr(t.s)))
    np.testing.assert_array_equal(got.set_index("s").loc[words, "k"].to_numpy(), want)


@pytest.mark.spark
def test_spark_matches_numpy(spark):
    con = ibis.pyspark.connect(spark)
    words = ["", "a", "user_42", "é", "日本"]
    df = pd.DataFrame({"u": IDS[:500].astype(np.int64)})
    df["s"] = [words[i % len(words)] + str(i) for i in range(len(df))]
    spark.createDataFrame(df).createOrReplaceTempView("hash_units")  # no managed table
    t = con.table("hash_units")
    got = con.execute(hash_columns(t, "u", {"a": (77, 4, 2)}).mutate(k=string_key_expr(t.s))
                      .order_by("u"))
    np.testing.assert_array_equal(got["a"], hash_numpy(got["u"].to_numpy(), 77, 4, 2))
    np.testing.assert_array_equal(got["k"], string_key_numpy(list(got["s"])))
