"""The bundled sample experiment: realistic e-commerce checkout data with KNOWN truth.

:func:`generate` writes a DuckDB file with the tables of :mod:`workbench.data.schema`
(``assignments``, ``events``, ``users``, ``experiments``) plus ``truth``, ``truth_users`` and
``model_data``. Everything is drawn with one :class:`numpy.random.Generator`, so a seed fixes
every table's content.

The model, per user ``i`` (all parameters are user-level, so the pre-period predicts the
experiment period and CUPED helps):

* attributes: ``country`` (6, skewed), ``device``, ``channel``, ``tenure_days``;
* session rate ``lambda_i`` per day = base x device x channel x tenure factors x Gamma(1.2) noise;
* per-session order probability ``p_i`` = base(device) x country x channel x lognormal noise;
* order value = ``m_i`` x (lognormal body, 97 %; Pareto tail with alpha 2.2, 3 %);
* assignment (exposure) time: a front-loaded draw over the 14 days; the exposure is the user's
  first session of the experiment, then ``Poisson(lambda_i * L_i)`` more sessions over the
  rest of the window of ``L_i`` days; each session orders with probability ``p_i``.

Treatment effects: ``treatment_a`` multiplies ``p_i`` by 1.10 on mobile, 1.02 on desktop and
1.00 on tablet; ``treatment_b`` multiplies ``p_i`` by 1.03 everywhere and order values by 1.05.

The truth is exact: with ``S = 1 + lambda_i L_i`` expected sessions, a user's expected orders
are ``p S``, conversion probability ``1 - (1 - p) exp(-lambda_i L_i p)`` and expected revenue
``p S m_i v E[X]``, under each arm. Averaging over all users (potential outcomes) gives the
population value per arm; ``revenue_per_order`` is the ratio of the population expectations.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.summary import Summary

__all__ = ["SampleTruth", "generate", "model_dataset", "load_truth",
           "SRM_DROP_SHARE", "VARIANTS", "METRICS"]

VARIANTS = ("control", "treatment_a", "treatment_b")
PLANNED_WEIGHTS = (1 / 3, 1 / 3, 1 / 3)
METRICS = ("conversion", "orders_per_user", "revenue_per_user", "sessions_per_user",
           "revenue_per_order")
SEGMENT_DIMENSIONS = ("device", "country", "channel")
START_DATE = dt.date(2026, 10, 5)
EXPOSURE_DAYS = 14
PRE_DAYS = 14
# 10 % of treatment_b lost: chi-square ~ 2 n d^2 / 9 ~ 44 at 20k users (p ~ 1e-10).
SRM_DROP_SHARE = 0.10

COUNTRIES = {"US": 0.38, "GB": 0.16, "DE": 0.14, "FR": 0.12, "BR": 0.11, "IN": 0.09}
DEVICES = {"desktop": 0.42, "mobile": 0.48, "tablet": 0.10}
CHANNELS = {"organic": 0.34, "paid_search": 0.24, "social": 0.16, "email": 0.14,
            "referral": 0.12}

# Multiplicative factors, in the order of the dictionaries above.
_RATE_BASE = 0.30
_RATE_DEVICE = np.array([1.0, 1.15, 0.8])
_RATE_CHANNEL = np.array([1.0, 0.85, 0.9, 1.25, 0.95])
_RATE_SHAPE = 1.2
_P_DEVICE = np.array([0.18, 0.11, 0.14])
_P_COUNTRY = np.array([1.0, 1.05, 1.1, 0.95, 0.8, 0.7])
_P_CHANNEL = np.array([1.0, 1.15, 0.75, 1.3, 1.0])
_P_SIGMA = 0.9
_P_MAX = 0.6
_VALUE_COUNTRY = np.array([1.0, 0.95, 0.9, 0.9, 0.55, 0.4])
_VALUE_DEVICE = np.array([1.1, 0.9, 1.0])
_VALUE_SIGMA_USER = 0.35
_BODY_MEDIAN, _BODY_SIGMA = 45.0, 0.6
_TAIL_SHARE, _TAIL_SCALE, _TAIL_ALPHA = 0.03, 120.0, 2.2
# E[X] of the order-value mixture (before the user scale m_i and the treatment multiplier).
ORDER_VALUE_MEAN = ((1 - _TAIL_SHARE) * _BODY_MEDIAN * np.exp(_BODY_SIGMA**2 / 2)
                    + _TAIL_SHARE * _TAIL_ALPHA * _TAIL_SCALE / (_TAIL_ALPHA - 1))

# Treatment effects: multipliers of p_i by device (desktop, mobile, tablet) and of order value.
P_LIFT = {"control": np.array([1.0, 1.0, 1.0]),
          "treatment_a": np.array([1.02, 1.10, 1.00]),
          "treatment_b": np.array([1.03, 1.03, 1.03])}
VALUE_LIFT = {"control": 1.0, "treatment_a": 1.0, "treatment_b": 1.05}

_US_PER_DAY = 86_400_000_000
_EPOCH = dt.date(1970, 1, 1)
EFFECT_COLUMNS = ["metric", "variant", "dimension", "segment", "control_value",
                  "variant_value", "absolute_effect", "relative_lift"]


@dataclass(frozen=True)
class SampleTruth:
    """What the generator put in: design, dates, and the exact effects.

    Attributes
    ----------
    experiment_id : str
        Experiment key in ``assignments`` and ``experiments``.
    variants : tuple of str
        ``("control", "treatment_a", "treatment_b")``.
    planned_weights : tuple of float
        Planned share of each variant.
    start_date, end_date, pre_start_date : datetime.date
        First and last (inclusive) day of exposure; first day of the 14-day pre-period.
    effects : pandas.DataFrame
        ``metric, variant, dimension, segment, control_value, variant_value, absolute_effect,
        relative_lift``: population expectations per arm, overall (``"(all)"``) and per segment
        of ``device``, ``country`` and ``channel``.
    n_users : int
        Users in the population (``users`` table).
    seed : int
        Seed used.
    faults : dict
        What was injected: ``srm_dropped_users``, ``crossover_users``, ``missing_revenue``.
    path : Path or None
        The DuckDB file written.
    """

    experiment_id: str
    variants: tuple
    planned_weights: tuple
    start_date: dt.date
    end_date: dt.date
    pre_start_date: dt.date
    effects: pd.DataFrame = field(repr=False)
    n_users: int = 0
    seed: int = 0
    faults: dict = field(default_factory=dict)
    path: Path | None = None

    def effect(self, metric: str, variant: str, dimension: str = "(all)",
               segment: str = "(all)") -> pd.Series:
        """One row of :attr:`effects` (raises ``KeyError`` if absent)."""
        e = self.effects
        row = e[(e.metric == metric) & (e.variant == variant) & (e.dimension == dimension)
                & (e.segment == segment)]
        if len(row) != 1:
            raise KeyError((metric, variant, dimension, segment))
        return row.iloc[0]

    def to_frame(self) -> pd.DataFrame:
        """The effects table (a copy)."""
        return self.effects.copy()

    def summary(self) -> Summary:
        """Design and overall true effects, as text and HTML."""
        overall = self.effects[self.effects.dimension == "(all)"]
        lines = [f"Sample experiment {self.experiment_id!r}: {self.n_users:,} users, "
                 f"exposure {self.start_date} .. {self.end_date}, pre-period from "
                 f"{self.pre_start_date}, seed {self.seed}"]
        if any(self.faults.values()):
            lines.append("injected faults: " + ", ".join(f"{k}={v}" for k, v in self.faults.items()))
        table = overall[["metric", "variant", "control_value", "variant_value", "relative_lift"]]
        lines.append(table.to_string(index=False))
        html_text = (f"<p><b>Sample experiment {html.escape(self.experiment_id)}</b>: "
                     f"{self.n_users:,} users, {self.start_date} to {self.end_date}</p>"
                     + table.to_html(index=False))
        return Summary("\n".join(lines), html_text)

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


# --------------------------------------------------------------------------- population

def _categorical(rng: np.random.Generator, n: int, probs) -> np.ndarray:
    p = np.asarray(list(probs), dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum()).astype(np.int8)


def _population(rng: np.random.Generator, n: int, *, device=DEVICES, channel=CHANNELS,
                new_share: float = 0.15, rate_scale: float = 1.0) -> dict:
    """User attributes and latent parameters (shared by the experiment and the model data)."""
    country = _categorical(rng, n, COUNTRIES.values())
    dev = _categorical(rng, n, device.values())
    chan = _categorical(rng, n, channel.values())
    is_new = rng.random(n) < new_share
    tenure = np.where(is_new, rng.integers(0, 31, n),
                      np.minimum(rng.lognormal(np.log(400), 0.9, n), 3650)).astype(np.int32)
    tenure_factor = 0.75 + 0.5 * (1 - np.exp(-tenure / 180))
    # Channels beyond the planned list (drifted data) reuse the base factor.
    chan_rate = np.append(_RATE_CHANNEL, 1.0)[np.minimum(chan, len(_RATE_CHANNEL))]
    chan_p = np.append(_P_CHANNEL, 1.0)[np.minimum(chan, len(_P_CHANNEL))]
    rate = (_RATE_BASE * rate_scale * _RATE_DEVICE[dev] * chan_rate * tenure_factor
            * rng.gamma(_RATE_SHAPE, 1 / _RATE_SHAPE, n))
    p = (_P_DEVICE[dev] * _P_COUNTRY[country] * chan_p
         * np.exp(_P_SIGMA * rng.standard_normal(n) - _P_SIGMA**2 / 2))
    p = np.minimum(p, _P_MAX)
    scale = (_VALUE_COUNTRY[country] * _VALUE_DEVICE[dev]
             * np.exp(_VALUE_SIGMA_USER * rng.standard_normal(n) - _VALUE_SIGMA_USER**2 / 2))
    return {"country": country, "device": dev, "channel": chan, "tenure_days": tenure,
            "rate": rate, "p": p, "value_scale": scale}


def _order_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draws of the order-value mixture X (mean :data:`ORDER_VALUE_MEAN`)."""
    body = rng.lognormal(np.log(_BODY_MEDIAN), _BODY_SIGMA, n)
    tail = _TAIL_SCALE * (1 + rng.pareto(_TAIL_ALPHA, n))
    return np.where(rng.random(n) < _TAIL_SHARE, tail, body)


