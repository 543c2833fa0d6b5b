"""Planning an experiment on historical data: moments measured in the engine, then sizes.

For a historical window ``[start_date, end_date]`` the *units* are the users active in it
(any event, or one of ``exposure`` event types), each "exposed" at its first such event, so
the metric definitions are computed exactly as a readout would compute them
(:class:`~workbench.metrics.compiler.MetricCompiler`; per-unit tables:
:class:`~workbench.metrics.units.UnitCompiler`). From the sufficient statistics of that one
group, per metric (:mod:`workbench.stats.moments`, :mod:`workbench.stats.cuped`):

- baseline ``mean`` (ratio: ``sum y / sum d``) and unit variance ``var`` (ratio: delta method);
- ``rho``: the correlation of the metric with its CUPED covariate, measured: the metric's
  declared covariate, else the same metric over the ``pre_period_days`` (default the window's
  length) before ``start_date``; the CUPED variance is ``var (1 - rho^2)``;
- ``units_per_day``: units of the window / its days (or the caller's ``users_per_day``).

The sizes are :func:`workbench.stats.power.design`: fixed horizon and sequential (the readout's
confidence sequences), with and without CUPED.
"""
from __future__ import annotations

import datetime as dt
import os
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import ParameterError
from workbench.tracking.plans import TABLE, TAG, load, planned_mde  # noqa: F401 (the API)

PLAN_ID = "__plan__"  # the experiment key of the historical units
GROUP = "all"
MOMENTS = "plan_moments"
MOMENT_COLUMNS = ("metric", "kind", "n_units", "units_per_day", "baseline", "variance", "rho",
                  "variance_cuped", "error_message")
PLAN_COLUMNS = ("metric", "kind", "cuped", "baseline", "variance", "rho", "mde",
                "units_per_day", "n_fixed", "days_fixed", "mde_fixed", "n_sequential",
                "days_sequential", "mde_sequential", "error_message")


