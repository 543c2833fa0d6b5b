"""The layout of an event-log source: its tables found on a connection and conformed to the
documented schema (:mod:`workbench.data.schema`) - your column names mapped onto the documented
ones, timestamps in UTC, the variant as text.

>>> con = connect("warehouse.duckdb")
>>> tables = {"assignments": source_table(con, None, "assignments"), ...}
>>> tables, notes = conform(tables, {"user_id": "customer_id"}, "checkout_redesign")
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from workbench.data.schema import TABLES
from workbench.data.sources import register_files, table
from workbench.errors import SchemaError

__all__ = ["source_table", "conform"]


def source_table(con, spec, default: str, *, required: bool = True):
    """The table ``spec`` names on ``con``: an Ibis table as it is, a file (Parquet/CSV, a glob)
    registered as ``default``, or a table name (``default`` when None). An optional table
    (``required=False``) that is absent is None."""
    if spec is None:
        spec = default
    if not isinstance(spec, str | Path):
        return spec  # an Ibis table
    text = str(spec)
    if text.endswith((".parquet", ".csv", ".csv.gz", ".tsv")) or "*" in text:
        register_files(con, {default: text})
        return table(con, default)
    if not required:
        try:
            return con.table(text)
        except Exception:  # optional table absent (list_tables is broken on duckdb 2.0)
            return None
    return table(con, text)


_TIMES = {"assignments": "assigned_at", "events": "event_time"}


def conform(tables: dict, mapping: Mapping[str, str], experiment_id: str) -> tuple[dict, list]:
    """The tables with the documented column names: renamed as ``mapping`` says (documented
    -> yours), time-zone aware timestamps converted to UTC, dates made timestamps, a variant
    that is not text read as text, a missing ``assignments.experiment_id`` filled in."""
    import ibis

    out, notes, found = {}, [], set()
    for name, t in tables.items():
        if t is None:
            out[name] = None
            continue
        documented = {c.name for c in TABLES[name]}
        rename = {ours: yours for ours, yours in mapping.items()
                  if ours in documented and yours in t.columns and yours != ours}
        found |= {yours for yours in mapping.values() if yours in t.columns}
        for ours, yours in rename.items():
            if ours in t.columns:
                raise SchemaError(f"table {name!r} has both {yours!r} (mapped to {ours}) and "
                                  f"{ours!r}: drop one, or map another column")
        if rename:
            t = t.rename(rename)
        schema = t.schema()
        col = _TIMES.get(name)
        if col in schema and (schema[col].is_timestamp() or schema[col].is_date()):
            zone = getattr(schema[col], "timezone", None)
            if zone is not None or schema[col].is_date():
                # Ibis's DuckDB and Spark sessions run in UTC: the cast gives UTC wall time
                t = t.mutate(**{col: t[col].cast(ibis.dtype("timestamp"))})
                own = mapping.get(col, col)
                notes.append(f"timestamps: {name}.{own} is time-zone aware; converted to UTC"
                             if zone is not None else
                             f"timestamps: {name}.{own} holds dates (read as midnight UTC)")
        if name == "assignments":
            if "variant" in schema and not schema["variant"].is_string():
                t = t.mutate(variant=t.variant.cast("string"))
            if "experiment_id" not in schema:
                t = t.mutate(experiment_id=ibis.literal(experiment_id))
                notes.append(f"experiment: every assignments row is {experiment_id!r} (table "
                             "'assignments' has no experiment_id column)")
        out[name] = t
    unused = [f"{yours!r} (for {ours})" for ours, yours in mapping.items() if yours not in found]
    if unused:
        raise SchemaError(f"columns: {', '.join(unused)} is in no table of the source "
                          "(assignments, events, users)")
    return out, notes
