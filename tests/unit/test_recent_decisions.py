"""The engine's recent decisions: kept encoded, read back whole, bounded, erasable by
profile, and out of the garbage collector's reach (a count, not a timing)."""

from __future__ import annotations

import gc

from segue.core.model import Decision
from segue.decide.recent import RecentDecisions


def _decision(n: int, profile_id: str | None = "p_1") -> Decision:
    return Decision(
        decision_id=f"d{n}",
        created_at=1_700_000_000.0 + n,
        placement="home",
        profile_id=profile_id,
        items=[f"i{n}", f"i{n + 1}"],
        scores=[0.5, 0.25],
        propensities=[1.0, 0.4444],
        strategy="personalized",
        personalized=profile_id is not None,
        reason="consent",
        model_version="lts-3",
        features_used=["popularity"],
        data_categories=["behavioural", "catalog"],
        context={"x": [[1.0, 0.5], [1.0, 0.25]], "w": [0.1, 0.2], "item_id": None},
    )


def test_a_decision_reads_back_whole_and_the_oldest_leave_past_the_size() -> None:
    recent = RecentDecisions(size=3)
    for n in range(5):
        recent.put(_decision(n))
    assert len(recent) == 3
    assert "d1" not in recent
    assert recent.get("d1") is None
    assert recent.get("d4") == _decision(4)
    assert recent.get("d2") == _decision(2)


def test_forget_drops_only_that_profiles_decisions() -> None:
    recent = RecentDecisions()
    recent.put(_decision(1, "p_a"))
    recent.put(_decision(2, "p_b"))
    recent.put(_decision(3, None))
    recent.put(_decision(4, "p_a"))
    assert recent.forget(["p_a", "p_x"]) == ["d1", "d4"]
    assert [d in recent for d in ("d1", "d2", "d3", "d4")] == [False, True, True, False]
    assert recent.forget(["p_a"]) == []


def test_kept_decisions_are_not_tracked_by_the_garbage_collector() -> None:
    """What the young collections used to walk, 18 containers a decision: none now."""
    recent = RecentDecisions()
    for n in range(200):
        recent.put(_decision(n))
    gc.collect()  # tuples of atoms are untracked by the first collection that sees them
    kept = list(recent._kept.values())
    assert len(kept) == 200
    assert sum(gc.is_tracked(entry) for entry in kept) == 0
    assert sum(gc.is_tracked(blob) for _, blob in kept) == 0
