"""Progress against the plan: one sentence per primary metric from the ``power`` table.

"conversion: planned 14 days for a 5 % MDE; 9 days elapsed, power so far 62 %". Written into
the readout's notes, so the summary, the report, the record and the dashboard say it alike.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from workbench import format as fmt
from workbench import messages


def sentences(power: pd.DataFrame | None, primary: Sequence[str],
              relative: bool = True) -> list[str]:
    """One :data:`~workbench.messages.PLAN_PROGRESS` sentence per primary metric x variant of
    ``power`` that has a planned duration (none without a plan)."""
    if power is None or not len(power) or "planned_days" not in power.columns:
        return []
    rows = power[power["metric"].isin(list(primary))
                 & np.isfinite(power["planned_days"].astype(float))]
    several = rows["variant"].nunique() > 1
    out = []
    for r in rows.to_dict("records"):
        name = f"{r['metric']} ({r['variant']})" if several else str(r["metric"])
        mde = fmt.percent(abs(r["mde"])) if relative else fmt.number(abs(r["mde"]))
        out.append(messages.PLAN_PROGRESS.format(
            metric=name, planned_days=fmt.days(r["planned_days"]), mde=mde,
            days_elapsed=fmt.days(r["days_elapsed"]), power=fmt.percent(r["power"], digits=0)))
    return out
