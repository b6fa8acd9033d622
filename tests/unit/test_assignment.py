"""Experiment assignment: deterministic, keyed, in proportion to the weights, sticky after a
merge; and decide answering each arm as configured."""

from __future__ import annotations

import asyncio
import math
from collections import Counter

import pytest

from segue.decide.engine import DecideEngine, DecideRequest, Placement, with_variant
from segue.decide.rules import PlacementRules
from segue.decide.signals import PersonSignals
from segue.experiments.assignment import HOLDOUT, Experiment, Experiments, Variant, bucket
from segue.privacy.policy import RegionPolicy
from segue.privacy.service import ConsentService
from segue.privacy.signals import Signal
from segue.storage.memory_consent import MemoryConsentStore
from segue.storage.memory_decisions import MemoryDecisionStore
from tests.unit.test_decide_engine import NOW, Clock, Items, catalog

KEY = b"installation-secret"


def experiment(**overrides) -> Experiment:
    fields = {
        "name": "hero",
        "placement": "home",
        "variants": (Variant(name="personalized"),),
        "holdout": 0.2,
    }
    fields.update(overrides)
    return Experiment(**fields)


def test_bucket_is_deterministic_keyed_and_salted_by_the_experiment():
    assert bucket(KEY, "hero", "p_1") == bucket(KEY, "hero", "p_1")
    assert 0.0 <= bucket(KEY, "hero", "p_1") < 1.0
    assert bucket(KEY, "hero", "p_1") != bucket(b"other-secret", "hero", "p_1")
    assert bucket(KEY, "hero", "p_1") != bucket(KEY, "cart", "p_1")
    # a separator: ("ab", "c") and ("a", "bc") are different inputs
    assert bucket(KEY, "ab", "c") != bucket(KEY, "a", "bc")


def test_arms_get_their_shares_within_tolerance():
    e = experiment(
        holdout=0.1, variants=(Variant(name="a", weight=1.0), Variant(name="b", weight=3.0))
    )
    book = Experiments([e], KEY)
    n = 40_000
    counts = Counter(book.assign("home", f"p_{i}", NOW).arm for i in range(n))
    expected = dict(e.arms())
    assert expected == pytest.approx({HOLDOUT: 0.1, "a": 0.225, "b": 0.675})
    for arm, share in expected.items():
        sd = math.sqrt(share * (1 - share) / n)
        assert abs(counts[arm] / n - share) < 4 * sd, (arm, counts[arm])


def test_two_experiments_split_the_same_units_independently():
    first = Experiments([experiment(name="one", holdout=0.5)], KEY)
    second = Experiments([experiment(name="two", holdout=0.5, placement="home")], KEY)
    pairs = Counter(
        (first.assign("home", f"u{i}", NOW).arm, second.assign("home", f"u{i}", NOW).arm)
        for i in range(20_000)
    )
    for pair in [(HOLDOUT, HOLDOUT), (HOLDOUT, "personalized"), ("personalized", HOLDOUT)]:
        assert abs(pairs[pair] / 20_000 - 0.25) < 0.02


def test_only_the_running_experiment_of_the_placement_assigns():
    book = Experiments(
        [experiment(name="old", end=NOW), experiment(name="new", start=NOW, end=NOW + 10)], KEY
    )
    assert book.assign("home", "p_1", NOW - 1).experiment.name == "old"
    assert book.assign("home", "p_1", NOW).experiment.name == "new"
    assert book.assign("home", "p_1", NOW + 10) is None
    assert book.assign("cart", "p_1", NOW) is None
    assert book.named("new").start == NOW
    assert not Experiments([], KEY)


def test_a_variant_changes_the_placement_it_names():
    base = Placement(name="home", k=10, rules=PlacementRules(frequency_cap=10))
    changed = with_variant(
        base,
        Variant(
            name="v",
            strategy="popular",
            exploration=False,
            parameters={"k": 4, "frequency_cap": None, "pinned": ["i3"]},
        ),
    )
    assert (changed.strategy, changed.exploration, changed.k) == ("popular", False, 4)
    assert changed.rules.frequency_cap is None
    assert changed.rules.pinned == ("i3",)
    assert changed.rules.max_per_category == base.rules.max_per_category
    assert with_variant(base, Variant(name="same")) == base


# --- decide with an experiment -----------------------------------------------------------


class People:
    """Two profiles, then a merge: ``p_old`` survives and ``p_new`` redirects to it."""

    def __init__(self) -> None:
        self.links = {("user_id", "ann"): "p_old", ("anonymous_id", "dev-2"): "p_new"}

    def merge(self) -> None:
        self.links[("anonymous_id", "dev-2")] = "p_old"

    async def find(self, user):
        for kind, value in user.items():
            profile_id = self.links.get((kind, value))
            if profile_id is not None:
                return profile_id, [f"{kind}:{value}"]
        return None, []


