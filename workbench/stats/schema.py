"""Columns of the statistics engine's input and output tables (the contract with the readout).

Input: one row per ``metric x variant`` (plus any grouping columns such as ``segment``), holding
sufficient statistics over units (users). For unit ``i`` let ``y`` be the metric value (the
numerator for ratios), ``d`` the ratio denominator, ``x`` the pre-period value of ``y`` and ``w``
the pre-period value of ``d`` (CUPED covariates). Sums run over the units of the variant.
"""
from __future__ import annotations

KINDS = ("proportion", "mean", "ratio", "quantile")

# name -> meaning; required columns first.
INPUT_COLUMNS = {
    "metric": "metric name",
    "variant": "variant name",
    "kind": "'proportion' (y in {0,1}), 'mean', 'ratio' (sum y / sum d) or 'quantile'",
    "n": "number of units",
    "sum": "sum of y",
    "sum_squares": "sum of y^2 (for proportions it may be omitted or equal to sum)",
    # ratio metrics
    "den_sum": "sum of d",
    "den_sum_squares": "sum of d^2",
    "sum_product": "sum of y*d",
    # CUPED (pre-period covariate x, and w for ratio metrics)
    "pre_sum": "sum of x",
    "pre_sum_squares": "sum of x^2",
    "pre_sum_product": "sum of y*x",
    "pre_den_sum": "sum of w",
    "pre_den_sum_squares": "sum of w^2",
    "pre_den_sum_product": "sum of x*w",
    "den_pre_sum_product": "sum of d*x",
    "sum_pre_den_product": "sum of y*w",
    "den_pre_den_sum_product": "sum of d*w",
    # hurdle (zero-inflated log-normal) revenue model, for mean metrics with `log_stats: true`
    "positive_n": "units with y > 0",
    "log_sum": "sum of log(y) over units with y > 0",
    "log_sum_squares": "sum of log(y)^2 over units with y > 0",
    # quantile metrics (workbench/stats/quantile.py): computed in the engine; sum etc. may be NaN
    "quantile_level": "quantile metrics: the level q in (0, 1), e.g. 0.9 for p90",
    "quantile": "quantile metrics: the sample q-quantile (of unit values, or of events)",
    "quantile_lower": "quantile metrics: the sample quantile at q - Z sigma (Z = 1.96, sigma the "
                      "standard error of the empirical CDF at the quantile)",
    "quantile_upper": "quantile metrics: the sample quantile at q + Z sigma",
}
# margins (workbench/stats/margin.py), optional; each comparison takes its variant row's value,
# else its control row's
INPUT_COLUMNS.update({
    "margin": "tolerated harm (non-inferiority) or required gain (superiority), >= 0; empty: none",
    "margin_scale": "'relative' or 'absolute' (default: the analysis's `difference`); converted "
                    "with |control mean| when it differs from `difference`",
    "margin_kind": "'non-inferiority' (default) or 'superiority'",
    "higher_is_better": "true (default) or false: flips the good direction of the margin test",
})
MARGIN_INPUT = ("margin", "margin_scale", "margin_kind", "higher_is_better")
# regression adjustment with several covariates x_0 .. x_{k-1} (workbench/stats/regression.py),
# optional; the covariate names of a row in `covariates`; NaN for metrics without (and j >= k)
INPUT_COLUMNS.update({
    "covariates": "the covariate names x_0, x_1, ... of the metric, comma-separated",
    "cov_sum__<j>": "sum of x_j (j = 0, 1, ...)",
    "cov_prod__<j>__<l>": "sum of x_j*x_l (j <= l)",
    "cov_y__<j>": "sum of y*x_j",
    "cov_d__<j>": "ratio metrics: sum of d*x_j",
})
COVARIATE_INPUT = ("covariates", "cov_sum__<j>", "cov_prod__<j>__<l>", "cov_y__<j>", "cov_d__<j>")
# input columns that are not numbers (validation leaves them as they are)
TEXT_INPUT = ("metric", "variant", "kind", "margin_scale", "margin_kind", "higher_is_better",
              "covariates")
