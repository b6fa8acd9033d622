"""``segue demo`` against a live server, and ``segue serve --demo`` from start to SIGTERM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.readme import README, banner_line
from tests.e2e.server import ADMIN_KEY, PUBLISHABLE_KEY, WRITE_KEY, SegueServer

pytestmark = pytest.mark.e2e


def summary_of(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith('{"demo":"summary"')]
    assert lines, stdout
    return json.loads(lines[-1])


def readme_banner() -> list[str]:
    """What the README shows ``make run`` printing first: the URLs and the data folder."""
    block = README.read_text().split("$ make run\n", 1)[1].split("```", 1)[0].split("\n")
    return block[: block.index(next(line for line in block if line.startswith("  data"))) + 1]


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def running(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def test_demo_loads_the_shop_and_drives_decisions_without_errors(server):
    env = {
        **os.environ,
        "SEGUE_ADMIN_KEY": ADMIN_KEY,
        "SEGUE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
        "SEGUE_WRITE_KEY": WRITE_KEY,
    }
    started = time.monotonic()
    command = [sys.executable, "-m", "segue", "demo", "--url", server.url]
    result = subprocess.run(
        [*command, "--duration", "8", "--seed", "1", "--rate", "200"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 30  # the duration bounds it
    summary = summary_of(result.stdout)
    assert summary["http_errors"] == 0, result.stdout
    assert summary["rejected_events"] == summary["rejected_items"] == 0
    assert summary["catalog_items"] == 2000
    assert summary["customers"] == 5000
    assert summary["decisions"] > 100
    assert summary["exposures"] > 100
    assert summary["personalized_decisions"] > 0
    assert summary["contextual_decisions"] > 0
    assert summary["clicks"] > 0
    assert summary["orders"] > 0
    assert summary["identifies"] > 5000  # the customers, then logins at checkout
    assert summary["stitched"] > 0
    assert summary["events"] > 5000 + summary["decisions"]
    assert "CTR last" in result.stdout  # the live line

    with server.admin() as admin:
        listed, after = 0, ""
        while True:
            page = admin.get("/v1/catalog/items", params={"limit": 1000, "after": after}).json()
            listed += len(page["items"])
            if page["next"] is None:
                break
            after = page["next"]
        assert listed == 2000
        stats = server.wait_processed(at_least=summary["events"])
        assert stats["profiles"] >= 5000
        customer = admin.get("/v1/profiles/user_id:cust-00001").json()
        assert customer["traits"]["email"].endswith("@example.com")
        assert customer["traits"]["address"]["country"]


@pytest.mark.embedded("--demo runs with one process")
def test_serve_demo_runs_traffic_beside_the_server_and_stops_with_it(tmp_path):
    srv = SegueServer(tmp_path / "data", args=["--demo"]).start()
    try:
        deadline = time.monotonic() + 30
        first = srv.stats()["events_received"]
        while time.monotonic() < deadline:
            now = srv.stats()["events_received"]
            if now > 5000 and now > first:  # the customers, then sessions
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"no demo traffic: {srv.stats()}\n{srv.log()}")
        time.sleep(1.5)
        assert srv.stats()["events_received"] > now  # still flowing
        # the demo's experiments: personalised and holdout arms show up in the KPI report
        arms: set[tuple[str, str]] = set()
        with srv.admin() as admin:
            while time.monotonic() < deadline + 30 and len(arms) < 2:
                report = admin.get("/v1/reports/kpis", params={"granularity": "total"}).json()
                arms = {
                    (r["experiment"], r["variant"])
                    for r in report["rows"]
                    if r["placement"] == "product_detail" and r["experiment"]
                }
                time.sleep(0.5)
        assert arms == {
            ("product_detail_personalization", "personalized"),
            ("product_detail_personalization", "holdout"),
        }, report
        demo = children_of(srv.proc.pid)
    finally:
        srv.stop()
    assert srv.proc.returncode in (0, -15), srv.log()
    log = srv.log()
    assert "segue is running at" in log
    # the banner the README shows for `make run` (URLs, dashboard included, and the folder)
    shown = readme_banner()
    lines = log.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("segue is running at"))
    printed = lines[start : start + len(shown)]
    assert [banner_line(line) for line in printed] == [banner_line(line) for line in shown], log
    assert "demo  simulating visitors until stopped" in log
    summary = summary_of(log)  # the demo printed its summary: it stopped cleanly, first
    assert summary["http_errors"] == 0, log
    for pid in demo:
        assert not running(pid), f"the demo ({pid}) outlived the server"


def test_demo_refuses_to_run_without_keys_or_with_a_wrong_one(server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUE_")}
    command = [sys.executable, "-m", "segue", "demo", "--url", server.url, "--duration", "1"]
    missing = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2
    assert "SEGUE_ADMIN_KEY" in missing.stderr
    keys = ["--publishable-key", PUBLISHABLE_KEY, "--write-key", WRITE_KEY]
    wrong = subprocess.run(
        [*command, "--admin-key", "not-the-key", *keys],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert "admin key was refused" in wrong.stderr
