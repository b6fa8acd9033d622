"""``segue worker`` and ``segue serve --workers N``: the same code as several processes.

One Python process answers requests on one core; a second core is used by running more
processes on the same data. ``serve --workers N`` binds the port and starts N API processes
that share it plus one ``segue worker`` that folds the log; it restarts any that dies and
stops them all on SIGTERM. On Linux each API process gets its own listening socket in one
``SO_REUSEPORT`` group, so the kernel spreads new connections evenly between them: with one
shared socket, whichever process woke first took a burst of connections (32 clients
connecting at once were split 32/0 in 2 of 8 tries, and ingest fell to one process's rate).
Processes find each other's changes through the change feed (see docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
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

__all__ = ["die_with_parent", "pin_to_cpu", "print_banner", "run_worker", "supervise"]

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


def supervise(
    settings: Settings, argv: list[str], workers: int, with_worker: bool, *, pin: bool = True
) -> int:
    """Bind the port, start ``workers`` API processes on it (and a worker), keep them up.

    Args:
        settings: the parsed settings (the children parse the same ones: same ``argv``).
        argv: the ``--data``/``--config`` arguments to pass on.
        workers: API processes.
        with_worker: also run one ``segue worker`` (off when workers run elsewhere).
        pin: give each API process a core of its own (of those this process may use), in
            turn. An API process's SQLite threads hand the interpreter lock to its event
            loop and back for every statement; on one core that is a plain switch, across
            two it is a wake-up on the other core each time (43 voluntary context switches
            a request against 3): ingest cost 64 µs of CPU an event unpinned against 47
            pinned, and ``--workers 2`` on 2 cores took 16,700–33,800 events/s unpinned
            against 36,500–39,500 pinned. The worker is left to the scheduler.
    """
    s = settings
    data = Path(s.data)
    data.mkdir(parents=True, exist_ok=True)
    write = {src.name: src.write_key for src in s.sources}
    write.setdefault("default", None)
    # generated once, here: children started at the same time would each generate some
    keys, generated = resolve_keys(data, s.admin_key, s.publishable_key, write)
    try:
        sockets = listening_sockets(s.host, s.port, workers)
    except OSError as exc:
        print(f"segue: cannot listen on {s.host}:{s.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    base = [sys.executable, "-m", "segue"]
    cpus = sorted(os.sched_getaffinity(0)) if pin and hasattr(os, "sched_getaffinity") else []

    def api(n: int) -> tuple[list[str], tuple[int, ...]]:
        # its own socket (the one shared socket where there is no SO_REUSEPORT): a process
        # restarted gets its predecessor's back, with the connections queued on it
        fd = sockets[n % len(sockets)].fileno()
        pinned = ["--cpu", str(cpus[n % len(cpus)])] if len(cpus) > 1 else []
        return [*base, "serve", "--role", "api", *pinned, "--fd", str(fd), *argv], (fd,)

    #: each child's command and the descriptors it inherits
    commands = [api(n) for n in range(workers)]
    if with_worker:
        commands.append(([*base, "worker", *argv], ()))
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

    def spawn(n: int) -> tuple[subprocess.Popen[bytes], float]:
        command, fds = commands[n]
        proc = subprocess.Popen(command, pass_fds=fds, env=env)  # noqa: S603 - our own argv
        return proc, time.time()

    #: each child's process and when it started, in the order of ``commands``
    children = [spawn(n) for n in range(len(commands))]
    print_banner(
        s, keys, generated, f" ({workers} API processes{' and a worker' if with_worker else ''})"
    )
    try:
        while not stopping:
            time.sleep(0.2)
            for n, (proc, started) in enumerate(children):
                code = proc.poll()
                if code is None or stopping:
                    continue
                _log.warning("process_died", command=commands[n][0][3], code=code)
                if time.time() - started < _QUICK_DEATH_S:
                    time.sleep(1.0)  # a crash loop must not spin
                children[n] = spawn(n)
    finally:
        for proc, _ in children:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 20
        for proc, _ in children:
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sock in sockets:
            sock.close()
    return 0


def pin_to_cpu(cpu: int) -> None:
    """Keep this process (and every thread it starts from now on) on ``cpu``; called before
    any thread starts. A CPU this process may not use is ignored, with a warning."""
    try:
        os.sched_setaffinity(0, {cpu})
    except (OSError, AttributeError) as exc:
        _log.warning("cpu_pin_failed", cpu=cpu, error=str(exc))


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on ``host:port`` in one ``SO_REUSEPORT`` group (Linux),
    or a single shared one elsewhere (where the option does not spread connections).

    Raises:
        OSError: the port is taken. A group is open to any process of the same user that
            also asks for ``SO_REUSEPORT``, so a port where something already listens is
            refused first: a second segue on the same port must fail, not take half the
            connections.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    spread = count > 1 and sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
    if spread and _listening(family, host, port):
        raise OSError(errno.EADDRINUSE, f"something already listens on {host}:{port}")
    sockets: list[socket.socket] = []
    try:
        for _ in range(count if spread else 1):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if spread:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]  # port 0: the others join the port the first got
            sock.listen(4096)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _listening(family: socket.AddressFamily, host: str, port: int) -> bool:
    """Whether a server answers on ``host:port`` (a wildcard host is tried on loopback)."""
    wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - matched, not bound
    target = wildcard.get(host, host)
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect((target, port))
        except OSError:
            return False
    return True
