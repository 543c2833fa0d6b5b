"""The sample experiment written in chunks of users: 10M users in bounded memory.

:func:`generate_streaming` writes the same tables as :func:`workbench.data.sample.generate`
with the same statistical model, ``chunk_users`` users at a time: each chunk draws its users
and their events with its own random stream (``numpy.random.default_rng([seed, 3, k])`` for
chunk ``k``), sorts its events by ``(user, time, event_type)`` and appends them to the DuckDB
file through Arrow, so the file is sorted by user like the unchunked one. The truth table is
computed from per-segment sums accumulated over the chunks (exactly the population averages of
the drawn users). Memory is bounded by one chunk (numpy arrays of ~3M events at 250,000 users)
plus DuckDB's buffers (``memory_limit``, 512 MB by default), whatever ``n_users``: 10M users
peaked at 1.85 GiB with 500,000-user chunks and a 1 GB limit (see ``benchmarks/README.md``).

Equality with :func:`~workbench.data.sample.generate`: the chunked streams differ from the one
stream of ``generate``, so a seed gives *different draws with the same distribution* (tested in
``tests/data/test_streaming.py``); the same seed and ``chunk_users`` always give the same file.
No faults are injected (``srm``, ``crossover``, ``missing`` are ``generate``'s).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.data import sample as _s

__all__ = ["generate_streaming"]


def _add_sums(total: dict | None, part: dict) -> dict:
    """Two chunks' :func:`~workbench.data.sample.segment_sums` added."""
    if total is None:
        return part
    return {d: (total[d][0].add(part[d][0], fill_value=0.0),
                total[d][1].add(part[d][1], fill_value=0)) for d in part}


