"""The processor service: reads the event log from its checkpoint and folds it into state.

Runs in the API process (``segue serve``) or alone (later: ``segue worker``), off the request
path. Each batch is committed atomically with its checkpoint, so a crash at any point is
followed by re-reading exactly the uncommitted records: nothing is processed twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable, Mapping

import msgspec
import structlog

from segue.core.events import Event
from segue.core.model import Identifier, LogRecord, Profile
from segue.core.ports import Clock, EventLog, ProfileStore
from segue.errors import NotFound
from segue.identity.identifiers import IdentityRules
from segue.processor.fold import Folder, WorkingSet
from segue.profiles.golden import Survivorship

__all__ = ["Processor", "profile_id_factory"]

_log = structlog.get_logger("segue.processor")
_decoder = msgspec.json.Decoder(Event)


def profile_id_factory(secret: bytes) -> Callable[[Identifier], str]:
    """Profile ids derived from the first identifier with a keyed hash.

    Deterministic, so a replay or two concurrent workers agree on the id; keyed with the
    installation's secret, so an id cannot be brute-forced back to an email address.
    """

    def new_id(identifier: Identifier) -> str:
        digest = hmac.new(secret, str(identifier).encode(), hashlib.blake2b).digest()
        return "p_" + digest[:12].hex()

    return new_id


def _decode_all(
    records: list[LogRecord], folder: Folder
) -> tuple[list[tuple[LogRecord, Event | None]], set[Identifier]]:
    events: list[tuple[LogRecord, Event | None]] = []
    wanted: set[Identifier] = set()
    for record in records:
        try:
            event: Event | None = _decoder.decode(record.body)
        except msgspec.DecodeError:
            _log.error("undecodable_log_record", offset=record.offset)
            event = None
        events.append((record, event))
        if event is not None:
            wanted.update(folder.wanted(event))
    return events, wanted


class Processor:
    """Folds the event log into the profile store.

    Args:
        log: the event log to read.
        store: the profile store to write (atomically with the checkpoint).
        clock: wall clock for lag measurement.
        secret: installation secret for profile ids.
        consumer: checkpoint name; one per independent processor.
        batch_size: records per transaction.
    """

    def __init__(
        self,
        log: EventLog,
        store: ProfileStore,
        clock: Clock,
        secret: bytes,
        *,
        consumer: str = "profiles",
        batch_size: int = 1000,
        rules: IdentityRules | None = None,
        survivorship: Survivorship | None = None,
        legal_basis: Mapping[str, str] | None = None,
    ) -> None:
        self._log = log
        self._store = store
        self._clock = clock
        self._consumer = consumer
        self._batch_size = batch_size
        self.folder = Folder(
            rules or IdentityRules(),
            survivorship or Survivorship(),
            profile_id_factory(secret),
            legal_basis,
        )
        self.position = 0
        self.processed = 0
        self.last_received_at = 0.0
        self._stopping = asyncio.Event()
        #: one writer of state at a time: batches and admin operations (unmerge) serialise
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Load the checkpoint; call before ``run`` or ``step``."""
        self.position = await self._store.checkpoint(self._consumer)

    async def step(self) -> int:
        """Process one batch; return how many records it folded (0 when caught up)."""
        async with self._lock:
            return await self._step()

    async def _step(self) -> int:
        records = await self._log.read(self.position, self._batch_size)
        if not records:
            return 0
        # decoding and folding are CPU work: off the event loop, so request latency stays low
        loop = asyncio.get_running_loop()
        events, wanted = await loop.run_in_executor(None, _decode_all, records, self.folder)
        links = await self._store.lookup(wanted)
        profiles = await self._store.profiles(set(links.values()))
        # the working set is closed: the fold only follows identifiers of this batch
        ws = WorkingSet(links, profiles)
        await loop.run_in_executor(None, self._fold, ws, events)
        last = records[-1]
        await self._store.commit(ws.changes, self._consumer, last.offset)
        self.position = last.offset
        self.processed += len(records)
        self.last_received_at = last.received_at
        return len(records)

    def _fold(self, ws: WorkingSet, events: list[tuple[LogRecord, Event | None]]) -> None:
        for record, event in events:
            if event is not None:
                self.folder.apply(ws, record, event)

    async def unmerge(self, profile_id: str, merged_id: str) -> list[str]:
        """Undo the merge of ``merged_id`` into ``profile_id`` by re-deriving from the log.

        The survivor's events are folded again from scratch with a separation between the
        identifiers the merged profile brought and the rest, so they are never joined again;
        other recorded probabilistic merges are re-applied. Profile ids come out as before
        (they derive from each profile's first identifier).

        Returns:
            the ids of the profiles the survivor was split into.

        Raises:
            NotFound: no such profile, or it has no record of merging ``merged_id``.
        """
        async with self._lock:
            found = await self._store.profiles([profile_id])
            survivor = found.get(profile_id)
            if survivor is None:
                raise NotFound(f"no profile {profile_id}")
            record = next((m for m in survivor.merges if m.profile_id == merged_id), None)
            if record is None:
                raise NotFound(f"profile {profile_id} has no merge of {merged_id}")
            split_off = sorted(set(record.identifiers))
            rest = sorted(set(survivor.identities) - set(split_off))
            offsets: list[int] = []
            while True:
                page = await self._store.timeline(profile_id, offsets[-1] if offsets else 0, 5000)
                offsets += page
                if len(page) < 5000:
                    break
            records = await self._log.get(offsets)
            loop = asyncio.get_running_loop()
            events, _ = await loop.run_in_executor(None, _decode_all, records, self.folder)
            ws = WorkingSet({}, {})
            ws.separations = [*survivor.separations, (split_off, rest)]
            owned = set(survivor.identities)
            await loop.run_in_executor(None, self._refold, ws, events, owned, survivor)
            changes = ws.changes
            changes.drop_profiles = [profile_id]
            changes.clear_redirects = [pid for pid in ws.profiles if pid != profile_id]
            changes.unlink = sorted(owned - set(ws.links))
            changes.new_profiles = len(ws.profiles) - 1
            changes.new_identities = -len(changes.unlink)
            await self._store.commit(changes, self._consumer, self.position)
            return sorted(ws.profiles)

    def _refold(
        self,
        ws: WorkingSet,
        events: list[tuple[LogRecord, Event | None]],
        owned: set[Identifier],
        survivor: Profile,
    ) -> None:
        for record, event in events:
            if event is not None:
                self.folder.apply(ws, record, event, only=owned)
        for merge in survivor.merges:
            if merge.reason == "identifier" or len(merge.via) != 2:
                continue
            left, right = (ws.links.get(i) for i in merge.via)
            if left is None or right is None or left == right:
                continue
            a, b = ws.profiles[left], ws.profiles[right]
            if self.folder.allowed(ws, a.identities, b.identities, a, b):
                self.folder.merge(
                    ws,
                    a,
                    b,
                    reason=merge.reason,
                    via=list(merge.via),
                    at=merge.at,
                    message_id=merge.message_id,
                    score=merge.score,
                    explanation=merge.explanation,
                )
        for profile in ws.profiles.values():
            profile.separations = list(ws.separations)

    async def run(self) -> None:
        """Process until ``stop``; wait on the log when caught up."""
        await self.start()
        while not self._stopping.is_set():
            done = await self.step()
            if done == 0:
                await self._log.wait(self.position, 0.5)

    def stop(self) -> None:
        self._stopping.set()

    async def lag(self) -> tuple[int, float]:
        """Return (records behind, milliseconds behind) the head of the log."""
        head = await self._log.last_offset()
        behind = max(0, head - self.position)
        if behind == 0:
            return 0, 0.0
        nxt = await self._log.read(self.position, 1)
        oldest = nxt[0].received_at if nxt else self._clock.now()
        return behind, max(0.0, (self._clock.now() - oldest) * 1000.0)
