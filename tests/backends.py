"""The real servers that adapter tests run against: PostgreSQL, Redis, NATS JetStream.

Each test gets its own namespace (a PostgreSQL schema, a Redis key prefix, a NATS stream
name) and leaves nothing behind. With ``CI=true`` a missing server fails the test — CI must
never pass by skipping — and elsewhere it skips with the command that starts the server.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator

import pytest

PG_DSN = os.environ.get("SEGUE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SEGUE_TEST_REDIS", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("SEGUE_TEST_NATS", "nats://127.0.0.1:4222")

_START = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "Redis": (
        "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"
    ),
    "NATS": "nats-server -a 127.0.0.1 -p 4222 -js &",
}


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def need(server: str, host: str, port: int) -> None:
    """Fail (CI) or skip (laptop) when ``server`` does not answer on ``host:port``."""
    if _reachable(host, port):
        return
    unavailable(f"{server} is not running on {host}:{port}; start it with: {_START[server]}")


def unavailable(message: str) -> None:
    """A test cannot run here: fail in CI (it must never pass by skipping), skip elsewhere."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A DSN whose search_path is a fresh schema, dropped afterwards."""
    need("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_DSN}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def redis_url() -> Iterator[tuple[str, str]]:
    """The Redis URL and a fresh key prefix; the prefix's keys are deleted afterwards."""
    need("Redis", "127.0.0.1", 6379)
    import redis

    prefix = f"t{uuid.uuid4().hex[:12]}:"
    try:
        yield REDIS_URL, prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def nats_stream() -> Iterator[tuple[str, str]]:
    """The NATS URL and a fresh stream name; the stream is deleted afterwards."""
    need("NATS", "127.0.0.1", 4222)
    name = f"T{uuid.uuid4().hex[:12].upper()}"
    try:
        yield NATS_URL, name
    finally:
        import asyncio

        async def drop() -> None:
            import nats

            nc = await nats.connect(NATS_URL)
            with contextlib.suppress(Exception):  # already gone, or never created
                await nc.jetstream().delete_stream(name)
            await nc.close()

        asyncio.run(drop())
