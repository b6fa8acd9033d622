"""The engine's most recent decisions, kept in memory for feedback and reports.

Each is kept encoded (msgpack bytes, with its profile id beside it for erasure), not as a
``Decision``. Why: a decision is ~18 container objects (lists, the context dict and the
lists in it). Kept live, the 50,000 most recent filled the garbage collector's young and
middle generations with objects that survive, so its collections ran often and walked
them, collecting nothing: on a slow machine each middle collection took 30–73 ms, a stall
of the event loop that every request in flight waited for. Bytes and a tuple of atoms are
not tracked by the collector. Feedback reads a decision back by id, far less often than
decisions are made.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import msgspec

from segue.core.model import Decision

__all__ = ["RecentDecisions"]

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Decision).decode


class RecentDecisions:
    """Decisions by id, the oldest dropped past ``size``."""

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._kept: OrderedDict[str, tuple[str | None, bytes]] = OrderedDict()

    def put(self, decision: Decision) -> None:
        self._kept[decision.decision_id] = (decision.profile_id, _encode(decision))
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)

    def get(self, decision_id: str) -> Decision | None:
        kept = self._kept.get(decision_id)
        return None if kept is None else _decode(kept[1])

    def __contains__(self, decision_id: object) -> bool:
        return decision_id in self._kept

    def __len__(self) -> int:
        return len(self._kept)

    def forget(self, profile_ids: Iterable[str]) -> list[str]:
        """Drop the decisions made for these profiles; return their ids."""
        ids = set(profile_ids)
        gone = [d for d, (profile_id, _) in self._kept.items() if profile_id in ids]
        for decision_id in gone:
            del self._kept[decision_id]
        return gone
