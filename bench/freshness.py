"""Freshness benchmark: time from sending an event to seeing it in the profile's timeline.

segue runs pinned to core 0 on a fresh data folder. From core 1, one asyncio process runs:

- a background generator: open loop, 50 batches/s of 100 realistic messages (5,000 events/s),
  precomputed bodies with unique messageIds;
- a probe: every 50 ms, a ``track`` for a brand-new userId on ``POST /v1/batch``;
- one poller: ``GET /v1/profiles/user_id:<id>/events`` for the oldest probe not seen yet,
  every 2 ms, and for the next ones at once when it shows (see ``watch``).

event→visible = from just before the probe's POST until the first GET that shows the event
(so it includes the ack, the processor's pickup and fold, and up to one poll interval).
Usage: python bench/freshness.py [--seconds 20] [--rate 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_KEY,
    BASIC,
    CLIENT_CORE,
    Connection,
    CpuWatch,
    Server,
    Traffic,
    cpu_busy,
    machine,
    percentile,
    pin_to,
    save,
)

BATCH = 100
POLL_S = 0.002
PROBE_EVERY_S = 0.05
PROBE_TIMEOUT_S = 10.0
WRITE = {"Authorization": BASIC, "Content-Type": "application/json"}
READ = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def generator(port: int, bodies: list[bytes], rate: float, stop: float) -> dict[str, Any]:
    """Open-loop background load; returns how much it sent and its ack latencies."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(16):
        pool.put_nowait(await Connection(port).connect())
    acks: list[float] = []
    failures = 0

    async def one(body: bytes) -> None:
        nonlocal failures
        conn = await pool.get()
        t0 = time.perf_counter()
        status, _ = await conn.request("POST", "/v1/batch", body, WRITE)
        acks.append(time.perf_counter() - t0)
        pool.put_nowait(conn)
        failures += status != 200

    tasks = []
    start = time.perf_counter()
    for i, body in enumerate(bodies):
        scheduled = start + i / rate
        if scheduled >= stop:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(body)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not pool.empty():
        await pool.get_nowait().close()
    return {
        "batches": len(tasks),
        "events_per_s": len(tasks) * BATCH / elapsed,
        "failures": failures,
        "ack_p50_ms": percentile(acks, 50) * 1000,
        "ack_p99_ms": percentile(acks, 99) * 1000,
    }


async def send_probe(port: int, user: str, i: int) -> tuple[float, float]:
    """Send one probe event; return (its send time, ack seconds)."""
    body = orjson.dumps(
        {
            "batch": [
                {
                    "type": "track",
                    "userId": user,
                    "event": "Probe Sent",
                    "messageId": f"{user}-m",
                    "properties": {"probe": i},
                    "context": {"library": {"name": "bench", "version": "1"}},
                }
            ]
        }
    )
    writer = await Connection(port).connect()
    try:
        t0 = time.perf_counter()
        status, _ = await writer.request("POST", "/v1/batch", body, WRITE)
        if status != 200:
            raise RuntimeError(f"probe POST answered {status}")
        return t0, time.perf_counter() - t0
    finally:
        await writer.close()


async def watch(
    port: int, pending: deque[tuple[str, float]], seen: dict[str, float | None], done: asyncio.Event
) -> None:
    """One poller for every probe, oldest first.

    The processor folds the log in order, so a probe becomes visible no earlier than those
    sent before it: asking for the oldest one not seen yet is enough, and once it shows the
    next ones are asked for at once. (A probe that showed earlier than an older one would
    only be found later: measured long, never short.) The load this puts on the server
    stays one request at a time, however far behind the processor is; a poller per probe
    sent thousands of GETs per second once visibility lagged, on the cores under test.
    """
    reader = await Connection(port).connect()
    try:
        while pending or not done.is_set():
            if not pending:
                await asyncio.sleep(POLL_S)
                continue
            user, t0 = pending[0]
            path = f"/v1/profiles/user_id:{user}/events"
            status, payload = await reader.request("GET", path, headers=READ)
            now = time.perf_counter()
            if status == 200 and orjson.loads(payload)["events"]:
                seen[user] = now - t0
                pending.popleft()
                continue
            if now - t0 > PROBE_TIMEOUT_S:
                seen[user] = None
                pending.popleft()
                continue
            await asyncio.sleep(POLL_S)
    finally:
        await reader.close()


