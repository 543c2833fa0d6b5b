from __future__ import annotations

import subprocess
import sys

import workbench
from workbench.cli import main


def test_version_and_help_list_the_commands(capsys):
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for command in ["sample-data", "validate", "analyze", "readout", "run", "run-jobs",
                    "sync", "publish", "serve"]:
        assert command in out
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert workbench.__version__ in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage: workbench" in capsys.readouterr().out


def test_sync_with_nothing_to_sync(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(["sync"]) == 0
    assert capsys.readouterr().out.strip() == "workbench sync: nothing to sync"


def test_sync_exit_1_while_mlflow_is_unreachable(tmp_path, monkeypatch, capsys):
    from workbench import tracking

    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unknownscheme://nowhere")
    monkeypatch.delenv(tracking.ENV_RUN_DIR, raising=False)
    with tracking.start_run("adhoc", "offline") as run:
        pass
    capsys.readouterr()
    assert main(["sync"]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{run.run_dir}: NOT synced (")


def test_bad_input_is_exit_2_with_the_command_named(capsys):
    assert main(["run", "no_such_template"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("workbench run: error: unknown template 'no_such_template'")


def test_exit_codes_are_the_runner_s():
    from workbench import cli, runner

    assert (cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_BAD_INPUT, cli.EXIT_STOPPED) == (
        runner.EXIT_OK, runner.EXIT_FAILED, runner.EXIT_BAD_INPUT, runner.EXIT_STOPPED) == (
        0, 1, 2, 3)
    assert cli.EXIT_INTERRUPTED == 130


def test_publish_an_offline_run_synced_later_by_its_folder_prefix(tmp_path, monkeypatch, capsys):
    """The folder carries the local id; MLflow gave the run another id at sync (issue 17)."""
    from mlflow.tracking import MlflowClient

    from workbench import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unknownscheme://nowhere")
    monkeypatch.delenv(tracking.ENV_RUN_DIR, raising=False)
    with tracking.start_run("adhoc", "offline") as run:
        pass
    assert main(["sync", "--tracking-uri", uri]) == 0
    record = tracking.read_run(run.run_dir)
    prefix = run.run_dir.name.rpartition("-")[2]
    assert record["synced"] and not record["mlflow_run_id"].startswith(prefix)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    capsys.readouterr()
    assert main(["publish", prefix]) == 0
    assert capsys.readouterr().out.strip() == f"published run {record['mlflow_run_id']}"
    tags = MlflowClient(tracking_uri=uri).get_run(record["mlflow_run_id"]).data.tags
    assert tags["workbench.published"] == "true"


def test_run_a_path_that_is_not_a_notebook_is_bad_input_without_its_content(tmp_path, capsys):
    secret = "root:x:0:0:SECRET-FIRST-BYTES:/root:/bin/bash\n"
    for name in ("passwd", "fake.ipynb"):
        path = tmp_path / "etc" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(secret)
        assert main(["run", str(path), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("workbench run: error: ") and err.count("\n") == 1, err
        assert "SECRET" not in err and "root:x" not in err and "Traceback" not in err
    assert main(["run", str(tmp_path / "etc" / ".." / "etc" / "passwd")]) == 2


def test_sample_data_into_a_missing_folder_creates_it(tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "w.duckdb"
    assert main(["sample-data", "--users", "200", "--out", str(out)]) == 0
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == ["w.duckdb"]


# -- issue 17: readout exit codes; analyze's one-row file and --output ---------------------
def _readout_code(source, capsys, *extra):
    from workbench.cli import EXIT_UNTRUSTED

    code = main(["readout", "--source", str(source), "--experiment", "checkout_redesign",
                 *extra])
    captured = capsys.readouterr()
    return code, EXIT_UNTRUSTED, captured.out, captured.err


def test_readout_exit_code_says_whether_it_can_be_trusted(small_warehouse, faulty_warehouse,
                                                         tmp_path, capsys):
    import shutil

    import duckdb

    code, untrusted, out, err = _readout_code(small_warehouse, capsys)
    assert code == 0 and untrusted == 4 and err == ""
    # SRM (and crossovers, NaN revenues): was exit 0 with "do not trust: SRM"
    code, _, out, err = _readout_code(faulty_warehouse, capsys)
    assert code == untrusted
    assert "do not trust: SRM" in out and "not trustworthy (exit 4)" in err
    assert "Note: Data check failed (crossovers" in out
    # empty events table: was exit 0 and "no detectable effect on the primary metric"
    empty = tmp_path / "empty.duckdb"
    shutil.copy(small_warehouse, empty)
    con = duckdb.connect(str(empty))
    con.execute("delete from events")
    con.close()
    code, _, out, err = _readout_code(empty, capsys, "--output", str(tmp_path / "o" / "r.csv"))
    assert code == untrusted
    assert "nothing could be computed" in out and "no detectable effect" not in out
    assert (tmp_path / "o" / "r.csv").exists()  # still written, for diagnosis


def _stats_csv(path, rows):
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_analyze_one_row_file_says_so_in_a_sentence(tmp_path, capsys):
    src = _stats_csv(tmp_path / "one.csv", [{"metric": "m", "variant": "control",
                                             "kind": "proportion", "n": 100, "sum": 10}])
    assert main(["analyze", str(src)]) == 2
    captured = capsys.readouterr()
    assert "Empty DataFrame" not in captured.out + captured.err
    assert captured.err.strip().splitlines() == [
        f"workbench analyze: error: {str(src)!r}: nothing to compare: every row is of the "
        "control variant 'control'; add the rows of the treatment variants"]


def test_analyze_output_into_a_missing_folder_creates_it(tmp_path, capsys):
    import pandas as pd

    rows = [{"metric": "m", "variant": v, "kind": "proportion", "n": 1000, "sum": s}
            for v, s in (("control", 100), ("b", 130))]
    src = _stats_csv(tmp_path / "s.csv", rows)
    out = tmp_path / "new" / "deeper" / "o.json"
    assert main(["analyze", str(src), "--output", str(out)]) == 0
    assert len(pd.read_json(out)) == 1
    # a path that cannot be a folder: one line, no traceback
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["analyze", str(src), "--output", str(blocker / "o.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("workbench analyze: error: cannot write") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
