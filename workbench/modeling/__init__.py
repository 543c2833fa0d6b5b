"""Model experiments and uplift models on experiment data.

- :mod:`~workbench.modeling.comparison` - :func:`compare_models`, :class:`ModelComparison`.
- :mod:`~workbench.modeling.uplift` - :class:`UpliftModel`, :func:`qini_curve`,
  :func:`uplift_curve`, :func:`uplift_frame` (built on the metric compiler).
- :mod:`~workbench.modeling.features` - categorical features fixed at training.
"""
from __future__ import annotations

from workbench.modeling.comparison import (
    CLASSIFICATION_METRICS,
    LOWER_IS_BETTER,
    REGRESSION_METRICS,
    ModelComparison,
    compare_models,
    default_models,
)
from workbench.modeling.features import MISSING_CATEGORY, prepare_features
from workbench.modeling.features import to_object as _to_object  # noqa: F401  models pickled by 0.1 refer to it
from workbench.modeling.uplift import (
    PRE_FEATURES,
    UPLIFT_FEATURES,
    USER_FEATURES,
    UpliftCurve,
    UpliftModel,
    qini_curve,
    uplift_curve,
    uplift_frame,
)

__all__ = ["CLASSIFICATION_METRICS", "LOWER_IS_BETTER", "REGRESSION_METRICS", "ModelComparison",
           "compare_models", "default_models", "MISSING_CATEGORY", "prepare_features",
           "PRE_FEATURES", "UPLIFT_FEATURES", "USER_FEATURES", "UpliftCurve", "UpliftModel",
           "qini_curve", "uplift_curve", "uplift_frame"]
