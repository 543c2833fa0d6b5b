"""Check an experiment source against the documented schema, with counts, in the engine.

>>> report = validate_source("data/warehouse.duckdb")
>>> report.ok, report.summary()
>>> report.to_frame()          # check, table, column, status, count, share, message

Every check is an aggregate query run by the source's engine (DuckDB, Spark... through Ibis);
only counts come back to Python. Statuses: ``ok``, ``warning`` (read results with care) and
``error`` (results would be wrong or cannot be computed).

Checks
------
``table``            a documented table is missing or empty (error)
``column``           a documented column is missing (error)
``type``             a column has the wrong logical type (error)
``nulls``            NULLs in a non-nullable column (error)
``nan`` / ``inf``    NaN or +-inf in a float column (error: they poison sums)
``duplicates``       repeated ``users.user_id`` (error: joins would count users twice)
``experiment``       the experiment is not in ``experiments``, has no assignments, or its
                     planned weights do not sum to 1 (error)
``unknown_variant``  assignment rows whose variant is not planned in ``experiments`` (error)
``multiple_variants``users assigned to more than one variant: warning below 1 % of users,
                     error from 1 % (the industry threshold)
``srm``              chi-square of users per variant against the planned weights; error at
                     p < 0.001
``events_before_exposure``  events between ``start_date`` and the user's first ``assigned_at``
                     (warning: exposure logged late; pre-period events before ``start_date`` are
                     expected and not counted)
``assignment_window`` first exposures outside ``[start_date, end_date + 1 day)`` (warning)
``users``            assigned users missing from ``users`` (warning: segments lose them)
"""
from __future__ import annotations

import argparse
import datetime as dt
import html
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workbench.data.schema import TABLES, Column
from workbench.errors import SchemaError

__all__ = ["ValidationReport", "validate_source", "main", "SRM_THRESHOLD",
           "MULTIPLE_VARIANTS_THRESHOLD", "REPORT_COLUMNS"]

