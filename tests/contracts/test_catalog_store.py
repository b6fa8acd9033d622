"""The CatalogStore contract, run over every adapter (``catalog_store`` fixture)."""

from __future__ import annotations

import pytest

from segue.core.model import Item
from segue.errors import InvalidInput
from segue.storage.sqlite_catalog import SqliteCatalogStore
from tests.contracts.conftest import Sync


def item(item_id: str, **fields) -> Item:
    fields.setdefault("title", f"Item {item_id}")
    fields.setdefault("updated_at", 1_700_000_000.0)
    return Item(item_id=item_id, **fields)


def test_put_get_round_trips_every_field(catalog_store):
    full = Item(
        item_id="sku-1",
        type="offer",
        title="Trail runner 2",
        category="shoes",
        brand="Northwind",
        price=129.5,
        tags=["running", "trail"],
        attributes={"color": "red", "sizes": [40, 41, 42], "eco": True, "weight_g": 280.5},
        available=False,
        stock=7,
        start_at=1_700_000_000.0,
        end_at=1_800_000_000.25,
        content={"web": {"headline": "Run further"}, "email": {"subject": "New: Trail runner"}},
        updated_at=1_700_000_123.5,
    )
    catalog_store.put([full, item("sku-2")])
    found = catalog_store.get(["sku-1", "sku-2", "missing"])
    assert list(found) == ["sku-1", "sku-2"]
    assert found["sku-1"] == full
    assert found["sku-2"].type == "product"
    assert found["sku-2"].stock is None
    assert catalog_store.get([]) == {}
    assert catalog_store.count() == 2


def test_put_replaces_whole_items(catalog_store):
    catalog_store.put([item("a", category="shoes", tags=["x"], content={"web": {"h": "1"}})])
    catalog_store.put([item("a", title="renamed", updated_at=1_700_000_500.0)])
    got = catalog_store.get(["a"])["a"]
    assert got.title == "renamed"
    assert got.category is None  # replaced, not merged
    assert got.tags == []
    assert got.content == {}
    assert got.updated_at == 1_700_000_500.0
    assert catalog_store.count() == 1


def test_put_of_one_id_twice_in_a_batch_keeps_the_last(catalog_store):
    catalog_store.put([item("a", title="first"), item("b"), item("a", title="second")])
    assert catalog_store.get(["a"])["a"].title == "second"
    assert catalog_store.count() == 2


def test_items_read_back_are_copies(catalog_store):
    catalog_store.put([item("a", tags=["x"], attributes={"k": [1]})])
    first = catalog_store.get(["a"])["a"]
    first.tags.append("y")
    first.attributes["k"].append(2)
    first.title = "changed"
    again = catalog_store.get(["a"])["a"]
    assert (again.tags, again.attributes, again.title) == (["x"], {"k": [1]}, "Item a")


def test_scan_pages_in_id_order(catalog_store):
    ids = [f"item-{n:03d}" for n in range(25)]
    catalog_store.put([item(i) for i in reversed(ids)])
    seen: list[str] = []
    after = ""
    while True:
        page = catalog_store.scan(after, 10)
        assert len(page) <= 10
        if not page:
            break
        seen += [i.item_id for i in page]
        after = page[-1].item_id
    assert seen == ids
    assert [i.item_id for i in catalog_store.scan("item-019", 3)] == ids[20:23]
    assert catalog_store.scan("item-024", 10) == []
    assert catalog_store.scan("", 0) == []


def test_delete(catalog_store):
    catalog_store.put([item("a"), item("b"), item("c")])
    assert catalog_store.delete("b") is True
    assert catalog_store.delete("b") is False
    assert catalog_store.delete("never") is False
    assert catalog_store.get(["b"]) == {}
    assert [i.item_id for i in catalog_store.scan("", 10)] == ["a", "c"]
    assert catalog_store.count() == 2
    catalog_store.put([item("b")])  # a deleted id can come back
    assert [i.item_id for i in catalog_store.scan("", 10)] == ["a", "b", "c"]


def test_unicode_ids_and_values_sort_by_code_point(catalog_store):
    ids = ["Zebra", "apple", "café", "cafe", "日本-1", "😀-emoji", "a b/c?d", "ß"]
    catalog_store.put(
        [
            item(i, title=f"Titel {i} — Grüße", tags=["ünï", "标签"], content={"web": {"t": i}})
            for i in ids
        ]
    )
    assert [i.item_id for i in catalog_store.scan("", 100)] == sorted(ids)
    got = catalog_store.get(["日本-1"])["日本-1"]
    assert got.title == "Titel 日本-1 — Grüße"
    assert got.tags == ["ünï", "标签"]
    assert [i.item_id for i in catalog_store.scan("café", 100)] == sorted(ids)[
        sorted(ids).index("café") + 1 :
    ]


def test_big_payloads_and_big_integers(catalog_store):
    body = "x" * 2_000_000
    many = {f"attr_{n}": n for n in range(2_000)}
    catalog_store.put(
        [
            item("big", content={"web": {"html": body}}, attributes=many),
            item("huge-int", attributes={"serial": 2**80, "blob": [1.5, None, "s"]}),
        ]
    )
    got = catalog_store.get(["big", "huge-int"])
    assert len(got["big"].content["web"]["html"]) == 2_000_000
    assert got["big"].attributes == many
    assert got["huge-int"].attributes == {"serial": 2**80, "blob": [1.5, None, "s"]}


def test_a_batch_with_an_item_that_cannot_be_stored_stores_nothing(catalog_store):
    catalog_store.put([item("kept", title="before")])
    with pytest.raises(InvalidInput, match="bad"):
        catalog_store.put(
            [item("kept", title="after"), item("new"), item("bad", attributes={"x": object()})]
        )
    assert catalog_store.get(["kept"])["kept"].title == "before"
    assert catalog_store.get(["new", "bad"]) == {}
    assert catalog_store.count() == 1
    catalog_store.put([])
    assert catalog_store.count() == 1


def test_many_ids_in_one_get(catalog_store):
    ids = [f"p{n}" for n in range(1_234)]
    catalog_store.put([item(i) for i in ids])
    found = catalog_store.get([*ids, "nope", ids[0]])
    assert len(found) == 1_234
    assert catalog_store.count() == 1_234


def test_sqlite_catalog_survives_reopen(tmp_path):
    first = Sync(SqliteCatalogStore(tmp_path))
    first.put([item("a", price=3.5, content={"app": {"deeplink": "shop://a"}})])
    first.close()
    assert (tmp_path / "catalog.db").exists()
    again = Sync(SqliteCatalogStore(tmp_path))
    try:
        assert again.get(["a"])["a"].content == {"app": {"deeplink": "shop://a"}}
        assert again.count() == 1
    finally:
        again.close()
