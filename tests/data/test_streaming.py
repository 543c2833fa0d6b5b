"""The chunked sample generator: same tables and distribution as ``generate``, bounded memory.

The chunks draw from their own random streams, so chunked and unchunked files are equal in
distribution, not draw for draw: checked here with two-sample tests (scipy) on per-user
aggregates computed in DuckDB from the written tables, and the truth against the per-user
truth it was summed from.
"""
from __future__ import annotations

import duckdb
import numpy as np
import pytest
from scipy import stats

from workbench.data.sample import generate
from workbench.data.streaming import generate_streaming
from workbench.errors import ConfigError

N = 8_000

PER_USER = """
SELECT a.user_id, a.variant, u.device,
  count(*) FILTER (WHERE e.event_type = 'session' AND e.event_time >= a.assigned_at) AS s,
  count(*) FILTER (WHERE e.event_type = 'order' AND e.event_time >= a.assigned_at) AS o,
  coalesce(sum(e.revenue) FILTER (WHERE e.event_type = 'order'
                                  AND e.event_time >= a.assigned_at), 0) AS r,
  count(*) FILTER (WHERE e.event_time < a.assigned_at) AS pre
FROM assignments a JOIN users u USING (user_id) LEFT JOIN events e USING (user_id)
GROUP BY ALL ORDER BY a.user_id
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("streaming")
    plain, chunked = d / "plain.duckdb", d / "chunked.duckdb"
    generate(plain, seed=5, n_users=N, progress=False)
    truth = generate_streaming(chunked, seed=5, n_users=N, chunk_users=N // 4 + 7)
    return plain, chunked, truth


def _q(path, sql):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def test_same_tables_and_types(files):
    plain, chunked, _ = files
    sql = ("SELECT table_name, column_name, data_type FROM information_schema.columns "
           "ORDER BY table_name, column_name")
    assert _q(plain, sql).equals(_q(chunked, sql))


def test_users_unique_and_events_sorted(files):
    _, chunked, _ = files
    ids = _q(chunked, "SELECT user_id FROM users")["user_id"].to_numpy()
    assert np.array_equal(np.sort(ids), np.arange(1, N + 1))
    a = _q(chunked, "SELECT count(*) AS n, count(DISTINCT user_id) AS u FROM assignments")
    assert a.n[0] == a.u[0] == N
    e = _q(chunked, "SELECT user_id, epoch_us(event_time) AS t FROM events")
    key = e.user_id.to_numpy() * 2**45 + e.t.to_numpy()
    assert (np.diff(key) >= 0).all()  # written in (user, time) order across chunk boundaries


def test_truth_is_the_sum_of_the_user_truth(files):
    _, chunked, truth = files
    tu = _q(chunked, "SELECT * FROM truth_users")
    t = _q(chunked, "SELECT * FROM truth WHERE metric = 'conversion' AND dimension = '(all)'")
    for variant, col in (("treatment_a", "tau_conversion_a"), ("treatment_b", "tau_conversion_b")):
        row = t[t.variant == variant].iloc[0]
        assert row.absolute_effect == pytest.approx(tu[col].mean(), rel=1e-9)
    keys = ["metric", "variant", "dimension", "segment"]
    written = _q(chunked, "SELECT * EXCLUDE (experiment_id) FROM truth").sort_values(keys)
    assert truth.effects.sort_values(keys).reset_index(drop=True).equals(
        written.reset_index(drop=True))


def test_same_distribution_as_unchunked(files):
    plain, chunked, truth = files
    p, c = _q(plain, PER_USER), _q(chunked, PER_USER)
    for col in ("s", "o", "r", "pre"):
        assert stats.ks_2samp(p[col], c[col]).pvalue > 1e-3, col
    for name in ("variant", "device"):
        table = np.array([p[name].value_counts().sort_index(), c[name].value_counts().sort_index()])
        assert stats.chi2_contingency(table).pvalue > 1e-3, name
    # conversion per arm: two-proportion z-test
    for v in ("control", "treatment_a", "treatment_b"):
        x1, x2 = (p[p.variant == v].o > 0), (c[c.variant == v].o > 0)
        pooled = (x1.sum() + x2.sum()) / (len(x1) + len(x2))
        z = (x1.mean() - x2.mean()) / np.sqrt(pooled * (1 - pooled) * (1 / len(x1) + 1 / len(x2)))
        assert abs(z) < 3.5, v
    # the population truth of both files: equal up to sampling of users
    tp = _q(plain, "SELECT * FROM truth WHERE dimension = '(all)' ORDER BY metric, variant")
    tc = _q(chunked, "SELECT * FROM truth WHERE dimension = '(all)' ORDER BY metric, variant")
    assert np.allclose(tp.control_value, tc.control_value, rtol=0.05)


def test_reproducible_for_a_seed_and_chunk(tmp_path):
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    generate_streaming(a, seed=2, n_users=500, chunk_users=120)
    generate_streaming(b, seed=2, n_users=500, chunk_users=120)
    for table in ("users", "assignments", "events", "truth"):
        assert _q(a, f"SELECT * FROM {table}").equals(_q(b, f"SELECT * FROM {table}")), table


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="chunk_users"):
        generate_streaming(tmp_path / "x.duckdb", n_users=100, chunk_users=0)
    with pytest.raises(ConfigError, match="n_users"):
        generate_streaming(tmp_path / "x.duckdb", n_users=5)
    assert not list(tmp_path.iterdir())
