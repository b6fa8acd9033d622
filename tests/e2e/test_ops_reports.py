"""The operator reads behind the dashboard, against a real server: consent rates per region
and purpose, the privacy request listing, a person's recent decisions, and the /ui files."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.server import ADMIN_KEY, PUBLISHABLE_KEY, SegueServer

pytestmark = pytest.mark.e2e

PUB = {"Authorization": f"Bearer {PUBLISHABLE_KEY}"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ops")
    with SegueServer(folder / "data") as server:
        items = [
            {"item_id": f"sku-{i}", "title": f"Item {i}", "category": "Shoes", "price": 10.0 + i}
            for i in range(12)
        ]
        with server.admin() as a:
            assert a.post("/v1/catalog/items", json={"items": items}).status_code == 200
        yield server


def _send(srv: SegueServer, batch: list[dict]) -> None:
    with srv.writer() as w:
        r = w.post("/v1/batch", json={"batch": batch})
        assert r.status_code == 200, r.text
    srv.wait_processed()


def test_consent_rates_count_people_per_region_and_purpose(srv):
    prefs = {"personalization": True, "analytics": True}
    de = {"consent": {"region": "DE", "categoryPreferences": prefs}}  # recorded with the grant
    _send(
        srv,
        [
            # one person: the anonymous visit grants in Germany, the login links the user id
            {
                "type": "page",
                "anonymousId": "anon-de",
                "context": de,
            },
            {"type": "identify", "anonymousId": "anon-de", "userId": "de-1"},
            {"type": "track", "userId": "ca-1", "event": "Product Viewed", "context": {}},
        ],
    )
    # the same German person refuses personalization later, under the user id
    r = httpx.put(
        srv.url + "/v1/consent",
        json={"user": {"user_id": "de-1"}, "purposes": {"personalization": False}},
        headers=PUB,
    )
    assert r.status_code == 200, r.text
    r = httpx.put(
        srv.url + "/v1/consent",
        json={"user": {"user_id": "ca-1"}, "region": "US-CA", "gpc": True},
        headers=PUB,
    )
    assert r.status_code == 200, r.text

    with srv.admin() as a:
        r = a.get("/v1/reports/consent")
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["people"] == 2  # anon-de and user_id:de-1 are one profile
    assert report["subjects"] >= 3
    regions = {x["region"]: x for x in report["regions"]}
    assert regions["DE"]["regime"] == "opt_in"
    assert regions["DE"]["people"] == 1
    personalization = regions["DE"]["purposes"]["personalization"]
    assert personalization == {"granted": 0, "refused": 1, "unset": 0, "allowed": 0}
    assert regions["DE"]["purposes"]["analytics"]["granted"] == 1
    ca = regions["US-CA"]["purposes"]
    assert ca["advertising"]["allowed"] == 0  # Global Privacy Control
    assert ca["personalization"]["allowed"] == 1  # opt-out default
    assert report["purposes"]["necessary"]["allowed"] == 2
    assert report["computed_at"].endswith("Z")
    assert httpx.get(srv.url + "/v1/reports/consent").status_code == 401


def test_privacy_requests_are_listed_newest_first_without_identifiers(srv):
    _send(srv, [{"type": "identify", "userId": "dsar-1", "traits": {"email": "d@example.com"}}])
    with srv.admin() as a:
        first = a.post(
            "/v1/privacy/requests", json={"type": "access", "user": {"user_id": "dsar-1"}}
        )
        second = a.post(
            "/v1/privacy/requests", json={"type": "erasure", "user": {"user_id": "nobody-x"}}
        )
        assert first.status_code == second.status_code == 202
        ids = [second.json()["request_id"], first.json()["request_id"]]
        deadline = time.monotonic() + 10
        while True:
            listed = a.get("/v1/privacy/requests", params={"limit": 2}).json()["requests"]
            if all(x["status"] == "done" for x in listed) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert [x["request_id"] for x in listed] == ids
        assert [x["type"] for x in listed] == ["erasure", "access"]
        assert all(x["status"] == "done" for x in listed)
        assert listed[1]["receipt"]["profiles"] == 1
        assert "user" not in listed[0]
        assert "dsar-1" not in a.get("/v1/privacy/requests").text
        bad = a.get("/v1/privacy/requests", params={"limit": "0"})
        assert bad.status_code == 400
        assert bad.json()["field"] == "limit"


def test_a_persons_recent_decisions_newest_first_and_audited(srv):
    _send(
        srv,
        [
            {"type": "identify", "userId": "dec-1", "traits": {"email": "dec@example.com"}},
            {
                "type": "track",
                "userId": "dec-1",
                "event": "Product Viewed",
                "properties": {"product_id": "sku-3", "category": "Shoes"},
            },
        ],
    )
    made = []
    for placement in ("home_hero", "cart", "product_detail"):
        r = httpx.post(
            srv.url + "/v1/decide",
            json={"placement": placement, "user": {"user_id": "dec-1"}, "k": 3},
            headers=PUB,
        )
        assert r.status_code == 200, r.text
        made.append(r.json()["decision_id"])
    with srv.admin() as a:
        deadline = time.monotonic() + 10
        while True:  # the decision log is written just after decide answers
            r = a.get("/v1/decisions", params={"profile": "email:dec@example.com", "limit": 5})
            assert r.status_code == 200, r.text
            listed = r.json()["decisions"]
            if len(listed) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert [d["decision_id"] for d in listed] == made[::-1]
        assert [d["placement"] for d in listed] == ["product_detail", "cart", "home_hero"]
        assert all(len(d["items"]) == 3 and d["created_at"].endswith("Z") for d in listed)
        assert (
            a.get("/v1/decisions", params={"profile": "user_id:dec-1", "limit": 1}).json()[
                "decisions"
            ][0]["decision_id"]
            == made[-1]
        )
        assert a.get("/v1/decisions", params={"profile": "user_id:nobody"}).status_code == 404
        bad = a.get("/v1/decisions", params={"profile": "nonsense"})
        assert (bad.status_code, bad.json()["field"]) == (400, "profile")
        deadline = time.monotonic() + 10
        while True:  # audit entries are written in the background, just after the read
            audit = a.get("/v1/audit", params={"action": "profile.read"}).json()["entries"]
            seen = any(e["details"].get("route") == "/v1/decisions" for e in audit)
            if seen or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert seen


def test_the_dashboard_files_are_served_with_a_strict_policy(srv):
    page = httpx.get(srv.url + "/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "default-src 'none'" in csp
    assert httpx.get(srv.url + "/ui/").text == page.text
    again = httpx.get(srv.url + "/ui", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    module = httpx.get(srv.url + "/ui/dashboard.js")
    assert module.status_code == 200
    assert module.headers["content-type"].startswith("text/javascript")
    for name in ("nope.js", "..%2Fapp.py", "%2E%2E%2Fhttp.py", "dashboard.py"):
        missing = httpx.get(srv.url + "/ui/" + name)
        assert missing.status_code == 404, name
        assert missing.json()["code"] == "not_found"
    assert ADMIN_KEY not in page.text
