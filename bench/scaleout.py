"""Scale-out: ingestion and decide throughput with 1, 2 and 4 API processes, and the CPU
each costs per event and per decision, so a deployment can be sized by extrapolation.

Two backends:

- ``embedded``: ``segue serve`` (1) or ``segue serve --workers N`` (N API processes and
  one worker), SQLite files in one data folder.
- ``cluster``: ``segue serve --workers N --no-worker`` plus one ``segue worker``, on the
  local PostgreSQL, NATS JetStream and Redis (fresh schema, stream and key prefix).

The machine has 2 cores, so nothing is pinned: the API processes, the worker, the database
servers and the load generator (``wrk``, 2 threads) share them, as they would on a small
production host. Throughput beyond 2 processes therefore shows contention, not scaling;
the per-event CPU figures are what extrapolates to bigger machines.

Usage: python bench/scaleout.py [--duration 10] [--processes 1 2 4] [--backends embedded
cluster] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ADMIN_KEY, BASIC, CpuWatch, Server, machine, median, save
from decide_http import load
from ingest_http import wrk

HERE = Path(__file__).resolve().parent
BATCH = 100
PG = os.environ.get("SEGUE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
NATS = os.environ.get("SEGUE_TEST_NATS", "nats://127.0.0.1:4222")
REDIS = os.environ.get("SEGUE_TEST_REDIS", "redis://127.0.0.1:6379/0")


class Cluster(Server):
    """The cluster shape: API processes on the local servers, plus one ``segue worker``."""

    def __init__(self, processes: int) -> None:
        name = uuid.uuid4().hex[:10]
        self.schema, self.stream, self.prefix = f"b_{name}", f"B{name.upper()}", f"b{name}:"
        import psycopg

        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.schema}"')
        env = {
            "SEGUE_STORE": f"{PG}?options=-csearch_path%3D{self.schema}",
            "SEGUE_LOG": f"{NATS}?stream={self.stream}",
            "SEGUE_REDIS_URL": f"{REDIS}?prefix={self.prefix}",
        }
        super().__init__(core=None, args=["--workers", str(processes), "--no-worker"], env=env)
        self.worker: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Server:
        super().start(timeout)
        env = dict(os.environ, SEGUE_ADMIN_KEY=ADMIN_KEY, **self.env)
        segue = Path(sys.executable).with_name("segue")
        log = (self.tmp / "worker.log").open("ab")
        self.worker = subprocess.Popen(
            [str(segue), "worker", "--data", str(self.data)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def pids(self) -> list[int]:
        return super().pids() + ([self.worker.pid] if self.worker else [])

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            self.worker.wait(30)
        super().stop()
        import psycopg

        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

        async def drop() -> None:
            import nats

            nc = await nats.connect(NATS)
            try:
                await nc.jetstream().delete_stream(self.stream)
            finally:
                await nc.close()

        asyncio.run(drop())


def measure(server: Server, seconds: float, users: int, items: int) -> dict[str, Any]:
    """Ingestion, then decide, on one running server; CPU per event and per decision."""
    server.wait_caught_up()
    before = server.stats()["events_received"]
    with CpuWatch(*server.pids()) as watch:
        report = wrk(
            server,
            "/v1/batch",
            "wrk_batch.lua",
            seconds,
            32,
            [uuid.uuid4().hex[:8], str(users), str(BATCH)],
            [f"Authorization: {BASIC}"],
            threads=2,
            pin=False,
        )
    # a 503 (load shedding: overload or the log's backlog bound) is a refusal, not a loss
    shed = report["errors"]["status"]
    acked = (report["requests"] - shed) * BATCH
    stored = server.stats()["events_received"] - before
    errors = sum(report["errors"].values()) - shed
    if errors or stored < acked:
        raise RuntimeError(f"run not clean: errors={report['errors']} acked={acked} {stored=}")
    lag_at_end = server.stats()["lag_events"]
    started = time.monotonic()
    server.wait_caught_up(600)
    drain = time.monotonic() - started
    ingest = {
        "events_per_s": round(acked / (report["duration_us"] / 1e6)),
        "shed_requests": shed,
        "p50_ms": report["latency_us"]["p50"] / 1000,
        "p99_ms": report["latency_us"]["p99"] / 1000,
        "server_cpu_us_per_event": round(watch.result["server_cpu_s"] / acked * 1e6, 1),
        "lag_at_end_events": lag_at_end,
        "drain_s": round(drain, 1),
        "cpu": watch.result,
    }
    with CpuWatch(*server.pids()) as watch:
        report = wrk(
            server,
            "/v1/decide",
            "wrk_decide.lua",
            seconds,
            32,
            [str(items), "2000", ADMIN_KEY],
            [f"Authorization: Bearer {ADMIN_KEY}"],
            threads=2,
            pin=False,
        )
    errors = sum(report["errors"].values())
    decide = {
        "decisions_per_s": round(report["rps"]),
        "p50_ms": report["latency_us"]["p50"] / 1000,
        "p99_ms": report["latency_us"]["p99"] / 1000,
        "errors": errors,
        "server_cpu_us_per_decision": round(
            watch.result["server_cpu_s"] / max(1, report["requests"]) * 1e6, 1
        ),
        "cpu": watch.result,
    }
    return {"ingest": ingest, "decide": decide}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--backends", nargs="+", default=["embedded", "cluster"])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.runs, args.processes, args.items = 2.0, 1, [1, 2], 2000
    results: dict[str, Any] = {"machine": machine(), "duration_s": args.duration, "rows": []}
    for backend in args.backends:
        for n in args.processes:
            server: Server
            if backend == "cluster":
                server = Cluster(n)
            else:
                server = Server(core=None, args=["--workers", str(n)] if n > 1 else [])
            with server:
                load(server, args.items, 2000)
                runs = [
                    measure(server, args.duration, args.users, args.items) for _ in range(args.runs)
                ]
            row = {
                "backend": backend,
                "api_processes": n,
                "events_per_s": median([r["ingest"]["events_per_s"] for r in runs]),
                "ingest_p99_ms": median([r["ingest"]["p99_ms"] for r in runs]),
                "cpu_us_per_event": median([r["ingest"]["server_cpu_us_per_event"] for r in runs]),
                "drain_s": median([r["ingest"]["drain_s"] for r in runs]),
                "decisions_per_s": median([r["decide"]["decisions_per_s"] for r in runs]),
                "decide_p99_ms": median([r["decide"]["p99_ms"] for r in runs]),
                "cpu_us_per_decision": median(
                    [r["decide"]["server_cpu_us_per_decision"] for r in runs]
                ),
                "runs": runs,
            }
            results["rows"].append(row)
            print(
                f"{backend:9} {n} API: {row['events_per_s']:>7,.0f} events/s "
                f"(p99 {row['ingest_p99_ms']:.1f} ms, {row['cpu_us_per_event']:.0f} µs CPU/event, "
                f"drain {row['drain_s']:.1f} s) | {row['decisions_per_s']:>6,.0f} decisions/s "
                f"(p99 {row['decide_p99_ms']:.1f} ms, {row['cpu_us_per_decision']:.0f} µs "
                "CPU/decision)",
                flush=True,
            )
    print(f"saved {save('scaleout', results)}")


if __name__ == "__main__":
    main()
