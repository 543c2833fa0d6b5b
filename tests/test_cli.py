from __future__ import annotations

import subprocess
import sys

import workbench
from workbench.cli import main


def test_version_and_help_list_the_commands(capsys):
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for command in ["sample-data", "validate", "analyze", "readout", "run", "run-jobs",
                    "publish", "serve"]:
        assert command in out
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert workbench.__version__ in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage: workbench" in capsys.readouterr().out
