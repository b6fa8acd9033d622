"""Measurement: attribution of exposures and their outcomes, and the KPI reports.

:mod:`segue.metrics.attribution` folds events into per-unit report rows (pure);
:mod:`segue.metrics.consumer` is the reports consumer that reads the event log with its own
checkpoint; :mod:`segue.metrics.kpis` turns stored rows into the report of
``GET /v1/reports/kpis`` — KPIs, lift against the holdout, the sample-ratio check and,
on request, a differentially private release.
"""
