"""The catalogue of runs: reading run folders back, the published tag, publishing."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from workbench.dashboards import catalogue
from workbench.errors import PublishError
from workbench.readout.record import (
    BAYESIAN,
    RESULTS,
    SEGMENTS,
    TABLES,
    TIMESERIES,
    VALIDATION,
    ReadoutRecord,
)


def _tag(client, run_id):
    return client.get_run(run_id).data.tags.get(catalogue.PUBLISHED_TAG)


def test_list_runs_finds_every_run_and_the_published_flag(runs_env):
    from mlflow.tracking import MlflowClient

    runs = catalogue.list_runs()
    ids = {r.run_id for r in runs}
    r = runs_env
    assert {r.frequentist, r.latest, r.faulty, r.legacy, *r.model_runs, r.unpublished} <= ids
    # the published flag is MLflow's tag, read back by MLflow's own client
    client = MlflowClient(tracking_uri=r.tracking_uri)
    for record in runs:
        assert record.published == (_tag(client, record.run_id) == "true")
    published = catalogue.list_runs(published_only=True)
    assert {x.run_id for x in published} == {r.frequentist, r.latest, r.faulty, r.legacy,
                                             *r.model_runs}
    assert [x.run_id for x in catalogue.list_runs(template="model_experiment")] == r.model_runs[:1]
    # newest first
    assert [x.started_at for x in runs] == sorted((x.started_at for x in runs), reverse=True)


def test_published_ids_match_an_mlflow_search(runs_env):
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=runs_env.tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    searched = {run.info.run_id for run in client.search_runs(
        experiments, filter_string=f"tags.`{catalogue.PUBLISHED_TAG}` = 'true'",
        run_view_type=ViewType.ACTIVE_ONLY)}
    fast = catalogue.published_run_ids(runs_env.tracking_uri)
    assert fast == searched
    assert runs_env.unpublished not in fast


def test_a_missing_store_has_no_published_runs_and_is_not_created(tmp_path):
    uri = f"sqlite:///{tmp_path / 'none.db'}"
    assert catalogue.published_run_ids(uri) == set()
    assert catalogue.list_runs(reports_dir=tmp_path, tracking_uri=uri) == []
    with pytest.raises(PublishError, match="no MLflow database"):
        catalogue.publish("0123456789abcdef", tracking_uri=uri, reports_dir=tmp_path)
    assert not (tmp_path / "none.db").exists()


def test_load_run_reads_back_what_was_logged(runs_env):
    run_id = runs_env.frequentist
    result = runs_env.results[run_id]
    loaded = catalogue.load_run(run_id[:8])  # the prefix shown in folder names works too
    assert loaded.run_id == run_id
    assert loaded.record.template == "ab_test" and loaded.record.experiment == "checkout_redesign"
    logged = runs_env.records[run_id]
    assert set(loaded.tables) == set(logged.tables) >= {RESULTS, SEGMENTS, TIMESERIES, VALIDATION}
    assert BAYESIAN not in loaded.tables  # this older run was logged without it
    # independent reader: pyarrow on the file itself, and the frame that was logged
    path = loaded.record.path / "tables" / f"{RESULTS}.parquet"
    direct = pq.read_table(path).to_pandas()
    pd.testing.assert_frame_equal(loaded.table(RESULTS), direct)
    np.testing.assert_allclose(loaded.table(RESULTS)["effect"], result.results["effect"])
    assert loaded.summary["decision"] == result.decision
    assert loaded.summary["srm_p_value"] == pytest.approx(result.srm_p_value)
    assert loaded.figures["forest"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert loaded.table("nope") is None


def test_the_readout_record_makes_the_round_trip(runs_env):
    """What the dashboard loads in one call is what the readout decided."""
    for run_id in (runs_env.latest, runs_env.faulty):
        result, logged = runs_env.results[run_id], runs_env.records[run_id]
        loaded = catalogue.load_run(run_id)
        again = ReadoutRecord.from_logged(loaded.summary, loaded.tables)
        assert again.decision == result.decision
        assert again.decisions == result.decisions
        assert again.srm_p_value == pytest.approx(result.srm_p_value)
        assert again.trustworthy == result.trustworthy
        assert again.alpha == result.alpha and again.difference == result.difference
        assert set(again.tables) == set(logged.tables) and set(again.tables) <= set(TABLES)
        for name, frame in logged.tables.items():
            pd.testing.assert_frame_equal(again.tables[name], frame, check_dtype=False)
        pd.testing.assert_frame_equal(again.results.reset_index(drop=True),
                                      result.results.reset_index(drop=True), check_dtype=False)


def test_load_run_of_an_unknown_id_raises(runs_env):
    with pytest.raises(PublishError, match="not found"):
        catalogue.load_run("does-not-exist")
    assert catalogue.find_run("abc", catalogue.list_runs()) is None  # short prefixes never match


def test_an_unreadable_run_json_is_skipped(runs_env, tmp_path):
    import shutil

    source = catalogue.load_run(runs_env.frequentist).record.path
    good = tmp_path / "ab_test" / "copy" / source.name
    shutil.copytree(source, good)
    bad = tmp_path / "ab_test" / "broken" / "20260101T000000Z-deadbeef"
    bad.mkdir(parents=True)
    (bad / "run.json").write_text("{not json")
    runs = catalogue.list_runs(reports_dir=tmp_path)
    assert [r.path for r in runs] == [good]


def test_publish_and_unpublish_through_the_cli(runs_env, capsys):
    from mlflow.tracking import MlflowClient

    from workbench.cli import main

    run_id = runs_env.unpublished
    client = MlflowClient(tracking_uri=runs_env.tracking_uri)
    assert main(["publish", run_id[:8]]) == 0
    assert f"published run {run_id}" in capsys.readouterr().out
    assert _tag(client, run_id) == "true"
    assert run_id in catalogue.published_run_ids()
    assert main(["publish", run_id, "--unpublish"]) == 0
    assert f"unpublished run {run_id}" in capsys.readouterr().out
    assert _tag(client, run_id) == "false"
    assert run_id not in catalogue.published_run_ids()
    assert main(["publish", "ffffffffffffffffffffffffffffffff"]) == 2
    assert "not found" in capsys.readouterr().err
    # the library call, without the command line
    assert catalogue.publish(run_id[:8]) == run_id and _tag(client, run_id) == "true"
    assert catalogue.unpublish(run_id) == run_id and _tag(client, run_id) == "false"
