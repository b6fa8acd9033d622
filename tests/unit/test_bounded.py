"""Bounded insertion-ordered dicts: the oldest go first, in batches."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from segue.core.bounded import trim_oldest


def test_past_the_cap_the_oldest_go_down_to_fifteen_sixteenths() -> None:
    table = {n: n for n in range(1601)}
    trim_oldest(table, 1600)
    assert len(table) == 1500
    assert next(iter(table)) == 101  # the oldest 101 went
    trim_oldest(table, 1600)  # at or under the cap: untouched
    assert len(table) == 1500


def test_a_table_refilled_one_at_a_time_is_trimmed_once_per_batch() -> None:
    """The point of batches: a full table is not trimmed at every insert."""
    table: dict[int, int] = {}
    trims = 0
    for n in range(10_000):
        table[n] = n
        before = len(table)
        trim_oldest(table, 1600)
        trims += len(table) != before
    # the first at 1,601 entries, then one per 101 inserts (1,500 back past 1,600)
    assert trims == 1 + (10_000 - 1601) // 101


@given(st.lists(st.integers(0, 50), max_size=300), st.integers(1, 40))
def test_never_over_the_cap_and_always_the_newest_kept(keys: list[int], cap: int) -> None:
    table: dict[int, None] = {}
    for key in keys:
        table.pop(key, None)
        table[key] = None
        trim_oldest(table, cap)
        assert len(table) <= cap
        assert key in table
    newest = list(dict.fromkeys(reversed(keys)))[: cap - cap // 16]
    assert set(newest) <= set(table)
