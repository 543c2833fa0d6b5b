"""THE integer hash of the workbench: the same numbers in numpy, DuckDB and Spark (through Ibis).

>>> h = hash_numpy(ids, 0, seed=1, salt=2)            # numpy, vectorised, in [0, PRIME)
>>> t.mutate(h=hash_expr(t.user_id, 0, seed=1, salt=2))   # the engine twin
>>> arm = np.searchsorted(thresholds([0.5, 0.5]), h, side="right")

The hash works modulo the Mersenne prime ``PRIME = 2^31 - 1`` so that every product of two
residues (< 2^62) fits in a signed 64-bit integer on every engine: no overflow error (DuckDB) and
no silent wrap-around (Spark), hence the same value on both and in numpy. Only ``%``, ``*``,
``+``, ``^`` (xor) and ``>>`` on 64-bit integers are used.

``hash(unit, r, seed, salt)``: the unit residue ``unit mod PRIME`` is mixed (three rounds of
``x -> (x m + c) mod PRIME; x -> (x xor (x >> 16)) mod PRIME``), the constant of ``(seed, salt)``
is added and mixed, then ``r`` (a replicate, or a key) is added and mixed.

Salts (one draw per salt, so that draws of one unit are independent): the A/A simulation uses
:data:`SIMULATION_ASSIGN` and :data:`SIMULATION_FLIP`; deterministic assignment
(:mod:`workbench.data.assignment`) uses :data:`ASSIGN_NAMESPACE`, :data:`ASSIGN_TRAFFIC` and
:data:`ASSIGN_ARM`.

String keys (:func:`string_key_numpy`, :func:`string_key_expr`, :func:`name_key`): the first 8 hex
digits of the MD5 of the UTF-8 text, read as an integer in ``[0, 2^32)``; DuckDB and Spark both
have ``md5``, and the hex digits are decoded with ``ascii`` arithmetic, which both engines share.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

PRIME = 2_147_483_647
_MULTIPLIERS = (48_271, 1_103_515_245, 69_621)
_OFFSET = 1_013_904_223
_SEED_STEP, _REPLICATE_STEP, _SALT_STEP = 2_654_435_761 % PRIME, 40_503, 97_787
SIMULATION_ASSIGN, SIMULATION_FLIP = 0, 1          # readout/simulation.py
ASSIGN_NAMESPACE, ASSIGN_TRAFFIC, ASSIGN_ARM = 2, 3, 4   # data/assignment.py
KEY_HEX_DIGITS = 8  # hex digits of the MD5 read as a string's integer key


def _mix(x, shift):
    """Three rounds of multiply (mod PRIME) and xor-shift; ``shift(x, k)`` is ``x >> k``."""
    for m in _MULTIPLIERS:
        x = (x * m + _OFFSET) % PRIME
        x = (x ^ shift(x, 16)) % PRIME
    return x


def _start(seed: int, salt: int) -> int:
    return (int(seed) % PRIME * _SEED_STEP + salt * _SALT_STEP) % PRIME


def _shift(x, k):
    return x >> k


def hash_expr(unit, replicate, seed: int = 0, salt: int = SIMULATION_ASSIGN):
    """An Ibis integer expression in ``[0, PRIME)``, a hash of ``(unit, seed, replicate)``.

    ``unit`` is an integer Ibis column, ``replicate`` an integer Ibis column or a Python
    integer (a key: its term is computed here, since an engine may type a literal as 32-bit and
    overflow). Only ``%``, ``*``, ``+``, ``^`` and ``>>`` on 64-bit integers: the same numbers
    on DuckDB, Spark and :func:`hash_numpy`.
    """
    import ibis

    big = "int64"
    x = ((unit.cast(big) % PRIME) + PRIME) % PRIME
    x = _mix(x, _shift)
    x = _mix((x + ibis.literal(_start(seed, salt), big)) % PRIME, _shift)
    if isinstance(replicate, int | np.integer):
        term = ibis.literal(int(replicate) % PRIME * _REPLICATE_STEP % PRIME, big)
    else:
        term = (replicate.cast(big) % PRIME) * _REPLICATE_STEP % PRIME
    x = _mix((x + term) % PRIME, _shift)
    return x


def hash_columns(table, unit, draws: Mapping[str, tuple], prefix: str = "__hash"):
    """``table`` with one hash column per draw, ``{name: (replicate, seed, salt)}`` (replicate a
    Python integer or a column name), equal to :func:`hash_expr` / :func:`hash_numpy` of the
    column ``unit`` (a column name or an integer expression of ``table``).

    Every round of the hash is its own ``SELECT`` over the previous one, so the SQL grows
    linearly with the rounds: :func:`hash_expr` repeats ``x`` in each ``x xor (x >> 16)``,
    hence ``2^9`` copies of the unit per draw (megabytes of SQL, seconds to plan). The unit's
    first mixing is shared by all draws. Temporary columns start with ``prefix``.
    """
    import ibis

    big = "int64"
    base = f"{prefix}_unit"
    u = table[unit] if isinstance(unit, str) else unit
    t = table.mutate(**{base: ((u.cast(big) % PRIME) + PRIME) % PRIME})
    keep = list(table.columns)

    def rounds(t, cols):
        for m in _MULTIPLIERS:
            t = t.mutate(**{c: (t[c] * m + _OFFSET) % PRIME for c in cols})
            t = t.mutate(**{c: (t[c] ^ (t[c] >> 16)) % PRIME for c in cols})
        return t

    t = rounds(t, [base])
    tmp = {name: f"{prefix}_{i}" for i, name in enumerate(draws)}
    t = t.mutate(**{tmp[n]: (t[base] + ibis.literal(_start(seed, salt), big)) % PRIME
                    for n, (_, seed, salt) in draws.items()}).drop(base)
    t = rounds(t, list(tmp.values()))

    def term(replicate):
        if isinstance(replicate, int | np.integer):
            return ibis.literal(int(replicate) % PRIME * _REPLICATE_STEP % PRIME, big)
        return (t[replicate].cast(big) % PRIME) * _REPLICATE_STEP % PRIME

    t = t.mutate(**{tmp[n]: (t[tmp[n]] + term(r)) % PRIME for n, (r, _, _) in draws.items()})
    t = rounds(t, list(tmp.values()))
    return t.select(*keep, **{n: t[tmp[n]] for n in draws})


def hash_numpy(unit, replicate, seed: int = 0, salt: int = SIMULATION_ASSIGN) -> np.ndarray:
    """The numpy twin of :func:`hash_expr` (vectorised; ``unit`` and ``replicate`` broadcast)."""
    unit, replicate = np.broadcast_arrays(np.asarray(unit, np.int64),
                                          np.asarray(replicate, np.int64))
    x = ((unit % PRIME) + PRIME) % PRIME
    x = _mix(x, _shift)
    x = _mix((x + _start(seed, salt)) % PRIME, _shift)
    return _mix((x + (replicate % PRIME) * _REPLICATE_STEP % PRIME) % PRIME, _shift)


def thresholds(weights: Sequence[float]) -> np.ndarray:
    """Hash thresholds of the arms: arm ``k`` when ``hash < thresholds[k]`` (and not before)."""
    w = np.asarray(weights, float)
    cum = np.cumsum(w / w.sum())
    out = np.round(cum * PRIME).astype(np.int64)
    out[-1] = PRIME
    return out


def name_key(text: str) -> int:
    """The integer key of a name (experiment, namespace) or string id: MD5 prefix, in
    ``[0, 2^32)``."""
    return int(hashlib.md5(str(text).encode("utf-8")).hexdigest()[:KEY_HEX_DIGITS], 16)


def string_key_numpy(values) -> np.ndarray:
    """:func:`name_key` of every string of ``values`` (an int64 array)."""
    return np.fromiter((name_key(v) for v in values), np.int64, count=len(values))


def string_key_expr(column):
    """The engine twin of :func:`string_key_numpy` for a string Ibis column (see
    :func:`hex_key_expr`), identical on DuckDB and Spark."""
    return hex_key_expr(column.hexdigest("md5").lower())


def hex_key_expr(hexed):
    """The integer of the first :data:`KEY_HEX_DIGITS` digits of a lower-case hex string
    column, decoded with ``ascii`` arithmetic: ``(ascii(c) - 48) mod 39`` maps ``'0'..'9'``
    to 0..9 and ``'a'..'f'`` to 10..15 (each digit used once: linear SQL)."""
    import ibis

    key = ibis.literal(0, "int64")
    for i in range(KEY_HEX_DIGITS):
        code = hexed.substr(i, 1).ascii_str().cast("int64")
        key = key * 16 + (code - 48) % 39
    return key
