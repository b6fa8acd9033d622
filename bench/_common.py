"""Shared pieces of the benchmarks: a pinned segue server, event generators, a tiny HTTP client.

Everything talks to 127.0.0.1 only. The server is started with ``taskset -c <core>`` so the
load generator (pinned to the other core) never steals its CPU.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ADMIN_KEY = "bench-admin-key-0123456789abcdef"
WRITE_KEY = "bench-write-key-0123456789abcdef"
BASIC = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
SERVER_CORE = 0
CLIENT_CORE = 1

EVENTS = [
    ("Product Viewed", 0.35),
    ("Product Added", 0.15),
    ("Products Searched", 0.15),
    ("Checkout Started", 0.05),
    ("Order Completed", 0.05),
    ("Video Played", 0.15),
    ("Signed In", 0.10),
]
PAGES = ["Home", "Pricing", "Docs", "Blog", "Product", "Cart", "Checkout", "About"]
PLANS = ["free", "pro", "team", "enterprise"]
COUNTRIES = ["FR", "DE", "US", "GB", "ES", "IT", "NL", "BR", "JP", "IN"]


# --- process helpers -----------------------------------------------------------------------
def pin_to(core: int) -> None:
    """Pin this process (and every thread it starts later) to one core, if it exists."""
    if hasattr(os, "sched_setaffinity") and core < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {core})


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; 0.0 for an empty list."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100.0 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: list[float]) -> float:
    return percentile(values, 50)


def cpu_busy(seconds: float = 1.0) -> list[float]:
    """Busy fraction of each core over ``seconds``: other load on the box skews every figure."""

    def sample() -> list[tuple[int, int]]:
        out = []
        with open("/proc/stat") as fh:
            for line in fh:
                if line.startswith("cpu") and line[3].isdigit():
                    ticks = [int(x) for x in line.split()[1:]]
                    idle = ticks[3] + ticks[4]
                    out.append((sum(ticks) - idle, sum(ticks)))
        return out

    first = sample()
    time.sleep(seconds)
    second = sample()
    busy = []
    for (b0, t0), (b1, t1) in zip(first, second, strict=True):
        busy.append(round((b1 - b0) / max(1, t1 - t0), 3))
    if max(busy) > 0.1:
        print(
            f"WARNING: the machine is not idle before the run (busy per core: {busy}); "
            "figures will be low and noisy",
            file=sys.stderr,
            flush=True,
        )
    return busy


def _ticks(pid: int | str, children: bool = False) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return 0
    # utime, stime (and cutime, cstime: waited-for children such as wrk) in clock ticks
    return sum(int(x) for x in fields[11 : 15 if children else 13])


class CollectorWatch:
    """Time the garbage collector spends inside the block, and its collections per
    generation (``gc.callbacks``): how much of a drain the collector takes."""

    def __enter__(self) -> CollectorWatch:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1


class CpuWatch:
    """Measures CPU used by processes that are not ours (other jobs on a shared machine).

    foreign = all busy CPU (/proc/stat) - this process and its waited children - the server;
    own = the CPU this process, its waited children and the server used; server = the pids.
    """

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.hz = os.sysconf("SC_CLK_TCK")

    def _sample(self) -> tuple[int, int, float, int]:
        with open("/proc/stat") as fh:
            ticks = [int(x) for x in fh.readline().split()[1:]]
        busy = sum(ticks) - ticks[3] - ticks[4]
        server = sum(_ticks(p) for p in self.pids)
        return busy, _ticks("self", children=True) + server, time.monotonic(), server

    def __enter__(self) -> CpuWatch:
        self.start = self._sample()
        self.result: dict[str, float] = {}
        return self

    def __exit__(self, *exc: object) -> None:
        busy, ours, now, server = self._sample()
        wall = now - self.start[2]
        foreign = max(0, (busy - self.start[0]) - (ours - self.start[1])) / self.hz
        self.result = {
            "wall_s": round(wall, 2),
            "own_cpu_s": round((ours - self.start[1]) / self.hz, 2),
            "server_cpu_s": round((server - self.start[3]) / self.hz, 2),
            "foreign_cpu_s": round(foreign, 2),
            "foreign_share": round(foreign / max(1e-9, wall * (os.cpu_count() or 1)), 3),
        }
        if self.result["foreign_share"] > 0.05:
            print(
                f"WARNING: other processes used {foreign:.1f} CPU-seconds during this "
                f"{wall:.0f} s run ({self.result['foreign_share']:.0%} of the machine); "
                "this run's figures are not trustworthy",
                file=sys.stderr,
                flush=True,
            )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        import segue

        code = str(Path(segue.__file__).resolve().parent)
    except ImportError:
        code = "not importable"
    git = ["git", "-C", str(ROOT)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "src"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", ""
    if os.environ.get("SEGUE_BENCH_COMMIT"):  # benchmarking a clean export of a commit
        commit, dirty = os.environ["SEGUE_BENCH_COMMIT"], ""
    return {
        "commit": commit,
        "src_dirty": bool(dirty),
        "segue_code": code,
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
    }


def save(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


class Server:
    """``segue serve`` pinned to one core, on a fresh temporary data folder.

    ``args`` and ``env`` add to the command and its environment (``--workers 2``, the
    backends' URLs); ``core=None`` leaves the processes to the scheduler.
    """

    def __init__(
        self,
        core: int | None = SERVER_CORE,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        worker_core: int | None = None,
    ) -> None:
        self.core = core
        self.args = args or []
        #: with a core: the processor runs as its own ``segue worker`` pinned there, and
        #: ``segue serve --no-worker`` keeps the API alone on ``core``
        self.worker_core = worker_core
        self.worker: subprocess.Popen[bytes] | None = None
        if worker_core is not None:
            self.args = [*self.args, "--no-worker"]
        self.env = env or {}
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="segue-bench-"))
        self.data = self.tmp / "data"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        env = dict(os.environ, SEGUE_ADMIN_KEY=ADMIN_KEY, SEGUE_WRITE_KEY=WRITE_KEY)
        env.update(self.env)
        segue = Path(sys.executable).with_name("segue")
        cmd = [str(segue), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--data", str(self.data), *self.args]
        if self.core is not None and shutil.which("taskset") and self.core < (os.cpu_count() or 1):
            cmd = ["taskset", "-c", str(self.core), *cmd]
        log = (self.tmp / "server.log").open("ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        if self.worker_core is not None:
            worker = [str(segue), "worker", "--data", str(self.data)]
            if os.environ.get("BENCH_WORKER_NICE"):
                worker = ["nice", "-n", os.environ["BENCH_WORKER_NICE"], *worker]
            if shutil.which("taskset") and self.worker_core < (os.cpu_count() or 1):
                worker = ["taskset", "-c", str(self.worker_core), *worker]
            self.worker = subprocess.Popen(worker, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"segue exited: {(self.tmp / 'server.log').read_text()}")
            try:
                status, _ = http_get(self.port, "/readyz")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("segue did not become ready")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        """The server and every process it started (``serve --workers``)."""
        found, todo = [], [self.pid]
        if self.worker is not None:
            todo.append(self.worker.pid)
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
            except OSError:
                continue
        return found

    def stats(self) -> dict[str, Any]:
        status, body = http_get(self.port, "/v1/stats", {"Authorization": f"Bearer {ADMIN_KEY}"})
        if status != 200:
            raise RuntimeError(f"/v1/stats answered {status}: {body[:200]!r}")
        return dict(orjson.loads(body))

    def wait_caught_up(self, timeout: float = 300.0) -> float:
        """Wait until the processor has folded everything; return the seconds waited."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.stats()["lag_events"] == 0:
                return time.monotonic() - start
            time.sleep(0.1)
        raise TimeoutError(f"processor still behind after {timeout} s: {self.stats()}")

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(30)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait(5)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A blocking one-shot GET (for setup and stats, not for measuring)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# --- a minimal keep-alive HTTP/1.1 client for asyncio ------------------------------------
class Connection:
    """One keep-alive connection; responses must carry Content-Length (uvicorn's do)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        assert self.reader is not None
        assert self.writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        payload = await self.reader.readexactly(length) if length else b""
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


# --- realistic Segment traffic --------------------------------------------------------------
def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _context(rng: random.Random, page: str, traits: dict[str, Any] | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {
        "library": {"name": "analytics.js", "version": "5.2.1"},
        "ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
        "locale": rng.choice(["en-US", "fr-FR", "de-DE", "es-ES"]),
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0 Safari/537.36",
        "page": {
            "path": f"/{page.lower()}",
            "url": f"https://shop.example.com/{page.lower()}",
            "title": f"{page} | Example Shop",
            "referrer": "https://www.google.com/",
        },
    }
    if traits:
        context["traits"] = traits
    return context


class Traffic:
    """A stream of mixed Segment messages from a population of users.

    Each user starts anonymous (page views and tracks with an ``anonymousId`` only), is later
    identified (``identify`` carrying both ids and traits: a stitch that merges the anonymous
    profile), then sends events carrying both ids, as the SDKs do. A few identified users come
    back on a new device (new ``anonymousId``), which is stitched again, and a few send an
    ``alias``. Every message has a unique ``messageId``.
    """

    def __init__(
        self, users: int, seed: int = 7, prefix: str = "m", *, uuid_ids: bool = False
    ) -> None:
        self.rng = random.Random(seed)
        self.users = users
        self.prefix = prefix
        #: random UUID messageIds, as the SDKs send, instead of ``prefix-count`` (the log's
        #: dedupe index takes those far more cheaply)
        self.uuid_ids = uuid_ids
        self.count = 0
        self.anon = [f"anon-{seed}-{u}-0" for u in range(users)]
        self.identified = [False] * users
        self.devices = [0] * users
        self.now = time.time()

    def _ids(self, u: int) -> dict[str, Any]:
        ids: dict[str, Any] = {"anonymousId": self.anon[u]}
        if self.identified[u]:
            ids["userId"] = f"user-{u}"
        return ids

    def message(self) -> dict[str, Any]:
        rng = self.rng
        u = rng.randrange(self.users)
        self.count += 1
        self.now += 0.001
        page = rng.choice(PAGES)
        base: dict[str, Any] = {
            "messageId": str(uuid.uuid4()) if self.uuid_ids else f"{self.prefix}-{self.count}",
            "timestamp": _iso(self.now),
            "sentAt": _iso(self.now + 0.2),
        }
        roll = rng.random()
        if self.identified[u] and roll < 0.02:
            # back on a new device: anonymous again until identified
            self.devices[u] += 1
            self.anon[u] = f"anon-{u}-{self.devices[u]}"
            self.identified[u] = False
        if not self.identified[u] and roll < 0.15:
            self.identified[u] = True
            traits = {
                "email": f"user{u}@example.com",
                "name": f"User {u}",
                "plan": rng.choice(PLANS),
                "country": rng.choice(COUNTRIES),
                "createdAt": _iso(self.now - 86400 * rng.randrange(1, 900)),
            }
            return {
                **base,
                "type": "identify",
                **self._ids(u),
                "traits": traits,
                "context": _context(rng, page),
            }
        if self.identified[u] and roll > 0.995:
            return {
                **base,
                "type": "alias",
                "userId": f"user-{u}",
                "previousId": self.anon[u],
                "context": _context(rng, page),
            }
        if self.identified[u] and roll < 0.08:
            traits = {"plan": rng.choice(PLANS), "lastLogin": _iso(self.now)}
            return {
                **base,
                "type": "identify",
                **self._ids(u),
                "traits": traits,
                "context": _context(rng, page),
            }
        if roll < 0.45:
            return {
                **base,
                "type": "page",
                **self._ids(u),
                "name": page,
                "properties": {"path": f"/{page.lower()}", "search": "", "width": 1280},
                "context": _context(rng, page),
            }
        name = rng.choices([n for n, _ in EVENTS], [w for _, w in EVENTS])[0]
        properties: dict[str, Any] = {
            "product_id": f"sku-{rng.randrange(5000)}",
            "category": rng.choice(["shoes", "shirts", "bags", "hats"]),
            "price": round(rng.uniform(5, 300), 2),
            "currency": "EUR",
        }
        if name == "Order Completed":
            properties.update(order_id=f"o-{self.count}", revenue=properties["price"], quantity=1)
        return {
            **base,
            "type": "track",
            **self._ids(u),
            "event": name,
            "properties": properties,
            "context": _context(rng, page),
        }

    def batch(self, size: int = 100) -> bytes:
        return orjson.dumps({"batch": [self.message() for _ in range(size)]})

    def messages(self, n: int) -> Iterator[dict[str, Any]]:
        for _ in range(n):
            yield self.message()
