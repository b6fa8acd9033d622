"""RankService on the memory adapters with a hand-driven clock: the reward loop's rules."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from segue.decide.rank import MODEL_BLOB, RankService
from segue.errors import Conflict, InvalidInput, NotFound
from segue.storage.memory import MemoryProfileStore
from segue.storage.memory_decisions import MemoryDecisionStore

ACTIONS = [("news", [{"topic": "news"}]), ("sport", [{"topic": "sport"}]), ("music", [])]
CONTEXT = [{"user": {"tier": "gold", "age": 34}}, {"time": "morning"}]


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def now(self) -> float:
        return self.t


def run(coro):
    return asyncio.run(coro)


def service(**kw):
    clock = Clock()
    store, blobs = MemoryDecisionStore(), MemoryProfileStore()
    rank = RankService(store, blobs, clock, np.random.default_rng(0), reward_wait_s=10.0, **kw)
    return rank, store, blobs, clock


def test_rank_records_an_event_with_probabilities_and_excluded_last():
    async def main():
        rank, store, _, _ = service()
        event = await rank.rank(ACTIONS, CONTEXT, excluded=["sport"])
        assert len(event.event_id) == 32
        assert event.ranking[-1] == "sport"
        assert event.probabilities[-1] == 0.0
        assert event.reward_action_id == event.ranking[0] != "sport"
        assert sum(event.probabilities) == pytest.approx(1.0)
        assert event.activated
        assert not event.learned
        assert await store.get_rank_event(event.event_id) == event
        with pytest.raises(Conflict):
            await rank.rank(ACTIONS, CONTEXT, event_id=event.event_id)
        nobody = await rank.rank(ACTIONS, CONTEXT, excluded=["news", "sport", "music"])
        assert nobody.reward_action_id is None
        assert set(nobody.probabilities) == {0.0}
        with pytest.raises(Conflict, match="no action"):
            await rank.reward(nobody.event_id, 1.0)

    run(main())


@pytest.mark.parametrize(
    ("actions", "excluded", "field"),
    [
        ([], [], "$.actions"),
        ([("a", []), ("a", [])], [], "$.actions[1].id"),
        ([("a", [])], ["b"], "$.excluded_actions[0]"),
        ([("a", [{"f": list(range(300))}])], [], "$.actions[0].features"),
    ],
)
def test_bad_requests_name_the_field(actions, excluded, field):
    rank, *_ = service()
    with pytest.raises(InvalidInput) as caught:
        run(rank.rank(actions, [], excluded=excluded))
    assert caught.value.field == field


def test_too_many_joint_features_are_refused_before_any_work():
    rank, *_ = service()
    wide = [{"f": list(range(40))}]
    with pytest.raises(InvalidInput, match="joint features") as caught:
        run(rank.rank([(f"a{i}", wide) for i in range(3)], wide))  # 3 × 41 × 41 > 4096
    assert caught.value.field == "$.actions"
    assert run(rank.rank([(f"a{i}", wide) for i in range(2)], wide)).reward_action_id


def test_reward_is_learned_at_the_next_settle_and_the_latest_wins_until_then():
    async def main():
        rank, store, _, clock = service()
        event = await rank.rank(ACTIONS, CONTEXT)
        await rank.reward(event.event_id, 0.3)
        clock.t += 1
        stored = await rank.reward(event.event_id, 5.0)  # clamped to the upper bound
        assert stored.reward == 1.0
        assert stored.rewarded_at == clock.t
        assert await rank.settle() == 1
        learned = await store.get_rank_event(event.event_id)
        assert learned.learned
        assert learned.reward == 1.0
        assert rank.bandit.learned == 1
        with pytest.raises(Conflict, match="learned already"):
            await rank.reward(event.event_id, 0.0)
        with pytest.raises(NotFound):
            await rank.reward("nope", 1.0)
        with pytest.raises(InvalidInput):
            await rank.reward(event.event_id, float("nan"))

    run(main())


def test_activated_events_without_reward_learn_the_default_after_the_wait():
    async def main():
        rank, store, _, clock = service(default_reward=-0.5)
        event = await rank.rank(ACTIONS, CONTEXT)
        clock.t += 9.9
        assert await rank.settle() == 0
        clock.t += 0.2
        with pytest.raises(Conflict, match="reward wait"):
            await rank.reward(event.event_id, 1.0)
        assert await rank.settle() == 1
        stored = await store.get_rank_event(event.event_id)
        assert stored.learned
        assert stored.reward == -0.5
        assert stored.rewarded_at is None

    run(main())


def test_deferred_events_learn_only_once_activated():
    async def main():
        rank, store, _, clock = service()
        never = await rank.rank(ACTIONS, CONTEXT, defer_activation=True)
        later = await rank.rank(ACTIONS, CONTEXT, defer_activation=True)
        await rank.reward(never.event_id, 1.0)
        await rank.reward(later.event_id, 1.0)
        assert await rank.settle() == 0
        await rank.activate(later.event_id)
        await rank.activate(later.event_id)  # idempotent
        assert await rank.settle() == 1
        clock.t += 60
        assert await rank.settle() == 0
        assert not (await store.get_rank_event(never.event_id)).learned
        assert rank.bandit.learned == 1
        with pytest.raises(Conflict, match="reward wait"):
            await rank.activate(never.event_id)
        with pytest.raises(NotFound):
            await rank.activate("nope")

    run(main())


def test_the_model_is_saved_and_loaded_by_a_new_service():
    async def main():
        rank, store, blobs, clock = service()
        for _ in range(5):
            event = await rank.rank(ACTIONS, CONTEXT)
            await rank.reward(event.event_id, 1.0)
        await rank.settle()
        assert await blobs.load_blob(MODEL_BLOB) is None  # not yet: saved every few seconds
        clock.t += 6
        await rank.settle()
        saved = await blobs.load_blob(MODEL_BLOB)
        assert saved is not None
        fresh = RankService(store, blobs, clock, np.random.default_rng(1))
        await fresh.start()
        assert fresh.bandit.learned == 5
        await blobs.save_blob(MODEL_BLOB, b"not a model")
        broken = RankService(store, blobs, clock, np.random.default_rng(1))
        await broken.start()  # a model it cannot read is replaced, never fatal
        assert broken.bandit.learned == 0

    run(main())


def test_run_settles_until_stopped_and_saves_at_stop():
    async def main():
        rank, _, blobs, _ = service()
        event = await rank.rank(ACTIONS, CONTEXT)
        await rank.reward(event.event_id, 1.0)
        task = asyncio.create_task(rank.run(interval=0.01))
        for _ in range(200):
            if rank.bandit.learned:
                break
            await asyncio.sleep(0.01)
        rank.stop()
        await asyncio.wait_for(task, 5)
        assert rank.bandit.learned == 1
        assert await blobs.load_blob(MODEL_BLOB) is not None

    run(main())


def test_concurrent_ranks_with_one_event_id_create_it_once():
    async def main():
        rank, *_ = service()
        results = await asyncio.gather(
            *(rank.rank(ACTIONS, CONTEXT, event_id="same") for _ in range(5)),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))

    run(main())
