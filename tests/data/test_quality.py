"""The data-quality checks (workbench.data.quality) on clean data and on every injected fault.

Each expected count is computed independently: from what the generator injected
(``SampleTruth.faults``), from what the test itself wrote into a copy of the warehouse, or with
plain SQL / scipy.
"""
from __future__ import annotations

import shutil

import duckdb
import ibis
import pytest
from scipy import stats

from workbench.cli import main as cli_main
from workbench.data import quality
from workbench.data.quality import REPORT_COLUMNS, QualityReport, check_source
from workbench.errors import SchemaError, SourceError
from workbench.summary import Summary


@pytest.fixture
def copy(small_warehouse, tmp_path):
    """A writable copy of the clean warehouse, and a function running SQL on it."""
    path = tmp_path / "copy.duckdb"
    shutil.copy(small_warehouse, path)

    def sql(*statements):
        with duckdb.connect(str(path)) as con:
            out = [con.execute(s).fetchall() for s in statements]
        return out[-1] if out else None

    return path, sql


@pytest.fixture(scope="module")
def clean_report(small_warehouse):
    return check_source(small_warehouse)


@pytest.fixture(scope="module")
def faulty_report(faulty_warehouse):
    return check_source(faulty_warehouse)


def test_clean_sample_passes(clean_report, small_truth):
    r = clean_report
    assert isinstance(r, QualityReport) and r.ok
    assert (r.checks.status == "ok").all(), r.checks[r.checks.status != "ok"]
    assert list(r.to_frame().columns) == REPORT_COLUMNS
    assert r.experiment_ids == (small_truth.experiment_id,)
    assert r.count("table", "users") == small_truth.n_users
    assert r.variant_counts.units.sum() == small_truth.n_users
    assert "OK" in r.summary() and "every check passed" in r.summary()
    html = r._repr_html_()
    assert "<table>" in html and html.count("<tr style=\"background:") == len(r.checks)
    assert isinstance(r.summary(), Summary) and r.summary()._repr_html_() == html
    assert list(r.to_frame().columns) == [
        "check", "table", "column", "status", "count", "share", "p_value", "message"]
    assert set(r.checks.check) <= set(quality.CHECKS)
    assert r.raise_if_errors() is r


def test_srm_is_an_error_with_scipys_p_value(faulty_report, faulty_warehouse):
    with duckdb.connect(str(faulty_warehouse), read_only=True) as con:
        counts = [n for _, n in con.execute("""
            SELECT variant, count(*) FROM (
              SELECT user_id, any_value(variant) AS variant FROM assignments GROUP BY user_id
              HAVING count(DISTINCT variant) = 1) GROUP BY variant ORDER BY variant""").fetchall()]
    expected = stats.chisquare(counts).pvalue
    assert expected < 0.001
    assert faulty_report.srm_p_value == pytest.approx(expected, rel=1e-6)
    assert faulty_report.status("srm") == "error"
    assert list(faulty_report.variant_counts.units) == counts
    row = faulty_report.checks.set_index("check").loc["srm"]
    assert row.p_value == pytest.approx(expected, rel=1e-6) and faulty_report.srm


def test_clean_srm_p_value_matches_scipy(clean_report, small_warehouse):
    with duckdb.connect(str(small_warehouse), read_only=True) as con:
        counts = [n for _, n in con.execute(
            "SELECT variant, count(*) FROM assignments GROUP BY 1 ORDER BY 1").fetchall()]
    assert clean_report.srm_p_value == pytest.approx(stats.chisquare(counts).pvalue, rel=1e-6)


def test_crossover_users_are_counted(faulty_report, faulty_truth):
    n = faulty_truth.faults["crossover_users"]
    assert n > 0
    assert faulty_report.count("crossovers") == n
    assert faulty_report.status("crossovers") == "error"  # 2 % >= 1 %
    row = faulty_report.checks.set_index("check").loc["crossovers"]
    assert row.share == pytest.approx(n / (faulty_truth.n_users - faulty_truth.faults[
        "srm_dropped_users"]))


