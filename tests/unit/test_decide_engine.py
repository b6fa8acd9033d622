"""The decision engine on in-memory parts: rules, contextual fallback, explanation, learning."""

from __future__ import annotations

import asyncio

import pytest

from segue.core.model import Item
from segue.decide.catalog_view import CatalogView
from segue.decide.engine import DecideEngine, DecideRequest, Placement
from segue.decide.rules import PlacementRules
from segue.decide.signals import PersonSignals
from segue.privacy.policy import RegionPolicy
from segue.privacy.service import ConsentService
from segue.privacy.signals import Signal
from segue.storage.memory_consent import MemoryConsentStore
from segue.storage.memory_decisions import MemoryDecisionStore

NOW = 1_800_000_000.0


class Clock:
    def now(self) -> float:
        return NOW


class Items:
    """Item signals: popularity by item number, neighbours i → i+1, i+2."""

    def __init__(self, n: int) -> None:
        self.n = n

    def top(self, n, category=None, region=None, now=None):
        ids = [f"i{j}" for j in range(self.n)]
        if category is not None:
            ids = [i for i in ids if int(i[1:]) % 4 == int(category[1:])]
        return [(i, float(self.n - int(i[1:]))) for i in ids][:n]

    def neighbours(self, item_id, kind, n):
        j = int(item_id[1:])
        return [(f"i{(j + d) % self.n}", 5.0 / d) for d in (1, 2)][:n]

    def fresh(self, n, now):
        return [(f"i{self.n - 1}", 1.0)]


def catalog(n: int = 40) -> CatalogView:
    view = CatalogView()
    view.upsert(
        Item(
            item_id=f"i{j}",
            title=f"Item {j}",
            category=f"c{j % 4}",
            brand=f"b{j % 3}",
            price=10.0 + j,
            stock=0 if j == 1 else None,
            end_at=NOW - 1 if j == 2 else None,
            content={"web": {"title": f"Item {j}", "url": f"/p/{j}"}},
        )
        for j in range(n)
    )
    return view


def engine(
    signals: PersonSignals | None, consent: dict[str, bool] | None = None, placements=None
) -> DecideEngine:
    gate = ConsentService(MemoryConsentStore(), RegionPolicy({}), Clock())
    if consent:
        asyncio.run(
            gate.record(["user_id:known"], Signal(purposes=consent), source="api", actor="test")
        )

    async def find(user):
        if user.get("user_id") == "known":
            return "p1", ["user_id:known"]
        return None, []

    async def person(profile_id):
        return signals

    return DecideEngine(
        catalog(),
        Items(40),
        find,
        person,
        gate.gate,
        MemoryDecisionStore(),
        Clock(),
        placements,
        seed=7,
    )


def decide(e: DecideEngine, **request):
    return asyncio.run(e.decide(DecideRequest(**request)))


def test_known_person_gets_personalised_explained_items_without_purchased_or_unavailable():
    signals = PersonSignals(
        purchased=frozenset({"i0", "i3"}), categories={"c2": 1.0}, recent=("i10",)
    )
    out = decide(engine(signals), placement="home", user={"user_id": "known"}, k=8)
    ids = [i["item_id"] for i in out["items"]]
    assert out["personalized"] is True
    assert out["strategy"] == "personalized"
    assert len(ids) == 8
    assert len(set(ids)) == 8
    assert not {"i0", "i3"} & set(ids)  # purchased
    assert not {"i1", "i2"} & set(ids)  # out of stock, window over
    assert all(i["reason"] for i in out["items"])
    assert all(i["content"]["url"].startswith("/p/") for i in out["items"])
    assert out["explanation"]["removed"]["purchased"] >= 1
    assert out["decision_id"]


def test_unknown_person_or_refused_consent_gets_a_contextual_answer():
    signals = PersonSignals(categories={"c2": 1.0})
    unknown = decide(
        engine(signals), placement="home", user={"user_id": "stranger"}, context={"item_id": "i5"}
    )
    assert unknown["personalized"] is False
    assert unknown["strategy"] == "contextual"
    assert unknown["explanation"]["reason"] == "unknown_person"
    assert {"i6", "i7"} <= {i["item_id"] for i in unknown["items"]}  # item-to-item is not personal
    refused = decide(
        engine(signals, {"personalization": False}), placement="home", user={"user_id": "known"}
    )
    assert refused["personalized"] is False
    assert refused["explanation"]["reason"] == "personalization_refused"
    in_request = decide(
        engine(signals),
        placement="home",
        user={"user_id": "known"},
        context={"consent": {"categoryPreferences": {"personalization": False}}},
    )
    assert in_request["personalized"] is False


def test_diversity_pinned_and_promoted_slots():
    rules = PlacementRules(
        max_per_category=2, pinned=("i20",), promoted=("i30", "i31"), promoted_share=0.25
    )
    e = engine(None, placements={"hero": Placement(name="hero", rules=rules, exploration=False)})
    out = decide(e, placement="hero", k=8)
    ids = [i["item_id"] for i in out["items"]]
    assert ids[0] == "i20"
    assert out["items"][0]["reason"] == "pinned"
    assert {"i30", "i31"} <= set(ids)
    per_category: dict[str, int] = {}
    for item_id in ids:
        if item_id == "i20":
            continue
        key = f"c{int(item_id[1:]) % 4}"
        per_category[key] = per_category.get(key, 0) + 1
    assert max(per_category.values()) <= 2


def test_request_candidates_are_the_only_ones_ranked():
    out = decide(engine(None), placement="p", candidates=["i5", "i6", "i1", "nope"], k=10)
    assert sorted(i["item_id"] for i in out["items"]) == ["i5", "i6"]


def test_repeated_request_candidates_count_once():
    out = decide(engine(None), placement="p", candidates=["i5", "i6", "i5", "i6", "i5"], k=10)
    assert sorted(i["item_id"] for i in out["items"]) == ["i5", "i6"]
    assert out["explanation"]["candidates"] == 2


@pytest.mark.parametrize("reward", [1.0])
def test_feedback_moves_a_clicked_feature_up(reward):
    e = engine(None, placements={"p": Placement(name="p", exploration=False)})
    first = asyncio.run(e.decide(DecideRequest(placement="p", context={"item_id": "i5"}, k=5)))
    asyncio.run(e.aclose())
    before = e.ranker("p").mean.copy()
    decision = asyncio.run(e._decisions.get_decision(first["decision_id"]))
    assert decision is not None
    clicked = first["items"][-1]["item_id"]
    for _ in range(30):
        assert e.learn(decision, clicked, reward)
    after = e.ranker("p").mean
    assert e.ranker("p").updates == 30
    assert not (before == after).all()
