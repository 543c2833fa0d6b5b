"""The documented schema of an experiment source (the contract between data and analysis).

A source holds three tables. Names and types below are what :mod:`workbench.data.validate`
checks and what :mod:`workbench.metrics` compiles against. ``dtype`` is the logical type:
``int`` (any integer), ``float`` (any floating type), ``string``, ``timestamp``, ``date``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    nullable: bool
    description: str


ASSIGNMENTS = (
    Column("experiment_id", "string", False, "experiment key, e.g. 'checkout_redesign'"),
    Column("user_id", "int", False, "the randomisation unit"),
    Column("variant", "string", False, "variant name; 'control' is the default baseline"),
    Column("assigned_at", "timestamp", False, "first exposure time (UTC)"),
)

EVENTS = (
    Column("user_id", "int", False, "who did it"),
    Column("event_time", "timestamp", False, "when (UTC); pre-period events are kept for CUPED"),
    Column("event_type", "string", False, "'session', 'add_to_cart' or 'order'"),
    Column("revenue", "float", True, "order value; NULL for non-order events"),
    Column("items", "int", True, "items in an order; NULL for non-order events"),
)

USERS = (
    Column("user_id", "int", False, "primary key"),
    Column("country", "string", False, "ISO-like country code"),
    Column("device", "string", False, "'desktop', 'mobile' or 'tablet'"),
    Column("channel", "string", False, "acquisition channel"),
    Column("tenure_days", "int", False, "days since signup at the experiment start"),
    Column("signup_date", "date", False, "signup date"),
)

# Planned split and dates of each experiment in the source (one row per experiment x variant).
EXPERIMENTS = (
    Column("experiment_id", "string", False, "experiment key"),
    Column("variant", "string", False, "variant name"),
    Column("planned_weight", "float", False, "planned share of units, summing to 1"),
    Column("is_control", "int", False, "1 for the baseline variant"),
    Column("start_date", "date", False, "first day of exposure (UTC)"),
    Column("end_date", "date", False, "last day of exposure, inclusive"),
)

TABLES = {
    "assignments": ASSIGNMENTS,
    "events": EVENTS,
    "users": USERS,
    "experiments": EXPERIMENTS,
}