@dataclass(frozen=True)
class Plan:
    """An experiment plan from measured moments.

    Attributes
    ----------
    experiment_id : str
        The experiment being planned (logged as the ``workbench.plan`` tag).
    moments : DataFrame
        Per metric: ``metric, kind, n_units, units_per_day, baseline, variance, rho,
        variance_cuped, error_message``, measured in the engine over the window.
    table : DataFrame
        Per metric x ``cuped`` (False, True): ``mde`` (to detect), ``n_fixed`` /
        ``n_sequential`` (experiment units needed, all arms), ``days_*`` (duration),
        ``mde_*`` (MDE reached after ``days`` days) and ``error_message``.
    parameters : dict
        Window, weights, compared arms, alpha, power, traffic, days, relative, tuning.
    notes : tuple of str
        What was defaulted or could not be measured.
    """

    experiment_id: str
    moments: pd.DataFrame
    table: pd.DataFrame
    parameters: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_frame(self) -> pd.DataFrame:
        """The plan table (one row per metric x CUPED), for logging and dashboards."""
        return self.table.copy()

    def planned_mde(self) -> dict[str, float]:
        """``{metric: mde}``: what :meth:`workbench.Experiment.analyze` takes as
        ``planned_mde``."""
        return planned_mde(self.table)

    def headline(self) -> dict:
        """The run summary the catalogue lists: ``kind`` (``"plan"``), ``experiment_id``,
        ``primary_metric`` (the first primary metric, else the first planned one) and its
        ``planned_days`` / ``planned_n`` / ``mde`` (fixed horizon; the CUPED row when its
        correlation was measured, as a readout with a covariate would analyse it)."""
        t = self.table
        names = [m for m in self.parameters.get("primary_metrics") or () if m in set(t["metric"])]
        first = names[0] if names else (str(t["metric"].iloc[0]) if len(t) else None)
        out = {"kind": "plan", "experiment_id": self.experiment_id, "primary_metric": first,
               "planned_days": None, "planned_n": None, "mde": None}
        rows = t[t["metric"] == first]
        if len(rows):
            cup = rows[rows["cuped"].astype(bool)]
            r = cup.iloc[0] if len(cup) and np.isfinite(cup["days_fixed"].iloc[0]) \
                and cup["rho"].iloc[0] != 0 else rows.iloc[0]
            for key, col in (("planned_days", "days_fixed"), ("planned_n", "n_fixed"),
                             ("mde", "mde")):
                out[key] = float(r[col]) if np.isfinite(r[col]) else None
        return out

    def tracking_metrics(self) -> dict[str, float]:
        """Run metrics: ``<metric>.<n|days|mde>_<fixed|sequential>[_cuped]`` (finite only)."""
        out = {}
        for _, r in self.table.iterrows():
            suffix = "_cuped" if r["cuped"] else ""
            for c in ("n_fixed", "days_fixed", "mde_fixed", "n_sequential", "days_sequential",
                      "mde_sequential"):
                if np.isfinite(r[c]):
                    out[f"{r['metric']}.{c}{suffix}"] = float(r[c])
        for _, r in self.moments.iterrows():
            for c in ("baseline", "variance", "rho", "units_per_day"):
                if np.isfinite(r[c]):
                    out[f"{r['metric']}.{c}"] = float(r[c])
        return out

    def summary(self):
        """A text of the plan (renders as HTML in Jupyter)."""
        from workbench.summary import Summary

        return Summary(self._text(), self._html())

    def _display(self) -> pd.DataFrame:
        from workbench import format as fmt

        t = self.table
        rel = self.parameters.get("relative", True)
        show = pd.DataFrame({
            "metric": t["metric"], "CUPED": np.where(t["cuped"], "yes", "no"),
            "baseline": [fmt.number(v) for v in t["baseline"]],
            "rho": [fmt.number(v) for v in t["rho"]],
            "MDE": [fmt.percent(v) if rel else fmt.number(v) for v in t["mde"]],
            "units (fixed)": [fmt.count(v) for v in t["n_fixed"]],
            "days (fixed)": [fmt.count(v) for v in t["days_fixed"]],
            "units (sequential)": [fmt.count(v) for v in t["n_sequential"]],
            "days (sequential)": [fmt.count(v) for v in t["days_sequential"]],
            f"MDE at {fmt.count(self.parameters.get('days'))} d (fixed)":
                [fmt.percent(v) if rel else fmt.number(v) for v in t["mde_fixed"]],
        })
        return show

    def _head(self) -> str:
        p = self.parameters
        return (f"Plan for {self.experiment_id}: window {p.get('start_date')} .. "
                f"{p.get('end_date')}, alpha {p.get('alpha')}, power {p.get('power')}, "
                f"weights {p.get('weights')}")

    def _text(self) -> str:
        lines = [self._head(), self._display().to_string(index=False)]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _html(self) -> str:
        import html

        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (f"<p><b>{html.escape(self._head())}</b></p>"
                + self._display().to_html(index=False, escape=True)
                + (f"<ul>{notes}</ul>" if notes else ""))

    def _repr_html_(self) -> str:
        return self._html()

    def figure(self, days: int | None = None, method: str = "fixed", ax=None):
        """Power against days, one line per metric, without (solid) and with CUPED (dashed)
        (:func:`workbench.plots.plan.plot_power_curve`); returns the matplotlib Figure."""
        from workbench.plots.plan import plot_power_curve

        return plot_power_curve(self, days=days, method=method, ax=ax).figure


def _date(value, name):
    if value is None:
        return None
    try:
        return pd.Timestamp(value).date()
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{name}={value!r}: expected a date (YYYY-MM-DD)") from exc


def _weights(weights):
    if isinstance(weights, Mapping):
        names, w = list(weights), [float(v) for v in weights.values()]
    else:
        try:
            w = [float(v) for v in weights]
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"weights={weights!r}: expected shares, e.g. [0.5, 0.5]") \
                from exc
        names = [f"arm_{i}" for i in range(len(w))]
    if len(w) < 2 or any(not (v > 0) for v in w):
        raise ParameterError(f"weights={weights!r}: expected two or more shares > 0")
    total = sum(w)
    w = [v / total for v in w]
    # the smallest variant arm against the control (the first): the slowest comparison
    return names, w, (w[0], min(w[1:]))


