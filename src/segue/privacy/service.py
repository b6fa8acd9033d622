"""The consent service: records signals in the ledger and answers "may this purpose use this
person's data now?" for decide and for ingestion, from a cache that a change empties at once.

A person is a set of *subjects* (their identifiers); consent given under any of them — the
anonymous id before login, the email on a form — is the person's. The state of a set is the
ledger of all its subjects folded (newest signal per purpose wins), cached per set.
``record`` writes durably, then invalidates every cached set containing a recorded subject
before it returns, so the very next request sees the change (the cache never lets a new
caller join a read begun before the change either).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec
import structlog

from segue.core.model import ConsentRecord
from segue.core.ports import Clock, ConsentStore
from segue.decide.cache import Cache
from segue.privacy.policy import (
    EMPTY_STATE,
    ConsentState,
    Decision,
    RegionPolicy,
    RequestSignals,
    evaluate,
    fold,
)
from segue.privacy.signals import Signal, from_context

__all__ = ["ConsentService"]

_log = structlog.get_logger("segue.consent")
Audit = Callable[..., Awaitable[Any]]


class ConsentService:
    """Consent ledger writes and the consent gate's state.

    Args:
        store: the consent ledger.
        policy: regions and their regimes.
        clock: epoch seconds.
        vendor_id: segue's IAB TCF vendor id (None: TC strings never grant).
        cache_size: subject sets whose state is kept in memory.
    """

    def __init__(
        self,
        store: ConsentStore,
        policy: RegionPolicy,
        clock: Clock,
        *,
        vendor_id: int | None = None,
        cache_size: int = 100_000,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.vendor_id = vendor_id
        self._cache: Cache[frozenset[str], ConsentState] = Cache(cache_size, ttl=3600.0)
        self._sets_of: dict[str, set[frozenset[str]]] = {}
        #: subjects with at least one ledger entry: a person with none needs no read
        self._known: set[str] = set()
        self.audit: Audit | None = None
        #: tells the other processes whose consent changed (erased: the ledger is gone)
        self.on_change: Callable[[list[str], bool], Awaitable[None]] | None = None

    async def start(self) -> None:
        self._known = set(await self.store.subjects())

    # --- reading ------------------------------------------------------------------------
    def known(self, subjects: Iterable[str]) -> bool:
        """Whether any of ``subjects`` has a ledger entry (no read needed to tell)."""
        if self._cache.bypass:
            return True
        known = self._known
        return any(s in known for s in subjects)

    async def state(self, subjects: Iterable[str]) -> ConsentState:
        """The folded consent of a person known by ``subjects``."""
        if self._cache.bypass:  # unheard changes elsewhere: every subject may have some
            key = frozenset(subjects)
        else:
            key = frozenset(s for s in subjects if s in self._known)
        if not key:
            return EMPTY_STATE

        async def load() -> ConsentState:
            # registered before the read: a record landing meanwhile invalidates this load
            for subject in key:
                self._sets_of.setdefault(subject, set()).add(key)
            return fold(await self.store.history(key))

        return await self._cache.get(key, load)

    async def decide(
        self, purpose: str, subjects: Iterable[str], request: RequestSignals
    ) -> Decision:
        """The consent gate: ``purpose`` for the person of ``subjects`` in this request."""
        return evaluate(purpose, await self.state(subjects), request, self.policy)

    async def gate(
        self, subjects: list[str], context: Mapping[str, Any], gpc: bool = False
    ) -> Decision:
        """The decide path's gate: ``personalization`` given the request's own signals."""
        signal = from_context(context, gpc_header=gpc, vendor_id=self.vendor_id)
        return await self.decide("personalization", subjects, signal.request())

    def evaluate(self, purpose: str, state: ConsentState, request: RequestSignals) -> Decision:
        return evaluate(purpose, state, request, self.policy)

    async def history(self, subjects: Iterable[str]) -> list[ConsentRecord]:
        return await self.store.history(subjects)

    # --- writing ------------------------------------------------------------------------
    async def record(
        self,
        subjects: Sequence[str],
        signal: Signal,
        *,
        source: str,
        actor: str,
        at: float | None = None,
    ) -> list[ConsentRecord]:
        """Append ``signal`` for each subject, durably, and make it effective at once."""
        if not subjects or signal.empty:
            return []
        when = self.clock.now() if at is None else at
        proof = msgspec.json.encode(signal.proof).decode() if signal.proof else None
        records = [
            ConsentRecord(
                subject=subject,
                at=when,
                source=source,
                purposes=dict(signal.purposes),
                region=signal.region,
                gpc=signal.gpc,
                objects_to_automated=signal.objects_to_automated,
                proof=proof,
            )
            for subject in dict.fromkeys(subjects)
        ]
        stored = await self.store.record(records)
        self.forget(subjects)
        self._known.update(subjects)
        if self.on_change is not None:  # before the answer: the next request anywhere
            await self.on_change(list(subjects), False)
        if self.audit is not None:
            await self.audit(
                "consent.changed",
                actor=actor,
                subjects=list(subjects),
                details={
                    "source": source,
                    "purposes": dict(signal.purposes),
                    "region": signal.region,
                    "gpc": signal.gpc,
                    "objects_to_automated": signal.objects_to_automated,
                    "ledger_seq": [r.seq for r in stored],
                },
            )
        return stored

    def forget(self, subjects: Iterable[str]) -> None:
        """Drop every cached state that involves one of ``subjects``."""
        for subject in subjects:
            for key in self._sets_of.pop(subject, ()):
                self._cache.invalidate(key)

    def changes(self, state: ConsentState, signal: Signal) -> bool:
        """Whether recording ``signal`` would change ``state`` (events repeat consent)."""
        for purpose, granted in signal.purposes.items():
            known = state.purposes.get(purpose)
            if known is None or known.granted != granted:
                return True
        if signal.region is not None and signal.region != state.region:
            return True
        if signal.gpc is not None and signal.gpc != state.gpc:
            return True
        return (
            signal.objects_to_automated is not None
            and signal.objects_to_automated != state.objects_to_automated
        )

    async def erase(self, subjects: Iterable[str]) -> int:
        """Remove a person's ledger entries (their erasure) and forget their state."""
        wanted = list(subjects)
        removed = await self.store.erase(wanted)
        self.forget(wanted)
        self._known.difference_update(wanted)
        if self.on_change is not None:
            await self.on_change(wanted, True)
        return removed

    def heard(self, subjects: Iterable[str], *, erased: bool) -> None:
        """Another process recorded (or erased) consent of ``subjects``: follow it."""
        wanted = list(subjects)
        self.forget(wanted)
        if erased:
            self._known.difference_update(wanted)
        else:
            self._known.update(wanted)

    async def flush(self) -> None:
        """Drop every cached state (changes made elsewhere may have gone unheard)."""
        self._cache.clear()
        self._sets_of.clear()
        self._known = set(await self.store.subjects())

    def bypass(self, on: bool) -> None:
        """Read the ledger on every request while changes elsewhere cannot be heard."""
        self._cache.bypass = on
