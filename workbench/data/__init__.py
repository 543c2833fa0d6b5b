"""Experiment data: the documented schema, a sample generator with known truth, validation.

- :mod:`workbench.data.schema` - tables and columns a source must have.
- :mod:`workbench.data.sample` - :func:`~workbench.data.sample.generate` writes the bundled
  checkout experiment (DuckDB) with its true effects; :func:`~workbench.data.sample.model_dataset`
  a drifting model-experiment dataset.
- :mod:`workbench.data.validate` - :func:`~workbench.data.validate.validate_source` checks a
  source in its engine and reports counts.
- :mod:`workbench.data.sources` - Ibis connections.

Submodules are imported on use, so ``import workbench`` stays light.
"""
from __future__ import annotations

__all__ = ["schema", "sample", "validate", "sources"]
