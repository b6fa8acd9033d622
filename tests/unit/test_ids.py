"""Ids segue makes for what it logs sort by time, and never repeat."""

from __future__ import annotations

from segue.core.ids import time_ordered_id


def test_ids_sort_by_millisecond_and_are_unique_within_one():
    at = 1_765_000_000.0
    same_ms = {time_ordered_id(at) for _ in range(10_000)}
    assert len(same_ms) == 10_000
    later = [time_ordered_id(at + step / 1000) for step in range(1, 50)]
    assert later == sorted(later)
    assert max(same_ms) < min(later)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in later)
