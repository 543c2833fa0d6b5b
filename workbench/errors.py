"""Errors and warnings of the workbench.

Every error that bad input can cause is a :class:`WorkbenchError` and names the table, column,
row or parameter at fault. Warnings that a result should be read with care are
:class:`WorkbenchWarning` subclasses, so users can filter them as a family.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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


TRACEBACK_LINES = 8  # enough to see the failing call, short enough for run.json


@dataclass(frozen=True)
class RunFailure:
    """Why a run did not finish: the one shape of ``run.json``'s ``error`` field.

    Attributes
    ----------
    cell_index : int or None
        Template cell that failed, counting every cell from 0 (markdown too, the injected
        parameters cell not); None when no cell is to blame (killed, raised outside a notebook).
    ename, evalue : str
        Exception class name and text (``StoppedEarly`` / ``Killed`` where nothing was raised).
    message : str
        One line for people: what failed, where.
    traceback_tail : tuple of str
        The last lines of the traceback, without terminal colours (empty if none).
    """

    cell_index: int | None
    ename: str
    evalue: str
    message: str
    traceback_tail: tuple[str, ...] = ()

    @classmethod
    def from_exception(cls, exc: BaseException, message: str | None = None) -> RunFailure:
        """The failure of a run ended by ``exc`` outside any notebook cell."""
        import traceback

        lines = "".join(traceback.format_exception(exc)).splitlines() if exc.__traceback__ else []
        return cls(None, type(exc).__name__, str(exc),
                   message or f"{type(exc).__name__}: {exc}", tuple(lines[-TRACEBACK_LINES:]))

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RunFailure | None:
        """Read back :meth:`to_dict` (None stays None; unknown keys are ignored)."""
        if not data:
            return None
        return cls(data.get("cell_index"), data.get("ename") or "", data.get("evalue") or "",
                   data.get("message") or "", tuple(data.get("traceback_tail") or ()))

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` field of ``run.json`` (JSON-safe)."""
        return dict(asdict(self), traceback_tail=list(self.traceback_tail))


class RunError(WorkbenchError):
    """A template run failed; the partial notebook is kept.

    Attributes
    ----------
    failure : RunFailure
        Where and why.
    """

    def __init__(self, failure: RunFailure):
        super().__init__(failure.message)
        self.failure = failure


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


class DegenerateDataWarning(WorkbenchWarning):
    """Some rows could not be analysed (no units, zero variance); see ``error_message``."""


class ConvergenceWarning(WorkbenchWarning):
    """MCMC diagnostics (r-hat, ESS, divergences) indicate unreliable posterior estimates."""
