"""Identity resolution end to end: stitching across channels, safe defaults, unmerge."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.e2e.server import PUBLISHABLE_KEY

pytestmark = pytest.mark.e2e


def send(server, batch):
    with server.writer() as w:
        r = w.post("/v1/batch", json={"batch": batch})
        assert (r.status_code, r.json()) == (200, {"success": True}), r.text
    server.wait_processed()


def get(server, ref):
    with server.admin() as a:
        r = a.get(f"/v1/profiles/{ref}")
    assert r.status_code == 200, r.text
    return r.json()


def test_app_web_store_and_crm_become_one_profile(server):
    tag = uuid.uuid4().hex[:8]
    email = f"ann.{tag}@example.com"
    send(
        server,
        [
            # anonymous browsing in the app
            {
                "type": "screen",
                "anonymousId": f"app-{tag}",
                "name": "Home",
                "context": {"device": {"id": f"iphone-{tag}"}},
            },
            {
                "type": "track",
                "anonymousId": f"app-{tag}",
                "event": "Product Viewed",
                "properties": {"product_id": "p1"},
                "context": {"device": {"id": f"iphone-{tag}"}},
            },
            # the app user signs in with their email on the web
            {
                "type": "identify",
                "anonymousId": f"web-{tag}",
                "userId": f"u-{tag}",
                "traits": {"email": email, "firstName": "Ann", "lastName": "Smith"},
            },
            {"type": "alias", "userId": f"u-{tag}", "previousId": f"app-{tag}"},
        ],
    )
    send(
        server,
        [
            # store purchase: loyalty card and the same email written differently
            {
                "type": "identify",
                "anonymousId": f"pos:L-{tag}",
                "traits": {
                    "email": email.upper(),
                    "loyalty_id": f"L-{tag}",
                    "phone": "+1 415 555 2671",
                },
            },
            {
                "type": "track",
                "anonymousId": f"pos:L-{tag}",
                "event": "Order Completed",
                "properties": {
                    "order_id": f"o-{tag}",
                    "total": 30.0,
                    "products": [{"product_id": "p1", "price": 30.0, "quantity": 1}],
                },
            },
            # CRM record with a typo in the name, same email, its own id
            {
                "type": "identify",
                "anonymousId": f"crm:{tag}",
                "traits": {"email": email, "firstName": "Anne", "lastName": "Smith", "crm_id": tag},
                "context": {"externalIds": [{"id": tag, "type": "crm_id", "collection": "users"}]},
            },
        ],
    )
    profile = get(server, f"email:{email}")
    ids = {(i["type"], i["value"]) for i in profile["identities"]}
    assert {
        ("user_id", f"u-{tag}"),
        ("anonymous_id", f"app-{tag}"),
        ("anonymous_id", f"web-{tag}"),
        ("device_id", f"iphone-{tag}"),
        ("loyalty_id", f"L-{tag}"),
        ("crm_id", tag),
        ("email", email),
        ("phone", "+14155552671"),
        ("anonymous_id", f"pos:L-{tag}"),
        ("anonymous_id", f"crm:{tag}"),
    } <= ids
    for ref in (
        f"loyalty_id:L-{tag}",
        f"crm_id:{tag}",
        f"device_id:iphone-{tag}",
        "phone:+14155552671",
    ):
        assert get(server, ref)["profile_id"] == profile["profile_id"]
    assert profile["event_count"] == 7
    assert profile["traits"]["firstName"] == "Anne"  # most recent non-empty wins by default
    assert [a["value"] for a in profile["alternates"]["firstName"]] == ["Ann"]
    assert profile["lineage"]["firstName"]["rule"] == "non_empty"
    assert all(m["reason"] == "identifier" for m in profile["merges"])
    with server.admin() as a:
        events = a.get(f"/v1/profiles/email:{email}/events").json()["events"]
    assert [e["type"] for e in events] == [
        "screen",
        "track",
        "identify",
        "alias",
        "identify",
        "track",
        "identify",
    ]


def test_shared_tablet_and_junk_ids_do_not_over_merge(server):
    tag = uuid.uuid4().hex[:8]
    send(
        server,
        [
            {"type": "identify", "userId": f"alice-{tag}", "anonymousId": f"tablet-{tag}"},
            {"type": "identify", "userId": f"bob-{tag}", "anonymousId": f"tablet-{tag}"},
            {
                "type": "identify",
                "userId": f"carl-{tag}",
                "anonymousId": "undefined",
                "traits": {"email": "test@test.com"},
            },
            {
                "type": "identify",
                "userId": f"dana-{tag}",
                "anonymousId": "undefined",
                "traits": {"email": "test@test.com"},
            },
        ],
    )
    ids = {
        get(server, f"user_id:{n}-{tag}")["profile_id"] for n in ("alice", "bob", "carl", "dana")
    }
    assert len(ids) == 4
    with server.admin() as a:
        assert a.get("/v1/profiles/anonymous_id:undefined").status_code == 404
        assert a.get("/v1/profiles/email:test@test.com").status_code == 404


def test_unmerge_restores_both_profiles_and_they_stay_apart(server):
    tag = uuid.uuid4().hex[:8]
    send(
        server,
        [
            {
                "type": "identify",
                "userId": f"joe-{tag}",
                "traits": {"firstName": "Joe", "plan": "pro"},
            },
            {"type": "track", "userId": f"joe-{tag}", "event": "Product Viewed"},
            {"type": "identify", "anonymousId": f"kiosk-{tag}", "traits": {"firstName": "Jim"}},
            {"type": "track", "anonymousId": f"kiosk-{tag}", "event": "Product Added"},
            # a wrong link: the kiosk's anonymous id is attached to Joe
            {"type": "alias", "userId": f"joe-{tag}", "previousId": f"kiosk-{tag}"},
        ],
    )
    merged = get(server, f"user_id:joe-{tag}")
    assert get(server, f"anonymous_id:kiosk-{tag}")["profile_id"] == merged["profile_id"]
    assert merged["event_count"] == 5
    (merge,) = merged["merges"]
    with server.admin() as a:
        r = a.post(
            f"/v1/profiles/user_id:joe-{tag}/unmerge", json={"profile_id": merge["profile_id"]}
        )
        assert r.status_code == 200, r.text
        # the unmerged profile first, then the one split off
        assert r.json()["profiles"] == [merged["profile_id"], merge["profile_id"]]
    joe, kiosk = get(server, f"user_id:joe-{tag}"), get(server, f"anonymous_id:kiosk-{tag}")
    # both ids are back (which one survived the merge depends on creation order)
    assert {joe["profile_id"], kiosk["profile_id"]} == {merged["profile_id"], merge["profile_id"]}
    assert joe["traits"] == {"firstName": "Joe", "plan": "pro"}
    assert kiosk["traits"] == {"firstName": "Jim"}
    assert joe["event_count"] + kiosk["event_count"] == 5
    assert kiosk["event_count"] == 2
    # the same link arriving again does not re-merge them
    send(server, [{"type": "alias", "userId": f"joe-{tag}", "previousId": f"kiosk-{tag}"}])
    assert get(server, f"anonymous_id:kiosk-{tag}")["profile_id"] == kiosk["profile_id"]
    assert get(server, f"user_id:joe-{tag}")["profile_id"] == joe["profile_id"]
    with server.admin() as a:
        again = a.post(f"/v1/profiles/user_id:joe-{tag}/unmerge", json={"profile_id": "p_nope"})
        assert again.status_code == 404
        assert a.post(f"/v1/profiles/user_id:joe-{tag}/unmerge", content=b"{").status_code == 400


def decided_for(server, user):
    """The profile decide personalised for (None: it found nobody)."""
    auth = {"Authorization": f"Bearer {PUBLISHABLE_KEY}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=30.0) as c:
        r = c.post("/v1/decide", json={"placement": "home", "user": user, "k": 3})
        assert r.status_code == 200, r.text
        decision_id = r.json()["decision_id"]
    with server.admin() as a:
        r = a.get(f"/v1/decisions/{decision_id}")
    assert r.status_code == 200, r.text
    return r.json()["profile_id"]


def test_decide_follows_an_unmerge_at_once(server):
    """decide reads identity through caches (30 s); an unmerge must empty them, in every
    process, or the tablet keeps being personalised as the family member it was split from."""
    tag = uuid.uuid4().hex[:8]
    tablet, email = f"tablet-{tag}", f"family.{tag}@example.com"
    send(server, [{"type": "identify", "userId": f"7-{tag}", "traits": {"email": email}}])
    send(server, [{"type": "page", "anonymousId": tablet, "name": "Home"}])
    send(server, [{"type": "identify", "anonymousId": tablet, "traits": {"email": email}}])
    merged = get(server, f"anonymous_id:{tablet}")
    (merge,) = merged["merges"]
    # every API process has now cached the tablet as the merged profile
    for _ in range(4):
        assert decided_for(server, {"anonymous_id": tablet}) == merged["profile_id"]
    with server.admin() as a:
        r = a.post(
            f"/v1/profiles/user_id:7-{tag}/unmerge", json={"profile_id": merge["profile_id"]}
        )
        assert r.status_code == 200, r.text
    assert get(server, f"anonymous_id:{tablet}")["profile_id"] == merge["profile_id"]
    for _ in range(4):
        assert decided_for(server, {"anonymous_id": tablet}) == merge["profile_id"]


def test_identities_count_what_profiles_hold_after_a_merge(server):
    """A merge moves the merged-away profile's identifiers; it creates none of them."""
    tag = uuid.uuid4().hex[:8]
    before = server.stats()["identities"]
    email = f"six.{tag}@example.org"
    send(server, [{"type": "identify", "userId": f"u6-{tag}"}])
    send(server, [{"type": "identify", "anonymousId": f"b-{tag}", "traits": {"email": email}}])
    send(server, [{"type": "identify", "userId": f"u6-{tag}", "traits": {"email": email}}])
    profile = get(server, f"user_id:u6-{tag}")
    assert get(server, f"anonymous_id:b-{tag}")["profile_id"] == profile["profile_id"]
    assert len(profile["identities"]) == 3
    assert server.stats()["identities"] - before == 3