def _events_compiler(source, defs, start, end, exposure, events):
    import ibis

    from workbench.config import project_path
    from workbench.data.layout import source_table
    from workbench.data.sources import connect
    from workbench.metrics.compiler import MetricCompiler
    from workbench.metrics.window import ExperimentWindow

    con = connect(project_path(source))
    ev = source_table(con, project_path(events), "events")
    for c in ("user_id", "event_time", "event_type"):
        if c not in ev.columns:
            raise ParameterError(f"events: column {c!r} is missing (the documented schema)")
    window = ExperimentWindow(PLAN_ID, start, end, (GROUP,), (1.0,), GROUP)
    e = ev.filter((ev.event_time >= window.start_ts) & (ev.event_time < window.end_ts))
    if exposure:
        e = e.filter(e.event_type.isin(list(exposure)))
    a = e.group_by("user_id").aggregate(assigned_at=e.event_time.min())
    a = a.mutate(experiment_id=ibis.literal(PLAN_ID), variant=ibis.literal(GROUP))
    return MetricCompiler(a, ev, window, defs)


def _units_compiler(source, defs, date, start, end):
    import ibis

    from workbench.data.sources import units_table
    from workbench.metrics.units import UnitCompiler
    from workbench.metrics.window import ExperimentWindow

    t = units_table(source)
    if date is not None:
        if date not in t.columns:
            raise ParameterError(f"date={date!r}: not a column of the per-unit table")
        d = t[date].cast(ibis.dtype("timestamp"))
        if start is not None:
            t = t.filter(d >= dt.datetime.combine(start, dt.time()))
        if end is not None:
            t = t.filter(d < dt.datetime.combine(end + dt.timedelta(days=1), dt.time()))
    t = t.mutate(__plan_group=ibis.literal(GROUP))
    window = ExperimentWindow(PLAN_ID, start, end, (GROUP,), (1.0,), GROUP)
    return UnitCompiler(t, window, defs, variant="__plan_group", date=date)


def measure(compiler, window_days: float | None, users_per_day: float | None,
            date_span=None) -> pd.DataFrame:
    """Per-metric moments from the compiler's sufficient statistics of the one group.

    Returns
    -------
    DataFrame
        :data:`MOMENT_COLUMNS`.
    """
    from workbench.stats import cuped, moments

    stats = compiler.sufficient_stats()
    stats = stats[stats["kind"] != "quantile"].reset_index(drop=True)
    base = moments.basic_moments(stats)
    use = cuped.available(stats)
    # one block per metric: each metric's own slope (one group, no variants to pool)
    adj = cuped.adjust(stats, base, np.arange(len(stats)), len(stats), use)
    n = base["n"]
    is_prop = stats["kind"].to_numpy() == "proportion"
    with np.errstate(invalid="ignore", divide="ignore"):
        s_yy = np.where(is_prop, base["var_unit"] * n / (n - 1), base["var_unit"])
        rho2 = np.where(adj["used"], 1.0 - adj["var_unit"] / s_yy, 0.0)
        rho2 = np.clip(np.nan_to_num(rho2, nan=0.0), 0.0, 1.0)
        rho = np.sign(np.nan_to_num(adj["theta"])) * np.sqrt(rho2)
        upd = float(users_per_day) if users_per_day is not None else (
            n / window_days if window_days else np.nan)
    upd = np.broadcast_to(np.asarray(upd, float), n.shape)
    msg = []
    for i in range(len(stats)):
        if not n[i] >= 2:
            msg.append("fewer than 2 units in the window")
        elif not (np.isfinite(base["var_unit"][i]) and base["var_unit"][i] > 0):
            msg.append("the metric has no variance in the window")
        elif not np.isfinite(upd[i]) or upd[i] <= 0:
            msg.append("no units per day: pass users_per_day=")
        else:
            msg.append("")
    return pd.DataFrame({
        "metric": stats["metric"], "kind": stats["kind"], "n_units": n.astype("int64"),
        "units_per_day": upd, "baseline": base["mean"], "variance": base["var_unit"],
        "rho": rho, "variance_cuped": base["var_unit"] * (1.0 - rho**2), "error_message": msg})


