"""Issue 17: a readout never gives a wrong answer silently.

Nothing computed never reads as a null result; failed data checks void the decision in words
("do not trust: <check>"); what the readout excluded or ignored is said, with counts taken from
the raw rows (duckdb), not from the workbench.
"""
from __future__ import annotations

import shutil
import warnings

import duckdb
import yaml

from workbench.metrics.definition import SAMPLE_METRICS
from workbench.readout import decision as d
from workbench.readout.experiment import Experiment
from workbench.readout.record import ReadoutRecord


def _copy(small_warehouse, tmp_path, name, *sql):
    path = tmp_path / f"{name}.duckdb"
    shutil.copy(small_warehouse, path)
    con = duckdb.connect(str(path))
    for q in sql:
        con.execute(q)
    con.close()
    return path


def _readout(path, metrics=None):
    exp = Experiment.from_source(path, "checkout_redesign", metrics)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return exp.analyze(timeseries=False)


def test_empty_events_table_is_nothing_computed_not_a_null_result(small_warehouse, tmp_path):
    path = _copy(small_warehouse, tmp_path, "empty", "delete from events")
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("select count(*) from events").fetchone()[0] == 0
    con.close()
    result = _readout(path)
    assert (result.results["verdict"] == d.VERDICT_ERROR).all()
    # was: "no detectable effect on the primary metric", trustworthy
    assert result.decision.startswith(f"{d.NOTHING_COMPUTED}: every comparison is "
                                      f"{d.VERDICT_ERROR} (")
    assert d.VERDICT_NONE not in result.decision
    assert set(result.decisions.values()) == {d.NOTHING_COMPUTED}
    assert result.computable == d.COMPUTABLE_NONE and not result.trustworthy
    assert "table (events)" in result.decision  # the failed check, named
    text = str(result.summary())
    assert "Note: Data check failed (table, events): table 'events' is empty." in text
    record = ReadoutRecord.from_result(result)
    assert record.tags()["workbench.trustworthy"] == "false"
    assert record.tags()["workbench.computable"] == "none"
    assert record.metrics()["comparisons_computed"] == 0
    assert any("table 'events' is empty" in n for n in record.notes)


def test_primary_event_type_matching_no_event(small_warehouse, tmp_path):
    spec = yaml.safe_load(SAMPLE_METRICS.read_text())
    for m in spec["metrics"]:
        if m["name"] == "conversion":
            m["event_type"] = "no_such_event"
    metrics = tmp_path / "metrics.yml"
    metrics.write_text(yaml.safe_dump(spec))
    con = duckdb.connect(str(small_warehouse), read_only=True)
    assert con.execute("select count(*) from events where event_type = 'no_such_event'"
                       ).fetchone()[0] == 0
    con.close()
    result = _readout(small_warehouse, metrics)
    primary = result.results[result.results["role"] == "primary"]
    assert (primary["verdict"] == d.VERDICT_ERROR).all()
    assert result.decision.startswith(f"{d.NOTHING_COMPUTED} on the primary metric (conversion: ")
    assert all(v.startswith(f"{d.DECISION_NOT_COMPUTABLE}: primary metric conversion")
               for v in result.decisions.values())
    assert result.computable == d.COMPUTABLE_SOME  # the other metrics were computed
    assert not result.trustworthy
    record = ReadoutRecord.from_result(result)
    assert record.tags()["workbench.computable"] == "some"
    assert record.tags()["workbench.trustworthy"] == "false"


def test_faulty_readout_says_what_it_excluded_and_voids_the_decision(faulty_warehouse):
    con = duckdb.connect(str(faulty_warehouse), read_only=True)
    crossovers = con.execute(
        "select count(*) from (select user_id from assignments where experiment_id = "
        "'checkout_redesign' group by user_id having count(distinct variant) > 1)").fetchone()[0]
    nans = con.execute("select count(*) from events where isnan(revenue)").fetchone()[0]
    con.close()
    assert crossovers > 0 and nans > 0
    result = _readout(faulty_warehouse)
    assert result.decision.startswith(d.VERDICT_SRM)
    assert "crossovers (assignments.user_id)" in result.decision
    assert "nan (events.revenue)" in result.decision
    cross = [n for n in result.notes if "(crossovers," in n]
    nan = [n for n in result.notes if "(nan, events.revenue)" in n]
    assert len(cross) == 1 and f"{crossovers:,} unit(s)" in cross[0]
    assert cross[0].endswith("excluded from the analysis.")
    assert len(nan) == 1 and f"{nans:,} NaN value(s)" in nan[0] and "ignored" in nan[0]
    text = str(result.summary())
    assert f"Note: {cross[0]}" in text and f"Note: {nan[0]}" in text
    assert ReadoutRecord.from_result(result).notes[:len(result.notes)] == list(result.notes)
    # units really excluded: the readout's units are the single-variant ones
    con = duckdb.connect(str(faulty_warehouse), read_only=True)
    single = con.execute(
        "select count(*) from (select user_id from assignments where experiment_id = "
        "'checkout_redesign' group by user_id having count(distinct variant) = 1)").fetchone()[0]
    con.close()
    conv = result.stats[result.stats["metric"] == "conversion"]
    assert int(conv["n"].sum()) == single


def test_failed_checks_without_srm_void_the_decision(small_warehouse, tmp_path):
    path = _copy(small_warehouse, tmp_path, "nulls",
                 "update assignments set variant = NULL where hash(user_id) % 100 = 1",
                 "update events set revenue = 'inf'::double where hash(user_id) % 100 = 3 "
                 "and revenue > 0")
    con = duckdb.connect(str(path), read_only=True)
    nulls = con.execute("select count(*) from assignments where variant is null").fetchone()[0]
    infs = con.execute("select count(*) from events where isinf(revenue)").fetchone()[0]
    con.close()
    result = _readout(path)
    assert not result.validation.srm and not result.validation.ok
    # was: "no detectable effect on the primary metric" under a FAILED validation
    label = d.untrusted("nulls (assignments.variant), inf (events.revenue)")
    assert result.decision.startswith(label)
    assert set(result.decisions.values()) == {label}
    assert not result.trustworthy
    notes = " ".join(result.notes)
    assert f"{nulls:,} NULL value(s) in assignments.variant" in notes
    assert "units without a variant are not analysed" in notes
    assert f"{infs:,} +-inf value(s) in events.revenue" in notes
    con = duckdb.connect(str(path), read_only=True)
    with_variant = con.execute(
        "select count(*) from (select user_id from assignments where experiment_id = "
        "'checkout_redesign' group by user_id having count(variant) > 0 "
        "and count(distinct variant) = 1)").fetchone()[0]
    con.close()
    conv = result.stats[result.stats["metric"] == "conversion"]
    assert int(conv["n"].sum()) == with_variant  # NULL-variant units really are not analysed
    # the rows are still computed (for diagnosis): verdicts are the statistics'
    assert result.computable == d.COMPUTABLE_ALL