def _arm_p(p: np.ndarray, device: np.ndarray, variant: str) -> np.ndarray:
    return np.minimum(p * P_LIFT[variant][device], 0.95)


# --------------------------------------------------------------------------- truth

def _expected(pop: dict, window_days: np.ndarray) -> dict:
    """Per-user expectations of each additive metric under each arm: {variant: {metric: array}}."""
    mu = pop["rate"] * window_days
    sessions = 1 + mu
    out = {}
    for v in VARIANTS:
        p = _arm_p(pop["p"], pop["device"], v)
        orders = p * sessions
        out[v] = {
            "conversion": 1 - (1 - p) * np.exp(-mu * p),
            "orders_per_user": orders,
            "revenue_per_user": orders * pop["value_scale"] * VALUE_LIFT[v] * ORDER_VALUE_MEAN,
            "sessions_per_user": sessions,
        }
    return out


def segment_sums(expected: dict, labels: dict) -> dict:
    """Per-user expected values summed per segment: ``{dimension: (sums, counts)}``, the sums a
    DataFrame of ``metric|variant`` columns indexed by segment code. Sums add over chunks of
    users (:mod:`workbench.data.streaming`)."""
    cols = {f"{m}|{v}": expected[v][m] for v in VARIANTS for m in expected[v]}
    frame = pd.DataFrame(cols)
    groups = {"(all)": np.zeros(len(frame), dtype=np.int8)}
    groups.update({d: labels[d][0] for d in SEGMENT_DIMENSIONS})
    return {d: (frame.groupby(codes).sum(), frame.groupby(codes).size())
            for d, codes in groups.items()}