SRM_THRESHOLD = 0.001
MULTIPLE_VARIANTS_THRESHOLD = 0.01
REPORT_COLUMNS = ["check", "table", "column", "status", "count", "share", "message"]
_STATUS_ORDER = {"error": 0, "warning": 1, "ok": 2}
# Tables joined on a key must have it unique, or metrics would count rows twice.
PRIMARY_KEYS = {"users": "user_id"}


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of :func:`validate_source`.

    Attributes
    ----------
    checks : pandas.DataFrame
        One row per check: ``check, table, column, status, count, share, message``.
        ``count`` is the number of offending rows/users (for ``table`` checks, the row count;
        for ``srm``, the users that would have to move to match the plan); ``share`` the
        offending share where a denominator exists (else NaN).
    source : str
        A description of the source.
    experiment_ids : tuple of str
        Experiments checked.
    variant_counts : pandas.DataFrame
        ``experiment_id, variant, planned_weight, users, expected_users`` (users in exactly one
        variant), the input of the SRM test.
    srm_p_values : dict
        Experiment id -> SRM chi-square p-value (absent when it could not be computed).
    """

    checks: pd.DataFrame = field(repr=False)
    source: str = ""
    experiment_ids: tuple = ()
    variant_counts: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    srm_p_values: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no check has status ``error``."""
        return not (self.checks["status"] == "error").any()

    @property
    def errors(self) -> pd.DataFrame:
        return self.checks[self.checks["status"] == "error"].reset_index(drop=True)

    @property
    def warnings(self) -> pd.DataFrame:
        return self.checks[self.checks["status"] == "warning"].reset_index(drop=True)

    @property
    def srm_p_value(self) -> float | None:
        """The SRM p-value when exactly one experiment was checked."""
        if len(self.srm_p_values) == 1:
            return next(iter(self.srm_p_values.values()))
        return None

    def to_frame(self) -> pd.DataFrame:
        """The checks table (a copy), errors first."""
        return self.checks.copy()

    def count(self, check: str, table: str | None = None, column: str | None = None) -> int:
        """Total ``count`` of the rows of one check (0 if absent)."""
        c = self.checks
        sel = c["check"] == check
        if table is not None:
            sel &= c["table"] == table
        if column is not None:
            sel &= c["column"] == column
        return int(c.loc[sel, "count"].sum())

    def status(self, check: str, table: str | None = None, column: str | None = None) -> str:
        """The worst status of one check (``ok`` if absent)."""
        c = self.checks
        sel = c["check"] == check
        if table is not None:
            sel &= c["table"] == table
        if column is not None:
            sel &= c["column"] == column
        statuses = c.loc[sel, "status"]
        return min(statuses, key=_STATUS_ORDER.get) if len(statuses) else "ok"

    def raise_if_errors(self) -> ValidationReport:
        """Raise :class:`SchemaError` listing the errors; return ``self`` otherwise."""
        if not self.ok:
            lines = [f"{r.table}.{r.column}: {r.message}" if r.column else f"{r.table}: {r.message}"
                     for r in self.errors.itertuples()]
            raise SchemaError(f"source {self.source} failed validation:\n  " + "\n  ".join(lines))
        return self

    def summary(self) -> str:
        """Text: verdict, then the problems (or a one-line all-clear), then users per variant."""
        n_err = int((self.checks["status"] == "error").sum())
        n_warn = int((self.checks["status"] == "warning").sum())
        verdict = "OK" if self.ok else "FAILED"
        lines = [f"Validation of {self.source}: {verdict} "
                 f"({n_err} error(s), {n_warn} warning(s), {len(self.checks)} checks)"]
        problems = self.checks[self.checks["status"] != "ok"]
        for r in problems.itertuples():
            where = f"{r.table}.{r.column}" if r.column else r.table
            lines.append(f"  [{r.status.upper():7}] {r.check:<24} {where:<24} {r.message}")
        if not len(problems):
            lines.append("  every check passed")
        if len(self.variant_counts):
            lines.append("Users per variant (units in exactly one variant):")
            for r in self.variant_counts.itertuples():
                lines.append(f"  {r.experiment_id:<20} {r.variant:<14} {int(r.users):>10,}  "
                             f"planned {r.planned_weight:.3f}, expected {r.expected_users:,.0f}")
            for eid, p in self.srm_p_values.items():
                lines.append(f"  SRM chi-square p-value ({eid}): {p:.3g}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colours = {"error": "#f8d7da", "warning": "#fff3cd", "ok": "#ffffff"}
        head = "".join(f"<th>{c}</th>" for c in REPORT_COLUMNS)
        body = []
        for r in self.checks.itertuples(index=False):
            cells = "".join(f"<td>{html.escape('' if pd.isna(v) else str(v))}</td>"
                            for v in (r.check, r.table, r.column, r.status, r.count,
                                      "" if pd.isna(r.share) else f"{r.share:.4g}", r.message))
            body.append(f'<tr style="background:{colours[r.status]}">{cells}</tr>')
        verdict = "OK" if self.ok else "FAILED"
        return (f"<p><b>Validation of {html.escape(self.source)}: {verdict}</b></p>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


class _Checks:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, check, table, column, status, count=0, share=float("nan"), message=""):
        self.rows.append({"check": check, "table": table, "column": column or "",
                          "status": status, "count": int(count),
                          "share": float(share) if share is not None else float("nan"),
                          "message": message})

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=REPORT_COLUMNS)
        order = df["status"].map(_STATUS_ORDER)
        return (df.assign(_o=order).sort_values("_o", kind="stable").drop(columns="_o")
                .reset_index(drop=True))


def _type_ok(dtype, logical: str) -> bool:
    if logical == "int":
        return dtype.is_integer()
    if logical == "float":
        return dtype.is_floating() or dtype.is_decimal()
    if logical == "string":
        return dtype.is_string()
    if logical == "timestamp":
        return dtype.is_timestamp()
    if logical == "date":
        return dtype.is_date()
    raise ValueError(logical)


def _connect(source: Any):
    try:
        import duckdb

        if isinstance(source, duckdb.DuckDBPyConnection):
            import ibis

            return ibis.duckdb.from_connection(source)
    except ImportError:  # pragma: no cover
        pass
    try:
        from workbench.data.sources import connect
    except ImportError:  # pragma: no cover - sources.py is part of the package
        import ibis

        return ibis.duckdb.connect(str(source), read_only=True)
    return connect(source)


def _describe(source: Any, con) -> str:
    if source is None:
        from workbench.config import get_settings

        return str(get_settings().warehouse)
    if isinstance(source, str | bytes) or hasattr(source, "__fspath__"):
        return str(source)
    return f"{getattr(con, 'name', type(con).__name__)} connection"


