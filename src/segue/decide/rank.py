"""Rank/Reward for arbitrary actions with feature vectors, with Azure Personalizer's semantics.

- ``rank`` ranks the actions for a context with a contextual bandit and records a rank
  event: the ranking, the probability of each action, the action to show
  (``reward_action_id``). Excluded actions get probability 0 and come last.
- ``reward`` attaches the caller's reward to the event (clamped to the configured bounds;
  until the event is learned, the latest reward wins). ``activate`` makes an event created
  with ``defer_activation`` learnable: a deferred event that is never activated teaches
  nothing, reward or not.
- The reward wait starts at the rank call. Rewards and activations are taken only within
  it. ``settle`` (run every ~0.5 s) learns a rewarded, activated event at once and gives an
  activated event with no reward the default reward once its wait is over.
- The model is kept in memory, saved as a blob every few seconds and at stop, and loaded
  at start. A rank event records everything learning needs (features, not feature
  vectors), so events awaiting their reward survive a restart.

Errors: :class:`~segue.errors.InvalidInput` (bad request, names the field),
:class:`~segue.errors.NotFound` (unknown event), :class:`~segue.errors.Conflict` (a
duplicate event id; a reward or activation after the wait or after learning).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import structlog

from segue.core.ids import time_ordered_id
from segue.core.model import RankEvent
from segue.core.ports import Clock, DecisionStore, ProfileStore
from segue.decide.bandits import Featurizer, LinearBandit, Sparse
from segue.errors import BackendUnavailable, Conflict, InvalidInput, NotFound

__all__ = ["MODEL_BLOB", "RankService"]

#: name of the blob holding the bandit's learned state
MODEL_BLOB = "rank.bandit"
_log = structlog.get_logger("segue.rank")


class RankService:
    """The Rank/Reward loop over a :class:`~segue.decide.bandits.LinearBandit`.

    Args:
        store: where rank events are kept.
        blobs: where the model is saved (``ProfileStore.save_blob``).
        clock: epoch seconds.
        rng: the bandit's randomness.
        algorithm / exploration / alpha / feature_bits: see
            :class:`~segue.decide.bandits.LinearBandit` and ``Featurizer``.
        reward_wait_s: seconds after the rank call during which rewards and activations
            are taken; an activated event with no reward then learns ``default_reward``.
        default_reward: the reward of an activated event that got none in time.
        reward_bounds: rewards are clamped into ``[low, high]``.
        max_actions / max_features: request limits (actions per call; flattened features
            per context or action).
        max_joint: most joint features (bias, context, action, crosses) over all the
            actions of one call; ranking costs grow with their square.
        save_every_s: the model is saved at most this often while it changes.
    """

    def __init__(
        self,
        store: DecisionStore,
        blobs: ProfileStore,
        clock: Clock,
        rng: np.random.Generator,
        *,
        algorithm: str = "linucb",
        exploration: float = 0.2,
        alpha: float = 0.5,
        feature_bits: int = 12,
        reward_wait_s: float = 10.0,
        default_reward: float = 0.0,
        reward_bounds: tuple[float, float] = (-1.0, 1.0),
        max_actions: int = 100,
        max_features: int = 256,
        max_joint: int = 4096,
        save_every_s: float = 5.0,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._clock = clock
        self.featurizer = Featurizer(feature_bits, max_features)
        self.bandit = LinearBandit(
            self.featurizer, rng, algorithm=algorithm, exploration=exploration, alpha=alpha
        )
        self.reward_wait_s = reward_wait_s
        self.default_reward = default_reward
        self.reward_bounds = reward_bounds
        self.max_actions = max_actions
        self.max_joint = max_joint
        self.save_every_s = save_every_s
        self._lock = asyncio.Lock()  # reward, activate and settle change events
        self._creating: set[str] = set()
        self._pending: set[str] = set()  # rewarded and activated: learn on the next settle
        self._dirty = False
        self._saved_at = clock.now()
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Load the saved model; a missing or unusable one starts a fresh model."""
        data = await self._blobs.load_blob(MODEL_BLOB)
        if data is None:
            return
        try:
            self.bandit.load_bytes(data)
        except ValueError as exc:
            _log.warning("rank_model_discarded", reason=str(exc))
            return
        _log.info("rank_model_loaded", learned=self.bandit.learned, slots=self.bandit.size)

    # --- the API ------------------------------------------------------------------------
    async def rank(
        self,
        actions: Sequence[tuple[str, list[Any]]],
        context_features: list[Any],
        *,
        event_id: str | None = None,
        excluded: Sequence[str] = (),
        defer_activation: bool = False,
    ) -> RankEvent:
        """Rank ``actions`` (id, features) for the context and record the rank event.

        Returns:
            the stored event: ``ranking`` best first (the action to show first),
            ``probabilities`` aligned with it, ``reward_action_id`` (None only when every
            action is excluded).

        Raises:
            InvalidInput: no action, too many, a repeated action id, an excluded id that is
                not an action, too many features or joint features (``max_joint``).
            Conflict: ``event_id`` was used before.
        """
        ids = [action_id for action_id, _ in actions]
        self._check_actions(ids, excluded)
        context = self._encode(context_features, "$.context_features")
        encoded = [
            self._encode(features, f"$.actions[{i}].features", action_id)
            for i, (action_id, features) in enumerate(actions)
        ]
        joint = sum((1 + len(context.hashes)) * (1 + len(a.hashes)) for a in encoded)
        if joint > self.max_joint:
            raise InvalidInput(
                f"{joint} joint features (context × action features over all actions); "
                f"at most {self.max_joint}",
                field="$.actions",
            )
        event_id = event_id or time_ordered_id(self._clock.now())
        if event_id in self._creating:  # being created by a concurrent call
            raise Conflict(f"event {event_id!r} exists already", field="$.event_id")
        self._creating.add(event_id)
        try:
            if await self._store.get_rank_event(event_id) is not None:
                raise Conflict(f"event {event_id!r} exists already", field="$.event_id")
            wanted = set(excluded)
            choice = self.bandit.choose(
                context, encoded, frozenset(i for i, a in enumerate(ids) if a in wanted)
            )
            event = RankEvent(
                event_id=event_id,
                created_at=self._clock.now(),
                context_features=context_features,
                action_ids=ids,
                action_features=[features for _, features in actions],
                ranking=[ids[i] for i in choice.ranking],
                probabilities=[float(choice.probabilities[i]) for i in choice.ranking],
                reward_action_id=None if choice.chosen is None else ids[choice.chosen],
                activated=not defer_activation,
            )
            await self._store.put_rank_event(event)
        finally:
            self._creating.discard(event_id)
        return event

    async def reward(self, event_id: str, value: float) -> RankEvent:
        """Record the reward of an event; until the event is learned, the latest wins.

        Args:
            value: any finite number; clamped into the configured bounds.

        Raises:
            InvalidInput: ``value`` is not finite.
            NotFound: no such event.
            Conflict: the event is learned already, its reward wait is over, or it chose
                no action.
        """
        if not math.isfinite(value):
            raise InvalidInput("value must be a finite number", field="$.value")
        low, high = self.reward_bounds
        async with self._lock:
            event = await self._open_event(event_id)
            if event.reward_action_id is None:
                raise Conflict(f"event {event_id!r} chose no action: nothing to reward")
            event.reward = min(high, max(low, value))
            event.rewarded_at = self._clock.now()
            await self._store.put_rank_event(event)
            if event.activated:
                self._pending.add(event_id)
        return event

    async def activate(self, event_id: str) -> RankEvent:
        """Make a deferred event learnable (idempotent while its reward wait lasts).

        Raises:
            NotFound: no such event.
            Conflict: the reward wait is over or the event is learned already.
        """
        async with self._lock:
            event = await self._open_event(event_id)
            if not event.activated:
                event.activated = True
                await self._store.put_rank_event(event)
            if event.reward is not None:
                self._pending.add(event_id)
        return event

    async def get(self, event_id: str) -> RankEvent:
        """One rank event.

        Raises:
            NotFound: no such event.
        """
        event = await self._store.get_rank_event(event_id)
        if event is None:
            raise NotFound(f"no rank event {event_id!r}")
        return event

    # --- learning -----------------------------------------------------------------------
    async def settle(self) -> int:
        """Learn the rewarded activated events, then give those whose wait is over the
        default reward; save the model when due. The model learns in a worker thread, so
        ranking goes on meanwhile.

        Returns:
            how many events were learned.
        """
        learned = 0
        async with self._lock:
            pending, self._pending = sorted(self._pending), set()
            rewarded = []
            for event_id in pending:
                event = await self._store.get_rank_event(event_id)
                if event is not None and event.activated and not event.learned:
                    rewarded.append(event)
            learned += await self._learn(rewarded)
            while True:
                due = await self._store.due_rank_events(self._clock.now() - self.reward_wait_s, 500)
                learned += await self._learn(due)
                if len(due) < 500:
                    break
        if self._dirty and self._clock.now() - self._saved_at >= self.save_every_s:
            await self.save()
        return learned

    async def save(self) -> None:
        """Save the model if it changed since the last save."""
        if not self._dirty:
            return
        self._dirty = False
        self._saved_at = self._clock.now()
        try:
            data = await asyncio.to_thread(self.bandit.to_bytes)
            await self._blobs.save_blob(MODEL_BLOB, data)
        except BackendUnavailable:
            self._dirty = True
            raise

    async def run(self, interval: float = 0.5) -> None:
        """Settle every ``interval`` seconds until :meth:`stop`; then save the model."""
        while not self._stopping.is_set():
            try:
                await self.settle()
            except BackendUnavailable:
                _log.warning("rank_settle_backend_unavailable")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)
        try:
            await self.save()
        except BackendUnavailable:
            _log.error("rank_model_not_saved", learned=self.bandit.learned)

    def stop(self) -> None:
        self._stopping.set()

    async def _learn(self, events: list[RankEvent]) -> int:
        """Learn a batch of events (the default reward where none came) and mark them."""
        batch: list[tuple[Sparse, Sparse, float]] = []
        for event in events:
            if event.reward is None:
                event.reward = self.default_reward
            if event.reward_action_id is None:
                continue
            j = event.action_ids.index(event.reward_action_id)
            try:
                context = self.featurizer.encode(event.context_features)
                action = self.featurizer.action(event.action_ids[j], event.action_features[j])
            except ValueError:  # stored under looser limits than today's: skip
                _log.warning("rank_event_not_learned", event_id=event.event_id)
                continue
            batch.append((context, action, event.reward))
        if batch:
            learned = await asyncio.to_thread(self.bandit.learn_batch, batch)
            self._dirty = self._dirty or learned > 0
        for event in events:
            event.learned = True
            await self._store.put_rank_event(event)
        return len(events)

    # --- checks -------------------------------------------------------------------------
    async def _open_event(self, event_id: str) -> RankEvent:
        event = await self._store.get_rank_event(event_id)
        if event is None:
            raise NotFound(f"no rank event {event_id!r}")
        if event.learned:
            raise Conflict(f"event {event_id!r} is learned already")
        if self._clock.now() > event.created_at + self.reward_wait_s:
            raise Conflict(
                f"the reward wait of event {event_id!r} ({self.reward_wait_s:g} s) is over"
            )
        return event

    def _check_actions(self, ids: list[str], excluded: Sequence[str]) -> None:
        if not ids:
            raise InvalidInput("at least one action is needed", field="$.actions")
        if len(ids) > self.max_actions:
            raise InvalidInput(f"at most {self.max_actions} actions", field="$.actions")
        seen: set[str] = set()
        for i, action_id in enumerate(ids):
            if action_id in seen:
                raise InvalidInput(f"action id {action_id!r} repeats", field=f"$.actions[{i}].id")
            seen.add(action_id)
        for i, action_id in enumerate(excluded):
            if action_id not in seen:
                raise InvalidInput(
                    f"excluded action {action_id!r} is not among the actions",
                    field=f"$.excluded_actions[{i}]",
                )

    def _encode(self, features: list[Any], field: str, action_id: str | None = None) -> Sparse:
        try:
            if action_id is None:
                return self.featurizer.encode(features)
            return self.featurizer.action(action_id, features)
        except ValueError as exc:
            raise InvalidInput(str(exc), field=field) from None
