"""The ``workbench`` command.

Each subcommand parses its arguments here and calls one function of the library; the modules
are imported lazily so that ``workbench --help`` is instant.

Exit codes: 0 success, 1 a run failed (notebook error, analysis failure), 2 bad input
(usage, parameters, data), 3 a run stopped early without an error, 4 a readout that is not
trustworthy (``workbench readout``), 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys

from workbench import __version__
from workbench.errors import WorkbenchError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
# `workbench readout`: it ran, but its decision cannot be trusted (a failed data check, SRM
# included, or nothing computable on the primary metric); the results are still printed/written.
EXIT_UNTRUSTED = 4


def _sample_data(args: argparse.Namespace) -> int:
    import time

    from workbench.data.sample import generate

    t0 = time.perf_counter()
    try:
        truth = generate(args.out, seed=args.seed, n_users=args.users, srm=args.srm,
                         crossover=args.crossover, missing=args.missing, progress=True)
    except OSError as exc:  # full disk, read-only folder: nothing is left behind (exit 1)
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", ())):  # clear the interrupted bar's line
            bar.close()
        print(f"workbench sample-data: error: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {truth.path} in {time.perf_counter() - t0:.1f} s")
    print(truth.summary())
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    """Print the data-quality summary; exit 2 on errors, 0 with warnings only."""
    from workbench.data.quality import check_source

    report = check_source(args.source, args.experiment)
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_BAD_INPUT


def _analyze(args: argparse.Namespace) -> int:
    from pathlib import Path

    import pandas as pd

    from workbench.errors import DataError, ParameterError
    from workbench.stats import analyze

    path = Path(args.stats)
    if not path.is_file():
        raise DataError(f"statistics file {str(path)!r} does not exist")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif path.suffix.lower() in (".csv", ".txt"):
            frame = pd.read_csv(path)
        else:
            raise DataError(f"{str(path)!r}: expected a .csv or .parquet file")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}") from None
    out = Path(args.output) if args.output is not None else None
    if out is not None and out.suffix.lower() not in (".json", ".csv"):
        raise ParameterError(f"--output {str(out)!r}: expected a .csv or .json file")
    result = analyze(frame, control=args.control, method=args.method, alpha=args.alpha,
                     difference=args.difference, correction=args.correction,
                     alternative=args.alternative, sequential_tuning=args.sequential_tuning,
                     exact=args.exact)
    table = result.to_frame()
    if table.empty:  # only the control's rows: say so, not pandas' "Empty DataFrame"
        raise DataError(f"{str(path)!r}: nothing to compare: every row is of the control "
                        f"variant {args.control!r}; add the rows of the treatment variants")
    if out is None:
        print(result.summary())
        return EXIT_OK
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".json":
            out.write_text(table.to_json(orient="records", indent=2, date_format="iso"))
        else:
            table.to_csv(out, index=False)
    except OSError as exc:  # read-only folder, a file in the way, a full disk: one line
        print(f"workbench analyze: error: cannot write {str(out)!r}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_FAILED
    print(f"{len(table)} comparisons written to {out}")
    return EXIT_OK


def _readout_experiment(args: argparse.Namespace):
    """The experiment of ``workbench readout``: ``--units`` (a per-unit file) or an event log."""
    from workbench.errors import ParameterError
    from workbench.readout.sections import open_experiment

    if args.units is not None:
        if args.source is not None:
            raise ParameterError("give --units (a per-unit file) or --source (an event log), "
                                 "not both")
        if args.metrics is None:
            raise ParameterError("--units needs --metrics: a YAML of metrics declared on its "
                                 "columns (kind, column, pre_column)")
        return open_experiment(args.units, args.experiment or "experiment", args.metrics,
                               variant=args.variant_column, unit=args.unit_column,
                               date=args.date_column, control=args.control)
    if args.experiment is None:
        raise ParameterError("--experiment is required (the experiment id in the source)")
    if str(args.source or "").lower().endswith((".csv", ".tsv", ".parquet", ".csv.gz")):
        raise ParameterError(f"--source {args.source!r} is a data file: pass a per-unit table "
                             "as --units")
    return open_experiment(args.source, args.experiment, args.metrics, control=args.control)


def _readout(args: argparse.Namespace) -> int:
    """Print the decision table; write the results (and segments) if ``--output`` is given."""
    import warnings
    from pathlib import Path

    from workbench.errors import ParameterError

    out = Path(args.output) if args.output else None
    if out is not None and out.suffix not in (".parquet", ".csv", ".json"):
        raise ParameterError(f"--output must end in .parquet, .csv or .json: {out}")
    from workbench.readout.decision import DecisionRule

    weights = None
    if args.weight:
        try:
            weights = {m: float(w) for m, w in args.weight}
        except ValueError:
            raise ParameterError(f"--weight: weights must be numbers, got {args.weight}") from None
    rule = DecisionRule(primary=args.primary, guardrails=args.guardrail, weights=weights)
    exp = _readout_experiment(args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the printed report says it all
        result = exp.analyze(method=args.method, segments=list(args.segments or []),
                             correction=args.correction, alpha=args.alpha,
                             difference=args.difference, rule=rule)
    print(str(result.validation.summary()).splitlines()[0])
    for note in exp.notes:
        print(f"note: {note}")
    print(result.summary())
    code = EXIT_OK if result.trustworthy else EXIT_UNTRUSTED
    if code != EXIT_OK:
        print(f"workbench readout: not trustworthy (exit {EXIT_UNTRUSTED}): {result.decision}",
              file=sys.stderr)
    if out is None:
        return code
    out.parent.mkdir(parents=True, exist_ok=True)
    tables = {"": result.to_frame()}
    if len(result.segments):
        tables["_segments"] = result.segments
    for suffix, frame in tables.items():
        path = out.with_name(out.stem + suffix + out.suffix)
        if out.suffix == ".parquet":
            frame.to_parquet(path, index=False)
        elif out.suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_json(path, orient="records", indent=1, date_format="iso")
        print(f"wrote {path}")
    return code


def _run(args: argparse.Namespace) -> int:
    """``workbench run TEMPLATE [-p NAME VALUE ...] [-f params.yml]``: the run's exit code."""
    from workbench import runner

    try:
        result = runner.run_template(
            args.template, runner.read_parameter_file(args.parameters_file),
            text_parameters=dict(args.parameter or []), name=args.name,
            cell_timeout=args.cell_timeout, progress=not args.no_progress)
    except runner.RunInterrupted as exc:
        print(f"workbench run: interrupted; run {exc.result.run_dir} recorded FAILED "
              "(interrupted)", file=sys.stderr)
        return EXIT_INTERRUPTED
    stream = sys.stdout if result.ok else sys.stderr
    print(result.summary(), file=stream)
    if result.run_dir and (result.run_dir / "report.html").exists():
        print(f"report: {result.run_dir / 'report.html'}", file=stream)
    return result.exit_code