def _scalar_row(expr) -> dict:
    row = expr.execute().iloc[0].to_dict()
    return {k: (0 if pd.isna(v) else v) for k, v in row.items()}


def _table_or_none(con, name: str):
    # Not con.list_tables(): it fails with ibis 12 + duckdb 2.0 (fetch_arrow_table removed).
    try:
        return con.table(name)
    except Exception as exc:  # TableNotFound, or a backend-specific error
        if "not found" in str(exc).lower() or type(exc).__name__ == "TableNotFound" or \
                "does not exist" in str(exc).lower():
            return None
        raise


def _check_table(con, checks: _Checks, name: str, columns: tuple[Column, ...]) -> set[str]:
    """Structure and values of one table; returns the names of usable columns."""
    t = _table_or_none(con, name)
    if t is None:
        checks.add("table", name, "", "error", message=f"table {name!r} is missing")
        return set()
    schema = t.schema()
    usable = set()
    for col in columns:
        if col.name not in schema:
            checks.add("column", name, col.name, "error",
                       message=f"column {name}.{col.name} is missing (expected {col.dtype})")
        elif not _type_ok(schema[col.name], col.dtype):
            checks.add("type", name, col.name, "error",
                       message=f"column {name}.{col.name} has type {schema[col.name]}, "
                       f"expected {col.dtype}")
        else:
            usable.add(col.name)
    # One aggregate for the whole table: row count, NULLs, NaN and inf.
    aggs = {"n_rows": t.count()}
    for col in columns:
        if col.name not in usable:
            continue
        if not col.nullable:
            aggs[f"null|{col.name}"] = t[col.name].isnull().sum()
        if col.dtype == "float" and schema[col.name].is_floating():
            aggs[f"nan|{col.name}"] = t[col.name].isnan().sum()
            aggs[f"inf|{col.name}"] = t[col.name].isinf().sum()
    key = PRIMARY_KEYS.get(name)
    if key in usable:
        aggs["distinct_keys"] = t[key].nunique()
    res = _scalar_row(t.aggregate(**aggs))
    n = int(res.pop("n_rows"))
    if "distinct_keys" in res:
        dup = n - int(res.pop("distinct_keys")) - int(res.get(f"null|{key}", 0))
        checks.add("duplicates", name, key, "error" if dup else "ok", dup,
                   dup / n if n else float("nan"),
                   f"{dup:,} duplicate {name}.{key} value(s): joins would repeat rows" if dup
                   else f"{name}.{key} is unique")
    if n == 0:
        checks.add("table", name, "", "error", 0, message=f"table {name!r} is empty")
    else:
        checks.add("table", name, "", "ok", n, message=f"{n:,} rows")
    for key, value in res.items():
        kind, col = key.split("|")
        value = int(value)
        share = value / n if n else float("nan")
        label = {"null": "NULL", "nan": "NaN", "inf": "+-inf"}[kind]
        if value:
            checks.add(kind + "s" if kind == "null" else kind, name, col, "error", value, share,
                       f"{value:,} {label} value(s) in {name}.{col} ({share:.2%} of rows)")
        else:
            checks.add(kind + "s" if kind == "null" else kind, name, col, "ok", 0, 0.0,
                       f"no {label} in {name}.{col}")
    return usable


def _chi2_sf(stat: float, df: int) -> float:
    from scipy.stats import chi2

    return float(chi2.sf(stat, df))


