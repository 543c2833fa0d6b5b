"""Experiment data: where it comes from, what it must look like, and a sample with known truth.

- :mod:`workbench.data.sources` - the only opener of sources (DuckDB, Ibis URLs, Spark, files);
  :func:`~workbench.data.sources.execute` runs an Ibis expression.
- :mod:`workbench.data.schema` - tables and columns a source must have.
- :mod:`workbench.data.quality` - the data-quality checks, run in the engine.
- :mod:`workbench.data.sample` - :func:`~workbench.data.sample.generate` writes the bundled
  checkout experiment (DuckDB) with its true effects; :func:`~workbench.data.sample.model_dataset`
  a drifting model-experiment dataset.
- :mod:`workbench.data.fingerprint` - a fingerprint of the data a run read.

Submodules are imported on use, so ``import workbench`` stays light.
"""
from __future__ import annotations
