"""Candidate ids → catalog rows through the fingerprint table, and the engine's check of
what it shows (a row found by fingerprint can be another id's)."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from segue.core.model import Item
from segue.decide import catalog_view
from segue.decide.catalog_view import CatalogView, Columns
from segue.decide.engine import DecideRequest, Placement
from segue.decide.rules import PlacementRules
from tests.unit.test_decide_engine import engine


def _columns(ids: list[str]) -> Columns:
    return Columns({i: Item(item_id=i, title=i) for i in ids})


def _by_dict(cols: Columns, ids: list[str]) -> list[int]:
    return [cols.row.get(i, cols.unknown) for i in ids]


def _number(item_id: str) -> int:
    """A fingerprint that is unique for "i<n>" ids, sends all of them home to a few slots
    (long probe chains) and gives "x<n>" the fingerprint of "i<n>"."""
    return int(item_id[1:]) * 64 if item_id[1:].isdigit() else 7


def test_rows_match_the_dict_for_known_unknown_and_dropped_ids() -> None:
    ids = [f"sku-{j}" for j in range(5000)]
    cols = _columns(ids)
    assert cols._table.usable
    wanted = [*random.Random(1).sample(ids, 700), "", "nope", "sku-5000", "SKU-1", ids[0]]
    assert cols.rows(wanted).tolist() == _by_dict(cols, wanted)
    assert cols.rows([]).tolist() == []
    many = [*ids[:1400], "nope", *ids[-99:]]  # past the 1,000 a pool holds
    assert cols.rows(many).tolist() == _by_dict(cols, many)


@settings(max_examples=60, deadline=None)
@given(
    catalog=st.lists(st.text(max_size=12), max_size=300, unique=True),
    extra=st.lists(st.text(max_size=12), max_size=50),
)
def test_rows_match_the_dict_for_any_ids(catalog: list[str], extra: list[str]) -> None:
    cols = _columns(catalog)
    wanted = catalog[::2] + extra
    assert cols.rows(wanted).tolist() == _by_dict(cols, wanted)


def test_long_probe_chains_still_find_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_view, "fingerprint", _number)
    ids = [f"i{j}" for j in range(1000)]
    cols = _columns(ids)
    assert cols._table.usable
    wanted = [*ids[::-3], "i5000", "zz"]
    assert cols.rows(wanted).tolist() == _by_dict(cols, wanted)


def test_ids_sharing_a_fingerprint_fall_back_to_the_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_view, "fingerprint", len)
    ids = ["a", "b", "cc", "ddd"]
    cols = _columns(ids)
    assert not cols._table.usable
    assert cols.rows(["b", "a", "zz", "ddd"]).tolist() == [1, 0, cols.unknown, 3]


def test_an_impostor_gets_the_row_by_fingerprint_and_holds_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(catalog_view, "fingerprint", _number)
    cols = _columns([f"i{j}" for j in range(10)])
    rows = cols.rows(["x4", "i2"])
    assert rows.tolist() == [cols.row["i4"], cols.row["i2"]]  # what a shared fingerprint does
    assert not cols.holds(rows, ["x4", "i2"])
    assert cols.holds(rows, ["i4", "i2"])
    assert not cols.holds(np.array([cols.unknown, -1]), ["i4", "i2"])
    assert cols.holds(rows[:0], [])


def test_the_engine_never_shows_an_impostor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Candidates outside the catalog whose fingerprints are those of catalog items: with
    the real hash this happens about once in 10^14 candidates, here it happens to all."""
    monkeypatch.setattr(catalog_view, "fingerprint", _number)
    e = engine(None)
    e.catalog = CatalogView()
    e.catalog.upsert(Item(item_id=f"i{j}", title=f"Item {j}") for j in range(40))
    candidates = [f"x{j}" for j in range(40)] + ["i7", "i9"]
    out = asyncio.run(e.decide(DecideRequest(placement="home", k=5, candidates=candidates)))
    assert sorted(i["item_id"] for i in out["items"]) == ["i7", "i9"]
    assert out["explanation"]["removed"]["not_in_catalog"] == 40  # counted as the dict does


def test_a_pinned_impostor_is_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pinned id outside the catalog with a catalog item's fingerprint: pinned items go
    first, so the check of what is shown catches it and the rows are redone by id."""
    monkeypatch.setattr(catalog_view, "fingerprint", _number)
    rules = PlacementRules(pinned=("x3",), max_per_category=None)
    e = engine(None, placements={"home": Placement(name="home", rules=rules)})
    e.catalog = CatalogView()
    e.catalog.upsert(Item(item_id=f"i{j}", title=f"Item {j}") for j in range(40))
    out = asyncio.run(e.decide(DecideRequest(placement="home", k=3, candidates=["x3", "i1", "i2"])))
    assert sorted(i["item_id"] for i in out["items"]) == ["i1", "i2"]
    assert out["explanation"]["removed"] == {"not_in_catalog": 1}


def test_rows_are_a_numpy_index() -> None:
    cols = _columns(["a", "b"])
    rows = cols.rows(["b", "q"])
    assert rows.dtype == np.intp
    assert cols.available[rows].shape == (2,)


_ids = st.sampled_from([f"i{j}" for j in range(40)] + ["", "zz", "é", "i40"])


@settings(max_examples=150, deadline=None)
# i0 (fingerprint 0) added behind i1 in its bucket, then i1 removed: the emptied slot
# before i0's holds fingerprint 0 as well, so i0 must have gone to the spill
@example(first=["i1"], steps=[(True, "i0"), (False, "i1")], weak="zero")
@given(
    first=st.lists(_ids, max_size=20, unique=True),
    steps=st.lists(st.tuples(st.booleans(), _ids), max_size=60),
    weak=st.sampled_from(["crowded", "zero", "real"]),
)
def test_rows_follow_any_adds_and_removals(
    first: list[str], steps: list[tuple[bool, str]], weak: str
) -> None:
    """Upserts and removals in any order, on a catalog whose ids crowd two buckets (their
    fifth and later ids spill to the dict), or where one id has fingerprint 0 (that of an
    empty slot; CPython's hash of "" is 0 too): every lookup agrees with the dict, whether
    the columns were kept and updated in place or rebuilt."""

    def crowded(s: str) -> int:
        return (hash(s) & 0xFFFFF) << 20 | (len(s) & 1)

    fingerprints = {
        "crowded": crowded,
        # crowded too, so i0 meets emptied slots in its bucket; "" keeps a fingerprint of
        # its own here (a shared one is the impostor case above)
        "zero": lambda s: 0 if s == "i0" else crowded(s) or 1,
        "real": hash,
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(catalog_view, "fingerprint", fingerprints[weak])
        view = CatalogView()
        view.upsert(Item(item_id=i, title=i) for i in first)
        assert view.columns.rows(first).tolist() == list(range(len(first)))  # built now
        known = set(first)
        wanted = [f"i{j}" for j in range(41)] + ["", "zz", "é", "nope"]
        for add, item_id in steps:
            if add:
                view.upsert([Item(item_id=item_id, title=item_id)])
                known.add(item_id)
            else:
                view.remove(item_id)
                known.discard(item_id)
            cols = view.columns
            found = cols.rows(wanted).tolist()
            assert found == _by_dict(cols, wanted)
            assert {w for w, r in zip(wanted, found, strict=True) if r != cols.unknown} == known
