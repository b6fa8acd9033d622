"""Start a real segue server process for end-to-end tests and talk HTTP to it."""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ADMIN_KEY = "test-admin-key-0123456789"
WRITE_KEY = "test-write-key-0123456789"
PUBLISHABLE_KEY = "test-publishable-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: ``SEGUE_TEST_CLUSTER=1`` (``make cluster``): every server of the end-to-end suite is a
#: cluster — 2 API processes and 2 workers on PostgreSQL, NATS JetStream and Redis
CLUSTER = os.environ.get("SEGUE_TEST_CLUSTER", "") not in ("", "0", "false")

if CLUSTER:  # imported now: the clean-up at exit can no longer import
    import asyncio

    import nats
    import psycopg
    import redis

    from tests.backends import NATS_URL, PG_DSN, REDIS_URL


class SegueServer:
    """One ``segue serve`` process on a free loopback port with its own data folder.

    In cluster mode (see ``CLUSTER``) the same server is ``segue serve --workers 2
    --no-worker`` and two ``segue worker`` on a fresh PostgreSQL schema, NATS stream and
    Redis key prefix of its own; a restart (``stop`` then ``start``) finds them again.
    """

    def __init__(
        self,
        data: Path,
        port: int | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.data = data
        self.port = port or free_port()
        self.extra_env = env or {}
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.log_path = data.parent / f"{data.name}-server.log"
        # a restart on the same data folder finds the same backends again
        if CLUSTER and data not in _BACKENDS:
            _BACKENDS[data] = cluster_backends()
        self.cluster_env = _BACKENDS.get(data, {})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> SegueServer:
        env = dict(os.environ)
        env.update(
            SEGUE_ADMIN_KEY=ADMIN_KEY,
            SEGUE_WRITE_KEY=WRITE_KEY,
            SEGUE_PUBLISHABLE_KEY=PUBLISHABLE_KEY,
        )
        env.update(self.cluster_env)
        env.update(self.extra_env)
        cmd = [
            sys.executable,
            "-m",
            "segue",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data",
            str(self.data),
            *self.args,
        ]
        if CLUSTER:
            cmd += ["--workers", "2", "--no-worker"]
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            if CLUSTER:
                worker = [sys.executable, "-m", "segue", "worker", "--data", str(self.data)]
                if "--config" in self.args:  # the same configuration as the API processes
                    worker += ["--config", self.args[self.args.index("--config") + 1]]
                self.workers = [
                    subprocess.Popen(worker, env=env, stdout=log, stderr=subprocess.STDOUT)
                    for _ in range(2)
                ]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()  # its workers too
                raise RuntimeError(f"segue exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"segue did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        for proc in [p for p in (self.proc, *self.workers) if p is not None]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [p for p in (self.proc, *self.workers) if p is not None]:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def kill9(self) -> None:
        """Every process of this server, at once (a power cut)."""
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # the API processes too
            self.proc.wait(10)
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGKILL)
                worker.wait(10)

    # --- HTTP helpers -------------------------------------------------------------------
    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30.0
        )

    def writer(self) -> httpx.Client:
        token = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Basic {token}"}, timeout=30.0
        )

    def stats(self) -> dict[str, Any]:
        with self.admin() as client:
            response = client.get("/v1/stats")
            response.raise_for_status()
            return dict(response.json())

    def wait_processed(self, at_least: int | None = None, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the processor caught up (and, if given, processed ``at_least`` events)."""
        deadline = time.monotonic() + timeout
        stats: dict[str, Any] = {}
        while time.monotonic() < deadline:
            stats = self.stats()
            caught_up = stats["lag_events"] == 0
            if caught_up and (at_least is None or stats["events_processed"] >= at_least):
                return stats
            time.sleep(0.05)
        raise TimeoutError(f"processor did not catch up: {stats}")

    def __enter__(self) -> SegueServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: data folder → its cluster backends (``cluster_backends``)
_BACKENDS: dict[Path, dict[str, str]] = {}


def cluster_backends() -> dict[str, str]:
    """Fresh backends for one cluster server: a schema, a stream, a key prefix; all of
    them are dropped when the test run ends."""
    name = uuid.uuid4().hex[:12]
    schema, stream, prefix = f"e_{name}", f"E{name.upper()}", f"e{name}:"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    atexit.register(_drop_backends, schema, stream, prefix)
    return {
        "SEGUE_STORE": f"{PG_DSN}?options=-csearch_path%3D{schema}",
        "SEGUE_LOG": f"{NATS_URL}?stream={stream}",
        "SEGUE_REDIS_URL": f"{REDIS_URL}?prefix={prefix}",
    }


def _drop_backends(schema: str, stream: str, prefix: str) -> None:
    with contextlib.suppress(Exception), psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    async def drop_stream() -> None:
        nc = await nats.connect(NATS_URL)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(stream)
        await nc.close()

    with contextlib.suppress(Exception):
        asyncio.run(drop_stream())
    with contextlib.suppress(Exception):
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
