"""The experiment window: its dates, variants and planned split, and which units it holds."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class ExperimentWindow:
    """Dates of an experiment: exposure runs from ``start_date`` to ``end_date`` inclusive.

    Attributes
    ----------
    experiment_id : str
        Key of the experiment in ``assignments``.
    start_date, end_date : datetime.date
        First and last (inclusive) day of exposure.
    variants : tuple of str
        Variant names, the control first.
    planned_weights : tuple of float
        Planned share of each variant, in the order of ``variants``.
    control : str
        The baseline variant.
    """

    experiment_id: str
    start_date: dt.date
    end_date: dt.date
    variants: tuple[str, ...] = ()
    planned_weights: tuple[float, ...] = ()
    control: str = "control"

    @property
    def start_ts(self) -> dt.datetime:
        """Midnight starting ``start_date``."""
        return dt.datetime.combine(self.start_date, dt.time())

    @property
    def end_ts(self) -> dt.datetime:
        """Exclusive end: midnight after ``end_date``."""
        return dt.datetime.combine(self.end_date + dt.timedelta(days=1), dt.time())

    def pre_start_ts(self, days: int) -> dt.datetime:
        """Start of a pre-period of ``days`` days ending at :attr:`start_ts`."""
        return self.start_ts - dt.timedelta(days=days)

    def units(self, assignments, exclude_crossovers: bool = True):
        """One row per unit of the experiment: ``user_id, variant, assigned_at`` (Ibis).

        ``assigned_at`` is the unit's first exposure. A crossover unit (seen in more than one
        variant) is dropped, or with ``exclude_crossovers=False`` kept in the variant of its
        first exposure.
        """
        import ibis

        a = assignments.filter(assignments.experiment_id == self.experiment_id)
        # min != max instead of a distinct count: same answer, far cheaper on Spark
        first = {} if exclude_crossovers else {"variant": a.variant.argmin(a.assigned_at)}
        per = a.group_by("user_id").aggregate(
            **first,  # an ordered aggregate: only needed when crossovers are kept
            v_min=a.variant.min(),
            v_max=a.variant.max(),
            assigned_at=a.assigned_at.min(),
        )
        if exclude_crossovers:  # one variant per unit left: its variant is v_min
            per = per.filter(per.v_min == per.v_max)
            per = per.mutate(variant=per.v_min)
        return per.select("user_id", "variant",
                          assigned_at=per.assigned_at.cast(ibis.dtype("timestamp")))
