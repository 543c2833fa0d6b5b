"""The decision rules on hand-made result rows: significance, verdicts, per-variant decisions."""
from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.readout import decision as d


def _rows(**cols):
    base = {"metric": ["m"] * len(next(iter(cols.values()))), "p_value": np.nan,
            "p_value_adjusted": np.nan, "ci_lower": np.nan, "ci_upper": np.nan,
            "effect": 0.0, "higher_is_better": True, "role": "primary", "error_message": ""}
    frame = pd.DataFrame({**base, **cols})
    return frame


def test_significance_uses_adjusted_p_then_raw_p_then_the_interval():
    res = _rows(p_value=[0.01, 0.01, np.nan, np.nan, 0.2],
                p_value_adjusted=[0.03, 0.2, np.nan, np.nan, np.nan],
                ci_lower=[0.1, 0.1, 0.1, -0.1, 0.1], ci_upper=[0.2, 0.2, 0.2, 0.1, 0.2])
    assert list(d.significant(res, 0.05)) == [True, False, True, False, False]
    # unadjusted reading: the raw p-values decide
    assert list(d.significant(res, 0.05, adjusted=False)) == [True, True, True, False, False]


def test_bayesian_rows_use_the_chance_to_win():
    res = _rows(chance_to_win=[0.99, 0.975, 0.5, 0.01])
    assert list(d.significant(res, 0.05)) == [True, True, False, True]


def test_verdict_wording():
    res = _rows(effect=[0.1, -0.1, -0.1, 0.1, 0.1, 0.1],
                role=["primary", "primary", "guardrail", "primary", "primary", "guardrail"],
                higher_is_better=[True, True, True, True, False, True],
                error_message=["", "", "", "", "", "control has no units"])
    sig = np.array([True, True, True, False, True, True])
    assert list(d.verdicts(res, sig, srm=False)) == [
        d.VERDICT_IMPROVED, d.VERDICT_WORSE, d.VERDICT_HARM, d.VERDICT_NONE, d.VERDICT_WORSE,
        d.VERDICT_ERROR]
    assert set(d.verdicts(res, sig, srm=True)) == {d.VERDICT_SRM}
    assert {"improvement", "deterioration", "harm on guardrail", "no detectable effect",
            "not computable", "do not trust: SRM"} == set(d.VERDICTS)


def _results(rows):
    return pd.DataFrame(rows, columns=["metric", "variant", "role", "verdict", "effect"])


def test_the_best_shipping_variant_is_named():
    r = _results([("conv", "a", "primary", d.VERDICT_IMPROVED, 0.02),
                  ("conv", "b", "primary", d.VERDICT_IMPROVED, 0.05),
                  ("sess", "a", "guardrail", d.VERDICT_NONE, 0.0),
                  ("sess", "b", "guardrail", d.VERDICT_NONE, 0.0)])
    decisions, line = d.decide(r, ["a", "b"], srm=False)
    assert decisions == {"a": "ship", "b": "ship"} and line == "ship b"


def test_harm_and_worse_primary_block_shipping():
    r = _results([("conv", "a", "primary", d.VERDICT_IMPROVED, 0.02),
                  ("sess", "a", "guardrail", d.VERDICT_HARM, -0.1),
                  ("conv", "b", "primary", d.VERDICT_WORSE, -0.05)])
    decisions, line = d.decide(r, ["a", "b"], srm=False)
    assert decisions == {"a": "do not ship: harm on guardrail sess",
                         "b": "do not ship: primary metric worse"}
    assert line == "a: do not ship: harm on guardrail sess; b: do not ship: primary metric worse"


def test_no_effect_and_srm():
    r = _results([("conv", "a", "primary", d.VERDICT_NONE, 0.0)])
    assert d.decide(r, ["a"], srm=False) == ({"a": d.VERDICT_NONE},
                                             "no detectable effect on the primary metric")
    decisions, line = d.decide(r, ["a"], srm=True, srm_p_value=1e-9)
    assert decisions == {"a": d.VERDICT_SRM}
    assert line == "do not trust: SRM (p = 1e-09); fix the assignment before reading any lift"
