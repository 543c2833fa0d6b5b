"""The sample generator: its tables, its faults, and its truth against the data it wrote.

Realised effects are recomputed here from the raw tables with plain SQL (not the readout code)
and must lie within 4 standard errors of the analytic truth.
"""
from __future__ import annotations

import hashlib
import re

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from workbench.cli import main as cli_main
from workbench.data import sample
from workbench.data.sample import generate, model_dataset
from workbench.data.schema import SAMPLE_TABLES, TABLES
from workbench.errors import ConfigError
from workbench.summary import Summary


def html_rows(html: str) -> list[list[str]]:
    """The cells of each row of the HTML tables (header rows included)."""
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S)]


DUCK_TYPES = {"int": ("BIGINT", "INTEGER"), "float": ("DOUBLE",), "string": ("VARCHAR",),
              "timestamp": ("TIMESTAMP",), "date": ("DATE",)}


def _per_user(path, truth) -> pd.DataFrame:
    """Per-user metrics over [first assigned_at, end_date + 1 day) and the pre-period."""
    end = truth.end_date + pd.Timedelta(days=1)
    sql = f"""
    WITH a AS (
        SELECT user_id, arg_min(variant, assigned_at) AS variant, min(assigned_at) AS t0
        FROM assignments GROUP BY user_id),
    e AS (SELECT e.*, a.t0 FROM events e JOIN a USING (user_id))
    SELECT a.user_id, a.variant, u.device, u.country, u.channel,
      count(e.user_id) FILTER (WHERE e.event_type = 'session' AND e.event_time >= a.t0
                                AND e.event_time < TIMESTAMP '{end}') AS sessions,
      count(e.user_id) FILTER (WHERE e.event_type = 'order' AND e.event_time >= a.t0
                                AND e.event_time < TIMESTAMP '{end}') AS orders,
      coalesce(sum(e.revenue) FILTER (WHERE e.event_type = 'order' AND e.event_time >= a.t0
                                AND e.event_time < TIMESTAMP '{end}'), 0) AS revenue,
      count(e.user_id) FILTER (WHERE e.event_type = 'session'
                                AND e.event_time < TIMESTAMP '{truth.start_date}') AS pre_sessions,
      count(e.user_id) FILTER (WHERE e.event_type = 'order'
                                AND e.event_time < TIMESTAMP '{truth.start_date}') AS pre_orders
    FROM a JOIN users u USING (user_id) LEFT JOIN e USING (user_id)
    GROUP BY ALL ORDER BY a.user_id
    """
    with duckdb.connect(str(path), read_only=True) as con:
        df = con.execute(sql).df()
    df["conversion"] = (df["orders"] > 0).astype(float)
    return df


@pytest.fixture(scope="module")
def per_user(small_warehouse, small_truth):
    return _per_user(small_warehouse, small_truth)


COLUMN_OF = {"conversion": "conversion", "orders_per_user": "orders",
             "revenue_per_user": "revenue", "sessions_per_user": "sessions"}


def _z(df, truth, metric, variant, dimension="(all)", segment="(all)"):
    """z-scores of the realised control level, variant level and difference vs the truth."""
    row = truth.effect(metric, variant, dimension, segment)
    if dimension != "(all)":
        df = df[df[dimension] == segment]
    c = df.loc[df.variant == "control", COLUMN_OF[metric]]
    t = df.loc[df.variant == variant, COLUMN_OF[metric]]
    se_c, se_t = c.std() / np.sqrt(len(c)), t.std() / np.sqrt(len(t))
    return ((c.mean() - row.control_value) / se_c,
            (t.mean() - row.variant_value) / se_t,
            (t.mean() - c.mean() - row.absolute_effect) / np.hypot(se_c, se_t))


def test_tables_have_the_documented_columns_and_types(small_warehouse):
    with duckdb.connect(str(small_warehouse), read_only=True) as con:
        for name, columns in {**TABLES, **SAMPLE_TABLES}.items():
            described = con.execute(f"DESCRIBE {name}").df().set_index("column_name")
            assert list(described.index) == [c.name for c in columns], name
            for c in columns:
                assert described.loc[c.name, "column_type"] in DUCK_TYPES[c.dtype], (name, c.name)


@pytest.mark.parametrize("metric", ["conversion", "orders_per_user", "revenue_per_user",
                                    "sessions_per_user"])