def _check_experiment(con, checks: _Checks, eid: str, plan: pd.DataFrame,
                      usable: dict[str, set[str]], counts_out: list) -> float | None:
    """Assignment-level checks of one experiment; returns the SRM p-value."""
    import ibis

    known = sorted(plan["variant"].astype(str))
    weights = plan.groupby("variant")["planned_weight"].sum()
    total_w = float(weights.sum())
    if abs(total_w - 1.0) > 1e-6:
        checks.add("experiment", "experiments", "planned_weight", "error", len(plan), float("nan"),
                   f"planned weights of {eid!r} sum to {total_w:.6g}, not 1")
    start = pd.Timestamp(plan["start_date"].min()).date()
    end = pd.Timestamp(plan["end_date"].max()).date()
    start_ts = dt.datetime.combine(start, dt.time())
    end_ts = dt.datetime.combine(end + dt.timedelta(days=1), dt.time())

    a = con.table("assignments").filter(lambda t: t.experiment_id == eid)
    # Per user: distinct variants, first exposure, and (if single) the variant.
    per_user = a.group_by("user_id").aggregate(
        n_variants=a.variant.nunique(), variant=a.variant.max(), first_at=a.assigned_at.min(),
        unknown=(~a.variant.isin(known)).sum())
    totals = _scalar_row(per_user.aggregate(
        users=per_user.count(),
        multi=(per_user.n_variants > 1).sum(),
        unknown_users=(per_user.unknown > 0).sum(),
        unknown_rows=per_user.unknown.sum(),
        early=(per_user.first_at < ibis.literal(start_ts)).sum(),
        late=(per_user.first_at >= ibis.literal(end_ts)).sum(),
    ))
    n_users = int(totals["users"])
    if n_users == 0:
        checks.add("experiment", "assignments", "experiment_id", "error", 0, float("nan"),
                   f"no assignments for experiment {eid!r}")
        return None
    checks.add("experiment", "assignments", "experiment_id", "ok", n_users, float("nan"),
               f"{eid!r}: {n_users:,} assigned users, {start} .. {end}")

    unknown = int(totals["unknown_rows"])
    if unknown:
        checks.add("unknown_variant", "assignments", "variant", "error", unknown,
                   int(totals["unknown_users"]) / n_users,
                   f"{unknown:,} assignment row(s) of {int(totals['unknown_users']):,} user(s) "
                   f"have a variant not planned in experiments (planned: {', '.join(known)})")
    else:
        checks.add("unknown_variant", "assignments", "variant", "ok", 0, 0.0,
                   "every variant is planned")

    multi = int(totals["multi"])
    share = multi / n_users
    status = ("ok" if multi == 0 else
              "error" if share >= MULTIPLE_VARIANTS_THRESHOLD else "warning")
    checks.add("multiple_variants", "assignments", "user_id", status, multi, share,
               f"{multi:,} user(s) ({share:.2%}) assigned to more than one variant"
               + (f" (flagged at >= {MULTIPLE_VARIANTS_THRESHOLD:.0%})" if multi else ""))

    outside = int(totals["early"]) + int(totals["late"])
    checks.add("assignment_window", "assignments", "assigned_at", "warning" if outside else "ok",
               outside, outside / n_users,
               f"{outside:,} first exposure(s) outside {start} .. {end}" if outside
               else "every first exposure is within the experiment dates")

    # SRM over users in exactly one planned variant.
    single = per_user.filter((per_user.n_variants == 1) & (per_user.unknown == 0))
    observed = single.group_by("variant").aggregate(users=single.count()).execute()
    observed = observed.set_index("variant")["users"].reindex(known).fillna(0).astype(int)
    n_single = int(observed.sum())
    w = weights.reindex(known).astype(float)
    w = w / w.sum() if w.sum() > 0 else w
    expected = w * n_single
    for variant in known:
        counts_out.append({"experiment_id": eid, "variant": variant,
                           "planned_weight": float(weights[variant]),
                           "users": int(observed[variant]),
                           "expected_users": float(expected[variant])})
    p_value = None
    # Variants planned at weight 0 take no part in the test, unless they received units.
    planned = expected > 0
    if n_single > 0 and (observed[~planned] > 0).any():
        p_value = 0.0
    elif n_single > 0 and planned.sum() > 1:
        o, x = observed[planned], expected[planned]
        p_value = _chi2_sf(float((((o - x) ** 2) / x).sum()), int(planned.sum()) - 1)
    if p_value is not None:
        srm = p_value < SRM_THRESHOLD
        # Units that would have to move to match the plan (half the total absolute deviation).
        misallocated = int(round(float((observed - expected).abs().sum() / 2)))
        detail = ", ".join(f"{v} {observed[v]:,} (expected {expected[v]:,.0f})" for v in known)
        checks.add("srm", "assignments", "variant", "error" if srm else "ok",
                   misallocated, misallocated / n_single,
                   (f"sample ratio mismatch: chi-square p = {p_value:.3g} < {SRM_THRESHOLD:g}; "
                    if srm else f"no sample ratio mismatch (p = {p_value:.3g}); ") + detail)
    elif n_single == 0:
        checks.add("srm", "assignments", "variant", "error", 0, float("nan"),
                   "SRM test impossible: no user is in exactly one planned variant")
    else:
        checks.add("srm", "assignments", "variant", "ok", 0, float("nan"),
                   "SRM test not applicable: fewer than 2 variants with a planned weight")

    # Events between start_date and the user's first exposure (the metric window starts at
    # assigned_at, so such events are dropped from metrics: exposure was likely logged late).
    if {"user_id", "event_time"} <= usable.get("events", set()):
        e = con.table("events")
        e = e.filter((e.event_time >= ibis.literal(start_ts)) & (e.event_time < ibis.literal(end_ts)))
        j = e.inner_join(per_user.select("user_id", "first_at"), "user_id")
        res = _scalar_row(j.aggregate(
            in_window=j.count(),
            before=(j.event_time < j.first_at).sum(),
        ))
        before = int(res["before"])
        users_before = 0
        if before:
            jb = j.filter(j.event_time < j.first_at)
            users_before = int(jb.user_id.nunique().execute())
        in_window = int(res["in_window"])
        checks.add("events_before_exposure", "events", "event_time",
                   "warning" if before else "ok", before,
                   before / in_window if in_window else 0.0,
                   f"{before:,} event(s) of {users_before:,} user(s) between {start} and the "
                   "user's first assigned_at (excluded from metrics)" if before
                   else "no event between the start date and a user's exposure")
    else:
        checks.add("events_before_exposure", "events", "event_time", "warning", 0, float("nan"),
                   "not checked: events.user_id / events.event_time unusable")

    if {"user_id"} <= usable.get("users", set()):
        u = con.table("users").select("user_id").distinct()
        missing = int(per_user.anti_join(u, "user_id").count().execute())
        checks.add("users", "users", "user_id", "warning" if missing else "ok", missing,
                   missing / n_users,
                   f"{missing:,} assigned user(s) missing from users (lost to segments)"
                   if missing else "every assigned user is in users")
    return p_value


