"""``segue demo`` and ``segue serve --demo``: the demo shop's traffic against a segue.

``segue demo --url URL`` drives a running segue with the keys given (or from the
environment). Without ``--url`` it starts its own ``segue serve`` on a free loopback port
with a temporary data folder and fresh keys, runs against it, and removes it at the end.

``segue serve --demo`` runs the demo in a child process (``segue demo --url …``) once the
server has started, with the server's keys passed through the environment; the child stops
when the server stops (it is sent SIGTERM, and it also stops by itself when its parent is
gone or the server stops answering).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

from segue.demo.experiments import demo_config, demo_experiments
from segue.demo.traffic import DemoOptions, run_demo
from segue.settings import ExperimentSettings, Settings

if TYPE_CHECKING:
    from segue.runtime import Runtime

__all__ = ["SERVE_DEMO_RATE", "DemoChild", "run"]

#: requests per second of ``serve --demo``, which runs until the server stops: gentle on the
#: data folder (about 10 MB a minute), still enough to watch the ranker learn
SERVE_DEMO_RATE: Final = 50


def run(args: argparse.Namespace) -> int:
    """``segue demo``: against ``--url``, or an embedded segue started for the occasion."""
    if args.rate <= 0:
        print("segue demo: --rate must be > 0", file=sys.stderr)
        return 2
    if args.duration < 0:
        print("segue demo: --duration must be >= 0 (0 runs until stopped)", file=sys.stderr)
        return 2
    if args.url is not None:
        admin = args.admin_key or os.environ.get("SEGUE_ADMIN_KEY")
        publishable = args.publishable_key or os.environ.get("SEGUE_PUBLISHABLE_KEY")
        write = args.write_key or os.environ.get("SEGUE_WRITE_KEY")
        missing = [
            name
            for name, key in (("admin", admin), ("publishable", publishable), ("write", write))
            if not key
        ]
        if missing or not admin or not publishable or not write:
            print(
                f"segue demo: the {', '.join(missing)} key(s) are needed with --url: pass "
                "--admin-key, --publishable-key and --write-key, or set SEGUE_ADMIN_KEY, "
                "SEGUE_PUBLISHABLE_KEY and SEGUE_WRITE_KEY (the keys segue printed at its "
                "first start); or leave out --url to run against a temporary segue",
                file=sys.stderr,
            )
            return 2
        return run_demo(_options(args, args.url, admin, publishable, write))
    return _embedded(args)


def _options(
    args: argparse.Namespace, url: str, admin: str, publishable: str, write: str
) -> DemoOptions:
    return DemoOptions(
        url=url,
        admin_key=admin,
        publishable_key=publishable,
        write_key=write,
        duration=float(args.duration),
        rate=float(args.rate),
        seed=int(args.seed),
        parent_pid=args.parent_pid,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _embedded(args: argparse.Namespace) -> int:
    keys = {
        "SEGUE_ADMIN_KEY": args.admin_key or secrets.token_urlsafe(24),
        "SEGUE_PUBLISHABLE_KEY": args.publishable_key or secrets.token_urlsafe(24),
        "SEGUE_WRITE_KEY": args.write_key or secrets.token_urlsafe(24),
    }
    with tempfile.TemporaryDirectory(prefix="segue-demo-") as folder:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = Path(folder) / "segue.log"
        config = Path(folder) / "segue.yaml"
        config.write_text(demo_config())  # personalised vs a holdout on every placement
        command = [sys.executable, "-m", "segue", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--data", str(Path(folder) / "data")]
        command += ["--config", str(config)]
        with log_path.open("wb") as log:
            server = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                command, env={**os.environ, **keys}, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            if not _wait_ready(server, url, 60.0):
                print("segue demo: the embedded segue did not start:", file=sys.stderr)
                print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
                return 2
            print(
                f"demo  started a temporary segue at {url} (its data is deleted at the end)\n"
                f"demo    API docs {url}/docs   admin key {keys['SEGUE_ADMIN_KEY']}",
                flush=True,
            )
            options = _options(
                args,
                url,
                keys["SEGUE_ADMIN_KEY"],
                keys["SEGUE_PUBLISHABLE_KEY"],
                keys["SEGUE_WRITE_KEY"],
            )
            return run_demo(options)
        finally:
            _stop(server, 20.0)


def _wait_ready(server: subprocess.Popen[bytes], url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1.0) as response:  # noqa: S310
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


class DemoChild:
    """``segue serve --demo``: the demo traffic in a child process beside the server."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def start(self, runtime: Runtime) -> None:
        """Start ``segue demo --url …`` against this server with its keys (call once)."""
        s = runtime.settings
        host = s.host
        if host in ("0.0.0.0", "", "::"):  # noqa: S104 - reading the setting, not binding
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        env = {
            **os.environ,
            "SEGUE_ADMIN_KEY": runtime.keys.admin,
            "SEGUE_PUBLISHABLE_KEY": runtime.keys.publishable,
            "SEGUE_WRITE_KEY": runtime.keys.write["default"],
        }
        command = [sys.executable, "-m", "segue", "demo", "--url", f"http://{host}:{s.port}"]
        command += ["--duration", "0", "--rate", str(SERVE_DEMO_RATE)]
        command += ["--parent-pid", str(os.getpid())]
        self.process = subprocess.Popen(command, env=env)  # noqa: S603 - our own interpreter

    def stop(self) -> None:
        """Ask the demo to stop (SIGTERM); it prints its summary and exits."""
        self.stopping = True
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 10.0) -> None:
        """Stop the demo and wait for it to exit (kill it after ``timeout`` seconds)."""
        if self.process is not None:
            self.stop()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def with_demo_experiments(settings: Settings) -> Settings:
    """``settings`` with the demo's experiments, unless it configures experiments itself."""
    if settings.experiments:
        return settings
    experiments = msgspec.convert(demo_experiments(), list[ExperimentSettings])
    return msgspec.structs.replace(settings, experiments=experiments)
