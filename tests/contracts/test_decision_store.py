"""The decision log and rank events: every DecisionStore adapter behaves the same."""

from __future__ import annotations

from segue.core.model import Decision, RankEvent


def decision(decision_id, profile_id="p1", created_at=1.0, **extra):
    fields = {
        "decision_id": decision_id,
        "created_at": created_at,
        "placement": "home_hero",
        "profile_id": profile_id,
        "items": ["i1", "i2"],
        "scores": [0.9, 0.1],
        "propensities": [0.8, 0.2],
        "strategy": "bandit",
        "personalized": True,
        "context": {"page": {"path": "/"}, "big": 2**70},
    }
    fields.update(extra)
    return Decision(**fields)


def rank_event(event_id, created_at=1.0, **extra):
    fields = {
        "event_id": event_id,
        "created_at": created_at,
        "context_features": [{"user": {"tier": "gold", "age": 34}}, {"big": 2**70}],
        "action_ids": ["a", "b"],
        "action_features": [[{"color": "red"}], []],
        "ranking": ["b", "a"],
        "probabilities": [0.9, 0.1],
        "reward_action_id": "b",
    }
    fields.update(extra)
    return RankEvent(**fields)


def test_decisions_round_trip_and_are_idempotent_by_id(decision_store):
    assert decision_store.get_decision("d1") is None
    first = decision("d1", experiment="exp", variant="b", features_used=["affinity"])
    decision_store.put_decisions([first])
    decision_store.put_decisions([decision("d1", created_at=9.0, strategy="other")])
    stored = decision_store.get_decision("d1")
    assert stored == first
    assert stored.context["big"] == 2**70
    decision_store.put_decisions([])


def test_decisions_for_a_profile_come_newest_first(decision_store):
    decision_store.put_decisions(
        [
            decision("d1", created_at=1.0),
            decision("d2", created_at=3.0),
            decision("d3", created_at=2.0),
            decision("x1", profile_id="p2", created_at=5.0),
            decision("anon", profile_id=None, created_at=6.0),
        ]
    )
    decision_store.put_decisions([decision("d4", created_at=3.0)])  # same time: later first
    got = [d.decision_id for d in decision_store.decisions_for("p1", 10)]
    assert got == ["d4", "d2", "d3", "d1"]
    assert [d.decision_id for d in decision_store.decisions_for("p1", 2)] == ["d4", "d2"]
    assert [d.decision_id for d in decision_store.decisions_for("p2", 10)] == ["x1"]
    assert decision_store.decisions_for("nobody", 10) == []
    assert decision_store.decisions_for("p1", 0) == []
    assert decision_store.get_decision("anon").profile_id is None


def test_rank_events_are_replaced_by_id(decision_store):
    assert decision_store.get_rank_event("e1") is None
    event = rank_event("e1")
    decision_store.put_rank_event(event)
    assert decision_store.get_rank_event("e1") == event
    event.reward, event.rewarded_at = 0.5, 2.0
    assert decision_store.get_rank_event("e1").reward is None  # a copy, not the stored value
    decision_store.put_rank_event(event)
    stored = decision_store.get_rank_event("e1")
    assert (stored.reward, stored.rewarded_at, stored.learned) == (0.5, 2.0, False)
    assert stored.context_features[1]["big"] == 2**70
    assert stored.action_features == [[{"color": "red"}], []]


def test_due_rank_events_are_activated_unlearned_and_old_enough_oldest_first(decision_store):
    decision_store.put_rank_event(rank_event("late", created_at=5.0))
    decision_store.put_rank_event(rank_event("b", created_at=2.0))
    decision_store.put_rank_event(rank_event("a", created_at=2.0))
    decision_store.put_rank_event(rank_event("first", created_at=1.0, reward=1.0))
    decision_store.put_rank_event(rank_event("deferred", created_at=1.5, activated=False))
    decision_store.put_rank_event(rank_event("done", created_at=1.2, learned=True))
    decision_store.put_rank_event(rank_event("none", created_at=1.3, reward_action_id=None))

    def due(before, limit=10):
        return [e.event_id for e in decision_store.due_rank_events(before, limit)]

    assert due(5.0) == ["first", "none", "a", "b"]  # strictly before; ties by event id
    assert due(5.1) == ["first", "none", "a", "b", "late"]
    assert due(5.1, 2) == ["first", "none"]
    assert due(1.0) == []
    assert due(5.1, 0) == []
    # activating makes an event due; learning takes it out
    deferred = decision_store.get_rank_event("deferred")
    deferred.activated = True
    decision_store.put_rank_event(deferred)
    first = decision_store.get_rank_event("first")
    first.learned = True
    decision_store.put_rank_event(first)
    assert due(3.0) == ["none", "deferred", "a", "b"]
    assert decision_store.due_rank_events(3.0, 10)[1] == deferred