def test_nan_revenue_is_counted_separately_from_null(faulty_report, faulty_truth):
    assert faulty_report.count("nan", "events", "revenue") == faulty_truth.faults[
        "missing_revenue"] > 0
    assert faulty_report.status("nan", "events", "revenue") == "error"
    assert faulty_report.count("inf", "events", "revenue") == 0
    assert not faulty_report.ok


def test_few_crossovers_are_a_warning(copy):
    path, sql = copy
    # 0.5 % of users get a second row in another variant.
    sql("""INSERT INTO assignments
           SELECT experiment_id, user_id,
                  CASE variant WHEN 'control' THEN 'treatment_a' ELSE 'control' END,
                  assigned_at + INTERVAL 1 HOUR
           FROM assignments WHERE user_id % 200 = 0""")
    r = check_source(path)
    assert r.count("crossovers") == 20_000 // 200
    assert r.status("crossovers") == "warning" and r.ok


def test_events_before_exposure_are_counted(copy, small_truth):
    path, sql = copy
    start = small_truth.start_date
    # One session 1 minute before exposure for the first 37 users exposed after day 2, plus
    # one pre-period event (before start_date) that must NOT be counted.
    sql(f"""INSERT INTO events
            SELECT user_id, assigned_at - INTERVAL 1 MINUTE, 'session', NULL, NULL
            FROM (SELECT * FROM assignments
                  WHERE assigned_at > TIMESTAMP '{start}' + INTERVAL 2 DAY
                  ORDER BY user_id LIMIT 37)""",
        f"INSERT INTO events VALUES (1, TIMESTAMP '{start}' - INTERVAL 1 HOUR, 'session', "
        "NULL, NULL)")
    r = check_source(path)
    assert r.count("events_before_exposure") == 37
    assert r.status("events_before_exposure") == "warning"
    assert r.ok  # a warning, not an error
    assert cli_main(["validate", "--source", str(path)]) == 0


def test_unknown_variant_is_an_error(copy):
    path, sql = copy
    sql("UPDATE assignments SET variant = 'treatment_c' WHERE user_id % 1000 = 7")
    n = sql("SELECT count(*) FROM assignments WHERE variant = 'treatment_c'")[0][0]
    r = check_source(path)
    assert n > 0 and r.count("unknown_variant") == n
    assert r.status("unknown_variant") == "error"
    assert "treatment_c" not in set(r.variant_counts.variant)


def test_wrong_type_names_table_and_column(copy):
    path, sql = copy
    sql("ALTER TABLE users ALTER tenure_days TYPE VARCHAR")
    r = check_source(path)
    err = r.errors
    assert list(err[["check", "table", "column"]].itertuples(index=False, name=None)) == [
        ("type", "users", "tenure_days")]
    with pytest.raises(SchemaError, match=r"users\.tenure_days"):
        check_source(path, raise_on_error=True)


def test_missing_column_and_missing_table(copy):
    path, sql = copy
    sql("ALTER TABLE events DROP COLUMN items", "DROP TABLE experiments")
    r = check_source(path)
    got = set(r.errors[["check", "table", "column"]].itertuples(index=False, name=None))
    assert got == {("column", "events", "items"), ("table", "experiments", "")}
    assert r.status("experiment") == "warning"  # experiment checks could not run
    assert cli_main(["validate", "--source", str(path)]) == 2


def test_inf_and_nulls_are_counted(copy):
    path, sql = copy
    sql("""UPDATE events SET revenue = CASE WHEN user_id % 2 = 0 THEN 'inf'::DOUBLE
                                            ELSE '-inf'::DOUBLE END
           WHERE event_type = 'order' AND user_id % 50 = 3""",
        "UPDATE assignments SET assigned_at = NULL WHERE user_id % 500 = 1")
    n_inf = sql("SELECT count(*) FROM events WHERE isinf(revenue)")[0][0]
    n_null = sql("SELECT count(*) FROM assignments WHERE assigned_at IS NULL")[0][0]
    r = check_source(path)
    assert n_inf > 0 and r.count("inf", "events", "revenue") == n_inf
    assert r.count("nan", "events", "revenue") == 0
    assert n_null == 40 and r.count("nulls", "assignments", "assigned_at") == n_null
    assert r.status("inf") == r.status("nulls") == "error"


