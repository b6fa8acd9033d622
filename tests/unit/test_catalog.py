"""Catalog rules (availability, filtered paging) and the feed reader, without a server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from segue.catalog import is_available, page
from segue.cli.catalog_import import detect_format, row_to_item, rows
from segue.core.model import Item
from segue.storage.memory_catalog import MemoryCatalogStore

NOW = 1_750_000_000.0


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, True),
        ({"stock": 5}, True),
        ({"stock": 0}, False),
        ({"available": False}, False),
        ({"available": False, "stock": 9}, False),
        ({"start_at": NOW}, True),  # the window includes its start
        ({"start_at": NOW + 1}, False),
        ({"end_at": NOW}, False),  # and excludes its end
        ({"end_at": NOW + 0.001}, True),
        ({"start_at": NOW - 10, "end_at": NOW + 10}, True),
        ({"start_at": NOW - 10, "end_at": NOW + 10, "stock": 0}, False),
    ],
)
def test_is_available(fields, expected):
    assert is_available(Item(item_id="i", **fields), NOW) is expected


def _store(items: list[Item]) -> MemoryCatalogStore:
    store = MemoryCatalogStore()
    asyncio.run(store.put(items))
    return store


def _pages(store: MemoryCatalogStore, limit: int, **kw) -> list[list[str]]:
    out: list[list[str]] = []
    after = ""
    while True:
        items, after_next = asyncio.run(page(store, after, limit, **kw))
        out.append([i.item_id for i in items])
        if after_next is None:
            return out
        after = after_next


def test_page_without_filters_knows_when_the_catalog_ends():
    store = _store([Item(item_id=f"i{n}") for n in range(6)])
    assert _pages(store, 3) == [["i0", "i1", "i2"], ["i3", "i4", "i5"]]
    assert _pages(store, 4) == [["i0", "i1", "i2", "i3"], ["i4", "i5"]]
    assert _pages(store, 10) == [["i0", "i1", "i2", "i3", "i4", "i5"]]


def test_page_filters_by_type_and_category():
    items = [
        Item(item_id=f"i{n:03d}", type="offer" if n % 5 == 0 else "product", category=f"c{n % 2}")
        for n in range(500)
    ]
    store = _store(items)
    offers = [i.item_id for i in items if i.type == "offer" and i.category == "c0"]
    pages = _pages(store, 7, item_type="offer", category="c0")
    assert [i for p in pages for i in p] == offers
    assert all(len(p) == 7 for p in pages[:-1])
    assert pages[-1]  # no empty trailing page when the last match ends a page exactly
    assert _pages(store, 10, category="nope") == [[]]


def test_page_stops_at_its_budget_and_hands_back_a_cursor():
    store = _store(
        [Item(item_id=f"i{n:04d}", category="rare" if n == 900 else None) for n in range(1000)]
    )
    items, cursor = asyncio.run(page(store, "", 5, category="rare", budget=300))
    assert items == []
    assert cursor == "i0399"  # two scans of 200 went over the budget of 300
    pages = _pages(store, 5, category="rare", budget=300)
    assert [i for p in pages for i in p] == ["i0900"]
    assert pages[0] == []  # the budget can leave empty pages, never lose an item


def test_row_to_item_types_cells_folds_content_and_keeps_the_rest_as_attributes():
    item = row_to_item(
        {
            "id": " SKU-1 ",
            "type": "product",
            "title": "Trail Runner",
            "price": "129.90",
            "stock": "4",
            "available": "No",
            "tags": "running; trail;;",
            "start_at": "2025-01-01T00:00:00Z",
            "end_at": "",
            "content.web.headline": "Run",
            "content.web.image.url": "https://x/1.jpg",
            "content.email.subject": "Hi",
            "content.app": "not a channel column",
            "color": "red",
            "": "ignored",
        }
    )
    assert item == {
        "item_id": "SKU-1",
        "type": "product",
        "title": "Trail Runner",
        "price": 129.9,
        "stock": 4,
        "available": False,
        "tags": ["running", "trail"],
        "start_at": "2025-01-01T00:00:00Z",
        "content": {
            "web": {"headline": "Run", "image.url": "https://x/1.jpg"},
            "email": {"subject": "Hi"},
        },
        "attributes": {"content.app": "not a channel column", "color": "red"},
    }


@pytest.mark.parametrize(
    ("column", "cell", "sent"),
    [
        ("price", "abc", "abc"),
        ("price", "inf", "inf"),  # never turned into a number JSON cannot carry
        ("price", "1e400", "1e400"),
        ("stock", "2.5", "2.5"),
        ("available", "maybe", "maybe"),
        ("available", "1", True),
    ],
)
def test_cells_that_do_not_parse_are_sent_as_text_for_the_server_to_reject(column, cell, sent):
    assert row_to_item({"id": "x", column: cell})[column] == sent


def test_detect_format(tmp_path: Path):
    for name, text, fmt in (
        ("a.csv", "[", "csv"),
        ("a.JSONL", "[", "jsonl"),
        ("a.ndjson", "", "jsonl"),
        ("feed", '\ufeff  [{"id": 1}]', "json"),
        ("feed2", '{"id": 1}\n', "jsonl"),
        ("feed3", "id,title\n", "csv"),
    ):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        assert detect_format(path) == fmt, name


def test_csv_rows_number_lines_across_quoted_newlines_and_blank_lines(tmp_path: Path):
    feed = tmp_path / "f.csv"
    feed.write_bytes(b'\xef\xbb\xbfid,title\n1,"two\nlines"\n\n2,b\n3\n4,"d"\n')
    got = list(rows(feed, "csv"))
    assert [(r.where, r.error) for r in got] == [
        (2, None),
        (5, None),
        (6, ("invalid_csv", "the row has 1 cells, the header 2")),
        (7, None),
    ]
    assert msgspec.json.decode(got[0].item) == {"item_id": "1", "title": "two\nlines"}
    assert sum(r.size for r in got) == feed.stat().st_size - 3  # all but the BOM


def test_json_rows_map_id_to_item_id(tmp_path: Path):
    feed = tmp_path / "f.json"
    feed.write_text('[{"id": "a"}, {"item_id": "b", "id": "legacy"}, 7]')
    got = [msgspec.json.decode(r.item) for r in rows(feed, "json")]
    assert got == [{"item_id": "a"}, {"item_id": "b", "id": "legacy"}, 7]
