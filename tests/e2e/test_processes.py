"""Several processes on one data folder: ``segue serve --workers 2`` and ``segue worker``.

What must hold when the work is split between processes: a consent revocation answered by
one API process holds for the next request to any other; a catalog write or a profile
change made through one is seen by all; two workers never fold one event twice, even when
the active one is killed in the middle of a batch and the standby takes over.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.backends import unavailable
from tests.e2e.server import ADMIN_KEY, PUBLISHABLE_KEY, SegueServer

pytestmark = pytest.mark.e2e

PUB = {"Authorization": f"Bearer {PUBLISHABLE_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def fresh(srv: SegueServer, method: str, path: str, **kw: object) -> httpx.Response:
    """One request on a new connection, so the kernel may hand it to any process."""
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        return client.request(method, path, **kw)  # type: ignore[arg-type]


def processes_seen(srv: SegueServer, tries: int = 200) -> set[str]:
    seen: set[str] = set()
    for _ in range(tries):
        seen.add(fresh(srv, "GET", "/v1/stats", headers=ADMIN).json()["process"])
        if len(seen) >= 2:
            break
    return seen


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("workers")
    with SegueServer(folder / "data", args=["--workers", "2"]) as server:
        items = [
            {"item_id": f"sku-{i}", "title": f"Item {i}", "category": "Shoes", "price": 10.0 + i}
            for i in range(20)
        ]
        assert (
            fresh(server, "POST", "/v1/catalog/items", json={"items": items}, headers=ADMIN)
        ).status_code == 200
        yield server


def test_requests_are_spread_over_the_api_processes(cluster):
    assert len(processes_seen(cluster)) == 2


def _pid(origin: str) -> int:
    """The process id in ``/v1/stats``' ``process`` (``host:pid:nonce``)."""
    return int(origin.split(":")[-2])


def test_a_burst_of_connections_is_spread_over_the_api_processes(cluster):
    # 32 clients connecting at once, as a load generator or a pool does: with one shared
    # listening socket, the process that woke first could take them all (32/0 in 2 of 8
    # tries); each API process now listens on its own socket of one SO_REUSEPORT group
    if not sys.platform.startswith("linux"):
        unavailable("connections are spread by SO_REUSEPORT on Linux only")
    clients = [httpx.Client(base_url=cluster.url, timeout=30) for _ in range(32)]
    try:
        for client in clients:  # connected, all of them, before the first request
            client.get("/healthz")
        answered: dict[str, int] = {}
        for client in clients:
            origin = client.get("/v1/stats", headers=ADMIN).json()["process"]
            answered[origin] = answered.get(origin, 0) + 1
    finally:
        for client in clients:
            client.close()
    assert len(answered) == 2, answered
    # the kernel hashes each connection to a socket: 32 coin tosses; fewer than 4 on one
    # side happens about once in a million runs
    assert min(answered.values()) >= 4, answered


def test_each_api_process_keeps_to_a_core_of_its_own(cluster):
    if len(os.sched_getaffinity(0)) < 2:
        unavailable("one core: nothing to spread the API processes over")
    pids = {_pid(origin) for origin in processes_seen(cluster)}
    assert len(pids) == 2
    cores = []
    for pid in pids:
        # every thread, not only the main one: SQLite's threads must share its core
        masks = {
            frozenset(os.sched_getaffinity(int(task.name)))
            for task in Path(f"/proc/{pid}/task").iterdir()
        }
        assert len(masks) == 1, f"process {pid}'s threads run on different cores: {masks}"
        (mask,) = masks
        assert len(mask) == 1, f"process {pid} may run on {sorted(mask)}"
        cores.append(next(iter(mask)))
    assert len(set(cores)) == 2, f"both API processes on core {cores[0]}"


def test_a_second_segue_on_the_port_is_refused_and_takes_no_connection(cluster, tmp_path):
    # a SO_REUSEPORT group admits any process of the same user that asks to join it
    segue = Path(sys.executable).with_name("segue")
    command = [str(segue), "serve", "--workers", "2", "--no-worker", "--port", str(cluster.port)]
    command += ["--host", "127.0.0.1", "--data", str(tmp_path / "other")]
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SEGUE_ADMIN_KEY": "another-admin-key-of-32-chars-xx"},
    )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{cluster.port}" in proc.stderr
    for _ in range(16):  # every connection still reaches the cluster's processes
        assert fresh(cluster, "GET", "/v1/stats", headers=ADMIN).status_code == 200


