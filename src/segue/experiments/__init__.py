"""Proving value: the statistics and differential privacy behind experiment reports.

Pure and synchronous (numpy and the standard library only): :mod:`segue.experiments.stats`
turns counts and sums per variant into lift with confidence intervals, CUPED, always-valid
sequential tests and the sample-ratio-mismatch check; :mod:`segue.experiments.dp` adds
calibrated noise to released numbers and accounts each report consumer's privacy budget.
"""
