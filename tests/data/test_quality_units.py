"""The per-unit checks of data/quality.py on hand-made Ibis tables (NaN kept as NaN, not NULL):
counts against pandas, the SRM against scipy, errors naming the column before any query."""
from __future__ import annotations

import ibis
import numpy as np
import pandas as pd
import pytest
from scipy.stats import chisquare

import workbench as wb
from workbench.data.quality import check_units, require_unit_columns
from workbench.errors import SchemaError
from workbench.metrics.window import ExperimentWindow


def _table(df: pd.DataFrame):
    con = ibis.duckdb.connect()
    con.con.register("frame", df)
    # keep NaN as a float NaN (DuckDB's registration turns pandas NaN into NULL)
    con.con.execute("create table t as select * replace (case when nan_flag then 'nan'::double "
                    "else revenue end as revenue) from frame")
    return con.table("t").drop("nan_flag")


@pytest.fixture
def table():
    rng = np.random.default_rng(5)
    n = 600
    df = pd.DataFrame({"uid": np.arange(n), "arm": rng.choice(["a", "b", "zz"], n,
                                                              p=[0.5, 0.45, 0.05]),
                       "revenue": rng.gamma(2.0, 1.0, n), "orders": rng.poisson(1.0, n)})
    df["nan_flag"] = False
    df.loc[:4, "nan_flag"] = True
    df.loc[5:6, "revenue"] = np.inf
    df.loc[7:9, "revenue"] = None
    df.loc[10:12, "uid"] = 13
    df.loc[20, "arm"] = None
    return df, _table(df)


METRICS = [wb.ratio("revenue", "orders", name="aov")]


def test_counts_match_pandas(table):
    df, t = table
    window = ExperimentWindow("e", None, None, ("a", "b"), (0.5, 0.5), "a")
    report = check_units(t, window, METRICS, variant="arm", unit="uid")
    assert report.count("nan", "units", "revenue") == 5
    assert report.count("inf", "units", "revenue") == 2
    assert report.count("nulls", "units", "revenue") == 3
    assert report.count("nulls", "units", "arm") == 1
    assert report.count("duplicates", "units", "uid") == len(df) - df.uid.nunique()
    assert report.count("unknown_variant") == (df.arm == "zz").sum()
    assert report.status("nan") == "error" and not report.ok
    counts = df.arm.value_counts().reindex(["a", "b"]).to_numpy()
    assert report.srm_p_value == pytest.approx(chisquare(counts).pvalue, rel=1e-9)
    assert list(report.variant_counts["units"]) == list(counts)


def test_an_empty_planned_variant_is_a_mismatch(table):
    _, t = table
    window = ExperimentWindow("e", None, None, ("a", "b", "c"), (1 / 3,) * 3, "a")
    report = check_units(t, window, METRICS, variant="arm")
    assert report.srm and report.srm_p_value == 0.0
    assert "a planned variant has no units" in report.to_frame().query("check == 'srm'")[
        "message"].iloc[0]


def test_schema_errors_name_the_column(table):
    _, t = table
    with pytest.raises(SchemaError, match="column 'clicks' .*metric 'm'"):
        require_unit_columns(t, [wb.mean("clicks", name="m")], variant="arm")
    with pytest.raises(SchemaError, match="column 'arm' of the per-unit table has type string"):
        require_unit_columns(t, [wb.mean("arm", name="m")], variant="arm")
    with pytest.raises(SchemaError, match="column 'revenue' .*date column needs dates"):
        require_unit_columns(t, METRICS, variant="arm", date="revenue")