def _run_jobs(args: argparse.Namespace) -> int:
    """``workbench run-jobs jobs.yml [--parallel N]``: the worst exit code of the jobs."""
    from workbench import runner

    results = runner.run_jobs(args.jobs, parallel=args.parallel, progress=not args.no_progress)
    for r in results:
        line = f"{r['status']:9s} exit {r['exit_code']}  {r['template']}/{r.get('name') or ''}"
        if r.get("run_dir"):
            line += f"  {r['run_dir']}"
        if r.get("run_dir") and not r.get("synced"):
            line += "  [not synced: `workbench sync`]"
        print(line)
        if r.get("message"):
            print(f"          {r['message']}")
    code = runner.jobs_exit_code(results)
    if args.publish:
        code = max(code, _publish_results(results))
    return code


def _publish_results(results: list[dict]) -> int:
    """``run-jobs --publish``: publish the runs these jobs made that finished and reached
    MLflow (never older runs under reports/, never a failed one)."""
    from workbench.dashboards import catalogue

    code = EXIT_OK
    for r in results:
        if r.get("status") != "FINISHED" or not r.get("synced") or not r.get("mlflow_run_id"):
            continue
        try:
            catalogue.publish(r["mlflow_run_id"])
        except WorkbenchError as exc:
            print(f"workbench run-jobs: not published: {exc}", file=sys.stderr)
            code = EXIT_FAILED
            continue
        print(f"published run {r['mlflow_run_id']}  {r['template']}/{r.get('name') or ''}")
    return code