def test_a_revocation_answered_by_one_process_holds_for_the_next_request_to_any(cluster):
    with cluster.writer() as w:
        batch = [
            {"type": "identify", "userId": "rv", "traits": {"email": "rv@example.com"}},
            {
                "type": "track",
                "userId": "rv",
                "event": "Product Viewed",
                "properties": {"product_id": "sku-3", "category": "Shoes"},
            },
        ]
        assert w.post("/v1/batch", json={"batch": batch}).status_code == 200
    cluster.wait_processed()
    body = {"placement": "home", "user": {"user_id": "rv"}, "k": 3}
    for round_ in range(5):  # revoke, grant, revoke… each time through whichever process
        grant = round_ % 2 == 1
        r = fresh(
            cluster,
            "PUT",
            "/v1/consent",
            json={"user": {"user_id": "rv"}, "purposes": {"personalization": grant}},
            headers=PUB,
        )
        assert r.status_code == 200
        answers = {
            fresh(cluster, "POST", "/v1/decide", json=body, headers=PUB).json()["personalized"]
            for _ in range(12)
        }
        assert answers == {grant}, f"round {round_}: a process answered from stale consent"


def test_an_erasure_answered_by_one_process_takes_the_decisions_every_process_made(cluster):
    with cluster.writer() as w:
        page = {"type": "page", "userId": "ez", "anonymousId": "anon-ez"}
        assert w.post("/v1/batch", json={"batch": [page]}).status_code == 200
    cluster.wait_processed()
    body = {"placement": "home", "user": {"user_id": "ez"}, "k": 2}
    made = []  # on fresh connections: both processes make some (see the spreading tests)
    for _ in range(12):
        r = fresh(cluster, "POST", "/v1/decide", json=body, headers=PUB)
        assert r.status_code == 200
        made.append(r.json()["decision_id"])
    erasure = {"type": "erasure", "user": {"user_id": "ez"}}
    r = fresh(cluster, "POST", "/v1/privacy/requests", json=erasure, headers=ADMIN)
    assert r.status_code in (200, 201, 202), r.text
    request_id = r.json()["request_id"]
    deadline = time.monotonic() + 30
    while (
        fresh(cluster, "GET", f"/v1/privacy/requests/{request_id}", headers=ADMIN).json()["status"]
        != "done"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.5)  # the change feed's note reaches the other process
    # each decision asked of both processes (a few fresh connections each): none knows it
    for decision_id in made:
        answers = {
            fresh(cluster, "GET", f"/v1/decisions/{decision_id}", headers=ADMIN).status_code
            for _ in range(4)
        }
        assert answers == {404}, f"{decision_id} still answered by some process"


def test_catalog_writes_and_profile_changes_reach_every_process(cluster):
    item = {"item_id": "late-1", "title": "Late", "category": "Hats", "price": 5.0}
    assert fresh(cluster, "PUT", "/v1/catalog/items/late-1", json=item, headers=ADMIN).is_success
    titles = set()
    for _ in range(12):
        r = fresh(cluster, "GET", "/v1/catalog/items/late-1", headers=ADMIN)
        titles.add(r.json()["title"])
    item["title"] = "Later"
    assert fresh(cluster, "PUT", "/v1/catalog/items/late-1", json=item, headers=ADMIN).is_success
    # the decide path reads the in-memory mirror of each process: all must have the change
    body = {"placement": "home", "user": {}, "k": 50, "candidates": ["late-1"]}
    for _ in range(12):
        out = fresh(cluster, "POST", "/v1/decide", json=body, headers=PUB).json()
        shown = {i["item_id"]: i for i in out["items"]}
        assert "late-1" in shown
    # a trait written through one process is read back by every process
    with cluster.writer() as w:
        assert (
            w.post(
                "/v1/identify", json={"userId": "tr", "traits": {"firstName": "Ada"}}
            ).status_code
            == 200
        )
    cluster.wait_processed()
    with cluster.writer() as w:
        assert (
            w.post(
                "/v1/identify", json={"userId": "tr", "traits": {"firstName": "Grace"}}
            ).status_code
            == 200
        )
    cluster.wait_processed()
    names = {
        fresh(cluster, "GET", "/v1/profiles/user_id:tr", headers=ADMIN).json()["traits"][
            "firstName"
        ]
        for _ in range(12)
    }
    assert names == {"Grace"}


