"""Covariates of the regression adjustment (:mod:`workbench.stats.regression`), in the engine.

A metric declares them in YAML::

    - name: revenue_per_user          # event log
      ...
      covariates: [revenue_per_user, sessions]   # metrics: their pre-period values (as CUPED's,
                                                 # over this metric's pre_period_days); a ratio
                                                 # metric gives two: <name>_numerator, _denominator
      attributes: [device, country]              # columns of the `users` table, one-hot

    - {name: revenue, kind: mean, column: revenue,                 # per-unit table: columns;
       covariates: [pre_revenue, pre_sessions, device]}           # a text column is one-hot

One-hot: the ``TOP`` most frequent values and ``(other)`` (the rest and NULL) are levels; the most
frequent is the reference and gets no column. Covariates are not capped; NULL/NaN numbers are 0.

Each covariate becomes a unit column ``<metric>__c<j>``; :func:`summands` turns them into the
stats schema's ``cov_sum__j``, ``cov_prod__j__l``, ``cov_y__j`` and ``cov_d__j``, summed per
variant in the same engine query as the other statistics. Time series (``daily_stats``) carry no
covariate statistics: their rows are compared unadjusted (or with CUPED when ``cuped: true``).
"""
from __future__ import annotations

import pandas as pd

from workbench.data.sources import execute
from workbench.errors import SchemaError, SourceError
from workbench.metrics.definition import MetricDefinition
from workbench.stats.regression import COVARIATES, columns

TOP = 5
OTHER = "(other)"


def _col(metric: str, j: int) -> str:
    return f"{metric}__c{j}"


def is_column(name: str) -> bool:
    """Whether a unit-table column is a covariate column ``<metric>__c<j>``."""
    tag = name.rsplit("__", 1)[-1] if "__" in name else ""
    return tag[:1] == "c" and tag[1:].isdigit()


def top_values(counts: pd.Series, top_n: int) -> list:
    """The ``top_n`` values with the largest ``counts`` (indexed by value; ties: by value), or
    every value when at most one would be left out: the one-hot levels here and the segments of
    a breakdown (``StatisticsCompiler.segment_stats``); the rest are :data:`OTHER`."""
    ranked = sorted(counts.index, key=lambda value: (-counts[value], value))
    return ranked if len(ranked) <= top_n + 1 else ranked[:top_n]


def _levels(compiler, table, expr, key) -> list[str]:
    """The one-hot levels of a text column: top values but the reference, and ``(other)``."""
    cache = compiler.__dict__.setdefault("_covariate_levels", {})
    if key not in cache:
        counts = execute(table.group_by(v=expr.cast("string")).aggregate(n=table.count()))
        has_null = counts["v"].isna().any()
        counts = counts.dropna().set_index("v")["n"]
        top = top_values(counts, TOP)
        cache[key] = (top, len(counts) > len(top) or bool(has_null))
    return cache[key]


def _one_hot(compiler, table, expr, key, label, target=None):
    """Indicators of the levels (counted on ``expr`` of ``table``), built on ``target``
    (default ``expr``)."""
    import ibis

    top, other = _levels(compiler, table, expr, key)
    s = (expr if target is None else target).cast("string")
    out = [(f"{label}={v}", (s == v).fill_null(False).cast("float64")) for v in top[1:]]
    if other and top:
        out.append((f"{label}={OTHER}",
                    ibis.ifelse(s.isnull(), True, ~s.isin(top)).cast("float64")))
    return out


def _number(expr):
    import ibis

    if expr.type().is_boolean():
        expr = expr.cast("int64")
    expr = expr.cast("float64")
    return ibis.ifelse(expr.isnan() | expr.isinf(), 0.0, expr).fill_null(0.0)


def _remember(compiler, metric: str, names: list[str]) -> None:
    compiler.__dict__.setdefault("_covariate_names", {})[metric] = names


