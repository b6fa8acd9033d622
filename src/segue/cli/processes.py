"""``segue worker`` and ``segue serve --workers N``: the same code as several processes.

One Python process answers requests on one core; a second core is used by running more
processes on the same data. ``serve --workers N`` binds the port once and starts N API
processes that share it (the kernel spreads connections between them) plus one ``segue
worker`` that folds the log; it restarts any that dies and stops them all on SIGTERM.
Processes find each other's changes through the change feed (see docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import structlog

from segue.cli.gc_tuning import freeze_startup_heap, tune_gc
from segue.keys import Keys, resolve_keys
from segue.runtime import Runtime
from segue.settings import Settings

__all__ = ["die_with_parent", "print_banner", "run_worker", "supervise"]

_log = structlog.get_logger("segue.processes")
#: a child that dies sooner than this after its start is restarted only after a pause
_QUICK_DEATH_S = 5.0


def print_banner(settings: Settings, keys: Keys, generated: list[str], extra: str = "") -> None:
    """The URLs, and the keys generated now (shown this once only)."""
    url = f"http://{settings.host}:{settings.port}"
    lines = [
        f"segue is running at {url}{extra}",
        f"  API docs   {url}/docs",
        f"  dashboard  {url}/ui",
        f"  OpenAPI    {url}/openapi.json",
        f"  metrics    {url}/metrics",
        f"  data       {Path(settings.data).resolve()}",
    ]
    shown = [k for k in generated if k != "secret"]
    if shown:
        lines.append("New keys were generated and saved in the data folder (shown only this once):")
        for name in shown:
            if name == "admin":
                lines.append(f"  admin key        {keys.admin}")
            elif name == "publishable":
                lines.append(f"  publishable key  {keys.publishable}")
            else:
                source = name.split(":", 1)[1]
                lines.append(f"  write key ({source}) {keys.write[source]}")
    print("\n".join(lines), flush=True)


def die_with_parent() -> None:
    """A child of ``serve --workers`` stops when its supervisor is gone (killed -9, say):
    it must not keep answering on the shared port, unsupervised."""
    parent = os.environ.get("SEGUE_PARENT_PID")
    if not parent or not parent.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_worker(settings: Settings) -> int:
    """Fold the log until SIGTERM/SIGINT (``segue worker``); holds the processor lease
    while active, stands by while another worker holds it."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        pass
    tune_gc()
    return asyncio.run(_work(settings))


async def _work(settings: Settings) -> int:
    die_with_parent()
    runtime = Runtime(settings, role="worker")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.start()
        freeze_startup_heap()
        _log.info("worker_started", origin=runtime.origin)
        await stop.wait()
    finally:
        await runtime.aclose()
    return 0


def supervise(settings: Settings, argv: list[str], workers: int, with_worker: bool) -> int:
    """Bind the port, start ``workers`` API processes on it (and a worker), keep them up.

    Args:
        settings: the parsed settings (the children parse the same ones: same ``argv``).
        argv: the ``--data``/``--config`` arguments to pass on.
        workers: API processes.
        with_worker: also run one ``segue worker`` (off when workers run elsewhere).
    """
    s = settings
    data = Path(s.data)
    data.mkdir(parents=True, exist_ok=True)
    write = {src.name: src.write_key for src in s.sources}
    write.setdefault("default", None)
    # generated once, here: children started at the same time would each generate some
    keys, generated = resolve_keys(data, s.admin_key, s.publishable_key, write)
    family = socket.AF_INET6 if ":" in s.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((s.host, s.port))
    sock.listen(4096)
    sock.set_inheritable(True)
    fd = sock.fileno()
    base = [sys.executable, "-m", "segue"]
    commands = [[*base, "serve", "--role", "api", "--fd", str(fd), *argv] for _ in range(workers)]
    if with_worker:
        commands.append([*base, "worker", *argv])
    children: list[tuple[list[str], subprocess.Popen[bytes], float]] = []
    stopping = False

    def stop(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # the API processes' Prometheus histograms go to files here, summed by each /metrics
    shared_metrics = data / ".metrics"
    shutil.rmtree(shared_metrics, ignore_errors=True)
    shared_metrics.mkdir()
    env = dict(
        os.environ,
        SEGUE_PARENT_PID=str(os.getpid()),
        PROMETHEUS_MULTIPROC_DIR=str(shared_metrics),
    )

    def spawn(command: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, pass_fds=(fd,), env=env)  # noqa: S603 - our own argv

    for command in commands:
        children.append((command, spawn(command), time.time()))
    print_banner(
        s, keys, generated, f" ({workers} API processes{' and a worker' if with_worker else ''})"
    )
    try:
        while not stopping:
            time.sleep(0.2)
            for n, (command, proc, started) in enumerate(children):
                code = proc.poll()
                if code is None or stopping:
                    continue
                _log.warning("process_died", command=command[3], code=code)
                if time.time() - started < _QUICK_DEATH_S:
                    time.sleep(1.0)  # a crash loop must not spin
                children[n] = (command, spawn(command), time.time())
    finally:
        for _, proc, _ in children:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 20
        for _, proc, _ in children:
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        sock.close()
    return 0
