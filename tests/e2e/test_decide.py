"""decide through HTTP: personalised and explained, never bought or out of stock, contextual
for strangers, fresh after a purchase, and learning from feedback."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.server import ADMIN_KEY, PUBLISHABLE_KEY, SegueServer

pytestmark = pytest.mark.e2e

CONFIG = """
placements:
  steady:
    exploration: false
    max_per_category: 40
    frequency_cap: null
"""


def item(i: int, **extra):
    return {
        "item_id": f"sku-{i}",
        "type": "product",
        "title": f"Item {i}",
        "category": ["Shoes", "Bags", "Hats"][i % 3],
        "brand": f"Brand{i % 4}",
        "price": 10.0 + i,
        "content": {"web": {"title": f"Item {i}", "url": f"/p/{i}"}},
        **extra,
    }


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decide")
    (folder / "segue.yaml").write_text(CONFIG)
    with SegueServer(folder / "data", args=["--config", str(folder / "segue.yaml")]) as srv:
        items = [item(i) for i in range(30)] + [item(30, stock=0), item(31, available=False)]
        with srv.admin() as a:
            r = a.post("/v1/catalog/items", json={"items": items})
            assert r.status_code == 200, r.text
            assert r.json()["stored"] == 32
        yield srv


def track(srv, user, event, **props):
    with srv.writer() as w:
        r = w.post("/v1/track", json={"userId": user, "event": event, "properties": props})
        assert r.status_code == 200, r.text


def decide(srv, body, headers=None):
    r = httpx.post(
        srv.url + "/v1/decide",
        json=body,
        headers={"Authorization": f"Bearer {PUBLISHABLE_KEY}", **(headers or {})},
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_known_person_gets_personalised_explained_items_never_bought_or_out_of_stock(shop):
    for i in (0, 3, 6, 9):  # Shoes
        track(shop, "ann", "Product Viewed", product_id=f"sku-{i}", category="Shoes")
    track(
        shop,
        "ann",
        "Order Completed",
        order_id="o-1",
        products=[{"product_id": "sku-3", "price": 13.0, "quantity": 1}],
    )
    shop.wait_processed()
    out = decide(shop, {"placement": "home", "user": {"user_id": "ann"}, "k": 10})
    ids = [i["item_id"] for i in out["items"]]
    assert out["personalized"] is True
    assert out["decision_id"]
    assert len(ids) == 10
    assert "sku-3" not in ids
    assert not {"sku-30", "sku-31"} & set(ids)
    assert all(i["reason"] and i["content"]["url"].startswith("/p/") for i in out["items"])
    assert out["explanation"]["data_categories"] == ["behavioural", "catalog"]
    shoes = sum(1 for i in ids if int(i.split("-")[1]) % 3 == 0)
    assert shoes >= 3  # her affinity shows


def test_a_purchase_excludes_the_item_from_the_very_next_decision(shop):
    body = {
        "placement": "steady",
        "user": {"user_id": "bob"},
        "k": 32,
        "candidates": [f"sku-{i}" for i in range(32)],
    }
    track(shop, "bob", "Product Viewed", product_id="sku-7")
    shop.wait_processed()
    assert "sku-7" in [i["item_id"] for i in decide(shop, body)["items"]]
    track(
        shop,
        "bob",
        "Order Completed",
        order_id="o-2",
        products=[{"product_id": "sku-7", "price": 17.0, "quantity": 1}],
    )
    shop.wait_processed()
    assert "sku-7" not in [i["item_id"] for i in decide(shop, body)["items"]]


def test_strangers_and_refusals_get_a_contextual_answer(shop):
    stranger = decide(
        shop,
        {
            "placement": "home",
            "user": {"anonymous_id": "never-seen"},
            "context": {"item_id": "sku-1", "region": "DE"},
        },
    )
    assert stranger["personalized"] is False
    assert stranger["strategy"] == "contextual"
    assert stranger["explanation"]["reason"] == "unknown_person"
    assert "sku-1" not in [i["item_id"] for i in stranger["items"]]
    empty = decide(shop, {"placement": "home", "user": {}})
    assert empty["personalized"] is False
    refused = decide(
        shop,
        {
            "placement": "home",
            "user": {"user_id": "ann"},
            "context": {"consent": {"categoryPreferences": {"personalization": False}}},
        },
    )
    assert refused["personalized"] is False
    assert refused["explanation"]["reason"] == "personalization_refused_in_request"


def test_feedback_changes_later_rankings(shop):
    body = {
        "placement": "steady",
        "user": {"user_id": "cara"},
        "k": 30,
        "candidates": [f"sku-{i}" for i in range(30)],
    }
    track(shop, "cara", "Product Viewed", product_id="sku-2")
    shop.wait_processed()
    before = decide(shop, body)
    version_before = before["explanation"]["model_version"]
    target = before["items"][-1]["item_id"]
    score_before = before["items"][-1]["score"]
    for n in range(15):
        d = decide(shop, body)
        with shop.writer() as w:
            r = w.post(
                "/v1/batch",
                json={
                    "batch": [
                        {
                            "type": "track",
                            "userId": "cara",
                            "event": "Decision Viewed",
                            "properties": {"decision_id": d["decision_id"]},
                        },
                        {
                            "type": "track",
                            "userId": "cara",
                            "event": "Product Clicked",
                            "properties": {
                                "decision_id": d["decision_id"],
                                "product_id": target,
                                "n": n,
                            },
                        },
                    ]
                },
            )
            assert r.status_code == 200
    shop.wait_processed()
    deadline = time.monotonic() + 10
    after = decide(shop, body)
    while after["explanation"]["model_version"] == version_before and time.monotonic() < deadline:
        time.sleep(0.1)
        after = decide(shop, body)
    assert after["explanation"]["model_version"] != version_before
    scores = {i["item_id"]: i["score"] for i in after["items"]}
    assert scores[target] > score_before
    ranks = [i["item_id"] for i in after["items"]]
    assert ranks.index(target) < len(ranks) - 1


def test_bad_requests_and_keys(shop):
    url = shop.url + "/v1/decide"
    auth = {"Authorization": f"Bearer {PUBLISHABLE_KEY}"}
    assert httpx.post(url, json={"placement": "x"}).status_code == 401
    r = httpx.post(url, json={"placement": "x", "k": 0}, headers=auth)
    assert (r.status_code, r.json()["field"]) == (400, "$.k")
    r = httpx.post(url, json={"k": 3}, headers=auth)
    assert r.status_code == 400
    assert r.json()["field"] == "$.placement"
    assert httpx.post(url, content=b"{", headers=auth).json()["code"] == "invalid_json"
    admin = httpx.post(
        url, json={"placement": "x"}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert admin.status_code == 200


def test_features_are_visible_on_the_profile(shop):
    track(shop, "dora", "Product Viewed", product_id="sku-4", category="Bags")
    track(shop, "dora", "Product Added", product_id="sku-4", price=14.0, quantity=2)
    shop.wait_processed()
    with shop.admin() as a:
        features = a.get("/v1/profiles/user_id:dora").json()["features"]
    assert features, "the profile shows its real-time features"
    text = str(features)
    assert "sku-4" in text
    assert "Bags" in text


def test_any_decision_can_be_explained_feature_by_feature(shop):
    track(shop, "explain-1", "Product Viewed", product_id="sku-4", category="Bags")
    shop.wait_processed()
    out = decide(shop, {"placement": "steady", "user": {"user_id": "explain-1"}, "k": 5})
    assert out["personalized"] is True
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    r = httpx.get(shop.url + f"/v1/decisions/{out['decision_id']}", headers=admin)
    assert r.status_code == 200, r.text
    why = r.json()
    assert [i["item_id"] for i in why["items"]] == [i["item_id"] for i in out["items"]]
    assert why["personalized"] is True
    assert "behavioural" in why["data_categories"]
    for item, shown in zip(why["items"], out["items"], strict=True):
        assert abs(sum(item["contributions"].values()) - shown["score"]) < 1e-3
        assert item["top_factors"]
        assert set(item["contributions"]) <= set(why["features_used"]) | {"bias"}
    assert httpx.get(shop.url + "/v1/decisions/nope", headers=admin).status_code == 404
    assert httpx.get(shop.url + f"/v1/decisions/{out['decision_id']}").status_code == 401