@pytest.mark.parametrize("variant", ["treatment_a", "treatment_b"])
def test_realised_levels_and_effects_match_the_truth(per_user, small_truth, metric, variant):
    for z in _z(per_user, small_truth, metric, variant):
        assert abs(z) < 4, (metric, variant, z)


@pytest.mark.parametrize("metric", ["conversion", "revenue_per_user"])
@pytest.mark.parametrize("segment", ["mobile", "desktop"])
def test_segment_effects_match_the_truth(per_user, small_truth, metric, segment):
    for z in _z(per_user, small_truth, metric, "treatment_a", "device", segment):
        assert abs(z) < 4, (metric, segment, z)


def test_revenue_per_order_matches_the_truth(per_user, small_truth):
    # Ratio of sums per arm; standard error by the delta method over users.
    for variant in ["control", "treatment_b"]:
        d = per_user[per_user.variant == variant]
        y, x = d["revenue"].to_numpy(), d["orders"].to_numpy(dtype=float)
        r = y.sum() / x.sum()
        resid = y - r * x
        se = np.sqrt((resid**2).sum()) / x.sum()
        row = small_truth.effect("revenue_per_order", "treatment_b")
        expected = row.control_value if variant == "control" else row.variant_value
        assert abs(r - expected) < 4 * se, (variant, r, expected, se)


def test_truth_has_the_designed_heterogeneity(small_truth):
    eff = small_truth.effects
    assert set(eff.dimension) == {"(all)", "device", "country", "channel"}
    assert np.allclose(eff.relative_lift, eff.variant_value / eff.control_value - 1)
    lift = {s: small_truth.effect("orders_per_user", "treatment_a", "device", s).relative_lift
            for s in ["desktop", "mobile", "tablet"]}
    # Orders are p x sessions and the per-session lift is 1.10 / 1.02 / 1.00 (p is never capped
    # by the lift), so the truth must reproduce the configured lifts exactly.
    assert lift["mobile"] == pytest.approx(0.10, abs=1e-9)
    assert lift["desktop"] == pytest.approx(0.02, abs=1e-9)
    assert lift["tablet"] == pytest.approx(0.0, abs=1e-12)
    rpo = small_truth.effect("revenue_per_order", "treatment_b").relative_lift
    assert rpo == pytest.approx(0.05, abs=1e-9)
    assert small_truth.effect("sessions_per_user", "treatment_a").absolute_effect == 0


def test_truth_users_average_to_the_truth(small_warehouse, small_truth):
    with duckdb.connect(str(small_warehouse), read_only=True) as con:
        tau = con.execute("SELECT t.*, u.device FROM truth_users t JOIN users u USING (user_id)"
                          ).df()
        stored = con.execute("SELECT count(*) FROM truth").fetchone()[0]
    assert stored == len(small_truth.effects)
    assert tau.tau_conversion_a.mean() == pytest.approx(
        small_truth.effect("conversion", "treatment_a").absolute_effect, rel=1e-9)
    by_device = tau.groupby("device").tau_conversion_a.mean()
    assert by_device["mobile"] > by_device["desktop"] > 0
    assert (tau.loc[tau.device == "tablet", "tau_conversion_a"].abs() < 1e-15).all()


def test_pre_period_predicts_the_experiment_period(per_user):
    assert per_user[["sessions", "pre_sessions"]].corr().iloc[0, 1] > 0.5
    assert per_user[["orders", "pre_orders"]].corr().iloc[0, 1] > 0.4


def test_event_windows(small_warehouse, small_truth):
    with duckdb.connect(str(small_warehouse), read_only=True) as con:
        row = con.execute(f"""
            SELECT min(event_time) >= TIMESTAMP '{small_truth.pre_start_date}',
                   max(event_time) < TIMESTAMP '{small_truth.end_date}' + INTERVAL 1 DAY,
                   count(*) FILTER (WHERE event_time >= TIMESTAMP '{small_truth.start_date}'
                                    AND event_time < a.assigned_at),
                   count(*) FILTER (WHERE event_type = 'order' AND revenue IS NULL),
                   count(*) FILTER (WHERE event_type <> 'order' AND revenue IS NOT NULL),
                   min(revenue) > 0
            FROM events JOIN assignments a USING (user_id)""").fetchone()
        exposure_sessions = con.execute("""
            SELECT count(*) FROM assignments a JOIN events e
              ON e.user_id = a.user_id AND e.event_time = a.assigned_at
             AND e.event_type = 'session'""").fetchone()[0]
        n_users = con.execute("SELECT count(*) FROM assignments").fetchone()[0]
    assert row == (True, True, 0, 0, 0, True)
    assert exposure_sessions == n_users  # the exposure is the user's first experiment session


