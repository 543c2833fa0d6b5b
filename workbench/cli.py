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
    if getattr(args, "scenario", "checkout") == "ramp":
        return _sample_ramp(args, t0)
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


def _sample_ramp(args: argparse.Namespace, t0: float) -> int:
    """``sample-data --scenario ramp``: the staged rollout (workbench.data.sample.generate_ramp)."""
    import time

    from workbench import format as fmt
    from workbench.config import get_settings
    from workbench.data.sample import RAMP_EXPERIMENT, generate_ramp

    out = args.out or str(get_settings().warehouse.with_name("ramp.duckdb"))
    try:
        truth = generate_ramp(out, seed=args.seed if args.seed is not None else 0,
                              n_per_phase=max(args.users // 3, 1))
    except OSError as exc:
        print(f"workbench sample-data: error: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {out} ({RAMP_EXPERIMENT}) in {time.perf_counter() - t0:.1f} s")
    for r in truth.itertuples():
        print(f"{r.metric}: true lift {fmt.effect(r.relative_lift, True)}, naive pooled "
              f"expectation {fmt.effect(r.naive_relative_lift, True)}")
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    """Print the data-quality summary; exit 2 on errors, 0 with warnings only."""
    from workbench.data.quality import check_source

    report = check_source(args.source, args.experiment)
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_BAD_INPUT


def _plan(args: argparse.Namespace) -> int:
    """Plan an experiment on a historical window (moments measured in the engine)."""
    import workbench as wb
    from workbench.data.assignment import parse_weights
    from workbench.errors import ParameterError

    try:  # named weights are read as everywhere else (control=0.5,treatment=0.5)
        weights = (parse_weights(args.weights) if "=" in args.weights
                   else [float(q) for q in args.weights.split(",")])
    except ValueError:
        raise ParameterError(f"--weights: expected 0.5,0.5 or control=0.5,treatment=0.5, got "
                             f"{args.weights!r}") from None
    plan = wb.plan(args.source, args.metrics, start_date=args.start, end_date=args.end,
                   users_per_day=args.users_per_day, weights=weights, mde=args.mde,
                   alpha=args.alpha, power=args.power, traffic=args.traffic, days=args.days,
                   experiment_id=args.experiment,
                   exposure=args.exposure.split(",") if args.exposure else None)
    if args.output:
        plan.to_frame().to_csv(args.output, index=False)
        print(f"plan table written to {args.output}")
    print(plan.summary())
    return 0


def _assign(args: argparse.Namespace) -> int:
    """Assign the units of a table in the engine (hash, no data leaves it); write the rows."""
    from pathlib import Path

    from workbench import format as fmt
    from workbench.data import assignment
    from workbench.data.sources import connect, execute, table
    from workbench.errors import ParameterError, SourceError

    if (args.out is None) == (args.into is None):
        raise ParameterError("give exactly one of --out FILE.parquet and --into TABLE")
    if args.out is not None and not args.out.endswith(".parquet"):
        raise ParameterError(f"--out must name a .parquet file, got {args.out!r}")
    if (args.start is None) != (args.end is None):
        raise ParameterError("--start and --end go together (the experiments rows' dates)")
    namespace = None
    if args.namespace is not None:
        try:
            lo, hi = (float(v) for v in (args.slice or "").split(","))
        except ValueError:
            raise ParameterError(f"--namespace needs --slice LO,HI (e.g. 0,0.5), got "
                                 f"{args.slice!r}") from None
        namespace = (args.namespace, lo, hi)
    elif args.slice is not None:
        raise ParameterError("--slice needs --namespace")
    con = connect(args.source, read_only=args.into is None)
    units = table(con, args.table)
    rows = assignment.assign_expr(units, args.experiment, args.weights, args.seed,
                                  unit_column=args.unit, traffic=args.traffic,
                                  namespace=namespace, assigned_at=args.assigned_at)
    plan = None
    if args.start is not None:
        plan = assignment.experiments_frame(args.experiment, args.weights, args.start, args.end)
    if args.out is not None:
        try:
            con.to_parquet(rows, args.out)
        except Exception as exc:
            raise SourceError(f"cannot write {args.out!r}: {str(exc).splitlines()[0]}") from exc
        where = [args.out]
        if plan is not None:
            side = str(Path(args.out).with_suffix("")) + "_experiments.parquet"
            plan.to_parquet(side, index=False)
            where.append(side)
    else:
        assignment.write(rows, con, args.into)
        where = [f"table {args.into!r}"]
        if plan is not None:
            assignment.write(plan, con, "experiments")
            where.append("table 'experiments'")
    n = assignment.counts(rows)
    total = int(execute(units.count()))
    arms = ", ".join(f"{v} {fmt.count(n.get(v, 0))}" for v in assignment.parse_weights(
        args.weights))
    print(f"Assigned {fmt.count(sum(n.values()))} of {fmt.count(total)} units of "
          f"{args.table!r} to {args.experiment} (traffic {fmt.percent(args.traffic)}"
          + (f", namespace {args.namespace} [{args.slice}]" if namespace else "") + f"): {arms}")
    print("Wrote " + " and ".join(where))
    return EXIT_OK


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
                               date=args.date_column, control=args.control,
                               incremental=args.incremental)
    if args.experiment is None:
        raise ParameterError("--experiment is required (the experiment id in the source)")
    if str(args.source or "").lower().endswith((".csv", ".tsv", ".parquet", ".csv.gz")):
        raise ParameterError(f"--source {args.source!r} is a data file: pass a per-unit table "
                             "as --units")
    return open_experiment(args.source, args.experiment, args.metrics, control=args.control,
                           incremental=args.incremental, lookback_days=args.lookback_days)


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


def _cache(args: argparse.Namespace) -> int:
    from workbench import format as fmt
    from workbench.stats.pymc import cache

    root = cache.cache_dir()
    if args.action == "clear":
        freed = cache.clear(root)
        print(f"cleared {root} ({fmt.count(round(freed / 1024))} KiB)")
    else:
        print(root)
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
    p.add_argument("--scenario", choices=("checkout", "ramp"), default="checkout",
                   help="'ramp': a staged rollout (10/25/50 %%) with a time trend, written to "
                        "--out (default: data/ramp.duckdb); --users split over 3 phases")
    p.set_defaults(func=_sample_data)

    p = sub.add_parser("validate", help="check a source against the documented schema")
    p.add_argument("--source", default=None, help="DuckDB file or Ibis URL (default: warehouse)")
    p.add_argument("--experiment", default=None, help="experiment id to check")
    p.set_defaults(func=_validate)

    p = sub.add_parser("assign", help="deterministic hash assignment of a table's units")
    p.add_argument("--source", default=None, help="DuckDB file or Ibis URL (default: warehouse)")
    p.add_argument("--table", default="users", help="table of units (default: users)")
    p.add_argument("--unit", default="user_id", help="unit id column, integer or string")
    p.add_argument("--experiment", required=True, help="experiment id (salts the hash)")
    p.add_argument("--weights", required=True, help="e.g. control=0.5,treatment=0.5")
    p.add_argument("--seed", type=int, default=0, help="hash seed (default 0)")
    p.add_argument("--traffic", type=float, default=1.0, help="share of units in, (0, 1]")
    p.add_argument("--namespace", default=None, help="namespace of mutually exclusive tests")
    p.add_argument("--slice", default=None, help="the experiment's namespace slice LO,HI")
    p.add_argument("--assigned-at", default=None, help="timestamp, or a column of the table")
    p.add_argument("--start", default=None, help="start date: also write experiments rows")
    p.add_argument("--end", default=None, help="end date (inclusive) of the experiments rows")
    p.add_argument("--out", default=None, help="write the rows to this .parquet file")
    p.add_argument("--into", default=None, help="append the rows to this table of the source")
    p.set_defaults(func=_assign)

    p = sub.add_parser("plan", help="plan an experiment on historical data (sizes, days, MDE)")
    p.add_argument("--source", default=None, help="DuckDB file or Ibis URL (default: warehouse)")
    p.add_argument("--metrics", default=None, help="metrics YAML (default: the sample's)")
    p.add_argument("--start", required=True, help="first day of the historical window")
    p.add_argument("--end", required=True, help="last day (inclusive) of the window")
    p.add_argument("--mde", type=float, default=0.02, help="relative effect to detect")
    p.add_argument("--weights", default="0.5,0.5", help="split, control first: 0.5,0.5")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--power", type=float, default=0.8)
    p.add_argument("--traffic", type=float, default=1.0, help="share of users in, (0, 1]")
    p.add_argument("--users-per-day", type=float, default=None,
                   help="eligible users per day (default: measured over the window)")
    p.add_argument("--days", type=int, default=None, help="duration for the MDE columns")
    p.add_argument("--experiment", default="experiment", help="the experiment planned")
    p.add_argument("--exposure", default=None, help="event types making a unit: a,b")
    p.add_argument("--output", default=None, help="also write the plan table to this CSV")
    p.set_defaults(func=_plan)

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
    p.add_argument("--incremental", default=None, metavar="STATE",
                   help="a local DuckDB state file of per-unit aggregates: scan only the "
                        "events since the last run (DuckDB sources)")
    p.add_argument("--lookback-days", type=int, default=2,
                   help="--incremental: days re-aggregated each run (late events)")
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

    p = sub.add_parser("cache", help="the compiled-model cache (WORKBENCH_CACHE): path or clear")
    p.add_argument("action", choices=["path", "clear"])
    p.set_defaults(func=_cache)

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