def test_connections_for_a_killed_api_process_wait_for_its_successor(tmp_path):
    # the supervisor keeps each API process's listening socket open: connections the kernel
    # hands to a process that died wait in its queue and are answered by the one restarted
    # on that socket, instead of being refused
    with SegueServer(tmp_path / "data", args=["--workers", "2", "--no-worker"]) as server:
        pids = {_pid(origin) for origin in processes_seen(server)}
        assert len(pids) == 2
        time.sleep(5.5)  # older than a quick death, which is restarted only after a pause
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        answered: set[int] = set()
        for _ in range(24):
            r = fresh(server, "GET", "/v1/stats", headers=ADMIN)
            assert r.status_code == 200
            answered.add(_pid(r.json()["process"]))
        assert victim not in answered
        # the successor answered some: its socket's connections were not lost meanwhile
        assert len(answered - pids) == 1, answered


# --- two workers, one killed mid-batch ----------------------------------------------------


def _worker(data: Path, log: Path, **env: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, SEGUE_ADMIN_KEY=ADMIN_KEY, SEGUE_PUBLISHABLE_KEY=PUBLISHABLE_KEY, **env)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "segue", "worker", "--data", str(data)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _lease_holder(data: Path) -> int | None:
    """The pid of the worker holding the processor lease (its holder is host:pid:…)."""
    with sqlite3.connect(data / "state.db", timeout=10) as conn:
        row = conn.execute("SELECT holder, until FROM leases WHERE name = 'profiles'").fetchone()
    if row is None or row[1] < time.time():
        return None
    return int(row[0].split(":")[1])


def _person_batches(person: int, rounds: int) -> list[list[dict]]:
    """A person's events in rounds: anonymous views first, then identified ones, so the
    same person arrives under different identifiers before they are linked."""
    anon = f"anon-{person}"
    batches = []
    for r in range(rounds):
        batch = [
            {
                "type": "track",
                "anonymousId": anon,
                "messageId": f"p{person}-r{r}-view",
                "event": "Product Viewed",
                "properties": {"product_id": f"sku-{(person + r) % 7}", "category": "Shoes"},
            },
        ]
        if r == 1:
            batch.append(
                {
                    "type": "identify",
                    "anonymousId": anon,
                    "userId": f"user-{person}",
                    "messageId": f"p{person}-link",
                    "traits": {"email": f"person{person}@example.com"},
                }
            )
        if r >= 2:
            batch.append(
                {
                    "type": "track",
                    "userId": f"user-{person}",
                    "messageId": f"p{person}-r{r}-add",
                    "event": "Product Added",
                    "properties": {"product_id": f"sku-{person % 7}", "category": "Shoes"},
                }
            )
        batches.append(batch)
    return batches


