"""The headless catalog end to end: item API, bulk upsert, paging, auth, feed import CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import ADMIN_KEY, PUBLISHABLE_KEY, WRITE_KEY, SegueServer, free_port

pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parents[1] / "data" / "catalog"
ITEMS = "/v1/catalog/items"


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def put(server: SegueServer, item_id: str, body: dict[str, Any]) -> httpx.Response:
    with server.admin() as admin:
        return admin.put(f"{ITEMS}/{item_id}", json=body)


def get(server: SegueServer, item_id: str, key: str = ADMIN_KEY) -> httpx.Response:
    return httpx.get(f"{server.url}{ITEMS}/{item_id}", headers=bearer(key), timeout=10)


def walk(server: SegueServer, limit: int, **filters: str) -> list[list[str]]:
    """Every page of the (filtered) catalog, as lists of ids."""
    pages: list[list[str]] = []
    after = ""
    with server.admin() as admin:
        while True:
            response = admin.get(ITEMS, params={"after": after, "limit": limit, **filters})
            assert response.status_code == 200, response.text
            body = response.json()
            pages.append([i["item_id"] for i in body["items"]])
            if body["next"] is None:
                return pages
            after = body["next"]


def catalog_import(server: SegueServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "segue", "catalog", "import", *args, "--url", server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_put_get_replace_delete(server):
    before = time.time()
    shoe = {
        "type": "product",
        "title": "Trail Runner 2",
        "category": "shoes",
        "brand": "Northwind",
        "price": 129.9,
        "tags": ["running", "trail"],
        "attributes": {"color": "red", "sizes": [40, 41, 42]},
        "stock": 12,
        "start_at": "2025-01-01T01:00:00+01:00",
        "content": {
            "web": {"headline": "Run further", "image_url": "https://cdn.example.com/1.jpg"},
            "app": {"deeplink": "shop://p/tr2"},
            "email": {"subject": "Your next trail shoe"},
        },
    }
    stored = put(server, "tr-2", shoe)
    assert stored.status_code == 200, stored.text
    item = stored.json()
    assert item["item_id"] == "tr-2"
    assert item["start_at"] == "2025-01-01T00:00:00.000Z"  # stored as epoch seconds, UTC
    assert item["end_at"] is None
    assert item["content"] == shoe["content"]
    assert item["available"] is True
    assert item["is_available_now"] is True
    updated = datetime.fromisoformat(item["updated_at"]).timestamp()
    assert before - 1 <= updated <= time.time() + 1  # set by the server

    got = get(server, "tr-2")
    assert got.status_code == 200
    assert got.json() == item

    # what GET answers can be PUT back as it is (read-only fields are ignored)
    again = put(server, "tr-2", got.json())
    assert again.status_code == 200, again.text
    assert {k: v for k, v in again.json().items() if k != "updated_at"} == {
        k: v for k, v in item.items() if k != "updated_at"
    }

    # a PUT replaces the whole item
    replaced = put(server, "tr-2", {"item_id": "tr-2", "title": "Trail Runner 2 (2024)"})
    assert replaced.status_code == 200
    body = get(server, "tr-2").json()
    assert (body["title"], body["category"], body["tags"], body["content"]) == (
        "Trail Runner 2 (2024)",
        None,
        [],
        {},
    )

    with server.admin() as admin:
        deleted = admin.delete(f"{ITEMS}/tr-2")
        assert (deleted.status_code, deleted.json()) == (200, {"item_id": "tr-2", "deleted": True})
        assert admin.delete(f"{ITEMS}/tr-2").status_code == 404
    missing = get(server, "tr-2")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")


def test_ids_with_slashes_and_unicode_round_trip(server):
    for item_id, path in (("a/b c", "a%2Fb%20c"), ("café-☕", "caf%C3%A9-%E2%98%95")):
        stored = put(server, path, {"title": "odd id"})
        assert stored.status_code == 200, stored.text
        assert stored.json()["item_id"] == item_id
        assert get(server, path).json()["item_id"] == item_id


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"price": -1}, "$.price", ">= 0"),
        ({"stock": -2}, "$.stock", ">= 0"),
        ({"type": "bundle"}, "$.type", "Invalid enum value 'bundle'"),
        ({"tags": ["ok", 3]}, "$.tags[1]", "Expected `str`"),
        ({"tags": "a;b"}, "$.tags", "Expected `array`"),
        ({"content": {"web": "<h1>hi</h1>"}}, "$.content.web", "is an object"),
        ({"colour": "red"}, "$.colour", "unknown field `colour`"),
        ({"start_at": "2025-01-01T00:00:00"}, "$.start_at", "timezone"),
        ({"start_at": 1735689600}, "$.start_at", "Expected `datetime | null`"),
        (
            {"start_at": "2025-02-01T00:00:00Z", "end_at": "2025-01-01T00:00:00Z"},
            "$.end_at",
            "after start_at",
        ),
        ({"start_at": "0001-01-01T00:00:00+01:00"}, "$.start_at", "between 1970 and 9999"),
        ({"available": "yes"}, "$.available", "Expected `bool`"),
        ({"item_id": ""}, "$.item_id", "length >= 1"),
    ],
)
def test_invalid_items_are_refused_with_the_field(server, body, field, says):
    response = put(server, "bad-1", body)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert (problem["code"], problem["field"]) == ("invalid_item", field)
    assert says in problem["message"]
    assert get(server, "bad-1").status_code == 404


def test_put_body_must_name_the_paths_id_and_be_json(server):
    mismatch = put(server, "sku-a", {"item_id": "sku-b", "title": "x"})
    assert mismatch.status_code == 400
    assert (mismatch.json()["code"], mismatch.json()["field"]) == ("item_id_mismatch", "$.item_id")
    with server.admin() as admin:
        broken = admin.put(f"{ITEMS}/sku-a", content=b'{"title": ')
        assert (broken.status_code, broken.json()["code"]) == (400, "invalid_json")
        listed = admin.put(f"{ITEMS}/sku-a", content=b"[]")
        assert (listed.status_code, listed.json()["field"]) == (400, "$")
    assert get(server, "sku-a").status_code == 404


def test_bulk_upsert_stores_valid_items_and_reports_the_others(server):
    items = [
        {"item_id": "bulk-1", "title": "first", "category": "bulk"},
        {"item_id": "bulk-2", "price": "12.00"},
        {"title": "no id"},
        {"item_id": "bulk-3", "type": "offer", "content": {"web": {"banner": "10% off"}}},
        "not an object",
        {"item_id": "bulk-1", "title": "first, corrected", "category": "bulk"},
    ]
    with server.admin() as admin:
        response = admin.post(ITEMS, json={"items": items})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["stored"] == 3
    assert [(r["index"], r["code"], r["field"]) for r in report["rejected"]] == [
        (1, "invalid_item", "$.price"),
        (2, "invalid_item", "$.item_id"),
        (4, "invalid_item", "$"),
    ]
    assert "Expected `float | null`, got `str`" in report["rejected"][0]["message"]
    assert get(server, "bulk-1").json()["title"] == "first, corrected"  # the last one wins
    assert get(server, "bulk-3").json()["content"] == {"web": {"banner": "10% off"}}
    assert get(server, "bulk-2").status_code == 404


def test_bulk_request_limits_and_shape(server):
    with server.admin() as admin:
        too_many = admin.post(ITEMS, json={"items": [{"item_id": f"x{n}"} for n in range(1001)]})
        assert too_many.status_code == 413
        assert (too_many.json()["code"], too_many.json()["field"]) == (
            "payload_too_large",
            "$.items",
        )
        not_a_list = admin.post(ITEMS, json={"items": {"item_id": "x"}})
        assert (not_a_list.status_code, not_a_list.json()["field"]) == (400, "$.items")
        no_items = admin.post(ITEMS, json={"products": []})
        assert no_items.status_code == 400
        big = {"item_id": "big-1", "content": {"web": {"html": "x" * (1024 * 1024 + 10)}}}
        one_too_big = admin.post(ITEMS, json={"items": [big, {"item_id": "small-1"}]})
        assert one_too_big.status_code == 200
        assert one_too_big.json()["stored"] == 1
        assert one_too_big.json()["rejected"][0]["code"] == "payload_too_large"
        empty = admin.post(ITEMS, json={"items": []})
        assert empty.json() == {"stored": 0, "rejected": []}
    assert get(server, "x0").status_code == 404


def test_paging_with_type_and_category_filters(server):
    items = [
        {
            "item_id": f"pg-{n:02d}",
            "type": "offer" if n % 3 == 0 else "product",
            "category": "pg-even" if n % 2 == 0 else "pg-odd",
        }
        for n in range(30)
    ]
    with server.admin() as admin:
        assert admin.post(ITEMS, json={"items": items}).json()["stored"] == 30
        assert admin.get(ITEMS, params={"type": "bundle"}).json()["field"] == "type"
        assert admin.get(ITEMS, params={"limit": "0"}).json()["field"] == "limit"
        assert admin.get(ITEMS, params={"limit": "1001"}).status_code == 400

    pages = walk(server, 7)
    everything = [i for p in pages for i in p]
    assert everything == sorted(set(everything))  # id order, nothing twice
    assert {i["item_id"] for i in items} <= set(everything)
    assert all(len(p) == 7 for p in pages[:-1])

    even = walk(server, 4, category="pg-even")
    assert [len(p) for p in even] == [4, 4, 4, 3]
    assert [i for p in even for i in p] == [f"pg-{n:02d}" for n in range(0, 30, 2)]
    offers = walk(server, 100, category="pg-odd", type="offer")
    assert offers == [["pg-03", "pg-09", "pg-15", "pg-21", "pg-27"]]
    assert walk(server, 10, category="pg-none") == [[]]
    tail = walk(server, 2, category="pg-even")[-1]
    assert tail == ["pg-28"]


def test_keys_publishable_reads_admin_writes(server):
    assert put(server, "auth-1", {"title": "public"}).status_code == 200
    public = bearer(PUBLISHABLE_KEY)
    url = server.url + ITEMS
    assert get(server, "auth-1", PUBLISHABLE_KEY).json()["title"] == "public"
    assert httpx.get(url, headers=public, params={"limit": 1}).status_code == 200
    for request in (
        httpx.put(f"{url}/auth-1", headers=public, json={"title": "defaced"}),
        httpx.post(url, headers=public, json={"items": [{"item_id": "auth-2"}]}),
        httpx.delete(f"{url}/auth-1", headers=public),
    ):
        assert request.status_code == 401
        assert request.json()["code"] == "unauthorized"
    write = (WRITE_KEY, "")
    assert httpx.get(f"{url}/auth-1", auth=write).status_code == 401
    assert httpx.put(f"{url}/auth-1", auth=write, json={"title": "x"}).status_code == 401
    anonymous = httpx.get(f"{url}/auth-1")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert get(server, "auth-1").json()["title"] == "public"
    assert get(server, "auth-2").status_code == 404


def test_availability_is_computed_at_server_time(server):
    now = time.time()
    cases = {
        "av-plain": ({}, True),
        "av-untracked": ({"stock": None}, True),
        "av-in-stock": ({"stock": 3}, True),
        "av-sold-out": ({"stock": 0}, False),
        "av-off": ({"available": False}, False),
        "av-past": ({"start_at": rfc3339(now - 7200), "end_at": rfc3339(now - 3600)}, False),
        "av-future": ({"start_at": rfc3339(now + 3600)}, False),
        "av-running": ({"start_at": rfc3339(now - 3600), "end_at": rfc3339(now + 3600)}, True),
        "av-ending": ({"end_at": rfc3339(now + 1.0)}, True),
    }
    with server.admin() as admin:
        report = admin.post(
            ITEMS,
            json={"items": [{"item_id": k, "category": "av", **v[0]} for k, v in cases.items()]},
        ).json()
        assert report == {"stored": len(cases), "rejected": []}
        listed = admin.get(ITEMS, params={"category": "av"}).json()["items"]
    assert {i["item_id"]: i["is_available_now"] for i in listed} == {
        k: v[1] for k, v in cases.items()
    }
    assert get(server, "av-sold-out").json()["is_available_now"] is False
    time.sleep(max(0.0, now + 1.2 - time.time()))
    assert get(server, "av-ending").json()["is_available_now"] is False  # no write needed


def test_cli_imports_a_csv_feed_and_reports_bad_rows_by_line(server):
    feed = str(DATA / "items.csv")
    result = catalog_import(server, feed, "--key", ADMIN_KEY, "--chunk-items", "5")
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "items       23" in out
    assert "stored      15" in out
    assert "rejected    8 (lines 8, 10, 11, 12, 18, 19, 23, 24)" in out
    assert "line 8: invalid_item: Expected `float | null`, got `str` (field $.price)" in out
    assert "line 11: invalid_item: Invalid enum value 'bundle' (field $.type)" in out
    assert "line 12: invalid_item: item_id is required in a bulk request (field $.item_id)" in out
    assert "line 19: invalid_item: end_at must be after start_at (field $.end_at)" in out
    assert "line 23: invalid_csv: the row has 5 cells, the header 17" in out
    assert "line 24: invalid_item: Expected `int` >= 0 (field $.stock)" in out
    assert "items.csv" in result.stderr  # the progress bar

    shoe = get(server, "SKU-1001", PUBLISHABLE_KEY).json()
    assert shoe["price"] == 129.9
    assert shoe["stock"] == 42
    assert shoe["tags"] == ["running", "trail", "men"]
    assert shoe["attributes"] == {"color": "red", "material": "mesh"}
    assert shoe["content"] == {
        "web": {
            "headline": "Run further on any trail",
            "image_url": "https://cdn.example.com/sku-1001.jpg",
        },
        "app": {"deeplink": "shop://p/SKU-1001"},
        "email": {"subject": "Your next trail shoe"},
    }
    assert get(server, "SKU-1008").json()["title"] == "Headlamp 400 lm, rechargeable"
    assert get(server, "SKU-1021").json()["content"]["web"]["headline"] == "Kaffee für unterwegs"
    always = get(server, "OFFER-ALWAYS").json()
    assert (always["type"], always["start_at"]) == ("offer", "2019-12-31T23:00:00.000Z")
    available = {
        item_id: get(server, item_id).json()["is_available_now"]
        for item_id in ("SKU-1003", "SKU-1004", "SKU-1006", "OFFER-SPRING", "OFFER-FUTURE")
    }
    assert available == {
        "SKU-1003": False,  # stock 0
        "SKU-1004": True,  # available "yes"
        "SKU-1006": False,  # available "no"
        "OFFER-SPRING": False,  # window over
        "OFFER-FUTURE": False,  # not started
    }
    assert get(server, "SKU-1007").status_code == 404

    again = catalog_import(server, feed, "--key", ADMIN_KEY, "--quiet")
    assert again.returncode == 1
    assert "stored      15" in again.stdout
    assert again.stderr == ""
    assert walk(server, 1000, category="shoes") == [  # upserted, not duplicated
        ["OFFER-SPRING", "SKU-1001", "SKU-1002", "SKU-1013"]
    ]


def test_cli_imports_json_lines_and_json_arrays(server, tmp_path):
    result = catalog_import(server, str(DATA / "items.jsonl"), "--key", ADMIN_KEY, "--quiet")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "items       5" in result.stdout
    assert "stored      3" in result.stdout
    assert "rejected    2 (lines 4, 5)" in result.stdout
    assert (
        "line 4: invalid_item: Expected `float | null`, got `str` (field $.price)" in result.stdout
    )
    assert "line 5: invalid_json" in result.stdout
    assert get(server, "JL-2").json()["content"]["app"] == {"deeplink": "shop://guides/stretch"}
    assert get(server, "JL-5").json()["attributes"] == {"segment": "members", "discount": 0.15}

    array = tmp_path / "feed"  # no extension: the format is sniffed
    array.write_text('[{"id": "JA-1", "title": "a"}, {"item_id": "JA-2", "price": 5}]')
    clean = catalog_import(server, str(array), "--key", ADMIN_KEY, "--quiet")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "imported feed (json)" in clean.stdout
    assert "stored      2" in clean.stdout
    assert get(server, "JA-2").json()["price"] == 5.0


def test_cli_exits_2_when_the_import_cannot_run(server, tmp_path):
    feed = str(DATA / "items.jsonl")
    refused = catalog_import(server, feed, "--key", PUBLISHABLE_KEY, "--quiet")
    assert refused.returncode == 2
    assert "401 unauthorized" in refused.stderr
    no_id = tmp_path / "no_id.csv"
    no_id.write_text("sku,title\n1,a\n")
    headless = catalog_import(server, str(no_id), "--key", ADMIN_KEY, "--quiet")
    assert (headless.returncode, "no id column" in headless.stderr) == (2, True)
    missing = catalog_import(server, str(tmp_path / "nope.csv"), "--key", ADMIN_KEY)
    assert missing.returncode == 2
    closed = f"http://127.0.0.1:{free_port()}"  # the key comes from the environment here
    gone = subprocess.run(
        [sys.executable, "-m", "segue", "catalog", "import", feed, "--url", closed, "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SEGUE_ADMIN_KEY": ADMIN_KEY},
    )
    assert gone.returncode == 2
    assert "cannot reach segue" in gone.stderr
    assert gone.stdout == ""  # nothing was sent, so there is nothing to sum up