def _assignment_counts(path) -> pd.Series:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("""
            SELECT variant, count(*) AS n FROM (
              SELECT user_id, arg_min(variant, assigned_at) AS variant FROM assignments
              GROUP BY user_id) GROUP BY variant ORDER BY variant""").df().set_index("variant").n


def test_srm_injection_is_detectable_and_clean_data_is_not(small_warehouse, faulty_warehouse,
                                                            faulty_truth):
    clean = _assignment_counts(small_warehouse)
    faulty = _assignment_counts(faulty_warehouse)
    assert stats.chisquare(clean).pvalue > 0.001
    assert stats.chisquare(faulty).pvalue < 0.001
    b = clean["treatment_b"]  # same seed: same population and arms before the drop
    assert faulty_truth.faults["srm_dropped_users"] == round(sample.SRM_DROP_SHARE * b)
    assert b - faulty["treatment_b"] == faulty_truth.faults["srm_dropped_users"]


def test_crossover_and_missing_shares(faulty_warehouse, faulty_truth):
    with duckdb.connect(str(faulty_warehouse), read_only=True) as con:
        users, multi = con.execute("""
            SELECT count(*), count(*) FILTER (WHERE k > 1) FROM (
              SELECT user_id, count(DISTINCT variant) AS k FROM assignments GROUP BY user_id)
            """).fetchone()
        orders, nan, null = con.execute("""
            SELECT count(*), count(*) FILTER (WHERE isnan(revenue)),
                   count(*) FILTER (WHERE revenue IS NULL)
            FROM events WHERE event_type = 'order'""").fetchone()
    assert multi == faulty_truth.faults["crossover_users"] == round(0.02 * users)
    assert nan == faulty_truth.faults["missing_revenue"] == round(0.01 * orders)
    assert null == 0  # missing revenue is NaN, not NULL


def _table_hashes(path) -> dict:
    out = {}
    with duckdb.connect(str(path), read_only=True) as con:
        for name in [*TABLES, *SAMPLE_TABLES]:
            cols = ", ".join(con.execute(f"DESCRIBE {name}").df().column_name)
            df = con.execute(f"SELECT * FROM {name} ORDER BY {cols}").df()
            out[name] = hashlib.sha256(
                pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes()).hexdigest()
    return out


def test_same_seed_same_tables_through_the_cli(tmp_path, capsys):
    paths = [tmp_path / "a.duckdb", tmp_path / "b.duckdb", tmp_path / "c.duckdb"]
    for path, seed in zip(paths, ["1", "1", "2"]):
        assert cli_main(["sample-data", "--seed", seed, "--users", "3000", "--out",
                         str(path)]) == 0
    out = capsys.readouterr().out
    assert "relative_lift" in out
    # what the command prints: where it wrote, then the truth's summary
    assert f"wrote {paths[-1]} in " in out
    truth = generate(tmp_path / "d.duckdb", seed=2, n_users=3000, progress=False)
    assert out.rstrip().endswith(str(truth.summary()))
    a, b, c = (_table_hashes(p) for p in paths)
    assert a == b
    assert a["events"] != c["events"] and a["users"] != c["users"]


def test_default_path_comes_from_the_settings(tmp_path, monkeypatch):
    target = tmp_path / "nested" / "wh.duckdb"
    monkeypatch.setenv("WORKBENCH_WAREHOUSE", str(target))
    truth = generate(n_users=200, seed=3, progress=False)
    assert truth.path == target and target.exists()
    summary = truth.summary()
    assert isinstance(summary, Summary) and "checkout_redesign" in summary
    # the HTML shows the overall truth: one row per metric x treatment, with its values
    overall = truth.effects[truth.effects.dimension == "(all)"]
    header, *rows = html_rows(truth._repr_html_())
    assert len(rows) == len(overall) and [r[0] for r in rows] == list(overall["metric"])
    lift = [float(r[header.index("relative_lift")]) for r in rows]
    np.testing.assert_allclose(lift, overall["relative_lift"], atol=5e-7)  # 6 decimals shown
    assert summary._repr_html_() == truth._repr_html_()


