"""Metric definitions: the YAML schema's validation names the metric and the field at fault."""
from __future__ import annotations

import pytest

from workbench.errors import MetricDefinitionError
from workbench.metrics import (
    SAMPLE_METRICS,
    Aggregate,
    Condition,
    MetricDefinition,
    load_metrics,
    parse_metric,
)

BASE = {"name": "m", "kind": "mean", "event_type": "order"}


@pytest.mark.parametrize("change, field", [
    ({"kind": "median"}, "kind"),
    ({"aggregation": "avg"}, "aggregation"),
    ({"aggregation": "sum"}, "column"),
    ({"role": "main"}, "role"),
    ({"cap": {"percentile": 1.5}}, "cap.percentile"),
    ({"cap": {"value": -1}}, "cap.value"),
    ({"cap": 3}, "cap"),
    ({"window_days": 0}, "window_days"),
    ({"cuped": "yes"}, "cuped"),
    ({"pre_period_days": -2}, "pre_period_days"),
    ({"higher_is_better": "no"}, "higher_is_better"),
    ({"colour": "red"}, "colour"),
    ({"where": [{"column": "revenue", "op": "~", "value": 1}]}, "where[0]"),
    ({"where": [{"column": "revenue", "op": "in", "value": 3}]}, "where[0]"),
    ({"kind": "proportion", "log_stats": True}, "log_stats"),
    ({"kind": "ratio"}, "numerator"),
    ({"numerator": {"event_type": "order"}}, "numerator"),
])
def test_invalid_definitions_name_metric_and_field(change, field):
    with pytest.raises(MetricDefinitionError) as err:
        parse_metric({**BASE, **change})
    assert "'m'" in str(err.value) and f"'{field}'" in str(err.value)


def test_ratio_parts_names_and_yaml_errors(tmp_path):
    spec = {"name": "r", "kind": "ratio", "numerator": {"event_type": "order", "bad": 1},
            "denominator": {"event_type": "order"}}
    with pytest.raises(MetricDefinitionError, match="'numerator.bad'"):
        parse_metric(spec)
    with pytest.raises(MetricDefinitionError, match="defined twice"):
        load_metrics([BASE, BASE])
    with pytest.raises(MetricDefinitionError, match="'name'"):
        parse_metric({"kind": "mean"})
    f = tmp_path / "m.yml"
    f.write_text("metrics: [{name: a, kind: mean\n")
    with pytest.raises(MetricDefinitionError, match="YAML"):
        load_metrics(f)
    with pytest.raises(MetricDefinitionError, match="does not exist"):
        load_metrics(tmp_path / "absent.yml")
    with pytest.raises(MetricDefinitionError, match="no 'metrics' list"):
        load_metrics({"defaults": {}})
    with pytest.raises(MetricDefinitionError, match="no metrics"):
        load_metrics([])


def test_parsed_fields_defaults_and_parts():
    m = parse_metric({"name": "aov", "kind": "ratio", "cuped": True,
                      "numerator": {"event_type": ["order", "refund"], "aggregation": "sum",
                                    "column": "revenue",
                                    "where": {"column": "items", "op": "in", "value": [1, 2]}},
                      "denominator": {"event_type": "order"}, "cap": {"value": 500}},
                     defaults={"pre_period_days": 7, "role": "guardrail"})
    assert m.numerator == Aggregate("sum", "revenue", ("order", "refund"),
                                    (Condition("items", "in", (1, 2)),))
    assert m.denominator == Aggregate("count", None, ("order",), ())
    assert (m.pre_period_days, m.role, m.cap_value, m.capped) == (7, "guardrail", 500.0, True)
    # the unit values it needs: numerator and denominator, during and before the experiment
    assert [(tag, period) for tag, _, period in m.parts] == [
        ("y", "during"), ("d", "during"), ("x", "pre"), ("w", "pre")]
    assert m.parts[2][1] is m.numerator and m.parts[3][1] is m.denominator
    p = parse_metric({"name": "conv", "kind": "proportion", "event_type": "order"})
    assert p.numerator.aggregation == "any" and [t for t, _, _ in p.parts] == ["y"]
    # a metric's own field wins over the defaults; objects pass through load_metrics
    loaded = load_metrics({"defaults": {"cuped": True}, "metrics": [BASE, p]})
    assert loaded[0].cuped and loaded[1] is p and isinstance(loaded[0], MetricDefinition)


def test_sample_metrics_file_is_valid():
    assert SAMPLE_METRICS.is_file()
    metrics = {m.name: m for m in load_metrics()}
    assert {"conversion", "orders_per_user", "revenue_per_user", "sessions_per_user",
            "revenue_per_order"} <= set(metrics)
    assert metrics["conversion"].role == "primary"
    assert metrics["revenue_per_user"].log_stats and not metrics["revenue_per_user"].capped
    assert metrics["revenue_per_order"].kind == "ratio"
    assert all(m.cuped for m in metrics.values())
    assert [m.name for m in load_metrics(SAMPLE_METRICS)] == list(metrics)
