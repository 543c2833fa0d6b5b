"""The messages put in ``error_message`` of result rows that could not be computed.

One place, so that dashboards, tests and users can rely on the wording.
"""
from __future__ import annotations

NO_UNITS_CONTROL = "control has no units"
NO_UNITS_VARIANT = "variant has no units"
ZERO_VARIANCE = "zero variance in both arms: no test is possible"
ZERO_BASELINE = "control mean is zero: relative effect undefined"
ZERO_DENOMINATOR = "ratio denominator sums to zero"
TOO_FEW_UNITS = "fewer than 2 units in an arm: variance undefined"
SRM_DETECTED = "sample ratio mismatch (p < {threshold:g}): results are not trustworthy"
SRM_EMPTY_VARIANT = "a planned variant has no units: sample ratio mismatch"
NOT_CONVERGED = "MCMC diagnostics failed ({detail}): do not trust these numbers"
# Decision rule (workbench.readout.decision.DecisionRule), arm versus arm (readout.arms).
RULE_UNKNOWN_METRIC = ("decision rule: {field} names {names}, not a metric of this readout "
                       "(metrics: {known})")
RULE_BAD_WEIGHTS = ("decision rule: weights must map metric names to finite numbers, not all "
                    "zero; got {weights!r}")
RULE_BAD_DEPENDENCE = "decision rule: oec_dependence must be one of {choices}, got {value!r}"
OEC_NOT_COMPUTABLE = "a metric of the overall evaluation criterion was not computed"
BEST_NOT_COMPUTABLE = "chance to be best not computed for metrics of kind {kind!r}"

# Drift (workbench.drift): per-column status messages.
DRIFT_MISSING_COLUMN = "column missing from the {dataset} data"
DRIFT_EMPTY = "no rows in the {dataset} data"
DRIFT_ALL_MISSING = "all values are missing (NaN/inf) in the {dataset} data"
DRIFT_MIXED_TYPES = "object column holding {types}: compared as text categories"
DRIFT_UNSEEN_CATEGORIES = "{n} categor{ies} not in the reference: {examples}"
DRIFT_CONSTANT = "constant column in the {dataset} data"
DRIFT_TEXT_SKIPPED = "free-text column (more than half the values unique): not compared"
DRIFT_UNSUPPORTED_TYPE = "unsupported type {dtype}: not compared"
DRIFT_TYPE_MISMATCH = "numeric in one dataset, not in the other ({ref} vs {cur}): compared as text categories"
# Robustness check (workbench.readout.robustness).
ROBUSTNESS_OTHER_EXPERIMENT = ("robustness: the result is a readout of experiment {result!r}, "
                               "not of {experiment!r}; pass the experiment it was read from")
# stats engine
MISSING_STATS = "missing sufficient statistics (NaN) in this row or its control"
NO_CONTROL_ROW = "no control row for this metric and segment"
# regression adjustment with several covariates (workbench.stats.regression): notes, the row is
# still computed
ADJUST_TINY_ARM = ("not adjusted for covariates: an arm with n = {n} units cannot fit {k} "
                   "covariates (needs n > k + 1)")
ADJUST_COLLINEAR = "covariate(s) {names} dropped: constant or collinear with the others"
ADJUST_NO_COVARIATE = "not adjusted for covariates: none is usable (constant or collinear)"
NOT_FINITE = ("a statistic of this row is too large for floating point (an intermediate value "
              "such as sum^2 overflows): rescale the metric")
NOT_FINITE_CONTROL = ("a statistic of the control row is too large for floating point (an "
                      "intermediate value such as sum^2 overflows): rescale the metric")
NOT_FINITE_EFFECT = "the effect or its standard error is not finite (overflow): rescale the metric"
QUANTILE_TOO_FEW = ("too few units for the interval of this quantile (the order statistics at "
                    "q -/+ 1.96 sigma fall outside the sample)")
# staged rollouts as phases (workbench.readout.phases)
PHASES_WEIGHTS = "stratified over phases; weights: each phase's share of the units"
PHASES_LEFT_OUT = "phase(s) {phases} left out (an arm without units, or not computable)"
PHASES_NOT_COMBINED = "no phase could be computed: the phases cannot be combined"
PHASES_POOLED = ("naive pooling of all units across phases (biased when the split changed "
                 "and the baseline drifted)")
PHASES_HEADLINE = ("headline effects are stratified across {n} phases (each phase's share of "
                   "the units as its weight), not pooled: the split changed between phases")
# how the stratified estimate is stated under each method (appended to PHASES_HEADLINE)
PHASES_METHOD = {
    "frequentist": "",
    "sequential": ("; sequential: the always-valid interval and p-value of the stratified "
                   "estimate and its standard error at the combined units"),
    "bayesian": ("; Bayesian: chance to win and interval from the normal approximation of the "
                 "stratified estimate with the readout's prior on the effect (every metric "
                 "kind, proportions included)"),
}
PHASE_SRM = "phase {phase}: sample ratio mismatch against that phase's plan (p = {p})"
PHASES_PLANNED = ("planned split: {split}, implied by the {n} phases' weights and units (each "
                  "phase is also tested against its own plan)")
PHASES_OUTSIDE = "phases: {n} units were first exposed outside every phase (left out of them)"
# A readout linked to its plan (workbench.readout.progress): one sentence per primary metric.
PLAN_PROGRESS = ("{metric}: planned {planned_days} for a {mde} MDE; {days_elapsed} elapsed, "
                 "power so far {power}")