def experiment_engine(
    book: Experiments, people: People | None = None, refused: list[str] = ()
) -> DecideEngine:
    gate = ConsentService(MemoryConsentStore(), RegionPolicy({}), Clock())
    for subject in refused:
        asyncio.run(
            gate.record(
                [subject], Signal(purposes={"personalization": False}), source="api", actor="test"
            )
        )

    async def person(profile_id):
        return PersonSignals(categories={"c2": 1.0})

    e = DecideEngine(
        catalog(),
        Items(40),
        (people or People()).find,
        person,
        gate.gate,
        MemoryDecisionStore(),
        Clock(),
        {"home": Placement(name="home", exploration=True)},
        seed=3,
    )
    e.experiments = book
    e.visitor_unit = lambda user: (
        f"p_from_{user['anonymous_id']}" if user.get("anonymous_id") else None
    )
    return e


def answer(e: DecideEngine, **request):
    async def go():
        out = await e.decide(DecideRequest(**request))
        await e.aclose()
        return out, await e._decisions.get_decision(out["decision_id"])

    return asyncio.run(go())


def test_the_holdout_gets_the_contextual_answer_and_the_decision_records_the_arm():
    everyone_held = Experiments([experiment(holdout=0.999999)], KEY)
    out, logged = answer(
        experiment_engine(everyone_held), placement="home", user={"user_id": "ann"}
    )
    assert out["personalized"] is False
    assert out["strategy"] == "contextual"
    assert out["explanation"]["reason"] == "holdout"
    assert out["explanation"]["data_categories"] == ["catalog"]
    assert out["experiment"] == {"name": "hero", "variant": HOLDOUT}
    assert (logged.experiment, logged.variant, logged.profile_id) == ("hero", HOLDOUT, "p_old")
    assert logged.context["attribution_window_s"] == 86400.0
    assert logged.personalized is False


def test_a_variant_gets_its_changes_and_its_own_model():
    steady = Variant(name="steady", exploration=False, model="m2", parameters={"k": 3})
    book = Experiments([experiment(holdout=0.0, variants=(steady,))], KEY)
    e = experiment_engine(book)
    out, logged = answer(e, placement="home", user={"user_id": "ann"})
    assert out["personalized"] is True
    assert out["experiment"] == {"name": "hero", "variant": "steady"}
    assert len(out["items"]) == 3
    assert logged.context["ranker"] == "home:m2"
    assert "home:m2" in e.rankers
    assert e.learn(logged, logged.items[0], 1.0)
    assert e.ranker("home:m2").updates == 1
    assert e.ranker("home").updates == 0


def test_no_experiment_for_people_who_refused_personalization_or_without_an_anonymous_id():
    book = Experiments([experiment()], KEY)
    refused, _ = answer(
        experiment_engine(book, refused=["user_id:ann"]), placement="home", user={"user_id": "ann"}
    )
    assert refused["experiment"] is None
    assert refused["explanation"]["reason"] == "personalization_refused"
    stranger, logged = answer(experiment_engine(book), placement="home", user={"user_id": "zed"})
    assert stranger["experiment"] is None
    assert logged.profile_id is None
    elsewhere, _ = answer(experiment_engine(book), placement="cart", user={"user_id": "ann"})
    assert elsewhere["experiment"] is None


def test_a_visitor_not_known_yet_is_assigned_by_the_profile_id_they_will_get():
    book = Experiments([experiment(holdout=0.5)], KEY)
    out, logged = answer(experiment_engine(book), placement="home", user={"anonymous_id": "dev-9"})
    assert logged.profile_id == "p_from_dev-9"
    assert out["experiment"]["variant"] == book.assign("home", "p_from_dev-9", NOW).arm
    refused, _ = answer(
        experiment_engine(book, refused=["anonymous_id:dev-9"]),
        placement="home",
        user={"anonymous_id": "dev-9"},
    )
    assert refused["experiment"] is None


def test_after_a_merge_the_survivors_assignment_wins():
    book = Experiments([experiment(holdout=0.5)], KEY)
    # find a second device whose own profile lands in the other arm than the survivor
    survivor_arm = book.assign("home", "p_old", NOW).arm
    people = People()
    device = next(
        f"dev-{i}" for i in range(1000) if book.assign("home", f"p_new{i}", NOW).arm != survivor_arm
    )
    people.links[("anonymous_id", device)] = f"p_new{device[4:]}"
    e = experiment_engine(book, people)
    before, _ = answer(e, placement="home", user={"anonymous_id": device})
    assert before["experiment"]["variant"] != survivor_arm
    people.links[("anonymous_id", device)] = "p_old"  # the device's profile merged into ann's
    for user in ({"anonymous_id": device}, {"user_id": "ann"}):
        after, logged = answer(e, placement="home", user=user)
        assert after["experiment"]["variant"] == survivor_arm
        assert logged.profile_id == "p_old"