async def measure(port: int, rate: float, seconds: float) -> dict[str, Any]:
    traffic = Traffic(users=50_000, seed=11, prefix=f"fg-{uuid.uuid4().hex[:6]}")
    bodies = [traffic.batch(BATCH) for _ in range(round(rate / BATCH * (seconds + 2)))]
    nonce = uuid.uuid4().hex[:8]
    stop = time.perf_counter() + seconds + 2
    background = asyncio.create_task(generator(port, bodies, rate / BATCH, stop))
    await asyncio.sleep(2.0)  # let the processor reach its steady state first
    pending: deque[tuple[str, float]] = deque()
    seen: dict[str, float | None] = {}
    acks: list[float] = []
    sending_done = asyncio.Event()
    poller = asyncio.create_task(watch(port, pending, seen, sending_done))

    async def one(i: int) -> None:
        user = f"fresh-{nonce}-{i}"
        t0, ack = await send_probe(port, user, i)
        acks.append(ack)
        pending.append((user, t0))

    sends: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    i = 0
    while time.perf_counter() < stop:
        sends.append(asyncio.create_task(one(i)))
        i += 1
        next_at = start + i * PROBE_EVERY_S
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    await asyncio.gather(*sends)
    sending_done.set()
    await poller
    load = await background
    # a probe not visible within the timeout counts as the timeout: a lower bound
    timeouts = sum(1 for v in seen.values() if v is None)
    visible = [PROBE_TIMEOUT_S if v is None else v for v in seen.values()]
    ms = 1000.0
    return {
        "probes": len(seen),
        "probes_timed_out": timeouts,
        "visible_p50_ms": percentile(visible, 50) * ms,
        "visible_p90_ms": percentile(visible, 90) * ms,
        "visible_p99_ms": percentile(visible, 99) * ms,
        "visible_max_ms": max(visible) * ms,
        "probe_ack_p50_ms": percentile(acks, 50) * ms,
        "probe_ack_p99_ms": percentile(acks, 99) * ms,
        "background": load,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=5000.0, help="background events/s")
    parser.add_argument(
        "--worker",
        action="store_true",
        help="the processor as its own `segue worker` on core 1 (the API alone on core 0)",
    )
    args = parser.parse_args(argv)
    pin_to(CLIENT_CORE)
    result: dict[str, Any] = {
        "machine": machine(),
        "rate": args.rate,
        "seconds": args.seconds,
        "topology": "serve --no-worker + segue worker" if args.worker else "serve",
        "poll_interval_ms": POLL_S * 1000,
        "other_cpu_busy_before": cpu_busy(),
    }
    server_at = Server(worker_core=CLIENT_CORE) if args.worker else Server()
    with server_at as server, CpuWatch(*server.pids()) as watch:
        result.update(asyncio.run(measure(server.port, args.rate, args.seconds)))
        result["final_stats"] = server.stats()
    result["cpu"] = watch.result
    bg = result["background"]
    if bg["failures"]:
        raise RuntimeError(f"{bg['failures']} background requests failed")
    print(
        f"freshness at {bg['events_per_s']:,.0f} events/s background: event→visible p50 "
        f"{result['visible_p50_ms']:.1f} ms, p99 {result['visible_p99_ms']:.1f} ms "
        f"(max {result['visible_max_ms']:.1f} ms, {result['probes']} probes, "
        f"{result['probes_timed_out']} not visible within {PROBE_TIMEOUT_S:.0f} s); background ack "
        f"p50 {bg['ack_p50_ms']:.1f} ms, p99 {bg['ack_p99_ms']:.1f} ms"
    )
    print(f"results in {save('freshness', result)}")
    return result


if __name__ == "__main__":
    main()
