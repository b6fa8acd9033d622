"""The cost of each remote hop a request can make, through segue's own adapters.

Decide reads a person's state only on a cache miss; that miss costs these round trips to
PostgreSQL (identity lookup, profile document, features, consent ledger), while a change
note costs a Redis publish, and a collection request's durable append costs a NATS
JetStream publish with its ack. Each hop is timed alone, sequentially, from one asyncio
client (what one API process sees when it is not saturated), with the SQLite equivalent
for comparison.

Usage: python bench/hops.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, percentile, save

from segue.core.changes import Change, encode_change
from segue.core.model import Changeset, Identifier, NewRecord, Profile

PG = os.environ.get("SEGUE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
NATS = os.environ.get("SEGUE_TEST_NATS", "nats://127.0.0.1:4222")
REDIS = os.environ.get("SEGUE_TEST_REDIS", "redis://127.0.0.1:6379/0")


async def timed(call: Callable[[int], Awaitable[Any]], n: int) -> dict[str, float]:
    for i in range(min(200, n)):  # warm up connections and plans
        await call(i)
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - started) * 1000)
    return {
        "p50_ms": round(percentile(samples, 50), 3),
        "p99_ms": round(percentile(samples, 99), 3),
        "per_s": round(n / (sum(samples) / 1000)),
    }


def _people(n: int) -> Changeset:
    profiles, links = {}, {}
    for i in range(n):
        pid, ident = f"p{i}", Identifier("user_id", str(i))
        profiles[pid] = Profile(
            profile_id=pid,
            created_at=1.0,
            updated_at=1.0,
            first_seen=1.0,
            last_seen=1.0,
            event_count=1,
            identities=[ident],
        )
        links[ident] = pid
    return Changeset(
        profiles=profiles,
        links=links,
        features={f"p{i}": b"x" * 300 for i in range(n)},
        new_profiles=n,
        new_identities=n,
    )


async def stores(calls: int) -> dict[str, Any]:
    import psycopg

    from segue.storage.postgres import PostgresProfileStore
    from segue.storage.sqlite import SqliteProfileStore

    schema = f"h_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    out: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp())
    try:
        for name, store in (
            ("postgresql", PostgresProfileStore(f"{PG}?options=-csearch_path%3D{schema}")),
            ("sqlite", SqliteProfileStore(tmp)),
        ):
            await store.open()
            await store.commit(_people(5000), "profiles", 1)
            out[f"{name}: identity lookup"] = await timed(
                lambda i, s=store: s.lookup([Identifier("user_id", str(i % 5000))]), calls
            )
            out[f"{name}: profile document"] = await timed(
                lambda i, s=store: s.profiles([f"p{i % 5000}"]), calls
            )
            out[f"{name}: features"] = await timed(
                lambda i, s=store: s.features([f"p{i % 5000}"]), calls
            )
            await store.aclose()
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return out


async def feeds(calls: int) -> dict[str, Any]:
    from segue.storage.redis_changes import RedisChangeFeed
    from segue.storage.sqlite_changes import SqliteChangeFeed

    note = encode_change(Change(origin="bench", identifiers=["user_id:1"], profiles=["p1"]))
    out: dict[str, Any] = {}
    prefix = f"h{uuid.uuid4().hex[:8]}:"
    for name, feed in (
        ("redis", RedisChangeFeed(f"{REDIS}?prefix={prefix}")),
        ("sqlite", SqliteChangeFeed(Path(tempfile.mkdtemp()))),
    ):
        await feed.open("bench")
        out[f"{name}: change note publish"] = await timed(lambda i, f=feed: f.publish(note), calls)
        await feed.aclose()
    return out


async def logs(calls: int) -> dict[str, Any]:
    from segue.storage.nats_log import NatsEventLog
    from segue.storage.sqlite import SqliteEventLog

    stream = f"H{uuid.uuid4().hex[:10].upper()}"
    out: dict[str, Any] = {}
    for name, log in (
        ("nats", NatsEventLog(f"{NATS}?stream={stream}")),
        ("sqlite", SqliteEventLog(Path(tempfile.mkdtemp()))),
    ):
        await log.open()
        body = b'{"type":"track","event":"Product Viewed","userId":"u1"}'
        out[f"{name}: durable append of 1 event"] = await timed(
            lambda i, lg=log, tag=name, b=body: lg.append(
                [NewRecord("web", f"m{tag}{i}", time.time(), f"u{i % 100}", b)]
            ),
            calls,
        )
        await log.aclose()
    import nats

    nc = await nats.connect(NATS)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()
    return out


async def run(calls: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out.update(await stores(calls))
    out.update(await feeds(calls))
    out.update(await logs(calls))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    calls = 300 if args.quick else args.calls
    hops = asyncio.run(run(calls))
    for name, figures in hops.items():
        print(
            f"{name:42} p50 {figures['p50_ms']:7.3f} ms  p99 {figures['p99_ms']:7.3f} ms  "
            f"{figures['per_s']:>7,}/s one caller"
        )
    print(f"saved {save('hops', {'machine': machine(), 'calls': calls, 'hops': hops})}")


if __name__ == "__main__":
    main()
