"""Privacy requests end to end: access export, erasure from every store, byte scan of the data
folder, suppression of late and retried events, restart resumes a pending request."""

from __future__ import annotations

import itertools
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from segue.core.model import PrivacyRequest
from segue.storage.sqlite_privacy import SqlitePrivacyStore
from tests import backends
from tests.contracts.conftest import Sync
from tests.e2e.server import CLUSTER, PUBLISHABLE_KEY, SegueServer

pytestmark = pytest.mark.e2e

PUB = {"Authorization": f"Bearer {PUBLISHABLE_KEY}"}
redis_url = backends.redis_url  # a fixture: Redis URL, fresh key prefix


_PHONES = itertools.count(10)


class Person:
    """A person with unique, greppable personal data."""

    def __init__(self, label: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.user_id = f"{label}-{tag}"
        self.anonymous_id = f"anon-{label}-{tag}"
        self.email = f"Zora.{label}.{tag}@Example.org"
        # unique within the module: two people sharing a phone would not link it both ways
        self.phone_raw = f"(415) 555-01{next(_PHONES)}"
        self.phone = "+1415555" + self.phone_raw[-4:]
        self.first = f"Quintessa{tag[:4]}"
        self.last = f"Vandersloot{tag[4:]}"

    def secrets(self) -> list[bytes]:
        values = [self.email, self.phone, self.phone_raw, self.first, self.last]
        return sorted({v.encode() for v in values} | {v.lower().encode() for v in values})

    def events(self) -> list[dict[str, Any]]:
        traits = {
            "email": self.email,
            "phone": self.phone_raw,
            "firstName": self.first,
            "lastName": self.last,
        }
        uid, aid = self.user_id, self.anonymous_id
        return [
            {"type": "page", "messageId": f"{uid}-1", "anonymousId": aid, "name": "Home"},
            {
                "type": "track",
                "messageId": f"{uid}-2",
                "anonymousId": aid,
                "event": "Product Viewed",
                "properties": {"product_id": "sku-1", "category": "Shoes"},
                "context": {"ip": "203.0.113.9", "traits": {"email": self.email}},
            },
            {
                "type": "identify",
                "messageId": f"{uid}-3",
                "anonymousId": aid,
                "userId": uid,
                "traits": traits,
            },
            {
                "type": "track",
                "messageId": f"{uid}-4",
                "userId": uid,
                "event": "Product Added",
                "properties": {"product_id": "sku-2", "category": "Bags", "price": 12.0},
            },
        ]


def send(srv: SegueServer, batch: list[dict[str, Any]]) -> dict[str, Any]:
    with srv.writer() as w:
        r = w.post("/v1/batch", json={"batch": batch})
    assert r.status_code == 200, r.text
    return dict(r.json())


def profile_status(srv: SegueServer, ref: str) -> int:
    with srv.admin() as a:
        return a.get(f"/v1/profiles/{ref}").status_code


def run_request(srv: SegueServer, kind: str, user: dict[str, str]) -> dict[str, Any]:
    with srv.admin() as a:
        r = a.post("/v1/privacy/requests", json={"type": kind, "user": user})
        assert r.status_code == 202, r.text
        created = r.json()
        assert created["status"] == "pending"
        return wait_done(srv, created["request_id"])


def wait_done(srv: SegueServer, request_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with srv.admin() as a:
        while time.monotonic() < deadline:
            r = a.get(f"/v1/privacy/requests/{request_id}")
            assert r.status_code == 200, r.text
            body = r.json()
            if body["status"] in ("done", "failed"):
                assert body["status"] == "done", body
                return dict(body)
            time.sleep(0.05)
    raise TimeoutError(request_id)


def scan(folder: Path, extra: list[Path], needles: list[bytes]) -> dict[str, list[str]]:
    """Which needles each file holds: every file under the data folder, plus ``extra``."""
    found: dict[str, list[str]] = {}
    for path in [*sorted(p for p in folder.rglob("*") if p.is_file()), *extra]:
        data = path.read_bytes()
        hits = [n.decode() for n in needles if n in data]
        if hits:
            found[str(path.name)] = hits
    return found


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("privacy")
    with SegueServer(folder / "data") as server:
        items = [
            {"item_id": f"sku-{i}", "title": f"Item {i}", "category": "Shoes", "price": 10.0 + i}
            for i in range(10)
        ]
        with server.admin() as a:
            assert a.post("/v1/catalog/items", json={"items": items}).status_code == 200
        yield server


def populate(srv: SegueServer, person: Person) -> None:
    """Events, a consent record, a decision and a quarantined bad event of ``person``."""
    bad = {  # no event name: quarantined, with the person's email and name in it
        "type": "track",
        "messageId": f"{person.user_id}-bad",
        "userId": person.user_id,
        "context": {"traits": {"email": person.email, "lastName": person.last}},
    }
    *events, last = person.events()
    for event in events:  # one batch each: the profile is rewritten several times
        assert send(srv, [event]) == {"success": True}
        srv.wait_processed()
    out = send(srv, [last, bad])
    assert [r["index"] for r in out["rejected"]] == [1]
    srv.wait_processed()
    r = httpx.put(
        srv.url + "/v1/consent",
        json={"user": {"user_id": person.user_id}, "purposes": {"personalization": True}},
        headers=PUB,
    )
    assert r.status_code == 200, r.text
    r = httpx.post(
        srv.url + "/v1/decide",
        json={"placement": "home", "user": {"user_id": person.user_id}, "k": 3},
        headers=PUB,
    )
    assert r.status_code == 200, r.text
    assert r.json()["personalized"] is True
    assert profile_status(srv, f"email:{person.email.lower()}") == 200


def test_access_export_holds_every_category(srv):
    ann = Person("access")
    populate(srv, ann)
    time.sleep(0.3)  # the decision log is written in the background
    done = run_request(srv, "access", {"email": ann.email})
    export = done["export"]
    assert done["receipt"]["events"] == 4
    assert done["receipt"]["decisions"] >= 1
    (profile,) = export["profiles"]
    assert {f"user_id:{ann.user_id}", f"anonymous_id:{ann.anonymous_id}"} <= set(
        profile["identities"]
    )
    assert f"email:{ann.email.lower()}" in profile["identities"]
    last = profile["traits"]["lastName"]
    assert last["value"] == ann.last
    assert last["source"] == "default"  # lineage
    assert last["message_id"] == f"{ann.user_id}-3"
    assert "lastName" in profile["alternates"]
    assert isinstance(profile["merges"], list)
    assert profile["features"]
    assert profile["decisions"][0]["placement"] == "home"
    # the events as received: sealed fields opened again
    ids = [e["messageId"] for e in export["events"]]
    assert ids == [f"{ann.user_id}-{i}" for i in (1, 2, 3, 4)]
    assert export["events"][2]["traits"]["lastName"] == ann.last
    assert export["events"][1]["context"]["ip"] == "203.0.113.9"
    assert export["consent"][0]["purposes"] == {"personalization": True}
    actions = {e["action"] for e in export["audit"]}
    assert "privacy.request" in actions


@pytest.mark.embedded("scans the data folder's files for the person's bytes")
def test_erasure_removes_the_person_everywhere_and_they_stay_gone(srv):
    eve, bob = Person("erase"), Person("keep")
    populate(srv, eve)
    populate(srv, bob)
    run_request(srv, "access", {"user_id": eve.user_id})  # an export that must go too
    time.sleep(0.3)
    assert scan(srv.data, [], eve.secrets()), "the person's data should be on disk before"

    done = run_request(srv, "erasure", {"email": eve.email.upper()})
    receipt = done["receipt"]
    stores = receipt["stores"]
    assert receipt["profiles"] == 1
    assert stores["state"]["profiles"] == 1
    assert stores["state"]["identities"] >= 4  # user id, anonymous id, email, phone
    assert stores["state"]["timeline"] == 4
    assert stores["event_log"]["events"] == 4
    assert stores["event_log"]["data_keys"] >= 2  # user id and anonymous id keys
    assert stores["decisions"]["decisions"] >= 1
    assert stores["consent"]["records"] >= 1
    assert stores["quarantine"]["entries"] == 1
    assert stores["privacy_exports"]["exports"] == 1
    assert stores["suppression"]["identifiers"] >= 4
    assert {"caches", "match_model"} <= set(stores)
    assert "export" not in done

    for ref in (f"email:{eve.email.lower()}", f"user_id:{eve.user_id}", f"phone:{eve.phone}"):
        assert profile_status(srv, ref) == 404
    with srv.admin() as a:
        assert a.get(f"/v1/profiles/user_id:{eve.user_id}/events").status_code == 404

    # late and retried events (same and new messageIds) are acknowledged and dropped
    before = srv.stats()["events_suppressed"]
    late = {
        "type": "track",
        "messageId": f"{eve.user_id}-new",
        "userId": eve.user_id,
        "event": "Product Viewed",
        "properties": {"product_id": "sku-3"},
    }
    out = send(srv, [*eve.events(), late])
    assert out == {"success": True}
    srv.wait_processed()
    assert srv.stats()["events_suppressed"] == before + 5
    assert profile_status(srv, f"user_id:{eve.user_id}") == 404
    assert profile_status(srv, f"anonymous_id:{eve.anonymous_id}") == 404
    assert profile_status(srv, f"email:{eve.email.lower()}") == 404

    # the other person is untouched
    assert profile_status(srv, f"email:{bob.email.lower()}") == 200
    with srv.admin() as a:
        events = a.get(f"/v1/profiles/user_id:{bob.user_id}/events").json()["events"]
    assert [e["messageId"] for e in events] == [f"{bob.user_id}-{i}" for i in (1, 2, 3, 4)]
    assert events[2]["traits"]["firstName"] == bob.first

    # no byte of the person anywhere in the data folder or the server's log
    assert scan(srv.data, [srv.log_path], eve.secrets()) == {}
    assert scan(srv.data, [], bob.secrets()), "the other person's data is still held"


@pytest.mark.embedded("plants the request in privacy.db, the SQLite file")
def test_a_pending_request_survives_a_restart(tmp_path):
    data = tmp_path / "data"
    zed = Person("restart")
    with SegueServer(data) as server:
        send(server, zed.events())
        server.wait_processed()
    store = Sync(SqlitePrivacyStore(data))
    store.put(
        PrivacyRequest(
            request_id="pr_resumed",
            type="erasure",
            created_at=time.time(),
            updated_at=time.time(),
            user={"user_id": zed.user_id},
        )
    )
    store.close()
    with SegueServer(data) as server:
        done = wait_done(server, "pr_resumed")
        assert done["receipt"]["stores"]["event_log"]["events"] == 4
        assert profile_status(server, f"email:{zed.email.lower()}") == 404
        assert scan(data, [], zed.secrets()) == {}


def _documented_errors() -> str:
    doc = Path(__file__).resolve().parents[2] / "docs" / "privacy-requests.md"
    paragraph = doc.read_text().split("\nErrors: ", 1)[1].split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def test_bad_requests_are_refused(srv):
    """Each bad body gets the code and field that docs/privacy-requests.md names for it."""
    documented = _documented_errors()
    with srv.admin() as a:
        for body, case in [
            ({"type": "delete", "user": {"a": "b"}}, "a `type` that is not"),
            ({"type": "erasure", "user": {}}, "an empty `user`"),
            ({"type": "erasure", "user": {"email": "not-an-email"}}, "no value is a usable"),
        ]:
            r = a.post("/v1/privacy/requests", json=body)
            assert r.status_code == 400
            code, field = r.json()["code"], r.json()["field"]
            # the sentence that describes this case names its code and its field
            sentence = next(s for s in documented.split(". ") if case in s)
            assert f"`400 {code}`" in sentence, (body, code, sentence)
            assert f"(`field` is `{field}`)" in sentence, (body, field, sentence)
        assert a.get("/v1/privacy/requests/pr_nope").status_code == 404
    r = httpx.post(
        srv.url + "/v1/privacy/requests",
        json={"type": "access", "user": {"user_id": "x"}},
        headers=PUB,
    )
    assert r.status_code == 401


def test_events_sent_before_consent_are_exported_and_erased_with_the_person(srv):
    """An event from an opt-in region without analytics consent is logged but attached to
    no profile; it is still the person's: their access export holds it, their erasure
    removes it from the log."""
    tag = uuid.uuid4().hex[:8]
    uid, marker = f"before-{tag}", f"Marker{tag}"
    silent = {
        "type": "track",
        "messageId": f"{uid}-0",
        "userId": uid,
        "event": "Product Viewed",
        "properties": {"product_id": "sku-2", "list": marker},
        "context": {"location": {"country": "DE"}},
    }
    send(srv, [silent])
    srv.wait_processed()
    assert profile_status(srv, f"user_id:{uid}") == 404  # taken in by no profile
    granted = {"analytics": True, "personalization": True}
    with httpx.Client(base_url=srv.url, headers=PUB) as c:
        r = c.put("/v1/consent", json={"user": {"user_id": uid}, "purposes": granted})
        assert r.status_code == 200, r.text
    later = [
        {"type": "identify", "messageId": f"{uid}-1", "userId": uid, "traits": {"plan": "x"}},
        {"type": "page", "messageId": f"{uid}-2", "userId": uid, "name": "Home"},
    ]
    send(srv, [{**m, "context": {"location": {"country": "DE"}}} for m in later])
    srv.wait_processed()
    assert profile_status(srv, f"user_id:{uid}") == 200
    export = run_request(srv, "access", {"user_id": uid})["export"]
    assert [e["messageId"] for e in export["events"]] == [f"{uid}-{i}" for i in (0, 1, 2)]
    # on a cluster the log is a NATS stream: the receipt's counts say it there
    assert CLUSTER or scan(srv.data, [], [marker.encode()]), "the event is in the log before"
    receipt = run_request(srv, "erasure", {"user_id": uid})["receipt"]
    assert receipt["stores"]["event_log"]["events"] == 3
    assert receipt["stores"]["state"]["unattached_events"] == 1
    assert CLUSTER or scan(srv.data, [], [marker.encode()]) == {}


def test_an_erased_person_leaves_no_identifier_in_another_profile_s_separations(srv):
    tag = uuid.uuid4().hex[:8]
    joe, kiosk, email = f"joe-{tag}", f"kiosk-{tag}", f"xavier.{tag}@example.com"
    send(
        srv,
        [
            {"type": "identify", "userId": joe, "traits": {"firstName": "Joe"}},
            {"type": "identify", "anonymousId": kiosk, "traits": {"email": email}},
            # a wrong link, then undone: each profile keeps a separation naming both sides
            {"type": "alias", "userId": joe, "previousId": kiosk},
        ],
    )
    srv.wait_processed()
    with srv.admin() as a:
        merged = a.get(f"/v1/profiles/user_id:{joe}").json()
        (merge,) = merged["merges"]
        r = a.post(f"/v1/profiles/user_id:{joe}/unmerge", json={"profile_id": merge["profile_id"]})
        assert r.status_code == 200, r.text
    assert CLUSTER or scan(srv.data, [], [email.encode()]), "the email is held before"
    export = run_request(srv, "access", {"user_id": joe})["export"]
    assert email not in str(export)  # the other side is counted, not named
    assert export["profiles"][0]["separations"][0]["others"] >= 1
    receipt = run_request(srv, "erasure", {"email": email})["receipt"]
    assert receipt["stores"]["state"]["separations_elsewhere"] == 1
    with srv.admin() as a:
        after = a.get(f"/v1/profiles/user_id:{joe}").json()
    assert email not in str(after)
    # joe's profile named the email in its separation: no byte of it is left anywhere
    assert CLUSTER or scan(srv.data, [], [email.encode()]) == {}


def _redis_dump(url: str, prefix: str) -> dict[bytes, bytes]:
    """Every key under ``prefix`` with its value (strings; the type for anything else)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        out: dict[bytes, bytes] = {}
        for name in client.scan_iter(match=prefix + "*", count=1000):
            kind = client.type(name)
            out[name] = client.get(name) or b"" if kind == b"string" else kind
        return out
    finally:
        client.close()


def test_an_erasure_leaves_no_identifier_in_redis_key_names_or_values(tmp_path, redis_url):
    """With the Redis shared cache: after an erasure, no key name and no value in Redis
    holds the person's identifiers or profile id, not even the keys the erasure's own
    invalidation writes."""
    url, prefix = redis_url
    env = {"SEGUE_REDIS_URL": f"{url}?prefix={prefix}"}
    with SegueServer(tmp_path / "data", env=env) as server:
        items = [
            {"item_id": f"sku-{i}", "title": f"Item {i}", "category": "Shoes", "price": 10.0 + i}
            for i in range(10)
        ]
        with server.admin() as a:
            assert a.post("/v1/catalog/items", json={"items": items}).status_code == 200
        rz = Person("rz")
        populate(server, rz)
        with server.admin() as a:
            profile_id = a.get(f"/v1/profiles/user_id:{rz.user_id}").json()["profile_id"]
        for user in ({"email": rz.email.lower()}, {"phone": rz.phone}):
            r = httpx.post(
                server.url + "/v1/decide",
                json={"placement": "home", "user": user, "k": 3},
                headers=PUB,
            )
            assert r.status_code == 200, r.text
            assert r.json()["personalized"] is True
        cached = _redis_dump(url, prefix)
        assert any(rz.email.lower().encode() in value for value in cached.values()), (
            "the shared cache holds the person's profile facts before the erasure"
        )

        run_request(server, "erasure", {"email": rz.email})
        needles = [
            *rz.secrets(),
            rz.user_id.encode(),
            rz.anonymous_id.encode(),
            profile_id.encode(),
        ]
        left = {
            name: [n.decode() for n in needles if n in name or n in value]
            for name, value in _redis_dump(url, prefix).items()
        }
        assert any(name.startswith(f"{prefix}g:".encode()) for name in left)  # generations
        assert {name: hits for name, hits in left.items() if hits} == {}
