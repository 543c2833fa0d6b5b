"""The documented schema of an experiment source (the contract between data and analysis).

A source holds three tables (and optionally ``experiments``). Names and types below are what
:mod:`workbench.data.quality` checks and what :mod:`workbench.metrics.compiler` compiles
against. ``dtype`` is the logical type: ``int`` (any integer), ``float`` (any floating type),
``string``, ``timestamp``, ``date``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One documented column: its name, logical type, whether it may be NULL, and meaning."""

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

# Tables written by the sample generator only (known truth; not required of a real source).
TRUTH = (
    Column("experiment_id", "string", False, "experiment key"),
    Column("metric", "string", False, "conversion, orders_per_user, revenue_per_user, "
           "sessions_per_user or revenue_per_order"),
    Column("variant", "string", False, "treatment variant compared with control"),
    Column("dimension", "string", False, "'(all)', 'device', 'country' or 'channel'"),
    Column("segment", "string", False, "segment of the dimension ('(all)' overall)"),
    Column("control_value", "float", False, "population expectation under control"),
    Column("variant_value", "float", False, "population expectation under the variant"),
    Column("absolute_effect", "float", False, "variant_value - control_value"),
    Column("relative_lift", "float", False, "variant_value / control_value - 1"),
)

TRUTH_USERS = (
    Column("user_id", "int", False, "user"),
    Column("tau_conversion_a", "float", False,
           "true effect of treatment_a on the user's conversion probability"),
    Column("tau_conversion_b", "float", False,
           "true effect of treatment_b on the user's conversion probability"),
)

MODEL_DATA = (
    Column("user_id", "int", False, "row key"),
    Column("period", "string", False, "'reference' (training) or 'current' (production)"),
    Column("country", "string", False, "country (same mix in both periods)"),
    Column("device", "string", False, "device (more mobile in 'current')"),
    Column("channel", "string", False, "channel ('current' adds the unseen 'video_ads')"),
    Column("tenure_days", "int", False, "days since signup (shorter in 'current')"),
    Column("sessions_30d", "int", False, "sessions in the last 30 days (more in 'current')"),
    Column("orders_30d", "int", False, "orders in the last 30 days"),
    Column("revenue_30d", "float", False, "revenue in the last 30 days"),
    Column("days_since_last_visit", "float", False, "days since the last session (capped at 60)"),
    Column("pages_per_session", "float", False, "pages per session (no drift)"),
    Column("label", "int", False, "1 if the user orders in the next 14 days"),
)

SAMPLE_TABLES = {
    "truth": TRUTH,
    "truth_users": TRUTH_USERS,
    "model_data": MODEL_DATA,
}
