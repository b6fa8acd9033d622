"""Proving value: experiments, the statistics of their reports, and differential privacy.

Pure and synchronous (numpy and the standard library only): :mod:`.assignment` picks a
unit's variant; :mod:`.stats` turns counts and sums per variant into lift with confidence
intervals, CUPED, always-valid sequential tests and the sample-ratio-mismatch check;
:mod:`.dp` adds calibrated noise to released numbers and accounts each report consumer's
privacy budget.
"""
