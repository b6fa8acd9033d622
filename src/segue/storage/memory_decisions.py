"""The decision log and rank events in memory: the reference for the decision-store contract.

Kept encoded, exactly as the SQLite adapter stores them, so what a caller changes on a
decision or event it got back never reaches the store until it is put again.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

from segue.core.model import Decision, RankEvent
from segue.storage._decision_codec import decode_decision, decode_rank_event, encode

__all__ = ["MemoryDecisionStore"]


class MemoryDecisionStore:
    """Decisions by id and per profile; rank events by id with a sorted index of the due."""

    def __init__(self) -> None:
        self._decisions: dict[str, bytes] = {}
        self._by_profile: dict[str, list[tuple[float, int, str]]] = {}
        self._events: dict[str, bytes] = {}
        self._due: list[tuple[float, str]] = []  # (created_at, event_id): activated, not learned

    async def open(self) -> None:
        return None

    async def put_decisions(self, decisions: Sequence[Decision]) -> None:
        docs = [(d, encode(d)) for d in decisions]  # all or nothing
        for decision, doc in docs:
            if decision.decision_id in self._decisions:
                continue
            self._decisions[decision.decision_id] = doc
            if decision.profile_id is not None:
                rows = self._by_profile.setdefault(decision.profile_id, [])
                rows.append((decision.created_at, len(self._decisions), decision.decision_id))

    async def get_decision(self, decision_id: str) -> Decision | None:
        doc = self._decisions.get(decision_id)
        return None if doc is None else decode_decision(doc)

    async def decisions_for(self, profile_id: str, limit: int) -> list[Decision]:
        rows = sorted(self._by_profile.get(profile_id, []), reverse=True)[: max(limit, 0)]
        return [decode_decision(self._decisions[decision_id]) for _, _, decision_id in rows]

    async def put_rank_event(self, event: RankEvent) -> None:
        doc = encode(event)
        old = self._events.get(event.event_id)
        if old is not None:
            previous = decode_rank_event(old)
            key = (previous.created_at, previous.event_id)
            at = bisect.bisect_left(self._due, key)
            if at < len(self._due) and self._due[at] == key:
                del self._due[at]
        self._events[event.event_id] = doc
        if event.activated and not event.learned:
            bisect.insort(self._due, (event.created_at, event.event_id))

    async def get_rank_event(self, event_id: str) -> RankEvent | None:
        doc = self._events.get(event_id)
        return None if doc is None else decode_rank_event(doc)

    async def due_rank_events(self, created_before: float, limit: int) -> list[RankEvent]:
        end = bisect.bisect_left(self._due, (created_before, ""))
        return [decode_rank_event(self._events[e]) for _, e in self._due[: min(end, max(limit, 0))]]

    async def erase_decisions(self, profile_ids: Iterable[str]) -> int:
        removed = 0
        for profile_id in set(profile_ids):
            for _, _, decision_id in self._by_profile.pop(profile_id, []):
                removed += self._decisions.pop(decision_id, None) is not None
        return removed

    async def aclose(self) -> None:
        return None
