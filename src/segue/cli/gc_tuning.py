"""Garbage-collector settings for segue's long-running processes (``serve`` and ``worker``).

A processor keeps tens of thousands of profiles, links and model entries alive, and folds
thousands of new long-lived objects into them every second. CPython's default thresholds
then run a full collection each time the long-lived objects grew by a quarter, walking all
of them: in ``segue worker`` on the ingest benchmark's traffic that was ~160 pauses of up to
0.9 s in 40 s, and the worker drained 2,636 events/s. Cyclic garbage is young garbage here
(request and batch temporaries), which the young generations still collect as often as
before; only the full walk of the old objects is made rarer. Measured (the same log, one
core): 2,636 events/s with the defaults, 4,024 with these settings.

The settings are process-wide, so they are applied by the command that owns the process,
never by the library (tests and embedding applications keep theirs).
"""

from __future__ import annotations

import gc

from segue.processor.collector import pause_during_batches

__all__ = ["freeze_startup_heap", "tune_gc"]

#: allocations (net) between two young collections: the default (700) makes a batch of
#: a thousand events run hundreds of them, each walking what the batch still holds
YOUNG = 10_000
#: young collections between two middle-generation ones (CPython's default is 10). A
#: middle collection walks what the young ones kept since the one before: in a worker, the
#: profiles its batches created. Every third young one keeps each walk short for the same
#: total (a worker at 5,000 events/s: the longest 52 against 113 ms, ~505 ms in 20 s
#: either way; event → visible p99 276–354 against 361–450 ms, four pairs; BENCHMARKS.md)
MIDDLE = 3
#: middle collections before a full one is even considered (default 10)
FULL = 1_000


def tune_gc() -> None:
    """Make full collections rare and pause collection while the processor folds a batch
    (:mod:`segue.processor.collector`); call once, at the start of a long-running process."""
    gc.set_threshold(YOUNG, MIDDLE, FULL)
    pause_during_batches()


def freeze_startup_heap() -> None:
    """Move everything alive now (modules, configuration, the catalog and models loaded at
    start) out of the collector's reach: no collection walks it again. Call once, when the
    process has started; objects frozen are still freed when nothing refers to them."""
    gc.collect()
    gc.freeze()
