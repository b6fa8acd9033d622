"""Consent end to end: PUT /v1/consent, consent in events, region policy, TCF / US Privacy /
GPC, an Art. 22 objection — and a revocation that holds for the very next decide, under load."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from segue.privacy.tcf import consent_string
from tests.e2e.server import ADMIN_KEY, PUBLISHABLE_KEY, SegueServer

pytestmark = pytest.mark.e2e

VENDOR = 755
PUB = {"Authorization": f"Bearer {PUBLISHABLE_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def tc_string(purposes: set[int], vendors: set[int]) -> str:
    return consent_string(purposes, vendors)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("consent")
    with SegueServer(folder / "data", env={"SEGUE_TCF_VENDOR_ID": str(VENDOR)}) as server:
        items = [
            {"item_id": f"sku-{i}", "title": f"Item {i}", "category": "Shoes", "price": 10.0 + i}
            for i in range(20)
        ]
        with server.admin() as a:
            assert a.post("/v1/catalog/items", json={"items": items}).status_code == 200
        yield server


def known(srv: SegueServer, user: str, context: dict | None = None) -> None:
    """Make ``user`` a known person with some behaviour."""
    with srv.writer() as w:
        r = w.post(
            "/v1/batch",
            json={
                "batch": [
                    {
                        "type": "identify",
                        "userId": user,
                        "traits": {"email": f"{user}@example.com"},
                    },
                    {
                        "type": "track",
                        "userId": user,
                        "event": "Product Viewed",
                        "properties": {"product_id": "sku-3", "category": "Shoes"},
                    },
                ],
                "context": context or {},
            },
        )
        assert r.status_code == 200, r.text
    srv.wait_processed()


def decide(srv: SegueServer, user: str, context: dict | None = None, headers=None) -> dict:
    r = httpx.post(
        srv.url + "/v1/decide",
        json={"placement": "home", "user": {"user_id": user}, "k": 3, "context": context or {}},
        headers={**PUB, **(headers or {})},
    )
    assert r.status_code == 200, r.text
    return r.json()


def put_consent(srv: SegueServer, body: dict, headers=None) -> dict:
    r = httpx.put(srv.url + "/v1/consent", json=body, headers={**PUB, **(headers or {})})
    assert r.status_code == 200, r.text
    return r.json()


def test_revocation_and_grant_take_effect_on_the_next_request(srv):
    known(srv, "rev-1")
    assert decide(srv, "rev-1")["personalized"] is True
    out = put_consent(srv, {"user": {"user_id": "rev-1"}, "purposes": {"personalization": False}})
    assert out["purposes"]["personalization"]["allowed"] is False
    assert out["purposes"]["personalization"]["recorded"] is False
    refused = decide(srv, "rev-1")
    assert refused["personalized"] is False
    assert refused["explanation"]["reason"] == "personalization_refused"
    put_consent(srv, {"user": {"user_id": "rev-1"}, "purposes": {"personalization": True}})
    assert decide(srv, "rev-1")["personalized"] is True


def test_consent_given_under_another_identifier_of_the_person_counts(srv):
    known(srv, "multi-1")
    put_consent(
        srv, {"user": {"email": "multi-1@example.com"}, "purposes": {"personalization": False}}
    )
    assert decide(srv, "multi-1")["explanation"]["reason"] == "personalization_refused"
    profile = httpx.get(srv.url + "/v1/profiles/user_id:multi-1", headers=ADMIN).json()
    assert profile["consent"]["personalization"] == {
        "allowed": False,
        "reason": "personalization_refused",
    }


def test_consent_under_an_email_or_phone_as_typed_is_the_person_s(srv):
    known(srv, "typed-1")
    # the profile holds typed-1@example.com; a consent manager sends what the person typed
    put_consent(
        srv, {"user": {"email": " Typed-1@Example.COM "}, "purposes": {"personalization": False}}
    )
    assert decide(srv, "typed-1")["explanation"]["reason"] == "personalization_refused"
    seen = httpx.get(srv.url + "/v1/consent/email:TYPED-1@example.com", headers=ADMIN).json()
    assert seen["purposes"]["personalization"]["allowed"] is False
    assert "email:typed-1@example.com" in seen["subjects"]
    # decide sent the address as typed finds the person too
    r = httpx.post(
        srv.url + "/v1/decide",
        json={"placement": "home", "user": {"email": "TYPED-1@example.com"}, "k": 3},
        headers=PUB,
    )
    assert r.json()["explanation"]["reason"] == "personalization_refused"
    # the ledger holds the address as the profile does: an erasure finds and removes it
    with srv.admin() as a:
        erasure = {"type": "erasure", "user": {"user_id": "typed-1"}}
        request_id = a.post("/v1/privacy/requests", json=erasure).json()["request_id"]
        deadline = time.monotonic() + 30
        while (done := a.get(f"/v1/privacy/requests/{request_id}").json())["status"] != "done":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert done["receipt"]["stores"]["consent"]["records"] >= 1
    r = httpx.put(
        srv.url + "/v1/consent",
        json={"user": {"email": "not-an-address"}, "purposes": {"analytics": True}},
        headers=PUB,
    )
    assert r.status_code == 400
    assert r.json()["field"] == "$.user.email"


def test_an_analytics_refusal_under_the_email_holds_for_events_under_the_user_id(srv):
    known(srv, "refuser-1")
    profile = httpx.get(srv.url + "/v1/profiles/user_id:refuser-1", headers=ADMIN).json()
    before = profile["event_count"]
    put_consent(srv, {"user": {"email": "refuser-1@example.com"}, "purposes": {"analytics": False}})
    with srv.writer() as w:
        track = {
            "userId": "refuser-1",
            "event": "Product Viewed",
            "properties": {"product_id": "sku-4"},
            "context": {"ip": "198.51.100.23"},
        }
        assert w.post("/v1/track", json=track).status_code == 200
    srv.wait_processed()
    after = httpx.get(srv.url + "/v1/profiles/user_id:refuser-1", headers=ADMIN).json()
    assert after["event_count"] == before  # kept in the log, taken in by no profile
    log = httpx.get(srv.url + "/v1/admin/log?limit=1000", headers=ADMIN).json()
    assert "198.51.100.23" not in str(log)


def test_no_stale_personalised_answer_after_a_revocation_under_concurrent_load(srv):
    known(srv, "load-1")
    put_consent(srv, {"user": {"user_id": "load-1"}, "purposes": {"personalization": True}})

    async def scenario() -> tuple[list[tuple[float, bool]], float]:
        seen: list[tuple[float, bool]] = []
        revoked_at = float("inf")
        stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=srv.url, headers=PUB, timeout=30) as client:

            async def loop() -> None:
                while not stop.is_set():
                    started = time.monotonic()
                    r = await client.post(
                        "/v1/decide", json={"placement": "home", "user": {"user_id": "load-1"}}
                    )
                    seen.append((started, r.json()["personalized"]))

            workers = [asyncio.create_task(loop()) for _ in range(16)]
            await asyncio.sleep(1.0)
            r = await client.put(
                "/v1/consent",
                json={"user": {"user_id": "load-1"}, "purposes": {"personalization": False}},
            )
            assert r.status_code == 200
            revoked_at = time.monotonic()
            await asyncio.sleep(1.0)
            stop.set()
            await asyncio.gather(*workers)
        return seen, revoked_at

    seen, revoked_at = asyncio.run(scenario())
    before = [p for t, p in seen if t < revoked_at]
    after = [p for t, p in seen if t > revoked_at]
    assert before.count(True) > 20  # it was personalised, under load, before
    assert len(after) > 20
    assert after.count(True) == 0  # and never after the revocation was acknowledged


def test_opt_in_regions_need_a_grant_and_tcf_strings_give_it_only_properly(srv):
    known(srv, "eu-1", {"consent": {"categoryPreferences": {"analytics": True}}})
    put_consent(srv, {"user": {"user_id": "eu-1"}, "region": "de"})
    silent = decide(srv, "eu-1")
    assert silent["personalized"] is False
    assert silent["explanation"]["reason"] == "no_consent_opt_in_region"
    # a valid TC string with purposes 5 and 6 but without segue's vendor: still no
    put_consent(srv, {"user": {"user_id": "eu-1"}, "tcf": tc_string({1, 5, 6}, {1, 2})})
    assert decide(srv, "eu-1")["personalized"] is False
    # purposes 5 and 6 and the vendor: yes
    out = put_consent(srv, {"user": {"user_id": "eu-1"}, "tcf": tc_string({1, 5, 6}, {VENDOR})})
    assert out["regime"] == "opt_in"
    assert out["purposes"]["personalization"]["allowed"] is True
    assert decide(srv, "eu-1")["personalized"] is True
    # a truncated string is no consent, not all purposes granted
    broken = tc_string(set(range(1, 12)), {VENDOR})[:20]
    out = put_consent(srv, {"user": {"user_id": "eu-1"}, "tcf": broken})
    assert {p: v["allowed"] for p, v in out["purposes"].items()} == {
        "necessary": True,
        "analytics": False,
        "personalization": False,
        "marketing": False,
        "advertising": False,
        "automated_decisions": False,
    }
    assert decide(srv, "eu-1")["personalized"] is False
    ledger = httpx.get(srv.url + "/v1/consent/user_id:eu-1", headers=ADMIN).json()["history"]
    assert broken in ledger[-1]["proof"]  # the proof is the raw string
    assert "tcf_error" in ledger[-1]["proof"]


def test_us_privacy_and_gpc_opt_out_of_sale_but_not_of_first_party_personalization(srv):
    known(srv, "ca-1")
    out = put_consent(srv, {"user": {"user_id": "ca-1"}, "region": "US-CA", "usp": "1YYN"})
    assert out["regime"] == "opt_out"
    assert out["purposes"]["advertising"]["allowed"] is False
    assert out["purposes"]["personalization"]["allowed"] is True
    known(srv, "gpc-1")
    out = put_consent(srv, {"user": {"user_id": "gpc-1"}, "region": "US-CA"}, {"Sec-GPC": "1"})
    assert out["gpc"] is True
    assert out["purposes"]["advertising"]["reason"] == "global_privacy_control"
    assert out["purposes"]["marketing"]["allowed"] is False
    assert decide(srv, "gpc-1", headers={"Sec-GPC": "1"})["personalized"] is True
    malformed = put_consent(srv, {"user": {"user_id": "ca-1"}, "usp": "9ZZZ"})
    assert malformed["purposes"]["advertising"]["allowed"] is False


def test_an_objection_to_automated_decisions_gets_the_contextual_answer(srv):
    known(srv, "art22-1")
    put_consent(srv, {"user": {"user_id": "art22-1"}, "objects_to_automated_decisions": True})
    out = decide(srv, "art22-1")
    assert out["personalized"] is False
    assert out["explanation"]["reason"] == "objected_to_automated_decisions"
    assert out["items"]  # still an answer: contextual


def test_consent_in_events_is_recorded_and_enforced_without_analytics_events_stay_unattached(srv):
    # consent in the event context goes to the ledger once and governs later decisions
    known(srv, "evt-1", {"consent": {"categoryPreferences": {"personalization": False}}})
    ledger = httpx.get(srv.url + "/v1/consent/user_id:evt-1", headers=ADMIN).json()["history"]
    assert [(e["source"], e["purposes"]) for e in ledger] == [
        ("event:default", {"personalization": False})
    ]
    assert decide(srv, "evt-1")["explanation"]["reason"] == "personalization_refused"
    # an opt-in region without analytics consent: logged, but no profile takes the events in
    with srv.writer() as w:
        r = w.post(
            "/v1/identify",
            json={
                "userId": "eu-silent-1",
                "traits": {"email": "eu.silent@example.com", "firstName": "Erika"},
                "context": {"location": {"country": "DE"}, "ip": "192.0.2.77"},
            },
        )
        assert r.status_code == 200
    srv.wait_processed()
    assert httpx.get(srv.url + "/v1/profiles/user_id:eu-silent-1", headers=ADMIN).status_code == 404
    log = httpx.get(srv.url + "/v1/admin/log?limit=1000", headers=ADMIN).json()
    text = str(log)
    assert "eu-silent-1" in text  # the event was kept (acknowledged events are never lost)
    assert "eu.silent@example.com" not in text
    assert "Erika" not in text
    assert "192.0.2.77" not in text


def test_sec_gpc_on_collection_counts_as_context_gpc(srv):
    """docs/privacy.md: `Sec-GPC: 1` on any request counts, the collection paths included:
    the message is screened as one with `context.gpc` true."""
    event = {"event": "Product Viewed", "properties": {"product_id": "sku-1"}}
    with srv.writer() as w:
        sent = [
            w.post("/v1/track", json={"userId": "gpc-ctx-1", "context": {"gpc": True}, **event}),
            w.post("/v1/track", json={"userId": "gpc-hdr-1", **event}, headers={"Sec-GPC": "1"}),
            w.post(
                "/v1/batch",
                json={"batch": [{"type": "track", "userId": "gpc-hdr-2", **event}]},
                headers={"Sec-GPC": "1"},
            ),
            w.post("/v1/track", json={"userId": "gpc-none-1", **event}, headers={"Sec-GPC": "0"}),
        ]
    assert [r.status_code for r in sent] == [200] * 4, [r.text for r in sent]

    def consent(user: str) -> dict:
        r = httpx.get(srv.url + f"/v1/consent/user_id:{user}", headers=ADMIN)
        assert r.status_code == 200, r.text
        return r.json()

    by_context = consent("gpc-ctx-1")
    assert by_context["gpc"] is True
    assert by_context["purposes"]["advertising"]["reason"] == "global_privacy_control"
    for user in ("gpc-hdr-1", "gpc-hdr-2"):
        by_header = consent(user)
        assert by_header["gpc"] is True, by_header
        assert by_header["purposes"] == by_context["purposes"]
        [entry] = by_header["history"]
        assert (entry["source"], entry["gpc"]) == ("event:default", True)
    assert consent("gpc-none-1")["gpc"] is not True


def test_bad_consent_requests_are_clear_4xx(srv):
    url = srv.url + "/v1/consent"
    assert httpx.put(url, json={"user": {"user_id": "x"}}).status_code == 401
    r = httpx.put(url, json={"user": {"user_id": "x"}}, headers=PUB)
    assert r.status_code == 400
    assert r.json()["code"]
    r = httpx.put(url, json={"user": {}, "purposes": {"analytics": True}}, headers=PUB)
    assert r.status_code == 400
    assert r.json()["field"].startswith("$.user")
    r = httpx.put(
        url, json={"user": {"user_id": "x"}, "purposes": {"telepathy": True}}, headers=PUB
    )
    assert r.status_code == 400
    assert r.json()["field"] == "$.purposes.telepathy"
    r = httpx.put(
        url, json={"user": {"user_id": "x"}, "purposes": {"analytics": "yes"}}, headers=PUB
    )
    assert r.status_code == 400
    assert httpx.get(srv.url + "/v1/consent/user_id:x", headers=PUB).status_code in (401, 403)


def test_without_consent_events_count_only_in_aggregates_when_configured(tmp_path):
    (tmp_path / "segue.yaml").write_text(
        "privacy:\n  default_region: EEA\n  aggregate_unattached: true\n"
        "placements:\n  home:\n    exploration: false\n    strategy: popular\n"
    )
    with SegueServer(tmp_path / "data", args=["--config", str(tmp_path / "segue.yaml")]) as srv:
        items = [
            {"item_id": f"sku-{i}", "title": f"Item {i}", "category": "Shoes"} for i in range(20)
        ]
        with srv.admin() as a:
            assert a.post("/v1/catalog/items", json={"items": items}).status_code == 200
        views = [
            {
                "type": "track",
                "anonymousId": f"visitor-{n}",
                "event": "Product Viewed",
                "properties": {"product_id": "sku-7", "category": "Shoes"},
            }
            for n in range(30)
        ]
        with srv.writer() as w:
            assert w.post("/v1/batch", json={"batch": views}).status_code == 200
        stats = srv.wait_processed()
        assert stats["profiles"] == 0  # nobody was profiled: no analytics consent in the EEA
        # with ``segue worker`` the API processes take the item models the worker shares
        # every few seconds; in one process they are the same objects
        deadline = time.monotonic() + 10
        while True:
            r = httpx.post(
                srv.url + "/v1/decide",
                json={"placement": "home", "user": {}, "k": 3},
                headers=PUB,
            )
            out = r.json()
            if out["items"][0]["item_id"] == "sku-7" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert out["personalized"] is False
        assert out["items"][0]["item_id"] == "sku-7"  # but the crowd's views still count