def unit_columns(compiler, m: MetricDefinition, u) -> dict:
    """Per-unit tables: the ``<metric>__c<j>`` columns of ``m.covariates`` (``u__<col>`` in
    ``u``, the compiler's unit table)."""
    if not m.covariates:
        return {}
    names, exprs = [], []
    for c in m.covariates:
        if f"u__{c}" not in u.columns:
            raise SchemaError(f"metric {m.name!r}: covariate column {c!r} is not a column of the "
                              "per-unit table")
        e = u[f"u__{c}"]
        if e.type().is_string():
            for name, x in _one_hot(compiler, u, e, ("units", c), c):
                names.append(name)
                exprs.append(x)
        else:
            names.append(c)
            exprs.append(_number(e))
    _remember(compiler, m.name, names)
    return {_col(m.name, j): x for j, x in enumerate(exprs)}


def add_attributes(compiler, t):
    """Event logs: join the ``users`` columns of the metrics' ``attributes`` to the unit table
    ``t`` as one-hot ``<metric>__c<j>`` columns after the metric covariates."""
    with_attr = [m for m in compiler.metrics if m.attributes]
    for m in compiler.metrics:
        if m.covariate_parts and not m.attributes:
            _remember(compiler, m.name, [n for n, _ in m.covariate_parts])
    if not with_attr:
        return t
    users = compiler.users
    if users is None:
        raise SourceError("metric attributes (one-hot covariates) need a 'users' table")
    wanted = sorted({a for m in with_attr for a in m.attributes})
    for a in wanted:
        if a not in users.columns:
            raise SourceError(f"attribute {a!r} is not a column of table 'users'")
    u = users.select(__uid=users.user_id, **{f"__attr_{a}": users[a] for a in wanted})
    units = compiler.units()
    j = units.join(users, units.user_id == users.user_id)
    new = {}
    joined = t.left_join(u, t.user_id == u.__uid)
    for m in with_attr:
        names = [n for n, _ in m.covariate_parts]
        k = len(names)
        for a in m.attributes:
            for name, x in _one_hot(compiler, j, users[a], ("users", a), a,
                                    joined[f"__attr_{a}"]):
                new[_col(m.name, k)] = x
                names.append(name)
                k += 1
        _remember(compiler, m.name, names)
    return joined.select(*t.columns, **new)


def summands(t, m: MetricDefinition) -> dict:
    """Per-unit summands of the covariate statistics of ``m`` (keys ``<metric>|cov_...``), from
    the ``<metric>__c<j>`` columns of unit table ``t``."""
    xs = []
    while _col(m.name, len(xs)) in t.columns:
        xs.append(t[_col(m.name, len(xs))])
    if not xs:
        return {}
    y = t[f"{m.name}__y"]
    d = t[f"{m.name}__d"] if f"{m.name}__d" in t.columns else None
    out = {}
    for j, x in enumerate(xs):
        out[f"cov_sum__{j}"] = x
    for j, x in enumerate(xs):
        for k in range(j, len(xs)):
            out[f"cov_prod__{j}__{k}"] = x * xs[k]
    for j, x in enumerate(xs):
        out[f"cov_y__{j}"] = y * x
    if d is not None:
        for j, x in enumerate(xs):
            out[f"cov_d__{j}"] = d * x
    return {f"{m.name}|{k}": v for k, v in out.items()}


def stat_columns(df: pd.DataFrame) -> list[str]:
    """The covariate statistic columns of a long stats table, in :func:`columns` order."""
    k = 0
    while f"cov_sum__{k}" in df.columns:
        k += 1
    return [c for c in columns(k, ratio=True) if c in df.columns]


def names(compiler, m: MetricDefinition) -> str:
    """The ``covariates`` text of ``m``'s rows (empty when it has none)."""
    return ",".join(compiler.__dict__.get("_covariate_names", {}).get(m.name, []))


__all__ = ["COVARIATES", "OTHER", "TOP", "add_attributes", "names", "stat_columns", "top_values",
           "summands", "unit_columns"]
