"""Feature frames for the models: categorical columns with categories fixed at training."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from workbench.errors import ModelError

MISSING_CATEGORY = "(missing)"


def to_object(X):
    """Categorical columns as plain objects with a missing marker (one-hot branch).

    Module-level (not a lambda) so that fitted pipelines pickle, e.g. for MLflow.
    """
    X = pd.DataFrame(X).astype(object)
    return X.where(X.notna(), MISSING_CATEGORY)


def is_categorical(column: pd.Series) -> bool:
    """Non-numeric, bool and ``category`` columns are treated as categorical."""
    return (not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
            or isinstance(column.dtype, pd.CategoricalDtype))


def fixed_categories(df: pd.DataFrame, columns: Sequence[str]) -> dict[str, list[str]]:
    """The categories of each of ``columns`` as strings: a ``category`` column's own, else its
    values sorted as text."""
    out = {}
    for c in columns:
        cats = (list(df[c].cat.categories) if isinstance(df[c].dtype, pd.CategoricalDtype)
                else sorted(df[c].dropna().unique(), key=str))
        out[c] = [str(v) for v in cats]
    return out


def prepare_features(df: pd.DataFrame, features: Sequence[str],
                     categories: Mapping[str, Sequence]) -> pd.DataFrame:
    """``df[features]`` with each categorical column given its fixed ``categories`` (unseen
    values become missing).

    Raises
    ------
    ModelError
        Naming the feature columns absent from ``df``.
    """
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise ModelError(f"feature columns {missing} not found in the data")
    X = df[list(features)].copy()
    for col, cats in categories.items():
        values = X[col].astype(object)
        values = values.where(values.isna(), values.astype(str))
        X[col] = pd.Categorical(values, categories=list(cats))
    return X
