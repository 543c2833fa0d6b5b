"""MCMC convergence diagnostics of a fit: r-hat, bulk and tail ESS, divergences."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from workbench import messages

__all__ = ["Diagnostics", "diagnose"]


@dataclass(frozen=True)
class Diagnostics:
    """MCMC convergence diagnostics of one fit.

    Attributes
    ----------
    r_hat_max : float
        Largest rank-normalised split r-hat over all posterior quantities (NaN with one chain).
    ess_bulk_min, ess_tail_min : float
        Smallest bulk and tail effective sample sizes.
    divergences : int
        Divergent transitions after tuning.
    max_r_hat, min_ess : float
        Thresholds applied.
    """

    r_hat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    divergences: int
    max_r_hat: float = 1.01
    min_ess: float = 400.0

    @property
    def problems(self) -> tuple[str, ...]:
        """Human-readable list of failed checks (empty when all pass)."""
        out = []
        if np.isfinite(self.r_hat_max) and self.r_hat_max > self.max_r_hat:
            out.append(f"r_hat {self.r_hat_max:.3f} > {self.max_r_hat:g}")
        if not np.isfinite(self.ess_bulk_min) or self.ess_bulk_min < self.min_ess:
            out.append(f"ess_bulk {self.ess_bulk_min:.0f} < {self.min_ess:g}")
        if not np.isfinite(self.ess_tail_min) or self.ess_tail_min < self.min_ess:
            out.append(f"ess_tail {self.ess_tail_min:.0f} < {self.min_ess:g}")
        if self.divergences > 0:
            out.append(f"{self.divergences} divergent transition{'s' if self.divergences > 1 else ''}")
        return tuple(out)

    @property
    def ok(self) -> bool:
        """True when r-hat, ESS and divergences all pass their thresholds."""
        return not self.problems

    @property
    def message(self) -> str:
        """``messages.NOT_CONVERGED`` filled in, or '' when the checks pass."""
        return messages.NOT_CONVERGED.format(detail="; ".join(self.problems)) if self.problems else ""


def diagnose(idata, var_names=None, *, max_r_hat: float = 1.01, min_ess: float = 400.0) -> Diagnostics:
    """Convergence diagnostics of an InferenceData (r-hat, bulk/tail ESS, divergences).

    Parameters
    ----------
    idata : arviz.InferenceData
        With a ``posterior`` group and, for divergences, ``sample_stats.diverging``.
    var_names : list of str, optional
        Posterior variables to check; default all.
    max_r_hat, min_ess : float
        Thresholds (defaults 1.01 and 400, after Vehtari et al. 2021).
    """
    import arviz as az

    post = idata.posterior if var_names is None else idata.posterior[list(var_names)]
    # Quantities that do not vary (e.g. a deterministic of data only) have undefined r-hat/ESS.
    keep = [v for v in post.data_vars if float(post[v].std()) > 0]
    post = post[keep]

    def _extreme(ds, fn):
        values = [np.asarray(ds[v]).ravel() for v in ds.data_vars]
        values = np.concatenate(values) if values else np.array([np.nan])
        values = values[~np.isnan(values)]
        return float(fn(values)) if values.size else float("nan")

    chains = post.sizes.get("chain", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r_hat = _extreme(az.rhat(post), np.max) if chains > 1 and keep else float("nan")
        ess_bulk = _extreme(az.ess(post, method="bulk"), np.min) if keep else float("nan")
        ess_tail = _extreme(az.ess(post, method="tail"), np.min) if keep else float("nan")
    divergences = 0
    stats = getattr(idata, "sample_stats", None)
    if stats is not None and "diverging" in stats:
        divergences = int(np.asarray(stats["diverging"]).sum())
    return Diagnostics(r_hat, ess_bulk, ess_tail, divergences, max_r_hat, min_ess)