def test_duplicate_users_are_an_error(copy):
    path, sql = copy
    sql("INSERT INTO users SELECT * FROM users WHERE user_id <= 25")
    r = check_source(path)
    assert r.count("duplicates", "users", "user_id") == 25
    assert r.status("duplicates") == "error"


def test_srm_with_an_empty_or_unplanned_variant(copy):
    path, sql = copy
    sql("UPDATE experiments SET planned_weight = CASE variant WHEN 'treatment_b' THEN 0 "
        "ELSE 0.5 END")
    r = check_source(path)  # units in a variant planned at weight 0
    assert r.status("srm") == "error" and r.srm_p_value == 0.0
    sql("UPDATE experiments SET planned_weight = 1 / 3", "DELETE FROM assignments "
        "WHERE variant = 'treatment_b'")
    r = check_source(path)  # a planned variant without units
    assert r.status("srm") == "error" and r.srm_p_value < 1e-100
    assert r.variant_counts.set_index("variant").units["treatment_b"] == 0


def test_planned_weights_and_unknown_experiment(copy):
    path, sql = copy
    sql("UPDATE experiments SET planned_weight = 0.5 WHERE variant = 'control'")
    r = check_source(path)
    assert r.status("experiment") == "error"
    assert "sum to" in " ".join(r.errors.message)
    r = check_source(path, experiment_id="nope")
    assert r.status("experiment") == "error" and "'nope'" in r.summary()


def test_accepts_connections_and_reports_bad_sources(small_warehouse, tmp_path):
    with duckdb.connect(str(small_warehouse), read_only=True) as con:
        assert check_source(con).ok
    assert check_source(ibis.duckdb.connect(str(small_warehouse), read_only=True)).ok
    with pytest.raises(SourceError):
        check_source(tmp_path / "missing.duckdb")


def test_cli_exit_codes(small_warehouse, faulty_warehouse, capsys):
    assert cli_main(["validate", "--source", str(small_warehouse)]) == 0
    assert "OK" in capsys.readouterr().out
    assert cli_main(["validate", "--source", str(faulty_warehouse),
                     "--experiment", "checkout_redesign"]) == 2
    out = capsys.readouterr().out
    assert "FAILED" in out and "sample ratio mismatch" in out and "events.revenue" in out


def test_thresholds_are_overridable(faulty_warehouse, faulty_report, faulty_truth):
    assert quality.SRM_THRESHOLD == 0.001 and quality.CROSSOVER_THRESHOLD == 0.01
    from workbench.stats.srm import SRM_THRESHOLD

    assert quality.SRM_THRESHOLD is SRM_THRESHOLD  # one constant, the stats engine's
    p = faulty_report.srm_p_value
    lax = check_source(faulty_warehouse, srm_threshold=p / 2, crossover_threshold=0.5)
    assert lax.status("srm") == "ok" and lax.srm_p_value == pytest.approx(p)
    assert lax.status("crossovers") == "warning"
    assert lax.count("crossovers") == faulty_truth.faults["crossover_users"]


def test_the_experiment_path_counts_the_same(faulty_warehouse, faulty_report, faulty_truth):
    """Experiment.validate runs the same checks on the experiment's own tables and units."""
    from workbench.readout.experiment import Experiment

    v = Experiment.from_source(faulty_warehouse).validate()
    assert isinstance(v, QualityReport) and v.srm and not v.ok
    assert v.srm_p_value == pytest.approx(faulty_report.srm_p_value, rel=1e-12)
    for check in ("crossovers", "srm", "nan", "unknown_variant", "events_before_exposure"):
        assert v.count(check) == faulty_report.count(check), check
        assert v.status(check) == faulty_report.status(check), check
    assert v.crossover_units == faulty_truth.faults["crossover_users"]


def test_assigned_units_missing_from_users_are_a_warning(copy):
    path, sql = copy
    sql("DELETE FROM users WHERE user_id % 100 = 5",
        "INSERT INTO users SELECT * FROM users WHERE user_id <= 3")  # duplicates do not count
    n = sql("""SELECT count(DISTINCT user_id) FROM assignments
               WHERE user_id NOT IN (SELECT user_id FROM users)""")[0][0]
    r = check_source(path)
    assert n > 0 and r.count("missing_users") == n
    assert r.status("missing_users") == "warning"
