"""``workbench.stats`` loads its modules lazily: its names are the modules' own, listed by ``dir``
(tab completion), and importing one module for a constant loads neither the rest nor scipy."""
from __future__ import annotations

import importlib
import subprocess
import sys

import workbench.stats as stats
from workbench.stats import analysis, power, result

srm = importlib.import_module("workbench.stats.srm")  # the module: the package's ``srm`` is the function


def test_the_package_names_are_the_modules_own():
    assert stats.analyze is analysis.analyze and stats.StatsResult is result.StatsResult
    assert stats.power is power and stats.power_table is power.power_table
    assert stats.srm is srm.srm and stats.SRMResult is srm.SRMResult  # the function, not the module
    assert set(stats.__all__) <= set(dir(stats))


def test_importing_the_srm_threshold_loads_no_scipy():
    code = ("import sys; from workbench.stats.srm import SRM_THRESHOLD; "
            "import workbench.data.quality; "
            "print(' '.join(m for m in sys.modules if m.startswith(('scipy', 'workbench.stats'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == ["workbench.stats", "workbench.stats.srm"]