@pytest.mark.embedded("starts its own two workers on the data folder's SQLite files")
def test_two_workers_fold_interleaved_people_exactly_once_across_a_kill_9(tmp_path):
    data = tmp_path / "data"
    people, rounds = 40, 6
    api = SegueServer(data, args=["--no-worker"]).start()
    logs = tmp_path / "workers.log"
    workers = [_worker(data, logs), _worker(data, logs)]
    try:
        deadline = time.monotonic() + 30
        while (holder := _lease_holder(data)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert holder in {w.pid for w in workers}, logs.read_text()
        plans = [_person_batches(p, rounds) for p in range(people)]

        def send(rows: range) -> None:
            with api.writer() as w:
                for r in range(rounds):
                    for p in rows:
                        assert w.post("/v1/batch", json={"batch": plans[p][r]}).status_code == 200
                    time.sleep(0.5)  # rounds spread over ~3 s: the kill lands mid-stream

        senders = [threading.Thread(target=send, args=(range(k, people, 4),)) for k in range(4)]
        for t in senders:
            t.start()
        # kill the active worker while the senders are still sending
        time.sleep(1.0)
        active = next(w for w in workers if w.pid == _lease_holder(data))
        assert any(t.is_alive() for t in senders), "the senders finished before the kill"
        active.send_signal(signal.SIGKILL)
        active.wait()
        for t in senders:
            t.join()
        expected = people * (rounds + 1 + (rounds - 2))
        stats = api.wait_processed(at_least=expected, timeout=90)
        assert stats["events_received"] == expected
        standby = next(w for w in workers if w is not active)
        assert standby.poll() is None
        deadline = time.monotonic() + 15  # it takes over once the dead one's lease expired
        while _lease_holder(data) != standby.pid and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _lease_holder(data) == standby.pid
        assert stats["profiles"] == people, "a person got two profiles"
        with api.admin() as a:
            for p in range(people):
                profile = a.get(f"/v1/profiles/user_id:user-{p}").json()
                ids = {(i["type"], i["value"]) for i in profile["identities"]}
                assert ids == {
                    ("user_id", f"user-{p}"),
                    ("anonymous_id", f"anon-{p}"),
                    ("email", f"person{p}@example.com"),
                }
                # every event counted once: a batch folded twice would count twice
                assert profile["event_count"] == rounds + 1 + (rounds - 2), profile
                counts = profile["features"]["counts"]["24h"]
                assert (counts["product_views"], counts["adds"]) == (rounds, rounds - 2), counts
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
                w.wait(20)
        api.stop()


def _wait_for(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.embedded("starts its own two workers on the data folder's SQLite files")
def test_a_standby_worker_never_saves_its_item_models_over_the_active_ones(tmp_path):
    """The item models are learnt by the worker that folds; a standby folds nothing, so
    whatever it holds must never replace them: not in its periodic save, not when it stops.
    Popularity then survives the active worker's death (an API process, or a worker taking
    over, loads what was saved)."""
    data = tmp_path / "data"
    (tmp_path / "segue.yaml").write_text(
        "placements:\n  pop:\n    strategy: popular\n    exploration: false\n"
    )
    api = SegueServer(data, args=["--no-worker", "--config", str(tmp_path / "segue.yaml")])
    api.start()
    logs = [tmp_path / "active.log", tmp_path / "standby.log"]
    active = standby = None
    try:
        items = [{"item_id": f"sku-{i}", "title": f"Item {i}", "price": 10.0} for i in range(20)]
        with api.admin() as a:
            assert a.post("/v1/catalog/items", json={"items": items}).status_code == 200
        active = _worker(data, logs[0])
        _wait_for(lambda: _lease_holder(data) == active.pid, "no worker took the lease")
        standby = _worker(data, logs[1], SEGUE_LOG_LEVEL="info")
        _wait_for(lambda: "worker_started" in logs[1].read_text(), "the standby did not start")
        views = [
            {
                "type": "track",
                "anonymousId": f"viewer-{k}",
                "event": "Product Viewed",
                "properties": {"product_id": "sku-13" if k % 4 else f"sku-{k % 7}"},
            }
            for k in range(40)
        ]
        with api.writer() as w:
            assert w.post("/v1/batch", json={"batch": views}).status_code == 200
        api.wait_processed(at_least=len(views))

        def top_item() -> str:
            body = {"placement": "pop", "user": {}, "k": 3}
            answer = fresh(api, "POST", "/v1/decide", json=body, headers=PUB)
            assert answer.status_code == 200, answer.text
            return str(answer.json()["items"][0]["item_id"])

        # the active worker shared what it learnt, and the API process took it
        _wait_for(lambda: top_item() == "sku-13", "popularity never reached the API process")
        standby.send_signal(signal.SIGTERM)  # a clean stop saves what the process owns
        assert standby.wait(30) == 0
        active.send_signal(signal.SIGKILL)  # the active one dies: what was saved is all
        active.wait(10)
        api.stop()
        api.start()  # loads the saved item models
        assert top_item() == "sku-13"
    finally:
        for worker in (active, standby):
            if worker is not None and worker.poll() is None:
                worker.terminate()
                worker.wait(20)
        api.stop()
