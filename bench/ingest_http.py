"""HTTP ingest benchmark: acknowledged events/s and ack latency of ``POST /v1/batch``.

segue runs pinned to core 0 (``taskset -c 0``) on a fresh data folder with its defaults:
durable acks (event log ``synchronous=FULL`` + group commit) and the processor running in the
same process. The load generator runs pinned to core 1:

1. max throughput: ``wrk`` with ``bench/wrk_batch.lua`` (a fresh 100-message body per request,
   unique messageIds: random UUIDs as the SDKs make them, or with ``--ids sequential`` the
   ordered ones every run before 2026-12-07 late evening used, which the log's dedupe index
   takes far more cheaply; the fixed-rate client below sends the same kind), several runs;
   acknowledged events/s = requests/s × 100.
2. ceiling: the same ``wrk`` against ``GET /healthz`` on the same server stack.
3. fixed rate: an open-loop Python generator at half the measured maximum, with precomputed
   unique bodies; latency is measured from the scheduled send time (no coordinated omission).

Before each run the processor is allowed to catch up so every run starts from the same state.

``--api-processes N``: ``segue serve --workers N --no-worker`` and no processor at all (as
when ``segue worker`` runs on other machines): nothing is pinned by the harness, the
supervisor gives each API process its own core, and ``wrk`` and the fixed-rate client share
the machine with them. This measures what the write side acknowledges durably; the folding
is measured by ``bench/processor.py`` and ``bench/worker.py``.
Usage: python bench/ingest_http.py [--runs 3] [--duration 10] [--connections 32]
       [--ids uuid|sequential] [--worker | --api-processes N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BASIC,
    CLIENT_CORE,
    Connection,
    CpuWatch,
    Server,
    Traffic,
    cpu_busy,
    machine,
    median,
    percentile,
    pin_to,
    save,
)

HERE = Path(__file__).resolve().parent
BATCH = 100


def wrk(
    server: Server,
    path: str,
    script: str,
    seconds: float,
    connections: int,
    args: list[str] | None = None,
    headers: list[str] | None = None,
    *,
    threads: int = 1,
    pin: bool = True,
) -> dict[str, Any]:
    """Run wrk (pinned to the client core unless ``pin`` is off) and return its WRKJSON
    report."""
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(HERE / script),
    ]
    for header in headers or []:
        cmd += ["-H", header]
    cmd.append(server.url + path)
    if args:
        cmd += ["--", *args]
    if pin and (os.cpu_count() or 1) > CLIENT_CORE:
        cmd = ["taskset", "-c", str(CLIENT_CORE), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            report: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
            report["rps"] = report["requests"] / (report["duration_us"] / 1e6)
            return report
    raise RuntimeError(f"no report from wrk:\n{out.stdout}\n{out.stderr}")


def _api_pids(server: Server) -> list[int]:
    """The processes that answer requests (not a ``segue worker`` beside them)."""
    return [p for p in server.pids() if server.worker is None or p != server.worker.pid]


def batch_run(
    server: Server,
    seconds: float,
    connections: int,
    users: int,
    *,
    folding: bool = True,
    ids: str = "uuid",
) -> dict[str, Any]:
    """``folding``: something folds the log, and each run starts once it has caught up."""
    caught_up = server.wait_caught_up() if folding else 0.0
    before = server.stats()["events_received"]
    with CpuWatch(*_api_pids(server)) as watch:
        report = wrk(
            server,
            "/v1/batch",
            "wrk_batch.lua",
            seconds,
            connections,
            args=[uuid.uuid4().hex[:8], str(users), str(BATCH), ids],
            headers=[f"Authorization: {BASIC}"],
            pin=server.core is not None,
        )
    report["cpu"] = watch.result
    stored = server.stats()["events_received"] - before
    errors = sum(report["errors"].values())
    acked = report["requests"] * BATCH
    if errors or stored < acked:
        raise RuntimeError(
            f"run not clean: errors={report['errors']} stored={stored} acked={acked}"
        )
    report["events_per_s"] = report["rps"] * BATCH
    # CPU the server spent per acknowledged event (ingest and the in-process processor): a
    # figure that other load on a shared machine does not distort much
    report["server_cpu_us_per_event"] = watch.result["server_cpu_s"] / max(1, acked) * 1e6
    report["stored"] = stored
    report["waited_for_processor_s"] = round(caught_up, 2)
    return report


# --- open-loop fixed-rate generator ---------------------------------------------------------
async def fixed_rate(
    port: int,
    bodies: list[bytes],
    rate: float,
    connections: int,
    *,
    path: str = "/v1/batch",
    auth: str = BASIC,
    answered: Callable[[bytes], bool] = lambda payload: payload == b'{"success":true}',
) -> dict[str, Any]:
    """Send ``bodies`` at ``rate`` requests/s, evenly spaced (open loop: a slow answer does
    not delay the next send); latency counts from each scheduled send time. A 200 must
    carry a body ``answered`` accepts."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await Connection(port).connect())
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    from_schedule: list[float] = []
    from_send: list[float] = []
    bad: list[int] = []
    shed = 0

    async def one(scheduled: float, body: bytes) -> None:
        conn = await pool.get()
        sent = time.perf_counter()
        status, payload = await conn.request("POST", path, body, headers)
        done = time.perf_counter()
        pool.put_nowait(conn)
        if status == 503:
            # admission control shedding load (SDKs retry a 503): counted, not acknowledged
            nonlocal shed
            shed += 1
            return
        if status != 200 or not answered(payload):
            bad.append(status)
        from_schedule.append(done - scheduled)
        from_send.append(done - sent)

    tasks = []
    start = time.perf_counter() + 0.05
    for i, body in enumerate(bodies):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled, body)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not pool.empty():
        await pool.get_nowait().close()
    if bad:
        raise RuntimeError(f"{len(bad)} requests failed, statuses {sorted(set(bad))}")
    if not from_schedule:
        raise RuntimeError(f"every one of {len(bodies)} requests was shed (503)")
    ms = 1000.0
    return {
        "target_rps": rate,
        "achieved_rps": len(from_schedule) / elapsed,
        "requests": len(bodies),
        "shed": shed,
        "p50_ms": percentile(from_schedule, 50) * ms,
        "p90_ms": percentile(from_schedule, 90) * ms,
        "p99_ms": percentile(from_schedule, 99) * ms,
        "max_ms": max(from_schedule) * ms,
        "service_p50_ms": percentile(from_send, 50) * ms,
        "service_p99_ms": percentile(from_send, 99) * ms,
    }


