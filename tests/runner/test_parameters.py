"""workbench.runner.parameters: the parameters cell, checking values (no kernel)."""
from __future__ import annotations

from pathlib import Path

import pytest

from workbench import runner
from workbench.cli import main
from workbench.errors import ParameterError


def test_parse_parameters_types_and_required(parameters_source):
    params = runner.parse_parameters(parameters_source)
    assert params["n"].type is int and params["alpha"].type is float
    assert params["items"].type is list and params["anything"].type is None
    assert params["token"].required and not params["anything"].required
    assert params["label"].help == "any text"
    with pytest.raises(ParameterError, match="line 2"):
        runner.parse_parameters("a = 1\nb = a + 1")
    with pytest.raises(ParameterError, match="only `name = literal`"):
        runner.parse_parameters("import os")


def test_validate_parameters(parameters_source):
    declared = runner.parse_parameters(parameters_source)
    ok = runner.validate_parameters(declared, {"token": "t", "alpha": 1},
                                    {"label": "007", "n": "12", "fail": "true",
                                     "items": "[3, 4]", "anything": "007"})
    # a string default keeps the text; papermill would have made 7 of "007"
    assert ok == {"token": "t", "alpha": 1.0, "label": "007", "n": 12, "fail": True,
                  "items": [3, 4], "anything": "007"}
    assert isinstance(ok["alpha"], float)
    cases = [({"token": "t", "nope": 1}, None, "unknown parameter 'nope'"),
             ({}, None, "missing required parameter\\(s\\): token"),
             ({"token": None}, None, "'token' is required"),
             ({"token": "t", "n": 1.5}, None, "'n': expected int"),
             ({"token": "t", "n": True}, None, "'n': expected int"),
             ({"token": "t", "label": 7}, None, "'label': expected str"),
             ({"token": "t"}, {"n": "x"}, "'n': expected int"),
             ({"token": "t"}, {"fail": "maybe"}, "'fail': expected bool"),
             ({"token": "t", "os.system('x'); a": 1}, None, "not a Python identifier"),
             ({"token": "t", "class": 1}, None, "not a Python identifier")]
    for values, text, match in cases:
        with pytest.raises(ParameterError, match=match):
            runner.validate_parameters(declared, values, text)


def test_read_parameters_and_template_path(env):
    declared = runner.read_parameters(env["notebook"])
    assert declared["token"].required and declared["n"].default == 3
    assert runner.template_path("ab_test").name == "ab_test.ipynb"
    with pytest.raises(ParameterError, match="unknown template 'nope'.*ab_test"):
        runner.template_path("nope")
    with pytest.raises(ParameterError, match="not found"):
        runner.template_path(env["root"] / "missing.ipynb")


def test_read_parameter_file(tmp_path):
    assert runner.read_parameter_file(None) == {}
    good = tmp_path / "p.yml"
    good.write_text("alpha: 0.1\nsegments: [device]\n")
    assert runner.read_parameter_file(good) == {"alpha": 0.1, "segments": ["device"]}
    bad = tmp_path / "list.yml"
    bad.write_text("- a\n")
    with pytest.raises(ParameterError, match="expected a mapping"):
        runner.read_parameter_file(bad)
    with pytest.raises(ParameterError, match="not found"):
        runner.read_parameter_file(tmp_path / "nope.yml")


def test_bad_input_exits_2_before_any_kernel(env, capsys, tmp_path):
    nb = str(env["notebook"])
    assert main(["run", nb, "-p", "zz", "1"]) == 2
    assert main(["run", nb, "-p", "n", "abc", "-p", "token", "t"]) == 2
    assert main(["run", nb]) == 2  # token is required
    assert main(["run", "no_such_template"]) == 2
    jobs = tmp_path / "jobs.yml"
    jobs.write_text(f"- template: {nb}\n  parameters: {{token: t, n: oops}}\n")
    assert main(["run-jobs", str(jobs)]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'zz'" in err and "'n': expected int" in err
    assert "job 0" in err
    assert not list((env["root"] / "reports").glob("*/*/*/run.json"))  # nothing started


def test_reading_a_notebook_leaves_rfc3987_syntax_importable_afterwards():
    """The runner keeps jsonschema from building the IRI grammars while nbformat is imported
    (a fresh process), and then takes the block away: a later import works as usual."""
    import subprocess
    import sys

    code = ("import sys; from workbench.runner.parameters import read_notebook; "
            "read_notebook('templates/ab_test.ipynb'); "
            "assert 'rfc3987_syntax' not in sys.modules, sys.modules.get('rfc3987_syntax'); "
            "import jsonschema._format as f; assert 'iri' not in f.draft7_format_checker.checkers; "
            "import rfc3987_syntax; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
