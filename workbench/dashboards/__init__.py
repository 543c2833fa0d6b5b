"""Voilà dashboards for stakeholders: they render what runs logged and never decide anything.

``catalogue`` finds and publishes runs (through :mod:`workbench.tracking`), ``text`` words and
formats what a readout record holds, ``widgets`` draws the dashboards, ``server`` runs Voilà
with secure defaults (``workbench serve``).
"""
