"""Worker benchmark: how fast ``segue worker`` folds the ingest benchmark's traffic.

``bench/processor.py`` times the profile fold alone, in process, on traffic where most
people come back. This times everything the worker process does with the log the ingest
benchmark writes: opening sealed events (crypto-shredding), identity and probabilistic
linkage, the golden record, features and item models, and the reports consumer.

``segue serve --no-worker`` (core 0) first takes N events of that traffic over HTTP (50,000
people, most of them new: pages, tracks, identifies with traits, aliases) while no worker
runs. Then ``segue worker`` starts, pinned to core 1, and is timed until the processor has
folded everything (``lag_events`` 0: every event visible in its profile) and until the
reports consumer has caught up with the processor. Worker start-up is included. The
worker's CPU seconds come from /proc.

Usage: python bench/worker.py [--events 100000] [--users 50000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_KEY,
    CLIENT_CORE,
    WRITE_KEY,
    Server,
    Traffic,
    _ticks,
    cpu_busy,
    machine,
    median,
    save,
)
from ingest_http import BATCH, fixed_rate


def checkpoint(path: Path, table: str, name: str) -> int:
    """A consumer's position, read from the data folder's SQLite file (the worker writes
    it; WAL lets this reader in)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
        column = '"offset"' if table == "checkpoints" else "position"
        row = conn.execute(f"SELECT {column} FROM {table} WHERE consumer = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def one_run(events: int, users: int, seed: int) -> dict[str, Any]:
    traffic = Traffic(users=users, seed=seed, prefix=f"w{seed}-{uuid.uuid4().hex[:6]}")
    bodies = [traffic.batch(BATCH) for _ in range(events // BATCH)]
    with Server(args=["--no-worker"]) as server:
        sent = asyncio.run(fixed_rate(server.port, bodies, 1_000.0, 16))
        backlog = server.stats()["lag_events"]
        segue = Path(sys.executable).with_name("segue")
        cmd = [str(segue), "worker", "--data", str(server.data)]
        if (os.cpu_count() or 1) > CLIENT_CORE:
            cmd = ["taskset", "-c", str(CLIENT_CORE), *cmd]
        env = dict(os.environ, SEGUE_ADMIN_KEY=ADMIN_KEY, SEGUE_WRITE_KEY=WRITE_KEY)
        start = time.monotonic()
        worker = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while server.stats()["lag_events"] > 0:
                if worker.poll() is not None:
                    raise RuntimeError(f"segue worker exited: {worker.stderr.read()!r}")
                time.sleep(0.1)
            profiles_s = time.monotonic() - start
            target = checkpoint(server.data / "state.db", "checkpoints", "profiles")
            while checkpoint(server.data / "reports.db", "report_checkpoints", "reports") < target:
                time.sleep(0.1)
            reports_s = time.monotonic() - start
            cpu_s = _ticks(worker.pid) / os.sysconf("SC_CLK_TCK")  # user + system, all threads
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
    return {
        "events": backlog,
        "ingest_achieved_events_per_s": sent["achieved_rps"] * BATCH,
        "profiles_s": round(profiles_s, 2),
        "reports_s": round(reports_s, 2),
        "profiles_events_per_s": backlog / profiles_s,
        "all_events_per_s": backlog / reports_s,
        "cpu_s": round(cpu_s, 2),
        "cpu_us_per_event": cpu_s / backlog * 1e6,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    busy = cpu_busy()
    runs = []
    for i in range(args.runs):
        run = one_run(args.events, args.users, seed=i + 1)
        print(
            f"  run {i + 1}: {run['events']:,} events; profiles caught up at "
            f"{run['profiles_events_per_s']:,.0f} events/s, reports too at "
            f"{run['all_events_per_s']:,.0f} events/s; worker CPU "
            f"{run['cpu_us_per_event']:.0f} µs per event",
            flush=True,
        )
        runs.append(run)
    summary = {
        "events": args.events,
        "users": args.users,
        "profiles_events_per_s": median([r["profiles_events_per_s"] for r in runs]),
        "all_events_per_s": median([r["all_events_per_s"] for r in runs]),
        "cpu_us_per_event": median([r["cpu_us_per_event"] for r in runs]),
    }
    result = {"machine": machine(), "other_cpu_busy_before": busy, "runs": runs, "summary": summary}
    print(
        f"worker: {summary['profiles_events_per_s']:,.0f} events/s into profiles, "
        f"{summary['all_events_per_s']:,.0f} events/s with the reports caught up "
        f"(median of {args.runs}); {summary['cpu_us_per_event']:.0f} µs of worker CPU per event"
    )
    print(f"results in {save('worker', result)}")
    return result


if __name__ == "__main__":
    main()