def effect_rows(sums: dict, labels: dict) -> pd.DataFrame:
    """The truth table (``EFFECT_COLUMNS``) from :func:`segment_sums`: population averages per
    segment, revenue per order as a ratio of sums."""
    rows = []
    names = {"(all)": ["(all)"], **{d: labels[d][1] for d in SEGMENT_DIMENSIONS}}
    for dimension in ["(all)", *SEGMENT_DIMENSIONS]:
        total, counts = sums[dimension]
        for code, name in enumerate(names[dimension]):
            if code not in total.index:
                continue
            s, n = total.loc[code], counts.loc[code]
            for variant in VARIANTS[1:]:
                for metric in METRICS:
                    if metric == "revenue_per_order":
                        c = s["revenue_per_user|control"] / s["orders_per_user|control"]
                        t = s[f"revenue_per_user|{variant}"] / s[f"orders_per_user|{variant}"]
                    else:
                        c, t = s[f"{metric}|control"] / n, s[f"{metric}|{variant}"] / n
                    rows.append((metric, variant, dimension, name, c, t, t - c, t / c - 1))
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


# --------------------------------------------------------------------------- events

def _uniform_times(rng, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Integer microsecond times uniform in [lo, hi)."""
    span = np.maximum(hi - lo, 1)
    return lo + np.minimum((rng.random(len(lo)) * span).astype(np.int64), span - 1)


def _follow_times(rng, t: np.ndarray, bound: np.ndarray, minutes: float) -> np.ndarray:
    """A time shortly after ``t`` (up to ``minutes``), kept strictly before ``bound``."""
    room = np.minimum(int(minutes * 60e6), bound - t - 1)
    return t + (rng.random(len(t)) * np.maximum(room, 0)).astype(np.int64)


def _events(rng, pop: dict, arm: np.ndarray, assigned_us: np.ndarray, pre_lo_us: np.ndarray,
            start_us: int, end_us: int) -> dict:
    """Sessions, add-to-carts and orders of every user, pre-period and experiment."""
    n = len(arm)
    rate = pop["rate"]
    pre_days = (start_us - pre_lo_us) / _US_PER_DAY
    exp_days = (end_us - assigned_us) / _US_PER_DAY
    n_pre = rng.poisson(rate * pre_days)
    n_post = rng.poisson(rate * exp_days)
    users = np.arange(n)

    # Sessions: pre-period, the exposure session at assigned_at, the rest of the window.
    u_pre = np.repeat(users, n_pre)
    u_post = np.repeat(users, n_post)
    s_user = np.concatenate([u_pre, users, u_post])
    s_time = np.concatenate([
        _uniform_times(rng, pre_lo_us[u_pre], np.full(len(u_pre), start_us)),
        assigned_us,
        _uniform_times(rng, assigned_us[u_post], np.full(len(u_post), end_us)),
    ])
    in_exp = np.concatenate([np.zeros(len(u_pre), bool), np.ones(n + len(u_post), bool)])
    bound = np.where(in_exp, end_us, start_us)

    p_arm = np.empty(n)
    for k, v in enumerate(VARIANTS):
        sel = arm == k
        p_arm[sel] = _arm_p(pop["p"][sel], pop["device"][sel], v)
    p_session = np.where(in_exp, p_arm[s_user], pop["p"][s_user])
    value_lift = np.array([VALUE_LIFT[v] for v in VARIANTS])[arm]
    lift_session = np.where(in_exp, value_lift[s_user], 1.0)

    cart = rng.random(len(s_user)) < np.minimum(2.5 * pop["p"][s_user], 0.9)
    order = rng.random(len(s_user)) < p_session
    c_user, c_time = s_user[cart], _follow_times(rng, s_time[cart], bound[cart], 20)
    o_user, o_time = s_user[order], _follow_times(rng, s_time[order], bound[order], 30)
    x = _order_values(rng, len(o_user))
    revenue = np.round(x * pop["value_scale"][o_user] * lift_session[order], 2)
    items = 1 + rng.poisson(0.4 + 0.5 * np.log1p(x / _BODY_MEDIAN))

    kind = np.concatenate([np.full(len(s_user), 2, np.int8), np.zeros(len(c_user), np.int8),
                           np.ones(len(o_user), np.int8)])
    nan = np.full(len(s_user) + len(c_user), np.nan)
    return {
        "user": np.concatenate([s_user, c_user, o_user]),
        "time": np.concatenate([s_time, c_time, o_time]),
        "kind": kind,  # 0 add_to_cart, 1 order, 2 session
        "revenue": np.concatenate([nan, revenue]),
        "items": np.concatenate([np.zeros(len(nan), np.int32), items.astype(np.int32)]),
    }


def _event_order(ev: dict, t0_us: int) -> np.ndarray:
    """Permutation sorting events by (user, time, event_type), so the file is written sorted."""
    rel = ev["time"] - t0_us
    if ev["user"].max(initial=0) < 2**19 and rel.max(initial=0) < 2**42:
        # One int64 key (19 bits user, 42 bits time, 2 bits type) sorts ~10x faster than lexsort.
        key = (ev["user"].astype(np.int64) << 44) | (rel << 2) | ev["kind"].astype(np.int64)
        return np.argsort(key, kind="stable")
    return np.lexsort((ev["kind"], ev["time"], ev["user"]))


# --------------------------------------------------------------------------- model data

def model_dataset(seed: int | None = None, n_reference: int = 20_000,
                  n_current: int = 10_000) -> pd.DataFrame:
    """A purchase-propensity dataset with drift between a reference and a current period.

    Users are drawn from the same model as the experiment; the features describe their last
    30 days and ``label`` is 1 when they order in the next 14 days (probability
    ``1 - exp(-14 lambda p)``, so the label is learnable from the features).
    The ``current`` period drifts: more mobile users, more new users (shorter ``tenure_days``),
    a 35 % higher session rate (partly offset by the new users) and an unseen channel
    ``video_ads``; ``pages_per_session`` and ``country`` keep their distribution.

    Parameters
    ----------
    seed : int, optional
        Random seed (default: the settings seed).
    n_reference, n_current : int
        Rows of each period.

    Returns
    -------
    pandas.DataFrame
        ``user_id, period, country, device, channel, tenure_days, sessions_30d, orders_30d,
        revenue_30d, days_since_last_visit, pages_per_session, label``.
    """
    if seed is None:
        from workbench.config import get_settings

        seed = get_settings().seed
    rng = np.random.default_rng([int(seed), 2])
    current_channels = {**CHANNELS, "paid_search": 0.16, "video_ads": 0.08}
    parts = []
    for period, n, kwargs in [
        ("reference", n_reference, {}),
        ("current", n_current, {"device": {"desktop": 0.30, "mobile": 0.62, "tablet": 0.08},
                                "channel": current_channels, "new_share": 0.35,
                                "rate_scale": 1.35}),
    ]:
        pop = _population(rng, n, **kwargs)
        sessions = rng.poisson(pop["rate"] * 30)
        orders = rng.binomial(sessions, pop["p"])
        # Sum of `orders` values ~ orders draws of X: a gamma with the same mean is close enough.
        revenue = np.where(orders > 0, rng.gamma(np.maximum(orders, 1) * 2.0, ORDER_VALUE_MEAN / 2.0)
                           * pop["value_scale"], 0.0)
        last_visit = np.minimum(rng.exponential(1 / pop["rate"]), 60.0)
        pages = rng.lognormal(np.log(4.0), 0.5, n)
        label = (rng.random(n) < 1 - np.exp(-14 * pop["rate"] * pop["p"])).astype(np.int8)
        chan_names = list(kwargs.get("channel", CHANNELS))
        parts.append(pd.DataFrame({
            "period": period,
            "country": np.array(list(COUNTRIES))[pop["country"]],
            "device": np.array(list(DEVICES))[pop["device"]],
            "channel": np.array(chan_names)[pop["channel"]],
            "tenure_days": pop["tenure_days"].astype(np.int64),
            "sessions_30d": sessions.astype(np.int64),
            "orders_30d": orders.astype(np.int64),
            "revenue_30d": np.round(revenue, 2),
            "days_since_last_visit": np.round(last_visit, 3),
            "pages_per_session": np.round(pages, 3),
            "label": label.astype(np.int64),
        }))
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "user_id", np.arange(1, len(out) + 1, dtype=np.int64))
    return out


# --------------------------------------------------------------------------- writing

def _dict_array(codes: np.ndarray, names):
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int8)), pa.array(list(names)))


def _write(path: Path, tables: dict) -> None:
    """Write arrow tables to a fresh DuckDB file, atomically, rows sorted by key.

    Raises
    ------
    OSError
        The file cannot be written (a full disk: ``strerror`` says "could not write <path>: no
        space left on device"); the temporary database and its ``.wal`` are removed, and an
        existing file at ``path`` is left as it was.
    """
    import errno

    import duckdb

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    leftovers = (tmp, Path(f"{tmp}.wal"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for p in leftovers:
            p.unlink(missing_ok=True)
        con = duckdb.connect(str(tmp))
        try:
            con.execute("SET enable_progress_bar = false")
            for name, (table, select, order) in tables.items():
                con.register(f"{name}_src", table)
                # order=None: already sorted in numpy; insertion order is preserved by DuckDB.
                sort = f" ORDER BY {order}" if order else ""
                con.execute(f"CREATE TABLE {name} AS SELECT {select} FROM {name}_src{sort}")
                con.unregister(f"{name}_src")
            con.execute("CHECKPOINT")
        finally:
            con.close()
        Path(f"{path}.wal").unlink(missing_ok=True)
        os.replace(tmp, path)
    except (OSError, duckdb.Error) as exc:
        for p in leftovers:
            with contextlib.suppress(OSError):
                p.unlink()
        text = str(exc).lower()
        code = exc.errno if isinstance(exc, OSError) and exc.errno else (
            errno.ENOSPC if "no space left" in text or "disk is full" in text else errno.EIO)
        reason = os.strerror(code).lower() if code != errno.EIO else text.splitlines()[0][:200]
        raise OSError(code, f"could not write {path}: {reason}") from None


def generate(path=None, *, seed: int | None = None, n_users: int = 200_000,
             experiment_id: str = "checkout_redesign", srm: bool = False,
             crossover: float = 0.0, missing: float = 0.0, activity: float = 1.0,
             progress: bool = True) -> SampleTruth:
    """Generate the sample checkout experiment and write it to a DuckDB file.

    Parameters
    ----------
    path : str or Path, optional
        DuckDB file to (over)write; default ``get_settings().warehouse``. Parents are created.
    seed : int, optional
        Random seed; default the settings seed (``WORKBENCH_SEED``), so runs are reproducible.
    n_users : int
        Users in the population (all are exposed unless ``srm`` drops some).
    experiment_id : str
        Experiment key.
    srm : bool
        Drop :data:`SRM_DROP_SHARE` of ``treatment_b`` users from ``assignments`` (their events
        stay), a sample ratio mismatch.
    crossover : float
        Share of assigned users given a second, later assignment row to another variant.
    missing : float
        Share of order revenues set to NaN (a DOUBLE NaN, not NULL).
    activity : float
        Multiplies every user's session rate, so the events per user (1: ~12 over the
        pre-period and the experiment); the truth follows.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    SampleTruth
    """
    from workbench.errors import ConfigError

    if n_users < 10:
        raise ConfigError(f"n_users must be at least 10, got {n_users}")
    if seed is not None and int(seed) < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    for name, share in (("crossover", crossover), ("missing", missing)):
        if not 0.0 <= share < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {share}")
    if not activity > 0:
        raise ConfigError(f"activity must be > 0, got {activity}")
    from workbench.config import get_settings

    settings = get_settings()
    seed = settings.seed if seed is None else int(seed)
    path = Path(path) if path is not None else settings.warehouse

    from tqdm.auto import tqdm

    bar = tqdm(total=6, desc="sample data", disable=not progress, leave=False)

    def step(next_label):
        bar.update(1)
        bar.set_postfix_str(next_label)

    bar.set_postfix_str("users")

    rng = np.random.default_rng([seed, 1])
    start_us = (START_DATE - _EPOCH).days * _US_PER_DAY
    end_date = START_DATE + dt.timedelta(days=EXPOSURE_DAYS - 1)
    end_us = start_us + EXPOSURE_DAYS * _US_PER_DAY  # exclusive: end_date + 1 day
    pre_start = START_DATE - dt.timedelta(days=PRE_DAYS)
    pre_start_us = start_us - PRE_DAYS * _US_PER_DAY

    # Users and assignment (every user is exposed once, at a front-loaded time).
    pop = _population(rng, n_users, rate_scale=activity)
    arm = rng.choice(3, size=n_users, p=PLANNED_WEIGHTS).astype(np.int8)
    offset = (rng.random(n_users) ** 1.4 * EXPOSURE_DAYS * _US_PER_DAY).astype(np.int64)
    assigned_us = start_us + offset
    signup_days = (START_DATE - _EPOCH).days - pop["tenure_days"].astype(np.int64)
    pre_lo_us = np.maximum(pre_start_us, signup_days * _US_PER_DAY)
    step("assignments")

    # Faults on the assignment log.
    keep = np.ones(n_users, bool)
    dropped = 0
    if srm:
        b_users = np.flatnonzero(arm == 2)
        dropped = int(round(SRM_DROP_SHARE * len(b_users)))
        keep[rng.choice(b_users, size=dropped, replace=False)] = False
    a_user, a_arm, a_time = np.flatnonzero(keep), arm[keep], assigned_us[keep]
    n_cross = int(round(crossover * len(a_user)))
    if n_cross:
        pick = np.sort(rng.choice(len(a_user), size=n_cross, replace=False))
        second = ((a_arm[pick] + rng.integers(1, 3, n_cross)) % 3).astype(np.int8)
        later = _uniform_times(rng, a_time[pick] + 1, np.full(n_cross, end_us))
        a_user = np.concatenate([a_user, a_user[pick]])
        a_arm = np.concatenate([a_arm, second])
        a_time = np.concatenate([a_time, later])
    step("events")

    ev = _events(rng, pop, arm, assigned_us, pre_lo_us, start_us, end_us)
    ev = {k: v[_event_order(ev, pre_start_us)] for k, v in ev.items()}
    order_idx = np.flatnonzero(ev["kind"] == 1)
    n_missing = int(round(missing * len(order_idx)))
    if n_missing:
        ev["revenue"][rng.choice(order_idx, size=n_missing, replace=False)] = np.nan
    step("truth")

    window_days = (end_us - assigned_us) / _US_PER_DAY
    expected = _expected(pop, window_days)
    labels = {"device": (pop["device"], list(DEVICES)),
              "country": (pop["country"], list(COUNTRIES)),
              "channel": (pop["channel"], list(CHANNELS))}
    effects = effect_rows(segment_sums(expected, labels), labels)
    tau_a = expected["treatment_a"]["conversion"] - expected["control"]["conversion"]
    tau_b = expected["treatment_b"]["conversion"] - expected["control"]["conversion"]
    step("model data")

    model = model_dataset(seed, n_reference=min(20_000, n_users),
                          n_current=min(10_000, max(n_users // 2, 5)))
    step("write")

    tables = _arrow_tables(experiment_id, pop, ev, a_user, a_arm, a_time, signup_days,
                           effects, tau_a, tau_b, model, end_date)
    _write(path, tables)
    step("done")
    bar.close()
    return SampleTruth(
        experiment_id=experiment_id, variants=VARIANTS, planned_weights=PLANNED_WEIGHTS,
        start_date=START_DATE, end_date=end_date, pre_start_date=pre_start, effects=effects,
        n_users=n_users, seed=seed,
        faults={"srm_dropped_users": dropped, "crossover_users": n_cross,
                "missing_revenue": n_missing},
        path=path,
    )


def _arrow_tables(experiment_id, pop, ev, a_user, a_arm, a_time, signup_days, effects,
                  tau_a, tau_b, model, end_date) -> dict:
    import pyarrow as pa

    n = len(pop["rate"])
    ids = np.arange(1, n + 1, dtype=np.int64)  # user_id = index + 1
    is_order = ev["kind"] == 1
    users = pa.table({
        "user_id": ids,
        "country": _dict_array(pop["country"], COUNTRIES),
        "device": _dict_array(pop["device"], DEVICES),
        "channel": _dict_array(pop["channel"], CHANNELS),
        "tenure_days": pop["tenure_days"].astype(np.int32),
        "signup_date": pa.array(signup_days.astype(np.int32), pa.date32()),
    })
    assignments = pa.table({
        "user_id": a_user.astype(np.int64) + 1,
        "variant": _dict_array(a_arm, VARIANTS),
        "assigned_at": pa.array(a_time, pa.timestamp("us")),
    })
    events = pa.table({
        "user_id": ev["user"].astype(np.int64) + 1,
        "event_time": pa.array(ev["time"], pa.timestamp("us")),
        "event_type": _dict_array(ev["kind"], ["add_to_cart", "order", "session"]),
        # Arrow keeps NaN as a value: NULL for non-orders, NaN only for injected missing revenue.
        "revenue": pa.array(ev["revenue"], pa.float64(), mask=~is_order),
        "items": pa.array(ev["items"], pa.int32(), mask=~is_order),
    })
    experiments = pa.table({
        "variant": list(VARIANTS),
        "planned_weight": list(PLANNED_WEIGHTS),
        "is_control": pa.array([1, 0, 0], pa.int32()),
    })
    truth = pa.Table.from_pandas(effects, preserve_index=False)
    truth_users = pa.table({"user_id": ids, "tau_conversion_a": tau_a, "tau_conversion_b": tau_b})
    model_t = pa.Table.from_pandas(model, preserve_index=False)
    eid = experiment_id.replace("'", "''")
    return {
        "users": (users, "user_id, country::VARCHAR AS country, device::VARCHAR AS device, "
                  "channel::VARCHAR AS channel, tenure_days, signup_date", "user_id"),
        "assignments": (assignments, f"'{eid}' AS experiment_id, user_id, "
                        "variant::VARCHAR AS variant, assigned_at", "user_id, assigned_at"),
        "events": (events, "user_id, event_time, event_type::VARCHAR AS event_type, revenue, "
                   "items", None),
        "experiments": (experiments, f"'{eid}' AS experiment_id, variant, planned_weight, "
                        f"is_control, DATE '{START_DATE}' AS start_date, "
                        f"DATE '{end_date}' AS end_date", "is_control DESC, variant"),
        "truth": (truth, f"'{eid}' AS experiment_id, *",
                  "metric, variant, dimension, segment"),
        "truth_users": (truth_users, "*", "user_id"),
        "model_data": (model_t, "*", "user_id"),
    }


def load_truth(path=None, experiment_id: str | None = None) -> pd.DataFrame:
    """Read the ``truth`` table of a generated DuckDB file."""
    import duckdb

    from workbench.config import get_settings

    path = Path(path) if path is not None else get_settings().warehouse
    con = duckdb.connect(str(path), read_only=True)
    try:
        df = con.execute("SELECT * FROM truth").df()
    finally:
        con.close()
    return df if experiment_id is None else df[df.experiment_id == experiment_id]


# -- a second experiment in a schema that is not ours ------------------------------------------
#: The column mapping of :func:`generate_other`'s tables (documented name -> theirs).
OTHER_COLUMNS = {"user_id": "customer_id", "assigned_at": "exposed_at", "event_time": "ts",
                 "event_type": "kind"}
#: Its metrics: other names, no pre-period, a primary proportion (YAML-ready mapping).
OTHER_METRICS = {
    "columns": OTHER_COLUMNS,
    "metrics": [
        {"name": "purchased", "kind": "proportion", "event_type": "purchase", "role": "primary"},
        {"name": "spend", "kind": "mean", "event_type": "purchase", "aggregation": "sum",
         "column": "amount"},
        {"name": "visits", "kind": "mean", "event_type": "visit", "role": "guardrail"},
    ],
}


def generate_other(path, *, seed: int = 0, n_users: int = 4000, days: int = 7,
                   lift: float = 0.15, zone: str = "Europe/Berlin") -> dict[str, pd.DataFrame]:
    """A second, simpler experiment written the way another company might log it.

    Variants ``A`` (control) and ``B``, two arms, equal split; no ``users`` or ``experiments``
    table, no pre-period; tables ``assignments`` (``customer_id, variant, exposed_at``, no
    ``experiment_id``) and ``events`` (``customer_id, ts, kind, amount``; kinds ``visit`` and
    ``purchase``) with time-zone aware timestamps in ``zone``. ``B`` multiplies the purchase
    probability per visit by ``1 + lift``. Read it with ``columns=OTHER_COLUMNS`` (or the
    ``columns:`` of :data:`OTHER_METRICS`).

    Returns
    -------
    dict
        ``{"assignments": DataFrame, "events": DataFrame}`` as written (aware timestamps).
    """
    import duckdb

    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-05-04", tz=zone)
    ids = rng.permutation(np.arange(10_000, 10_000 + n_users))
    variant = np.where(rng.random(n_users) < 0.5, "A", "B")
    exposed = start + pd.to_timedelta(rng.random(n_users) * days * 86400, unit="s")
    assignments = pd.DataFrame({"customer_id": ids, "variant": variant, "exposed_at": exposed})
    visits = rng.poisson(2.0, n_users) + 1  # the exposure visit, then more
    p = np.clip(0.08 * np.where(variant == "B", 1 + lift, 1.0), 0, 1)
    rows = []
    for i in range(n_users):
        # visits spread over the experiment and 3 days after it (those are cut by the window)
        times = exposed[i] + pd.to_timedelta(np.sort(rng.random(visits[i])) *
                                             (days + 3) * 86400 * (rng.random() + 0.2), unit="s")
        times = times.insert(0, exposed[i])
        for t in times:
            rows.append((ids[i], t, "visit", np.nan))
            if rng.random() < p[i]:
                rows.append((ids[i], t + pd.Timedelta(minutes=5), "purchase",
                             float(np.round(rng.lognormal(3.5, 0.8), 2))))
    events = pd.DataFrame(rows, columns=["customer_id", "ts", "kind", "amount"])
    events["ts"] = pd.to_datetime(events["ts"]).dt.tz_convert(zone)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    with duckdb.connect(str(path)) as con:
        for name, frame in (("assignments", assignments), ("events", events)):
            con.register("frame", frame)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
            con.unregister("frame")
    return {"assignments": assignments, "events": events}


# -- a staged rollout (ramp) with a time trend -------------------------------------------------
RAMP_EXPERIMENT = "ramp_rollout"
#: Treatment weight of each phase, the baseline conversion and order value trending upward.
RAMP_WEIGHTS = (0.10, 0.25, 0.50)
RAMP_BASELINE = (0.08, 0.09, 0.10)
RAMP_ORDER_VALUE = (50.0, 55.0, 60.0)
RAMP_PHASE_DAYS = 7
RAMP_START = dt.date(2026, 3, 2)
#: Its metrics (no pre-period: the units are new in each phase).
RAMP_METRICS = {
    "experiment": RAMP_EXPERIMENT,
    "metrics": [
        {"name": "conversion", "kind": "proportion", "event_type": "order", "aggregation": "any",
         "role": "primary", "cuped": False},
        {"name": "revenue_per_user", "kind": "mean", "event_type": "order",
         "aggregation": "sum", "column": "revenue", "cuped": False},
    ],
}


def _ramp_truth(n, weights, baseline, value, lift) -> pd.DataFrame:
    """Truth of the ramp: population (all units, phases weighted by their units) means and the
    expectation of the naive pooled estimate (arms pooled over phases)."""
    n, w, p, v = (np.asarray(a, float) for a in (n, weights, baseline, value))
    share = n / n.sum()
    rows = []
    for metric, base in (("conversion", p), ("revenue_per_user", p * v)):
        c = float(share @ base)
        t = c * (1 + lift)
        nt, nc = n * w, n * (1 - w)
        with np.errstate(invalid="ignore", divide="ignore"):  # an arm never drawn: NaN
            naive = float((nt @ (base * (1 + lift))) / nt.sum() / ((nc @ base) / nc.sum()) - 1)
        rows.append({"experiment_id": RAMP_EXPERIMENT, "metric": metric, "variant": "treatment",
                     "dimension": "(all)", "segment": "(all)", "control_value": c,
                     "variant_value": t, "absolute_effect": t - c, "relative_lift": lift,
                     "naive_relative_lift": naive})
    return pd.DataFrame(rows)


def generate_ramp(path, *, seed: int = 0, n_per_phase: int = 30_000,
                  weights=RAMP_WEIGHTS, baseline=RAMP_BASELINE, order_value=RAMP_ORDER_VALUE,
                  lift: float = 0.05, start: dt.date = RAMP_START) -> pd.DataFrame:
    """A staged rollout: the treatment's weight ramps over phases while the baseline trends.

    Phase ``k`` (``RAMP_PHASE_DAYS`` days each, from ``start``) exposes ``n_per_phase`` new
    users at uniform times, each in ``treatment`` with probability ``weights[k]`` (drawn
    directly). A user converts (one ``order`` within 2 days of exposure, before the end) with
    probability ``baseline[k]``, times ``1 + lift`` in treatment; order values are log-normal
    with mean ``order_value[k]`` (no effect), so both metrics of :data:`RAMP_METRICS` have the
    true relative lift ``lift`` in every phase and overall. Every user also has 1 + Poisson(1.5)
    ``session`` events. Because treatment units are concentrated in the later phases, where
    the baseline is higher, pooling the arms over phases overstates the lift (the truth's
    ``naive_relative_lift``); the phase-stratified estimate does not. ``weights=(0, 0, 0)`` and
    an earlier ``start`` give history without a treatment (to plan on, :func:`workbench.plan`).

    Writes ``assignments``, ``events``, ``experiments`` (one row per variant x phase, with
    ``phase`` and ``traffic``) and ``truth`` to the DuckDB file ``path``.

    Returns
    -------
    DataFrame
        The truth rows (as written) plus ``naive_relative_lift``, the expectation of the naive
        pooled estimate.
    """
    import pyarrow as pa

    from workbench.data.schema import TRUTH

    rng = np.random.default_rng(seed)
    k = len(weights)
    if not (len(baseline) == len(order_value) == k) or n_per_phase < 1:
        raise ValueError("weights, baseline and order_value need one entry per phase")
    n = k * n_per_phase
    phase = np.repeat(np.arange(k), n_per_phase)
    start = pd.Timestamp(start).date()
    t0 = pd.Timestamp(start)
    end = t0 + pd.Timedelta(days=k * RAMP_PHASE_DAYS)
    offset_s = (phase + rng.random(n)) * RAMP_PHASE_DAYS * 86400.0
    assigned = t0 + pd.to_timedelta(np.round(offset_s), unit="s")
    treated = rng.random(n) < np.asarray(weights)[phase]
    p = np.asarray(baseline)[phase] * np.where(treated, 1 + lift, 1.0)
    converts = rng.random(n) < p
    left_s = (end - assigned).total_seconds().to_numpy()
    order_s = rng.random(n) * np.minimum(2 * 86400.0, left_s - 1)
    sigma = 0.8
    mu = np.log(np.asarray(order_value)[phase]) - sigma**2 / 2
    revenue = np.round(rng.lognormal(mu, sigma), 2)
    ids = rng.permutation(np.arange(1_000_000, 1_000_000 + n))
    sessions = 1 + rng.poisson(1.5, n)
    s_user = np.repeat(np.arange(n), sessions)
    s_time = assigned[s_user] + pd.to_timedelta(
        rng.random(s_user.size) * np.minimum(2 * 86400.0, left_s[s_user] - 1), unit="s")
    o = np.flatnonzero(converts)
    events = pd.DataFrame({
        "user_id": np.r_[ids[s_user], ids[o]],
        "event_time": np.r_[s_time.to_numpy(), (assigned[o] + pd.to_timedelta(
            order_s[o], unit="s")).to_numpy()],
        "event_type": np.r_[np.full(s_user.size, "session"), np.full(o.size, "order")],
        "revenue": np.r_[np.full(s_user.size, np.nan), revenue[o]],
        "items": pd.array(np.r_[np.full(s_user.size, -1), rng.integers(1, 4, o.size)],
                          dtype="Int64"),
    })
    events.loc[events["event_type"] == "session", "items"] = pd.NA
    events["event_time"] = events["event_time"].astype("datetime64[us]")
    assigned = assigned.astype("datetime64[us]")
    assignments = pd.DataFrame({"experiment_id": RAMP_EXPERIMENT, "user_id": ids,
                                "variant": np.where(treated, "treatment", "control"),
                                "assigned_at": assigned})
    rows = []
    for j in range(k):
        lo = start + dt.timedelta(days=j * RAMP_PHASE_DAYS)
        for variant, wt, ctrl in (("control", 1 - weights[j], 1), ("treatment", weights[j], 0)):
            rows.append({"experiment_id": RAMP_EXPERIMENT, "variant": variant,
                         "planned_weight": float(wt), "is_control": ctrl, "start_date": lo,
                         "end_date": lo + dt.timedelta(days=RAMP_PHASE_DAYS - 1),
                         "phase": f"phase_{j + 1}", "traffic": 1.0})
    experiments = pd.DataFrame(rows)
    truth = _ramp_truth([n_per_phase] * k, weights, baseline, order_value, lift)
    cols = [c.name for c in TRUTH]
    tables = {name: (pa.Table.from_pandas(frame, preserve_index=False), "*", order)
              for name, frame, order in (
                  ("assignments", assignments, "user_id"),
                  ("events", events, "user_id, event_time"),
                  ("experiments", experiments, None),
                  ("truth", truth[cols], None))}
    _write(Path(path), tables)
    return truth
