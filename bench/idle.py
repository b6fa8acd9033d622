"""What segue costs while nothing happens: CPU of each process of an idle server.

Starts ``segue serve`` on a fresh data folder, once as one process (the API with the
processor inside) and once as ``serve --no-worker`` plus ``segue worker``, lets each settle
for a few seconds, then reads every process's CPU time from ``/proc`` over ``--seconds``.
An idle server still polls: the processor for records another process appended, and each
process for the change feed's notes; this shows what that polling costs.

Usage: python bench/idle.py [--seconds 20] [--settle 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Server, _ticks, machine, save


def _cpu_s(pid: int) -> float:
    return _ticks(pid) / os.sysconf("SC_CLK_TCK")


def _role(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        args = fh.read().split(b"\0")
    if b"worker" in args:
        return "worker"
    if b"--role" in args:
        return "api"
    return "serve"


def measure(split: bool, seconds: float, settle: float) -> dict[str, float]:
    with Server(core=None, worker_core=1 if split else None) as server:
        time.sleep(settle)
        pids = server.pids()
        before = {pid: _cpu_s(pid) for pid in pids}
        start = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - start
        used: dict[str, float] = {}
        for pid in pids:
            share = (_cpu_s(pid) - before[pid]) / elapsed * 100
            used[_role(pid)] = used.get(_role(pid), 0.0) + round(share, 2)
        return used


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=5.0)
    args = parser.parse_args(argv)
    one = measure(False, args.seconds, args.settle)
    two = measure(True, args.seconds, args.settle)
    print(
        f"idle: one process {one.get('serve', 0.0):.1f} % of a core; API and worker: "
        f"API {two.get('api', 0.0) + two.get('serve', 0.0):.1f} %, "
        f"worker {two.get('worker', 0.0):.1f} % (over {args.seconds:g} s)"
    )
    result = {"machine": machine(), "one_process": one, "api_and_worker": two}
    print(f"results in {save('idle', result)}")
    return result


if __name__ == "__main__":
    main()
