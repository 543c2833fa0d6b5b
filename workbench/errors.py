"""Errors and warnings of the workbench.

Every error that bad input can cause is a :class:`WorkbenchError` and names the table, column,
row or parameter at fault. Warnings that a result should be read with care are
:class:`WorkbenchWarning` subclasses, so users can filter them as a family.
"""
from __future__ import annotations


class WorkbenchError(Exception):
    """Base class of every error raised on purpose by the workbench."""


class ConfigError(WorkbenchError):
    """A setting or environment variable has an invalid value."""


class DataError(WorkbenchError):
    """Input data cannot be analysed (missing column, wrong type, ...)."""


class SchemaError(DataError):
    """A table does not match its documented schema."""


class StatsInputError(DataError):
    """A sufficient-statistics table is malformed (negative n, impossible sums, unknown kind)."""


class MetricDefinitionError(WorkbenchError):
    """A metric definition (YAML) is invalid."""


class SourceError(WorkbenchError):
    """A data source cannot be opened or queried."""


class ModelError(WorkbenchError):
    """A model experiment cannot be run as specified."""


class ParameterError(WorkbenchError):
    """A template parameter is unknown, missing or of the wrong type."""


class RunError(WorkbenchError):
    """A template run failed; the partial notebook is kept."""


class TrackingError(WorkbenchError):
    """MLflow logging failed."""


class PublishError(WorkbenchError):
    """A dashboard or a run to publish cannot be found or served."""


class WorkbenchWarning(UserWarning):
    """Base class of the workbench's warnings."""


class SRMWarning(WorkbenchWarning):
    """The observed split of units differs from the planned weights."""


class DataQualityWarning(WorkbenchWarning):
    """Input data has problems that were worked around (crossover users, late events...)."""


class LowPowerWarning(WorkbenchWarning):
    """The experiment is too small to detect the effect of interest."""


class DegenerateDataWarning(WorkbenchWarning):
    """Some rows could not be analysed (no units, zero variance); see ``error_message``."""


class ConvergenceWarning(WorkbenchWarning):
    """MCMC diagnostics (r-hat, ESS, divergences) indicate unreliable posterior estimates."""


class DriftWarning(WorkbenchWarning):
    """A drift check could not be computed for a column."""