def _sync(args: argparse.Namespace) -> int:
    """``workbench sync``: push unsynced runs; 0 when all are synced, 1 otherwise."""
    from workbench import tracking

    results = tracking.sync(args.reports_dir, args.tracking_uri)
    for r in results:
        state = "synced" if r.get("synced") else f"NOT synced ({r.get('sync_error')})"
        print(f"{r['run_dir']}: {state}")
    if not results:
        print("workbench sync: nothing to sync")
    return EXIT_FAILED if any(not r.get("synced") for r in results) else EXIT_OK


def _publish(args: argparse.Namespace) -> int:
    from workbench.dashboards import catalogue

    full_id = catalogue.publish(args.run_id, published=not args.unpublish)
    print(f"{'unpublished' if args.unpublish else 'published'} run {full_id}")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    """Voilà on the dashboards, bound to localhost unless told otherwise; Ctrl-C, SIGTERM and
    SIGHUP stop it with its kernels, and its private folder (token included) is removed."""
    import os

    from workbench.dashboards import server

    target = server.dashboard_target(args.dashboard)
    token = args.token or os.environ.get("WORKBENCH_TOKEN") or None
    password = os.environ.get("WORKBENCH_PASSWORD") or None
    if args.password and not password:
        import getpass

        password = getpass.getpass("Dashboard password: ")
    token = server.required_token(args.ip, token, password)
    for url in server.dashboard_urls(target, ip=args.ip, port=args.port, token=token):
        print(f"Dashboard: {url}", flush=True)
    return server.serve(target, port=args.port, ip=args.ip, token=token, password=password,
                        all_runs=args.all_runs, preheat=not args.no_preheat)


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
    p.add_argument("--exact", default=None, choices=["auto", "fisher", "barnard", "boschloo"],
                   help="exact tests of proportions (frequentist); margins: columns margin, "
                        "margin_scale, margin_kind, higher_is_better of the statistics file")
    p.set_defaults(func=_analyze)

    p = sub.add_parser("readout", help="full experiment readout from raw data, in the engine")
    p.add_argument("--source", default=None, help="DuckDB file or Ibis URL (default: warehouse)")
    p.add_argument("--experiment", default=None,
                   help="experiment id (required for --source; a name for --units)")
    p.add_argument("--metrics", default=None,
                   help="metrics YAML (default: the sample's; its `columns:` maps your names)")
    p.add_argument("--units", default=None,
                   help="a per-unit table (.csv/.parquet, one row per unit) instead of --source")
    p.add_argument("--variant-column", default="variant", help="--units: the variant column")
    p.add_argument("--unit-column", default=None, help="--units: the unit id column")
    p.add_argument("--date-column", default=None,
                   help="--units: a date column (for the time series)")
    p.add_argument("--control", default=None, help="baseline variant (default: as planned)")
    p.add_argument("--method", default="frequentist",
                   choices=["frequentist", "sequential", "bayesian"])
    p.add_argument("--segments", nargs="*", default=[], help="dimensions to break down by")
    p.add_argument("--correction", default=None, choices=["holm", "bh", "bonferroni"],
                   help="across metrics x variants (the ab_test template uses holm)")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--difference", default="relative", choices=["relative", "absolute"])
    p.add_argument("--output", default=None, help="parquet/CSV/JSON output")
    p.add_argument("--primary", nargs="+", default=None, metavar="METRIC",
                   help="decision rule: the metrics that must improve (default: role primary)")
    p.add_argument("--guardrail", nargs="+", default=None, metavar="METRIC",
                   help="decision rule: the metrics that must not be harmed (default: role "
                        "guardrail)")
    p.add_argument("--weight", nargs=2, action="append", default=None,
                   metavar=("METRIC", "WEIGHT"),
                   help="decision rule: an overall evaluation criterion, the weighted sum of "
                        "lifts (repeatable; replaces --primary as the criterion)")
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
    p.add_argument("--publish", action="store_true",
                   help="publish the runs that finished (for the dashboards)")
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