def generate_streaming(path, *, seed: int | None = None, n_users: int = 1_000_000,
                       chunk_users: int = 250_000, experiment_id: str = "checkout_redesign",
                       memory_limit: str = "512MB", progress: bool = False) -> _s.SampleTruth:
    """Generate the sample experiment ``chunk_users`` users at a time (bounded memory).

    Parameters
    ----------
    path : str or Path
        DuckDB file to (over)write, atomically (a temporary file renamed at the end).
    seed : int, optional
        Random seed; default the settings seed.
    n_users : int
        Users in the population (all exposed).
    chunk_users : int
        Users per chunk (the memory bound); a chunk of 250,000 users holds ~3M events.
    experiment_id : str
        Experiment key.
    memory_limit : str
        DuckDB ``memory_limit`` while writing.
    progress : bool
        Show a tqdm bar over the chunks.

    Returns
    -------
    SampleTruth
        As :func:`~workbench.data.sample.generate` (``faults`` all zero).
    """
    import duckdb
    import pyarrow as pa
    from tqdm.auto import tqdm

    from workbench.config import get_settings
    from workbench.errors import ConfigError

    if n_users < 10:
        raise ConfigError(f"n_users must be at least 10, got {n_users}")
    if chunk_users < 1:
        raise ConfigError(f"chunk_users must be at least 1, got {chunk_users}")
    if seed is not None and int(seed) < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    seed = get_settings().seed if seed is None else int(seed)
    path = Path(path)

    start_us = (_s.START_DATE - _s._EPOCH).days * _s._US_PER_DAY
    end_date = _s.START_DATE + dt.timedelta(days=_s.EXPOSURE_DAYS - 1)
    end_us = start_us + _s.EXPOSURE_DAYS * _s._US_PER_DAY
    pre_start = _s.START_DATE - dt.timedelta(days=_s.PRE_DAYS)
    pre_start_us = start_us - _s.PRE_DAYS * _s._US_PER_DAY
    model = _s.model_dataset(seed, n_reference=min(20_000, n_users),
                             n_current=min(10_000, max(n_users // 2, 5)))
    empty_effects = pd.DataFrame({c: pd.Series(dtype=float if i > 3 else object)
                                  for i, c in enumerate(_s.EFFECT_COLUMNS)})

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    leftovers = (tmp, Path(f"{tmp}.wal"))
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in leftovers:
        p.unlink(missing_ok=True)
    total = None
    labels = None
    chunks = range(0, n_users, chunk_users)
    try:
        con = duckdb.connect(str(tmp))
        try:
            con.execute("SET enable_progress_bar = false")
            con.execute(f"SET memory_limit = '{memory_limit}'")
            for k, lo in enumerate(tqdm(chunks, desc="sample chunks", disable=not progress,
                                        leave=False)):
                n = min(chunk_users, n_users - lo)
                rng = np.random.default_rng([seed, 3, k])
                pop = _s._population(rng, n)
                arm = rng.choice(3, size=n, p=_s.PLANNED_WEIGHTS).astype(np.int8)
                offset = (rng.random(n) ** 1.4 * _s.EXPOSURE_DAYS * _s._US_PER_DAY).astype(
                    np.int64)
                assigned_us = start_us + offset
                signup_days = ((_s.START_DATE - _s._EPOCH).days
                               - pop["tenure_days"].astype(np.int64))
                pre_lo_us = np.maximum(pre_start_us, signup_days * _s._US_PER_DAY)
                ev = _s._events(rng, pop, arm, assigned_us, pre_lo_us, start_us, end_us)
                ev = {key: v[_s._event_order(ev, pre_start_us)] for key, v in ev.items()}
                expected = _s._expected(pop, (end_us - assigned_us) / _s._US_PER_DAY)
                labels = {"device": (pop["device"], list(_s.DEVICES)),
                          "country": (pop["country"], list(_s.COUNTRIES)),
                          "channel": (pop["channel"], list(_s.CHANNELS))}
                total = _add_sums(total, _s.segment_sums(expected, labels))
                tau_a = expected["treatment_a"]["conversion"] - expected["control"]["conversion"]
                tau_b = expected["treatment_b"]["conversion"] - expected["control"]["conversion"]
                users = np.arange(n)
                tables = _s._arrow_tables(experiment_id, pop, ev, users, arm, assigned_us,
                                          signup_days, empty_effects, tau_a, tau_b, model,
                                          end_date)
                del ev, expected
                for name in ("users", "assignments", "events", "truth_users"):
                    table, select, order = tables[name]
                    con.register("chunk_src", table)
                    sort = f" ORDER BY {order}" if order else ""
                    # Chunk-local user ids 1..n become lo+1..lo+n.
                    body = (f"SELECT * REPLACE (user_id + {lo} AS user_id) "
                            f"FROM (SELECT {select} FROM chunk_src{sort})")
                    if k == 0:
                        con.execute(f"CREATE TABLE {name} AS {body}")
                    else:
                        con.execute(f"INSERT INTO {name} {body}")
                    con.unregister("chunk_src")
                del tables, pop
            effects = _s.effect_rows(total, labels)
            eid = experiment_id.replace("'", "''")
            experiments = pa.table({
                "variant": list(_s.VARIANTS),
                "planned_weight": list(_s.PLANNED_WEIGHTS),
                "is_control": pa.array([1, 0, 0], pa.int32()),
            })
            for name, table, select, order in (
                ("experiments", experiments,
                 f"'{eid}' AS experiment_id, variant, planned_weight, is_control, "
                 f"DATE '{_s.START_DATE}' AS start_date, DATE '{end_date}' AS end_date",
                 "is_control DESC, variant"),
                ("truth", pa.Table.from_pandas(effects, preserve_index=False),
                 f"'{eid}' AS experiment_id, *", "metric, variant, dimension, segment"),
                ("model_data", pa.Table.from_pandas(model, preserve_index=False), "*",
                 "user_id"),
            ):
                con.register("final_src", table)
                con.execute(f"CREATE TABLE {name} AS SELECT {select} FROM final_src "
                            f"ORDER BY {order}")
                con.unregister("final_src")
            con.execute("CHECKPOINT")
        finally:
            con.close()
        Path(f"{path}.wal").unlink(missing_ok=True)
        os.replace(tmp, path)
    except BaseException:
        for p in leftovers:
            with contextlib.suppress(OSError):
                p.unlink()
        raise
    return _s.SampleTruth(
        experiment_id=experiment_id, variants=_s.VARIANTS, planned_weights=_s.PLANNED_WEIGHTS,
        start_date=_s.START_DATE, end_date=end_date, pre_start_date=pre_start, effects=effects,
        n_users=n_users, seed=seed,
        faults={"srm_dropped_users": 0, "crossover_users": 0, "missing_revenue": 0},
        path=path,
    )
