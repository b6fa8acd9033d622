"""Saving the item models: one encode against the stepped encode a process's loop runs.

A process that folds the log saves its item models every 30 s (every 2 s where a worker
shares them with API processes). The models here are those of ``bench/decide.py``: 100,000
catalog items, 20,000 sessions of views and 4,000 orders folded, which leaves ~55,000 items
with scores and co-visitation rows and ~9 MB encoded. Prints, per run, the time of one
``to_bytes`` (the stall every request in flight waited for before) and, for
``to_bytes_in_steps``, the number of steps, their total and their p50 / p99 / max (the
longest a request can wait for the saver now). The collector runs with ``segue serve``'s
settings, the models frozen with the startup heap as there.

Usage: python bench/model_save.py [--items 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, pin_to, save
from decide import build

from segue.cli.gc_tuning import freeze_startup_heap, tune_gc


def stepped(models: Any) -> tuple[bytes, list[float]]:
    """Drive the stepped encode; each step's duration."""
    steps = models.to_bytes_in_steps()
    durations = []
    while True:
        t0 = time.perf_counter()
        try:
            next(steps)
        except StopIteration as done:
            durations.append(time.perf_counter() - t0)
            return done.value, durations
        durations.append(time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    pin_to(0)
    tune_gc()
    _view, models = build(args.items, seed=3)
    freeze_startup_heap()
    runs = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        whole = models.to_bytes()
        one = time.perf_counter() - t0
        saved, durations = stepped(models)
        assert saved == whole, "the stepped encode must give the bytes of one encode"
        ordered = sorted(durations)
        runs.append(
            {
                "bytes": len(whole),
                "one_encode_ms": one * 1000,
                "steps": len(durations),
                "steps_total_ms": sum(durations) * 1000,
                "step_p50_ms": ordered[len(ordered) // 2] * 1000,
                "step_p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
                "step_max_ms": ordered[-1] * 1000,
            }
        )
        r = runs[-1]
        print(
            f"  {r['bytes'] / 1e6:.1f} MB: one encode {r['one_encode_ms']:.1f} ms; in steps: "
            f"{r['steps']} steps, {r['steps_total_ms']:.1f} ms in all, p50 "
            f"{r['step_p50_ms']:.2f} / p99 {r['step_p99_ms']:.2f} / max {r['step_max_ms']:.2f} ms"
        )
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"item models save ({med['bytes'] / 1e6:.1f} MB): "
        f"one encode {med['one_encode_ms']:.1f} ms; in {med['steps']:.0f} steps "
        f"{med['steps_total_ms']:.1f} ms in all, the longest "
        f"{med['step_max_ms']:.2f} ms (median of {args.runs})"
    )
    save("model_save", {"machine": machine(), "runs": runs, "median": med})


if __name__ == "__main__":
    main()
