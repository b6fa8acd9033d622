"""Start a real segue server process for end-to-end tests and talk HTTP to it."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
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


class SegueServer:
    """One ``segue serve`` process on a free loopback port with its own data folder."""

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
        self.log_path = data.parent / f"{data.name}-server.log"

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
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"segue exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"segue did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

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
