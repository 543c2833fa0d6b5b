"""Readout figures: drawn from the result and from its tidy frames read back from parquet."""
from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import integrate, stats  # noqa: E402

import workbench as wb  # noqa: E402
from workbench.plots import (  # noqa: E402
    plot_cumulative_lift,
    plot_forest,
    plot_posteriors,
    plot_segments,
)


@pytest.fixture(scope="module")
def result(small_warehouse):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return wb.Experiment.from_source(small_warehouse).analyze(segments=["device"])


@pytest.fixture(scope="module")
def frames(result, tmp_path_factory):
    """The tables as a dashboard would read them back from a run's parquet files."""
    d = tmp_path_factory.mktemp("tables")
    out = {}
    for name in ("results", "segments", "timeseries"):
        getattr(result, name).to_parquet(d / f"{name}.parquet", index=False)
        out[name] = pd.read_parquet(d / f"{name}.parquet")
    return out


def test_forest_plot(result, frames):
    ax = plot_forest(result)
    r = result.results
    # one error bar per variant, one point per metric
    lines = [c for c in ax.containers]
    assert len(lines) == r.variant.nunique()
    xs = np.concatenate([c.lines[0].get_xdata() for c in lines])
    np.testing.assert_allclose(np.sort(xs), np.sort(r.effect.to_numpy()))
    assert [t.get_text() for t in ax.get_yticklabels()] == list(dict.fromkeys(r.metric))
    ax2 = plot_forest(frames["results"], metrics=["conversion"])
    assert len(ax2.get_yticklabels()) == 1
    plt.close("all")


def test_cumulative_lift(result, frames):
    for src in (result, frames["timeseries"]):
        ax = plot_cumulative_lift(src, metric="orders_per_user")
        assert len(ax.get_lines()) >= 2
        last = ax.get_lines()[0].get_ydata()[-1]
        ts = result.timeseries
        expected = ts[(ts.metric == "orders_per_user") & (ts.variant == "treatment_a")]
        assert last == pytest.approx(expected.sort_values("date").effect.iloc[-1])
    plt.close("all")


def test_posterior_densities_are_normal_approximations(result, frames):
    ax = plot_posteriors(frames["results"], metric="conversion", alpha=result.alpha)
    row = result.results[(result.results.metric == "conversion")
                         & (result.results.variant == "treatment_a")].iloc[0]
    line = ax.get_lines()[0]
    x, y = line.get_xdata(), line.get_ydata()
    se = (row.ci_upper - row.ci_lower) / (2 * stats.norm.ppf(0.975))
    assert x[np.argmax(y)] == pytest.approx(row.effect, abs=se / 50)
    assert integrate.trapezoid(y, x) == pytest.approx(1.0, abs=1e-3)  # +-4 sd holds 99.99 %
    plt.close("all")


def test_segment_breakdown(result, frames):
    ax = plot_segments(result, metric="conversion", dimension="device")
    assert sorted(t.get_text() for t in ax.get_yticklabels()) == ["desktop", "mobile", "tablet"]
    ax2 = plot_segments(frames["segments"])
    assert ax2.get_title().endswith("by device")
    fig, axes = plt.subplots(1, 2)
    assert plot_segments(result, ax=axes[1]) is axes[1]
    with pytest.raises(ValueError, match="segments"):
        plot_segments(pd.DataFrame(columns=["metric", "variant", "effect", "ci_lower",
                                            "ci_upper", "dimension", "segment"]))
    plt.close("all")


def test_phases_plot_draws_each_phase_and_the_truth():
    """A hand-made phases table: one error bar per row at the table's effect and interval
    ends, top to bottom, and the truth as a vertical line."""
    from workbench.plots import plot_phases

    frame = pd.DataFrame({
        "metric": ["m"] * 4, "variant": ["b"] * 4,
        "phase": ["p1", "p2", "(stratified)", "(pooled)"],
        "effect": [0.02, 0.06, 0.04, 0.11], "ci_lower": [-0.03, 0.01, 0.01, 0.08],
        "ci_upper": [0.07, 0.11, 0.07, 0.14]})
    ax = plot_phases(frame, truth=0.05)
    (bars,) = ax.containers
    x, y = bars.lines[0].get_data()
    np.testing.assert_allclose(x, frame["effect"])
    assert list(y) == [3, 2, 1, 0]  # first row on top
    ends = np.sort(np.concatenate([s.get_segments() for s in bars.lines[2]])[:, :, 0], axis=1)
    np.testing.assert_allclose(ends, frame[["ci_lower", "ci_upper"]].to_numpy())
    assert [t.get_text() for t in ax.get_yticklabels()] == frame["phase"].tolist()
    assert [line.get_xdata()[0] for line in ax.lines if line.get_label() == "truth"] == [0.05]
    plt.close("all")
    with pytest.raises(ValueError, match="no phases"):
        plot_phases(frame.iloc[:0])