HURDLE_INPUT = ("positive_n", "log_sum", "log_sum_squares")
# The sums of products of unit values behind each statistic (y metric, d denominator, x and w
# their pre-period covariates): the machine-readable form of the formulas above, which the
# metric compiler turns into engine expressions.
PRODUCTS = {
    "sum": ("y",), "sum_squares": ("y", "y"),
    "den_sum": ("d",), "den_sum_squares": ("d", "d"), "sum_product": ("y", "d"),
    "pre_sum": ("x",), "pre_sum_squares": ("x", "x"), "pre_sum_product": ("y", "x"),
    "pre_den_sum": ("w",), "pre_den_sum_squares": ("w", "w"), "pre_den_sum_product": ("x", "w"),
    "den_pre_sum_product": ("d", "x"), "sum_pre_den_product": ("y", "w"),
    "den_pre_den_sum_product": ("d", "w"),
}
# Optional grouping columns: every (grouping x metric) block is analysed on its own.
#   dimension, segment: a segment breakdown (e.g. dimension='device', segment='mobile')
#   date: cumulative statistics up to and including that day (time series)
#   replicate: one re-randomisation of an A/A or power simulation (workbench.readout.simulation)
#   phase: one phase of a staged rollout (units by first exposure; workbench.readout.phases)
GROUP_COLUMNS = ("dimension", "segment", "date", "replicate", "phase")
REQUIRED_INPUT = ("metric", "variant", "kind", "n", "sum")
RATIO_INPUT = ("den_sum", "den_sum_squares", "sum_product")
QUANTILE_INPUT = ("quantile_level", "quantile", "quantile_lower", "quantile_upper")
CUPED_INPUT = ("pre_sum", "pre_sum_squares", "pre_sum_product")
RATIO_CUPED_INPUT = (
    "pre_den_sum",
    "pre_den_sum_squares",
    "pre_den_sum_product",
    "den_pre_sum_product",
    "sum_pre_den_product",
    "den_pre_den_sum_product",
)

# One row per metric x treatment variant (x grouping columns). NaN where a method has no value.
OUTPUT_COLUMNS = {
    "metric": "metric name",
    "variant": "treatment variant (compared with the control)",
    "control_mean": "control mean (ratio of sums for ratio metrics; CUPED-adjusted if used)",
    "variant_mean": "variant mean",
    "effect": "absolute difference or relative lift (variant/control - 1), per `difference`",
    "ci_lower": "lower end of the interval (confidence, confidence-sequence or credible)",
    "ci_upper": "upper end",
    "p_value": "two-sided (or one-sided) p-value; NaN for Bayesian",
    "p_value_adjusted": "p-value after the multiple-testing correction",
    "chance_to_win": "posterior probability the variant beats control (Bayesian)",
    "risk_control": "expected loss of choosing control (Bayesian)",
    "risk_variant": "expected loss of choosing the variant (Bayesian)",
    "srm_p_value": "sample-ratio-mismatch p-value of the variant split",
    "error_message": "why the row could not be computed, else empty",
    "test": "the test behind p_value: welch, z, delta (ratio), msprt (sequential), fisher, "
            "barnard, boschloo, quantile; beta or normal (Bayesian model); empty if not computed",
    "margin": "margin in the units of `effect` (>= 0; NaN without one)",
    "margin_kind": "'non-inferiority' (H0: effect worse than -margin) or 'superiority' (H0: "
                   "effect not better than +margin), in the metric's good direction",
    "margin_p_value": "one-sided p-value of that H0 (frequentist, sequential: always valid)",
    "margin_chance": "posterior probability of the complement of that H0 (Bayesian)",
    "variance_reduction": "1 - Var(adjusted effect) / Var(unadjusted effect) where CUPED or the "
                          "regression adjustment was used (`cuped` True), else NaN",
    "covariates": "the covariates the regression adjustment used (comma-separated), else empty",
    "adjustment_note": "covariates dropped (constant, collinear) or why a row was left "
                       "unadjusted (an arm too small for k covariates); else empty",
}
