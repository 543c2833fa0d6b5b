"""The ``workbench`` command.

Each subcommand parses its arguments here and calls one function of the library; the modules
are imported lazily so that ``workbench --help`` is instant.

Exit codes: 0 success, 1 a run failed (notebook error, analysis failure), 2 bad input
(usage, parameters, data), 3 a run stopped early without an error, 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys

from workbench import __version__
from workbench.errors import WorkbenchError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _sample_data(args: argparse.Namespace) -> int:
    from workbench.data import sample

    return sample.main(args)


def _validate(args: argparse.Namespace) -> int:
    from workbench.data import validate

    return validate.main(args)


def _analyze(args: argparse.Namespace) -> int:
    from workbench import stats

    return stats.main(args)


def _readout(args: argparse.Namespace) -> int:
    from workbench import experiment

    return experiment.main(args)


def _run(args: argparse.Namespace) -> int:
    from workbench import runner

    return runner.main(args)


def _run_jobs(args: argparse.Namespace) -> int:
    from workbench import runner

    return runner.main_jobs(args)


def _sync(args: argparse.Namespace) -> int:
    from workbench import tracking

    return tracking.main_sync(args)


def _publish(args: argparse.Namespace) -> int:
    from workbench import publish

    return publish.main(args)


def _serve(args: argparse.Namespace) -> int:
    from workbench import publish

    return publish.main_serve(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Experimentation workbench: A/B readouts, model experiments, SHAP, drift, "
        "MLflow tracking and Voilà dashboards.",
    )
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("sample-data", help="generate the bundled sample experiment (DuckDB)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: settings seed)")
    p.add_argument("--users", type=int, default=200_000, help="number of users")
    p.add_argument("--out", default=None, help="DuckDB file (default: data/warehouse.duckdb)")
    p.add_argument("--srm", action="store_true", help="inject a sample ratio mismatch")
    p.add_argument("--crossover", type=float, default=0.0, help="share of users put in 2 variants")
    p.add_argument("--missing", type=float, default=0.0, help="share of revenue values set to NaN")
    p.set_defaults(func=_sample_data)

    p = sub.add_parser("validate", help="check a source against the documented schema")
    p.add_argument("--source", default=None, help="DuckDB file or Ibis URL (default: warehouse)")
    p.add_argument("--experiment", default=None, help="experiment id to check")
    p.set_defaults(func=_validate)

    p = sub.add_parser("analyze", help="analyse a table of sufficient statistics")
    p.add_argument("stats", help="CSV or parquet, one row per metric x variant")
    p.add_argument("--control", default="control")
    p.add_argument("--method", default="frequentist",
                   choices=["frequentist", "sequential", "bayesian"])
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--difference", default="relative", choices=["relative", "absolute"])
    p.add_argument("--correction", default=None, choices=["holm", "bh", "bonferroni"])
    p.add_argument("--output", default=None, help="CSV or JSON output (default: print)")
    p.add_argument("--alternative", default="two-sided", choices=["two-sided", "greater", "less"])
    p.add_argument("--sequential-tuning", type=float, default=5000,
                   help="expected sample size (both arms) for --method sequential")
    p.set_defaults(func=_analyze)

    p = sub.add_parser("readout", help="full experiment readout from raw data, in the engine")
    p.add_argument("--source", default=None, help="DuckDB file or Ibis URL (default: warehouse)")
    p.add_argument("--experiment", required=True, help="experiment id")
    p.add_argument("--metrics", default=None, help="metrics YAML (default: the sample's)")
    p.add_argument("--method", default="frequentist",
                   choices=["frequentist", "sequential", "bayesian"])
    p.add_argument("--segments", nargs="*", default=[], help="dimensions to break down by")
    p.add_argument("--output", default=None, help="parquet/CSV/JSON output")
    p.set_defaults(func=_readout)

    p = sub.add_parser("run", help="run a template notebook with papermill, logged to MLflow")
    p.add_argument("template", help="template name (e.g. ab_test) or path to a notebook")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help="a parameter (repeatable)")
    p.add_argument("-f", "--parameters-file", default=None, help="YAML file of parameters")
    p.add_argument("--name", default=None, help="run name (default: experiment or template)")
    p.add_argument("--cell-timeout", type=int, default=None, help="seconds per cell")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run)

    p = sub.add_parser("run-jobs", help="run a YAML list of template runs")
    p.add_argument("jobs", help="jobs YAML file")
    p.add_argument("--parallel", type=int, default=1, help="runs at once (default 1)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_jobs)

    p = sub.add_parser("sync", help="log runs recorded while MLflow was unreachable")
    p.add_argument("--reports-dir", default=None, help="default: reports/")
    p.add_argument("--tracking-uri", default=None,
                   help="default: the URI each run was meant for")
    p.set_defaults(func=_sync)

    p = sub.add_parser("publish", help="mark a run as published for the dashboards")
    p.add_argument("run_id", help="MLflow run id")
    p.add_argument("--unpublish", action="store_true")
    p.set_defaults(func=_publish)

    p = sub.add_parser("serve", help="serve the dashboards with Voilà (secure defaults)")
    p.add_argument("--port", type=int, default=8866)
    p.add_argument("--ip", default="127.0.0.1", help="bind address (default localhost only)")
    p.add_argument("--token", default=None, help="require this token (or WORKBENCH_TOKEN)")
    p.add_argument("--dashboard", default=None, help="one dashboard notebook to serve")
    p.add_argument("--password", action="store_true",
                   help="require a password (WORKBENCH_PASSWORD, else asked once)")
    p.add_argument("--all-runs", action="store_true",
                   help="also offer unpublished runs (a local preview)")
    p.add_argument("--no-preheat", action="store_true",
                   help="start each viewer's kernel on request (slower pages, fewer kernels)")
    p.set_defaults(func=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_OK
    try:
        return int(args.func(args) or EXIT_OK)
    except WorkbenchError as exc:
        print(f"workbench {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
