"""Spike: steady load, then ten times as much for a while, then steady again.

segue runs pinned to core 0 (or at ``--url``, e.g. a cluster), with a catalog of 5,000
items. From core 1, one asyncio process sends an open-loop mix, each request at its
scheduled time whatever the answers (so queueing is never hidden): ``POST /v1/decide`` for
known people and ``POST /v1/batch`` of realistic Segment messages with unique messageIds.

Phases: ``--steady`` seconds at the base rates, ``--spike`` seconds at ``--factor`` times
them, ``--after`` seconds at the base rates again. A batch refused with 503 is sent again
after its ``Retry-After``, as the Segment SDK does, until it is acknowledged. Every 0.5 s
``GET /v1/stats`` samples the ingestion lag (``lag_events``, ``lag_ms``).

Reported:

- decide p50/p99 (from the scheduled send time, answered 200) and the share shed, per phase;
- the ingestion lag at its peak;
- time to drain: from the end of the spike until the lag is back to its level before the
  spike (the highest ``lag_events`` seen in the steady phase, at least 1,000) and every
  refused batch has been acknowledged;
- events lost: acknowledged messageIds missing from the event log (read back through
  ``GET /v1/admin/log``), and messageIds stored twice. Both must be 0.

Usage: python bench/spike.py [--steady 30] [--spike 60] [--after 60] [--factor 10]
[--decide-rate 40] [--batch-rate 10] [--batch-size 50] [--url URL --admin-key K --write-key K]
[--config segue.yaml] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_KEY,
    CLIENT_CORE,
    WRITE_KEY,
    Connection,
    CpuWatch,
    Server,
    Traffic,
    machine,
    percentile,
    pin_to,
    save,
)

ITEMS = 5000  # the Traffic generator's product ids are sku-0 … sku-4999
PHASES = ("steady", "spike", "after")
SAMPLE_S = 0.5
MAX_CONNECTIONS = 512


class Client(Connection):
    """A keep-alive connection that also returns the response headers (``Retry-After``)."""

    async def call(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        assert self.reader is not None
        assert self.writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        got: dict[str, str] = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            got[name.strip().lower().decode()] = value.strip().decode()
        length = int(got.get("content-length", "0"))
        payload = await self.reader.readexactly(length) if length else b""
        return status, got, payload


class Pool:
    """Up to ``MAX_CONNECTIONS`` keep-alive connections, opened as the load needs them."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[Client] = []
        self.opened = 0
        self.freed = asyncio.Condition()

    async def call(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        async with self.freed:
            while not self.idle and self.opened >= MAX_CONNECTIONS:
                await self.freed.wait()
            conn = self.idle.pop() if self.idle else None
            if conn is None:
                self.opened += 1
        reused = conn is not None
        if conn is None:
            conn = Client(self.port)
            await conn.connect()
        try:
            try:
                answer = await conn.call(method, path, body, headers)
            except (OSError, asyncio.IncompleteReadError):
                if not reused:
                    raise
                # the server closed this idle keep-alive connection (its timeout) before
                # reading the request: send it again on a new one, as HTTP clients do
                await conn.close()
                conn = Client(self.port)
                await conn.connect()
                answer = await conn.call(method, path, body, headers)
        except (OSError, asyncio.IncompleteReadError):
            await conn.close()
            async with self.freed:
                self.opened -= 1
                self.freed.notify()
            raise
        async with self.freed:
            self.idle.append(conn)
            self.freed.notify()
        return answer

    async def close(self) -> None:
        for conn in self.idle:
            await conn.close()


@dataclass
class Tally:
    """What one kind of request got in one phase."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        sent = sum(self.statuses.values())
        return {
            "sent": sent,
            "ok": self.statuses[200],
            "shed": self.statuses[503],
            "shed_share": round(self.statuses[503] / sent, 4) if sent else 0.0,
            "other": {str(k): v for k, v in self.statuses.items() if k not in (200, 503)},
            "p50_ms": round(percentile(self.latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(self.latencies, 99) * 1000, 2),
        }


@dataclass
class Run:
    port: int
    admin: str
    write: str
    decide_rate: float
    batch_rate: float
    batch_size: int
    durations: dict[str, float]
    factor: float
    decide: dict[str, Tally] = field(default_factory=lambda: {p: Tally() for p in PHASES})
    collect: dict[str, Tally] = field(default_factory=lambda: {p: Tally() for p in PHASES})
    acked: set[str] = field(default_factory=set)
    retries: int = 0
    pending_retries: int = 0
    errors: int = 0
    samples: list[dict[str, float]] = field(default_factory=list)

    @property
    def write_headers(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.write}:".encode()).decode()
        return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin}", "Content-Type": "application/json"}


async def send_decide(run: Run, pool: Pool, phase: str, scheduled: float, user: str) -> None:
    body = orjson.dumps({"placement": "home_hero", "user": {"user_id": user}, "k": 10})
    try:
        status, _, _ = await pool.call("POST", "/v1/decide", body, run.admin_headers)
    except (OSError, asyncio.IncompleteReadError):
        run.errors += 1
        return
    tally = run.decide[phase]
    tally.statuses[status] += 1
    if status == 200:
        tally.latencies.append(time.perf_counter() - scheduled)


async def send_batch(
    run: Run, pool: Pool, phase: str, scheduled: float, ids: list[str], body: bytes
) -> None:
    """Send one batch; on 503 send it again after ``Retry-After`` until it is acknowledged."""
    retried = False
    while True:
        try:
            status, headers, _ = await pool.call("POST", "/v1/batch", body, run.write_headers)
        except (OSError, asyncio.IncompleteReadError):
            run.errors += 1
            status, headers = 0, {}
        if not retried:
            tally = run.collect[phase]
            tally.statuses[status] += 1
            if status == 200:
                tally.latencies.append(time.perf_counter() - scheduled)
        if status == 200:
            run.acked.update(ids)
            if retried:
                run.pending_retries -= 1
            return
        if status not in (0, 503):
            raise RuntimeError(f"/v1/batch answered {status}")
        if not retried:
            retried = True
            run.pending_retries += 1
        run.retries += 1
        await asyncio.sleep(float(headers.get("retry-after", "1")))


async def sample(run: Run, pool: Pool, started: float, stop: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {run.admin}"}
    while not stop.is_set():
        at = time.perf_counter()
        try:
            status, _, payload = await pool.call("GET", "/v1/stats", b"", headers)
        except (OSError, asyncio.IncompleteReadError):
            status, payload = 0, b""  # a sample missed, not the end of sampling
        if status == 200:
            stats = orjson.loads(payload)
            run.samples.append(
                {
                    "t": round(at - started, 3),
                    "lag_events": stats["lag_events"],
                    "lag_ms": stats["lag_ms"],
                    "received": stats["events_received"],
                    "pending_retries": run.pending_retries,
                }
            )
        await asyncio.sleep(max(0.0, SAMPLE_S - (time.perf_counter() - at)))


async def load_catalog(run: Run, pool: Pool) -> None:
    rng = random.Random(3)
    for start in range(0, ITEMS, 1000):
        items = [
            {
                "item_id": f"sku-{j}",
                "title": f"Item {j}",
                "category": rng.choice(["shoes", "shirts", "bags", "hats"]),
                "brand": f"brand{j % 50}",
                "price": round(rng.uniform(5, 300), 2),
                "content": {"web": {"title": f"Item {j}", "url": f"/p/{j}"}},
            }
            for j in range(start, min(start + 1000, ITEMS))
        ]
        body = orjson.dumps({"items": items})
        status, _, payload = await pool.call("POST", "/v1/catalog/items", body, run.admin_headers)
        if status != 200:
            raise RuntimeError(f"catalog load answered {status}: {payload[:200]!r}")


async def stored_ids(run: Run, pool: Pool) -> Counter[str]:
    """How often each messageId of the source ``default`` is in the event log."""
    counts: Counter[str] = Counter()
    after = 0
    headers = {"Authorization": f"Bearer {run.admin}"}
    while True:
        path = f"/v1/admin/log?after={after}&limit=5000"
        status, _, payload = await pool.call("GET", path, b"", headers)
        if status != 200:
            raise RuntimeError(f"/v1/admin/log answered {status}: {payload[:200]!r}")
        page = orjson.loads(payload)
        counts.update(r["message_id"] for r in page["records"] if r["source"] == "default")
        if page["next"] is None or not page["records"]:
            return counts
        after = page["next"]


def phase_at(run: Run, started: float, at: float) -> str:
    elapsed = at - started
    if elapsed < run.durations["steady"]:
        return "steady"
    if elapsed < run.durations["steady"] + run.durations["spike"]:
        return "spike"
    return "after"


async def drive(run: Run, drain_timeout: float) -> dict[str, Any]:
    pool = Pool(run.port)
    await load_catalog(run, pool)
    traffic = Traffic(users=20_000, seed=17, prefix=f"spike-{uuid.uuid4().hex[:8]}")
    rng = random.Random(23)
    inflight: set[asyncio.Task[None]] = set()
    started = time.perf_counter() + 0.1
    end = started + sum(run.durations.values())
    spike_end = started + run.durations["steady"] + run.durations["spike"]
    stop_sampling = asyncio.Event()
    sampler = asyncio.create_task(sample(run, pool, started, stop_sampling))

    def spawn(coro: Any) -> None:
        task = asyncio.create_task(coro)
        inflight.add(task)
        task.add_done_callback(inflight.discard)

    async def schedule(kind: str, base_rate: float) -> None:
        at = started
        while at < end:
            phase = phase_at(run, started, at)
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if kind == "decide":
                user = f"user-{rng.randrange(traffic.users)}"
                spawn(send_decide(run, pool, phase, at, user))
            else:
                messages = [traffic.message() for _ in range(run.batch_size)]
                ids = [str(m["messageId"]) for m in messages]
                body = orjson.dumps({"batch": messages})
                spawn(send_batch(run, pool, phase, at, ids, body))
            at += 1.0 / (base_rate * (run.factor if phase == "spike" else 1.0))

    await asyncio.gather(schedule("decide", run.decide_rate), schedule("batch", run.batch_rate))
    steady = [s["lag_events"] for s in run.samples if s["t"] < run.durations["steady"]]
    threshold = max(1000, max(steady, default=0))
    deadline = time.perf_counter() + drain_timeout
    while time.perf_counter() < deadline:
        last = run.samples[-1] if run.samples else None
        done = not inflight and last is not None and last["t"] > spike_end - started
        if done and last is not None and last["lag_events"] <= threshold:
            break
        await asyncio.sleep(SAMPLE_S)
    stop_sampling.set()
    await sampler
    for task in list(inflight):
        task.cancel()
    drained = next(
        (
            s["t"] - (spike_end - started)
            for s in run.samples
            if s["t"] > spike_end - started
            and s["lag_events"] <= threshold
            and s["pending_retries"] == 0
        ),
        None,
    )
    counts = await stored_ids(run, pool)
    await pool.close()
    lost = len(run.acked - counts.keys())
    duplicates = sum(1 for n in counts.values() if n > 1)
    peak = max(run.samples, key=lambda s: s["lag_events"], default={"lag_events": 0})
    return {
        "decide": {p: run.decide[p].summary() for p in PHASES},
        "collect": {p: run.collect[p].summary() for p in PHASES},
        "peak_lag_events": peak["lag_events"],
        "peak_lag_ms": max((s["lag_ms"] for s in run.samples), default=0.0),
        "drain_threshold_lag_events": threshold,
        "time_to_drain_s": None if drained is None else round(drained, 1),
        "batches_retried": run.retries,
        "connection_errors": run.errors,
        "acknowledged_events": len(run.acked),
        "stored_events": sum(counts.values()),
        "events_lost": lost,
        "events_stored_twice": duplicates,
        "samples": run.samples,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steady", type=float, default=30.0, help="seconds before the spike")
    parser.add_argument("--spike", type=float, default=60.0, help="seconds of the spike")
    parser.add_argument("--after", type=float, default=60.0, help="seconds after the spike")
    parser.add_argument("--factor", type=float, default=10.0, help="the spike's multiple")
    parser.add_argument("--decide-rate", type=float, default=40.0, help="decisions/s (base)")
    parser.add_argument("--batch-rate", type=float, default=10.0, help="batches/s (base)")
    parser.add_argument("--batch-size", type=int, default=50, help="events per batch")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--url", help="drive a running segue on this loopback URL")
    parser.add_argument("--admin-key", default=ADMIN_KEY)
    parser.add_argument("--write-key", default=WRITE_KEY)
    parser.add_argument("--config", help="segue.yaml for the server this starts")
    parser.add_argument("--quick", action="store_true", help="3 s / 5 s / 5 s (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steady, args.spike, args.after, args.drain_timeout = 3.0, 5.0, 5.0, 120.0
    pin_to(CLIENT_CORE)
    durations = {"steady": args.steady, "spike": args.spike, "after": args.after}
    result: dict[str, Any] = {
        "machine": machine(),
        "durations_s": durations,
        "factor": args.factor,
        "base": {
            "decisions_per_s": args.decide_rate,
            "batches_per_s": args.batch_rate,
            "events_per_batch": args.batch_size,
        },
    }
    server: Server | None = None
    if args.url:
        port = int(args.url.rstrip("/").rsplit(":", 1)[1])
    else:
        server = Server(args=["--config", args.config] if args.config else [])
        server.start()
        port = server.port
    try:
        run = Run(
            port=port,
            admin=args.admin_key,
            write=args.write_key,
            decide_rate=args.decide_rate,
            batch_rate=args.batch_rate,
            batch_size=args.batch_size,
            durations=durations,
            factor=args.factor,
        )
        with CpuWatch(*([server.pid] if server else [])) as watch:
            result.update(asyncio.run(drive(run, args.drain_timeout)))
        result["cpu"] = watch.result
    finally:
        if server is not None:
            server.stop()
    d, c = result["decide"], result["collect"]
    events = args.batch_rate * args.batch_size
    print(
        f"spike x{args.factor:g} for {args.spike:g} s (base {args.decide_rate:g} decisions/s and "
        f"{events:,.0f} events/s; steady {args.steady:g} s before, {args.after:g} s after)"
    )
    for phase in PHASES:
        dp, cp = d[phase], c[phase]
        print(
            f"  {phase:6s}  decide p50 {dp['p50_ms']:.1f} ms, p99 {dp['p99_ms']:.1f} ms, "
            f"shed {dp['shed_share']:.1%} of {dp['sent']:,}; "
            f"batches shed {cp['shed_share']:.1%} of {cp['sent']:,}"
        )
    drain = result["time_to_drain_s"]
    print(
        f"  ingestion lag at its peak {result['peak_lag_events']:,} events / "
        f"{result['peak_lag_ms'] / 1000:.1f} s; drained "
        + (f"{drain:.1f} s after the spike" if drain is not None else "NOT within the timeout")
        + f"; {result['batches_retried']:,} batch retries after 503"
    )
    print(
        f"  events lost {result['events_lost']} of {result['acknowledged_events']:,} acknowledged"
        f" (stored twice: {result['events_stored_twice']})"
    )
    print(f"results in {save('spike', result)}")
    if result["events_lost"] or result["events_stored_twice"]:
        raise SystemExit("acknowledged events were lost or stored twice")
    return result


if __name__ == "__main__":
    main()
