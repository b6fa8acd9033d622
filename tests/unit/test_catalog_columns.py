"""The catalog columns answer what the items say: content similarity from the packed
attribute word equals the comparison of the items' own attributes (category, brand, price
band, type; missing values match nothing), and availability with and without windows."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segue.core.model import Item
from segue.decide import catalog_view
from segue.decide.catalog_view import CatalogView, Columns

_items = st.builds(
    Item,
    item_id=st.just(""),
    title=st.just("t"),
    type=st.sampled_from(["product", "offer", "content", "other"]),
    category=st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
    brand=st.one_of(st.none(), st.sampled_from(["x", "y"])),
    price=st.one_of(st.none(), st.sampled_from([0.0, 0.5, 3.0, 30.0, 300.0, 5e9])),
)


def _band(price: float | None) -> int | None:
    if price is None or price <= 0:
        return None
    return min(int(math.log10(price)), 6) if price >= 1 else 0


def _expected(a: Item, b: Item) -> float:
    score = 0.1 if a.type == b.type else 0.0
    if a.category is not None and a.category == b.category:
        score += 0.4
    if a.brand is not None and a.brand == b.brand:
        score += 0.3
    if _band(a.price) is not None and _band(a.price) == _band(b.price):
        score += 0.2
    return score


@settings(max_examples=80, deadline=None)
@given(st.lists(_items, min_size=1, max_size=30))
def test_similarity_compares_each_attribute(items: list[Item]) -> None:
    catalog = {f"i{j}": item for j, item in enumerate(items)}
    cols = Columns(catalog)
    rows = np.arange(len(items))
    for j, item in enumerate(items):
        got = cols.similarity(j, rows)
        assert np.allclose(got, [_expected(item, other) for other in items])
    assert cols.similarity(cols.unknown, rows).tolist() == [0.0] * len(items)


def test_availability_with_and_without_windows() -> None:
    plain = {
        "on": Item(item_id="on", title="t"),
        "out": Item(item_id="out", title="t", stock=0),
        "off": Item(item_id="off", title="t", available=False),
    }
    cols = Columns(plain)
    assert not cols.windowed
    rows = np.array([0, 1, 2, cols.unknown])
    assert cols.available_at(rows, 100.0).tolist() == [True, False, False, False]
    windows = {
        **plain,
        "later": Item(item_id="later", title="t", start_at=200.0),
        "over": Item(item_id="over", title="t", end_at=50.0),
        "now": Item(item_id="now", title="t", start_at=50.0, end_at=200.0),
    }
    cols = Columns(windows)
    assert cols.windowed
    rows = np.arange(len(windows) + 1)
    assert cols.available_at(rows, 100.0).tolist() == [
        True,
        False,
        False,
        False,
        False,
        True,
        False,
    ]


def _meaning(cols: Columns) -> dict[str, tuple[object, ...]]:
    """Each item's attributes by name, by id (codes are numbered in arrival order, and a
    removed item's row stays empty, so compare what each id reads)."""
    categories = {code: name for name, code in cols.categories.items()}
    brands = {code: name for name, code in cols.brands.items()}
    ids = list(cols.row)
    rows = cols.rows(ids).tolist()
    assert rows == cols.exact_rows(ids).tolist()
    return {
        item_id: (
            cols.items[i],
            categories.get(int(cols.category[i])),
            brands.get(int(cols.brand[i])),
            int(cols.kind[i]),
            int(cols.band[i]),
            bool(cols.available[i]),
            float(cols.start[i]),
            float(cols.end[i]),
        )
        for item_id, i in zip(ids, rows, strict=True)
    }


@settings(max_examples=80, deadline=None)
@given(
    first=st.lists(_items, min_size=1, max_size=12),
    writes=st.lists(st.tuples(st.integers(0, 15), st.one_of(st.none(), _items)), max_size=16),
    windows=st.lists(st.one_of(st.none(), st.floats(0, 100)), min_size=16, max_size=16),
)
def test_catalog_writes_keep_the_columns_as_a_rebuild_would(
    first: list[Item], writes: list[tuple[int, Item | None]], windows: list[float | None]
) -> None:
    """Writes (an item, or None: delete) applied in place read as a fresh build does."""
    view = CatalogView()
    view.upsert(msgspec.structs.replace(item, item_id=f"i{j}") for j, item in enumerate(first))
    for (number, item), start in zip(writes, windows, strict=False):
        before = view.columns
        item_id = f"i{number}"
        known = item_id in view.items
        if item is None:
            view.remove(item_id)
        else:
            view.upsert([msgspec.structs.replace(item, item_id=item_id, start_at=start)])
        after = view.columns
        if known:
            assert after is before  # a changed or removed item: in place
        fresh = Columns(view.items)
        assert _meaning(after) == _meaning(fresh)
        assert after.windowed >= fresh.windowed  # may stay on after a window is gone
        gone = [f"i{j}" for j in range(16) if f"i{j}" not in view.items]
        assert (after.rows(gone) == after.unknown).all()
        rows, fresh_rows = after.rows(list(view.items)), fresh.rows(list(view.items))
        for row, fresh_row in zip(rows.tolist(), fresh_rows.tolist(), strict=True):
            assert np.allclose(after.similarity(row, rows), fresh.similarity(fresh_row, fresh_rows))
        assert (after.available_at(rows, 50.0) == fresh.available_at(fresh_rows, 50.0)).all()


def test_new_items_take_spare_rows_until_a_rebuild_is_due() -> None:
    view = CatalogView()
    view.upsert(Item(item_id=f"i{j}", title="t", category=f"c{j % 3}") for j in range(1000))
    cols = view.columns
    added = 0
    while view.columns is cols:
        view.upsert([Item(item_id=f"new{added}", title="t", category="fresh", stock=1)])
        added += 1
    assert added > 200  # a quarter of the catalog fits before the rebuild
    # the grown columns hold every new item but the last (it set off the rebuild)
    for c, count in ((cols, added - 1), (view.columns, added)):
        wanted = [f"new{j}" for j in range(count)] + ["i5", "nope"]
        rows = c.rows(wanted)
        found = [c.ids[r] if r < c.unknown else None for r in rows.tolist()]
        assert found == [*wanted[:-1], None]
        assert c.available_at(rows, 0.0).tolist() == [True] * (count + 1) + [False]
        assert (c.category[rows[:count]] == c.categories["fresh"]).all()


def test_removals_leave_probe_chains_intact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every id homes to the same slot (one long chain): removing one from the middle
    must not hide those after it, and its slot is reused."""
    monkeypatch.setattr(catalog_view, "fingerprint", lambda s: int(s[1:]) << 20)
    view = CatalogView()
    view.upsert(Item(item_id=f"i{j}", title="t") for j in range(10))
    cols = view.columns
    assert cols._table.usable
    view.remove("i3")
    view.remove("i7")
    assert view.columns is cols
    wanted = [f"i{j}" for j in range(11)]
    expect = [cols.row.get(i, cols.unknown) for i in wanted]
    assert cols.rows(wanted).tolist() == expect
    assert expect[3] == expect[7] == expect[10] == cols.unknown
    view.upsert([Item(item_id="i3", title="back"), Item(item_id="i10", title="new")])
    assert view.columns is cols
    rows = cols.rows(wanted).tolist()
    assert [cols.ids[r] if r < cols.unknown else None for r in rows] == [
        *(f"i{j}" for j in range(7)),
        None,
        "i8",
        "i9",
        "i10",
    ]
    assert cols.items[rows[3]].title == "back"
