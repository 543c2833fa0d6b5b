"""Fixtures of the runner tests: a small template notebook with known outputs and failures."""
from __future__ import annotations

import nbformat
import pytest

from workbench import tracking

PARAMETERS = """experiment_id = "exp1"
n = 3
alpha = 0.05
label = "x"  # any text
fail = False
stop = False
sleep = 0.0
items = [1, 2]
anything = None
token = None  # required
"""


def _write_notebook(path):
    book = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    book.cells = [
        nbformat.v4.new_markdown_cell("# Test template"),
        params,
        nbformat.v4.new_code_cell("import sys, time\nimport pandas as pd\n"
                                  "import matplotlib.pyplot as plt\nfrom workbench import tracking"),
        nbformat.v4.new_code_cell(
            "df = pd.DataFrame({'i': list(range(n)), 'label': label, 'token': token})\n"
            "tracking.log_table(df, 'results')\n"
            "fig, ax = plt.subplots(); ax.plot(range(n)); tracking.log_figure(fig, 'line')\n"
            "tracking.log_metrics({'n': n, 'sum_items': sum(items), 'nan': float('nan')})\n"
            "tracking.log_summary({'decision': 'ship', 'label': label})\n"
            "print('SECRET-CODE-MARKER-OUTPUT')"),
        nbformat.v4.new_code_cell("if fail:\n    raise ValueError('boom in cell 4')"),
        nbformat.v4.new_code_cell("if stop:\n    sys.exit()"),
        nbformat.v4.new_code_cell("time.sleep(sleep)"),
        nbformat.v4.new_code_cell("print('last cell ran')"),
    ]
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                   "language": "python"}
    nbformat.write(book, path)
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("runner")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.setenv("WORKBENCH_REPORTS_DIR", str(root / "reports"))
    mp.delenv(tracking.ENV_RUN_DIR, raising=False)
    yield {"root": root, "notebook": _write_notebook(root / "t1.ipynb"),
           "uri": f"sqlite:///{root / 'mlflow.db'}"}
    mp.undo()


@pytest.fixture(scope="module")
def parameters_source():
    """The parameters cell of the test template."""
    return PARAMETERS


@pytest.fixture()
def tmpfs(tmp_path):
    """A 2 MB tmpfs (the break test's "full disk"). Mounting needs root, as in CI: if it
    cannot be mounted the test fails loudly; it is never skipped."""
    import subprocess

    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs at {mount} (the full-disk tests need root): "
                    f"{done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)