@pytest.mark.parametrize("kwargs", [{"n_users": 5}, {"crossover": 1.5}, {"missing": -0.1},
                                    {"seed": -1}, {"activity": 0}])
def test_bad_parameters_raise(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        generate(tmp_path / "x.duckdb", progress=False, **kwargs)


def test_activity_multiplies_the_sessions_and_the_truth_follows(tmp_path):
    """activity=3: three times the pre-period sessions per user; the experiment's sessions per
    control user still match the truth (computed from the same rates)."""
    pre, during, truth = {}, {}, {}
    for activity in (1.0, 3.0):
        path = tmp_path / f"a{activity:g}.duckdb"
        t = generate(path, seed=3, n_users=4000, activity=activity, progress=False)
        e = t.effects
        truth[activity] = e[(e.metric == "sessions_per_user") & (e.dimension == "(all)")
                            & (e.variant == "treatment_a")]["control_value"].iloc[0]
        with duckdb.connect(str(path), read_only=True) as con:
            pre[activity] = con.execute(
                "SELECT count(*) / 4000 FROM events WHERE event_type = 'session' AND "
                f"event_time < DATE '{t.start_date}'").fetchone()[0]
            during[activity] = con.execute(
                "SELECT count(e.user_id) / count(DISTINCT a.user_id) FROM assignments a "
                "LEFT JOIN events e ON e.user_id = a.user_id AND e.event_type = 'session' AND "
                f"e.event_time >= a.assigned_at AND e.event_time < DATE '{t.end_date}' + 1 "
                "WHERE a.variant = 'control'").fetchone()[0]
    assert pre[3.0] / pre[1.0] == pytest.approx(3.0, rel=0.05)
    assert truth[3.0] > 2 * truth[1.0]
    for activity in (1.0, 3.0):
        assert during[activity] == pytest.approx(truth[activity], rel=0.05), activity


def test_model_dataset_drift():
    df = model_dataset(seed=5, n_reference=6000, n_current=3000)
    ref, cur = df[df.period == "reference"], df[df.period == "current"]
    assert (len(ref), len(cur)) == (6000, 3000)
    for drifted in ["tenure_days", "sessions_30d"]:
        assert stats.ks_2samp(ref[drifted], cur[drifted]).pvalue < 1e-6, drifted
    assert stats.ks_2samp(ref.pages_per_session, cur.pages_per_session).pvalue > 1e-3
    device = pd.crosstab(df.period, df.device)
    assert stats.chi2_contingency(device).pvalue < 1e-6
    country = pd.crosstab(df.period, df.country)
    assert stats.chi2_contingency(country).pvalue > 1e-3
    assert "video_ads" in set(cur.channel) and "video_ads" not in set(ref.channel)
    assert 0.05 < df.label.mean() < 0.95
    # The label is learnable: buyers had more orders before.
    assert stats.spearmanr(ref.orders_30d, ref.label).statistic > 0.1
    assert model_dataset(seed=5, n_reference=6000, n_current=3000).equals(df)


def test_model_data_table_is_written(small_warehouse):
    with duckdb.connect(str(small_warehouse), read_only=True) as con:
        periods = dict(con.execute(
            "SELECT period, count(*) FROM model_data GROUP BY period").fetchall())
    assert periods == {"reference": 20_000, "current": 10_000}


@pytest.mark.slow
def test_truth_at_full_size(tmp_path):
    """200k users: tighter check of levels and effects for every metric and device segment."""
    truth = generate(tmp_path / "big.duckdb", seed=11, progress=False)
    df = _per_user(tmp_path / "big.duckdb", truth)
    for metric in COLUMN_OF:
        for variant in ["treatment_a", "treatment_b"]:
            for dim, seg in [("(all)", "(all)"), ("device", "mobile"), ("device", "tablet"),
                             ("country", "US"), ("channel", "email")]:
                for z in _z(df, truth, metric, variant, dim, seg):
                    assert abs(z) < 4.5, (metric, variant, seg, z)