def run_fixed_rate(
    server: Server,
    events_per_s: float,
    seconds: float,
    connections: int,
    seed: int,
    *,
    folding: bool = True,
    ids: str = "uuid",
) -> dict[str, Any]:
    rate = events_per_s / BATCH
    traffic = Traffic(
        users=50_000, seed=seed, prefix=f"fr{seed}-{uuid.uuid4().hex[:6]}", uuid_ids=ids == "uuid"
    )
    bodies = [traffic.batch(BATCH) for _ in range(max(1, round(rate * seconds)))]
    if folding:
        server.wait_caught_up()
    with CpuWatch(*_api_pids(server)) as watch:
        result = asyncio.run(fixed_rate(server.port, bodies, rate, connections))
    result["cpu"] = watch.result
    result["target_events_per_s"] = events_per_s
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="events/s of the fixed-rate runs (default: half the measured maximum), to "
        "compare two versions at one load",
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument(
        "--ids",
        choices=("uuid", "sequential"),
        default="uuid",
        help="messageIds: random UUIDs as the SDKs send (default), or the sequential ones "
        "of every run before 2026-12-07 late evening",
    )
    parser.add_argument(
        "--worker",
        action="store_true",
        help="the processor as its own `segue worker` on core 1 (the API alone on core 0)",
    )
    parser.add_argument(
        "--api-processes",
        type=int,
        default=0,
        help="`serve --workers N --no-worker`, no processor, nothing pinned by the harness",
    )
    args = parser.parse_args(argv)
    folding = not args.api_processes  # no processor with --api-processes
    if args.api_processes:
        server_at = Server(core=None, args=["--workers", str(args.api_processes), "--no-worker"])
        topology = f"serve --workers {args.api_processes} --no-worker, no processor"
    else:
        server_at = Server(worker_core=CLIENT_CORE if args.worker else None)
        topology = "serve --no-worker + segue worker" if args.worker else "serve"
        pin_to(CLIENT_CORE)
    result: dict[str, Any] = {
        "machine": machine(),
        "batch_size": BATCH,
        "connections": args.connections,
        "duration_s": args.duration,
        "topology": topology,
        "message_ids": args.ids,
        "other_cpu_busy_before": cpu_busy(),
    }
    with server_at as server:
        result["server_pid"] = server.pid
        print(f"segue pid {server.pid} on core 0, data {server.data}", flush=True)
        ids = args.ids
        batch_run(server, 2.0, args.connections, args.users, folding=folding, ids=ids)  # warm-up
        runs = []
        for i in range(args.runs):
            report = batch_run(
                server, args.duration, args.connections, args.users, folding=folding, ids=ids
            )
            lat = report["latency_us"]
            print(
                f"  batch run {i + 1}: {report['events_per_s']:,.0f} events/s acked "
                f"({report['rps']:,.0f} req/s), p50 {lat['p50'] / 1000:.1f} ms, "
                f"p99 {lat['p99'] / 1000:.1f} ms",
                flush=True,
            )
            runs.append(report)
        ceiling = []
        if folding:
            server.wait_caught_up()
        for i in range(args.runs):
            with CpuWatch(*_api_pids(server)) as watch:
                report = wrk(
                    server,
                    "/healthz",
                    "wrk_get.lua",
                    args.duration,
                    args.connections,
                    pin=server.core is not None,
                )
            report["cpu"] = watch.result
            lat = report["latency_us"]
            print(
                f"  /healthz run {i + 1}: {report['rps']:,.0f} req/s, "
                f"p50 {lat['p50'] / 1000:.2f} ms, p99 {lat['p99'] / 1000:.2f} ms",
                flush=True,
            )
            ceiling.append(report)
        max_eps = median([r["events_per_s"] for r in runs])
        fixed = []
        for i in range(args.runs):
            report = run_fixed_rate(
                server,
                args.rate or max_eps / 2,
                args.duration,
                64,
                seed=100 + i,
                folding=folding,
                ids=ids,
            )
            print(
                f"  fixed rate {report['target_events_per_s']:,.0f} events/s run {i + 1}: "
                f"p50 {report['p50_ms']:.1f} ms, p99 {report['p99_ms']:.1f} ms "
                f"(acknowledged {report['achieved_rps'] * BATCH:,.0f} events/s; "
                f"{report['shed']} of {report['requests']} requests shed with 503)",
                flush=True,
            )
            fixed.append(report)
        result["final_stats"] = server.stats()
    healthz_rps = median([r["rps"] for r in ceiling])
    result.update(
        runs=runs,
        healthz_runs=ceiling,
        fixed_rate_runs=fixed,
        summary={
            "events_per_s": max_eps,
            "requests_per_s": max_eps / BATCH,
            "p50_ms": median([r["latency_us"]["p50"] for r in runs]) / 1000,
            "p99_ms": median([r["latency_us"]["p99"] for r in runs]) / 1000,
            "healthz_rps": healthz_rps,
            "healthz_p50_ms": median([r["latency_us"]["p50"] for r in ceiling]) / 1000,
            "healthz_p99_ms": median([r["latency_us"]["p99"] for r in ceiling]) / 1000,
            "batch_rps_over_healthz_rps": (max_eps / BATCH) / healthz_rps,
            "fixed_rate_events_per_s": args.rate or max_eps / 2,
            "fixed_rate_p50_ms": median([r["p50_ms"] for r in fixed]),
            "fixed_rate_p99_ms": median([r["p99_ms"] for r in fixed]),
            "server_cpu_us_per_event": median([r["server_cpu_us_per_event"] for r in runs]),
            "foreign_share": max(r["cpu"]["foreign_share"] for r in [*runs, *ceiling, *fixed]),
        },
    )
    s = result["summary"]
    print(
        f"ingest: {s['events_per_s']:,.0f} events/s acknowledged (median of {args.runs}), "
        f"p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms; /healthz "
        f"{s['healthz_rps']:,.0f} req/s (batch req/s = {s['batch_rps_over_healthz_rps']:.1%} "
        f"of it); at {s['fixed_rate_events_per_s']:,.0f} events/s: p50 "
        f"{s['fixed_rate_p50_ms']:.1f} ms, p99 {s['fixed_rate_p99_ms']:.1f} ms"
    )
    print(f"results in {save('ingest_http', result)}")
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
