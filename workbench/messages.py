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
