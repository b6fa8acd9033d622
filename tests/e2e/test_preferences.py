"""The preference centre end to end: stated interests lead, exclusions are never shown, the
statement has lineage, only the preference centre speaks for the person, consent still rules."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.server import ADMIN_KEY, PUBLISHABLE_KEY, SegueServer

pytestmark = pytest.mark.e2e

PUB = {"Authorization": f"Bearer {PUBLISHABLE_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CATEGORIES = ["Shoes", "Bags", "Hats", "Coats"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prefs")
    (folder / "segue.yaml").write_text(
        "placements:\n  steady:\n    exploration: false\n    max_per_category: 10\n"
    )
    with SegueServer(folder / "data", args=["--config", str(folder / "segue.yaml")]) as server:
        items = [
            {
                "item_id": f"sku-{i}",
                "title": f"Item {i}",
                "category": CATEGORIES[i % 4],
                "brand": f"Brand{i % 5}",
                "price": 10.0 + i,
            }
            for i in range(80)
        ]
        with server.admin() as a:
            assert a.post("/v1/catalog/items", json={"items": items}).status_code == 200
        # some popularity everywhere, and a person who browsed shoes and bags
        with server.writer() as w:
            batch = [
                {
                    "type": "track",
                    "anonymousId": f"crowd-{i}",
                    "event": "Product Viewed",
                    "properties": {"product_id": f"sku-{i}", "category": CATEGORIES[i % 4]},
                }
                for i in range(80)
            ]
            batch += [
                {
                    "type": "track",
                    "userId": "pat",
                    "event": "Product Viewed",
                    "properties": {"product_id": f"sku-{i}", "category": CATEGORIES[i % 4]},
                }
                for i in (0, 1, 4, 5, 8, 9)
            ]
            assert w.post("/v1/batch", json={"batch": batch}).status_code == 200
        server.wait_processed()
        yield server


def decide(srv, user="pat", k=8, context=None):
    r = httpx.post(
        srv.url + "/v1/decide",
        json={"placement": "steady", "user": {"user_id": user}, "k": k, "context": context or {}},
        headers=PUB,
    )
    assert r.status_code == 200, r.text
    return r.json()


def category(item_id: str) -> str:
    return CATEGORIES[int(item_id.split("-")[1]) % 4]


def test_stated_interests_lead_and_exclusions_are_never_shown(srv):
    before = decide(srv)
    assert before["personalized"] is True
    assert "Coats" not in {category(i["item_id"]) for i in before["items"][:3]}
    r = httpx.put(
        srv.url + "/v1/preferences",
        json={
            "user": {"user_id": "pat"},
            "interests": ["Coats"],
            "channels": {"email": True, "sms": False},
            "exclusions": {"categories": ["Bags"], "items": ["sku-0"], "brands": ["Brand3"]},
        },
        headers=PUB,
    )
    assert r.status_code == 200, r.text
    srv.wait_processed()
    after = decide(srv, k=12)
    shown = [i["item_id"] for i in after["items"]]
    assert "Bags" not in {category(i) for i in shown}
    assert "sku-0" not in shown
    assert not {i for i in shown if int(i.split("-")[1]) % 5 == 3}  # Brand3
    assert after["explanation"]["removed"]["excluded_by_preference"] > 0
    coats = [i for i in after["items"] if category(i["item_id"]) == "Coats"]
    assert len(coats) >= 3
    assert any(i["reason"] == "you told us you like Coats" for i in coats)


def test_preferences_have_lineage_and_only_the_preference_centre_speaks_for_the_person(srv):
    got = httpx.get(srv.url + "/v1/preferences/user_id:pat", headers=ADMIN).json()
    assert got["preferences"]["interests"] == ["Coats"]
    assert got["preferences"]["channels"] == {"email": True, "sms": False}
    assert got["lineage"]["source"] == "preference_center"
    assert got["lineage"]["legal_basis"] == "consent"
    # a write-key source sending a trait with the same name does not speak for the person
    with srv.writer() as w:
        r = w.post(
            "/v1/identify",
            json={
                "userId": "sam",
                "traits": {"preferences": {"exclusions": {"categories": CATEGORIES}}},
            },
        )
        assert r.status_code == 200
    srv.wait_processed()
    assert decide(srv, user="sam")["items"]  # nothing was excluded for sam
    got = httpx.get(srv.url + "/v1/preferences/user_id:sam", headers=ADMIN).json()
    assert got["preferences"] == {}


def test_without_personalization_consent_preferences_are_not_read(srv):
    r = httpx.put(
        srv.url + "/v1/consent",
        json={"user": {"user_id": "pat"}, "purposes": {"personalization": False}},
        headers=PUB,
    )
    assert r.status_code == 200
    out = decide(srv, k=12)
    assert out["personalized"] is False
    assert "excluded_by_preference" not in out["explanation"]["removed"]


def test_bad_preference_requests(srv):
    url = srv.url + "/v1/preferences"
    assert httpx.put(url, json={"user": {"user_id": "x"}}).status_code == 401
    r = httpx.put(url, json={"user": {"email": "a@b.c"}, "interests": ["x"]}, headers=PUB)
    assert r.status_code == 400
    assert r.json()["field"] == "$.user"
    r = httpx.put(url, json={"user": {"user_id": "x"}, "interests": "Shoes"}, headers=PUB)
    assert r.status_code == 400
    assert r.json()["field"] == "$.interests"
    r = httpx.put(url, json={"user": {"user_id": "x"}, "colour": "red"}, headers=PUB)
    assert r.status_code == 400
    assert httpx.get(url + "/user_id:nobody", headers=ADMIN).status_code == 404