def validate_source(source: Any = None, experiment_id: str | None = None, *,
                    raise_on_error: bool = False) -> ValidationReport:
    """Validate an experiment source against :mod:`workbench.data.schema`.

    Parameters
    ----------
    source : None, str, Path, ibis backend or duckdb connection
        A DuckDB file (default: the settings' warehouse), an Ibis URL or backend, or an open
        ``duckdb`` connection.
    experiment_id : str, optional
        Experiment to check; default every experiment in ``experiments``.
    raise_on_error : bool
        Raise :class:`~workbench.errors.SchemaError` when a check fails.

    Returns
    -------
    ValidationReport

    Raises
    ------
    SourceError
        The source cannot be opened.
    SchemaError
        With ``raise_on_error=True``, naming each failing table and column.
    """
    con = _connect(source)
    checks = _Checks()
    usable = {name: _check_table(con, checks, name, cols) for name, cols in TABLES.items()}

    counts: list[dict] = []
    p_values: dict = {}
    eids: tuple = ()
    need_exp = {"experiment_id", "variant", "planned_weight", "start_date", "end_date"}
    need_asg = {"experiment_id", "user_id", "variant", "assigned_at"}
    if need_exp <= usable["experiments"] and need_asg <= usable["assignments"]:
        exp = con.table("experiments")
        plans = exp.select(*sorted(need_exp)).execute()
        if experiment_id is not None:
            eids = (experiment_id,)
        else:
            eids = tuple(sorted(plans["experiment_id"].astype(str).unique()))
        for eid in eids:
            plan = plans[plans["experiment_id"] == eid]
            if plan.empty:
                checks.add("experiment", "experiments", "experiment_id", "error", 0, float("nan"),
                           f"experiment {eid!r} is not in experiments")
                continue
            p = _check_experiment(con, checks, eid, plan, usable, counts)
            if p is not None:
                p_values[eid] = p
    else:
        checks.add("experiment", "assignments", "", "warning", 0, float("nan"),
                   "experiment checks skipped: assignments/experiments unusable")

    report = ValidationReport(
        checks=checks.frame(), source=_describe(source, con), experiment_ids=eids,
        variant_counts=pd.DataFrame(counts, columns=["experiment_id", "variant",
                                                     "planned_weight", "users",
                                                     "expected_users"]),
        srm_p_values=p_values)
    if raise_on_error:
        report.raise_if_errors()
    return report


def main(args: argparse.Namespace) -> int:
    """``workbench validate``: print the summary; exit 2 on errors, 0 with warnings only."""
    report = validate_source(args.source, args.experiment)
    print(report.summary())
    return 0 if report.ok else 2