def _mde_of(mde, names):
    if isinstance(mde, Mapping):
        bad = [k for k in mde if k not in names]
        if bad:
            raise ParameterError(f"mde names {bad}, not a metric ({names})")
        out = [float(mde.get(m, np.nan)) for m in names]
    else:
        try:
            out = [float(mde)] * len(names)
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"mde={mde!r}: expected a number or {{metric: number}}") \
                from exc
    if any(v == 0 or np.isinf(v) for v in out):
        raise ParameterError(f"mde={mde!r}: expected finite effects different from 0")
    return out


def plan(source: Any = None, metrics: Any = None, *, start_date: Any = None,
         end_date: Any = None, users_per_day: float | None = None,
         weights: Sequence[float] | Mapping[str, float] = (0.5, 0.5), mde: Any = 0.02,
         alpha: float = 0.05, power: float = 0.8, traffic: float = 1.0,
         days: int | None = None, relative: bool = True, alternative: str = "two-sided",
         sequential_tuning: float | None = None, experiment_id: str = "experiment",
         exposure: Sequence[str] | str | None = None, events: Any = None,
         per_unit: bool | None = None, date: str | None = None,
         pre_period_days: int | None = None) -> Plan:
    """Plan an experiment on historical data.

    >>> p = wb.plan("data/warehouse.duckdb", "workbench/data/checkout_metrics.yml",
    ...             start_date="2026-09-28", end_date="2026-10-04", mde=0.05)
    >>> p.summary(); p.figure()

    Parameters
    ----------
    source : see :func:`workbench.data.sources.connect`, or a per-unit table
        An event-log source (default: the settings' warehouse) or, with ``per_unit`` (default:
        ``source`` is a DataFrame / Ibis table with no ``events``), one row per unit.
    metrics : path, mapping or list
        Metric definitions as :meth:`workbench.Experiment.from_source` (events) or
        :meth:`~workbench.Experiment.from_units` (per-unit) take them.
    start_date, end_date : date
        The historical window (inclusive). Required for event logs; for per-unit tables they
        filter on ``date`` when given.
    users_per_day : float, optional
        Eligible users per day (default: measured, the window's units / its days).
    weights : sequence or mapping
        The planned split, control first; the slowest control-vs-variant comparison is sized.
    mde : float or mapping
        Effect to detect (relative lift when ``relative``), or ``{metric: effect}``.
    alpha, power : float
    traffic : float
        Share of eligible users entering the experiment.
    days : int, optional
        Duration for the ``mde_*`` columns and the power curve (default: the window's days,
        else 14).
    relative, alternative, sequential_tuning
        As the readout (:func:`workbench.stats.analyze`).
    experiment_id : str
        The planned experiment (tag ``workbench.plan`` of the logged run).
    exposure : str or list, optional
        Event types that make a user a unit (default: any event).
    events : str, path or Ibis table, optional
        The events table (default ``events``).
    date : str, optional
        Per-unit tables: the unit's date column (units per day, window filter).
    pre_period_days : int, optional
        Pre-period of metrics without a declared CUPED covariate (default: the window's days).

    Returns
    -------
    Plan

    Raises
    ------
    ParameterError
        Naming the parameter at fault.
    """
    from workbench.stats.power import design

    start, end = _date(start_date, "start_date"), _date(end_date, "end_date")
    if start is not None and end is not None and end < start:
        raise ParameterError(f"end_date {end} is before start_date {start}")
    if not 0 < traffic <= 1:
        raise ParameterError(f"traffic={traffic!r}: expected a share in (0, 1]")
    if users_per_day is not None and not (isinstance(users_per_day, (int, float))
                                          and users_per_day > 0):
        raise ParameterError(f"users_per_day={users_per_day!r}: expected a number > 0")
    names, w, shares = _weights(weights)
    if isinstance(exposure, str):
        exposure = [exposure]
    if per_unit is None:
        per_unit = events is None and not isinstance(source, (str, type(None))) \
            and not hasattr(source, "list_tables") and not _is_path(source) \
            and not _is_spark_session(source)
    window_days = (end - start).days + 1 if start is not None and end is not None else None
    notes = []
    if per_unit:
        from workbench.metrics.units import unit_metrics

        defs = unit_metrics(metrics)
        comp = _units_compiler(source, defs, date, start, end)
        if users_per_day is None and date is not None and window_days is None:
            window_days = _span_days(comp)
        if not any(m.cuped for m in defs):
            notes.append("no CUPED covariate declared: rho = 0 (declare cuped= columns)")
    else:
        from workbench.config import project_path
        from workbench.metrics.definition import load_metrics

        if start is None or end is None:
            raise ParameterError("start_date and end_date: the historical window is required "
                                 "for an event log")
        pre = int(pre_period_days or window_days)
        if pre < 1:
            raise ParameterError(f"pre_period_days={pre_period_days!r}: expected days >= 1")
        defs = [m if m.cuped or m.kind == "quantile" else replace(m, cuped=True,
                                                                   pre_period_days=pre)
                for m in load_metrics(project_path(metrics))]
        comp = _events_compiler(source, defs, start, end, exposure, events)
    if users_per_day is not None:
        notes.append(f"users per day: {users_per_day:g} (given)")
    mom = measure(comp, window_days, users_per_day)
    quant = [m.name for m in defs if m.kind == "quantile"]
    if quant:
        notes.append(f"quantile metrics are not planned: {', '.join(quant)}")
    days = int(days or window_days or 14)
    mdes = _mde_of(mde, list(mom["metric"]))
    rows = []
    for use_cuped in (False, True):
        var = mom["variance_cuped" if use_cuped else "variance"].to_numpy(float)
        ok = (mom["error_message"] == "").to_numpy() & np.isfinite(mdes)
        upd = mom["units_per_day"].to_numpy(float) * traffic
        d = design(np.where(ok, var, np.nan), mom["baseline"].to_numpy(float),
                   np.where(np.isfinite(mdes), mdes, 1.0), shares, upd, days, alpha=alpha,
                   power=power, relative=relative, alternative=alternative,
                   tuning=sequential_tuning)
        msg = [e or ("" if np.isfinite(v) else "no mde given for this metric")
               for e, v in zip(mom["error_message"], mdes)]
        msg = [e or ("" if ok_ and np.isfinite(s) else "baseline 0: no relative MDE")
               for e, ok_, s in zip(msg, ok, d["se1"])]
        rows.append(pd.DataFrame({
            "metric": mom["metric"], "kind": mom["kind"], "cuped": use_cuped,
            "baseline": mom["baseline"], "variance": var, "rho": mom["rho"], "mde": mdes, "units_per_day": upd, **{c: d[c] for c in d.columns
                                                           if c != "se1"},
            "se1": d["se1"], "error_message": msg}))
    table = pd.concat(rows, ignore_index=True)
    table = table.sort_values(["metric", "cuped"], kind="stable", key=lambda s: s.map(
        {m: i for i, m in enumerate(mom["metric"])}) if s.name == "metric" else s)
    table = table.reset_index(drop=True)
    params = {"experiment_id": experiment_id, "start_date": str(start), "end_date": str(end),
              "weights": dict(zip(names, w)), "alpha": alpha, "power": power,
              "traffic": traffic, "days": days, "relative": relative,
              "alternative": alternative, "users_per_day": users_per_day,
              "sequential_tuning": sequential_tuning, "per_unit": bool(per_unit),
              "primary_metrics": [m.name for m in defs if getattr(m, "role", "") == "primary"
                                  and m.name in set(mom["metric"])]}
    return Plan(experiment_id, mom, table, params, tuple(notes))


def _is_path(source) -> bool:
    return isinstance(source, os.PathLike)


def _is_spark_session(source) -> bool:
    return type(source).__name__ in ("SparkSession",)


def _span_days(comp) -> float | None:
    from workbench.data.sources import execute

    u = comp.units()
    if "assigned_at" not in u.columns:
        return None
    span = execute(u.aggregate(lo=u.assigned_at.min(), hi=u.assigned_at.max()))
    if span["lo"].isna().iloc[0]:
        return None
    return float((pd.Timestamp(span["hi"].iloc[0]).normalize()
                  - pd.Timestamp(span["lo"].iloc[0]).normalize()).days + 1)


class _CallableModule(types.ModuleType):
    """``wb.plan(...)`` must call :func:`plan` even after ``import workbench.plan`` has bound
    this module to the package attribute ``plan`` (the import system does that)."""

    def __call__(self, *args, **kwargs) -> Plan:
        return plan(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
