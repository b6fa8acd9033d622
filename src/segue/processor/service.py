"""The processor service: reads the event log from its checkpoint and folds it into state.

Runs in the API process (``segue serve``) or alone (later: ``segue worker``), off the request
path. Each batch is committed atomically with its checkpoint, so a crash at any point is
followed by re-reading exactly the uncommitted records: nothing is processed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

import msgspec
import structlog

from segue.core.events import Event, event_time
from segue.core.model import Changeset, Identifier, LogRecord, PossibleMatch, Profile
from segue.core.ports import Clock, EventLog, ProfileStore
from segue.errors import BackendUnavailable, Conflict, NotFound, StaleState
from segue.identity.identifiers import IdentityRules, attachable, identifiers_of
from segue.privacy.envelope import derive_key
from segue.processor.behaviour import BehaviourStage, Feedback
from segue.processor.collector import batch_pause
from segue.processor.fold import Folder, WorkingSet
from segue.processor.linkage import Linker
from segue.processor.offload import off_loop
from segue.processor.state_cache import StateCache
from segue.profiles.golden import Survivorship

__all__ = ["Processor", "profile_id_factory"]

_log = structlog.get_logger("segue.processor")
_decoder = msgspec.json.Decoder(Event)
T = TypeVar("T")
PoisonHandler = Callable[[LogRecord, Exception], Awaitable[None]]


def _keyed_ids(key: bytes, prefix: str) -> Callable[[Identifier], str]:
    """``prefix`` + 24 hex digits of a keyed BLAKE2b of the identifier: deterministic,
    and not reversible to the identifier without the key."""
    # the keyed state is set up once and copied per id: half the cost of hmac.new each time
    keyed = hmac.new(key, digestmod=hashlib.blake2b)

    def keyed_id(identifier: Identifier) -> str:
        mac = keyed.copy()
        mac.update(str(identifier).encode())
        return prefix + mac.digest()[:12].hex()

    return keyed_id


def profile_id_factory(secret: bytes) -> Callable[[Identifier], str]:
    """Profile ids derived from the first identifier with a keyed hash.

    Deterministic, so a replay or two concurrent workers agree on the id; keyed with the
    installation's secret, so an id cannot be brute-forced back to an email address.
    """
    return _keyed_ids(secret, "p_")


def unattached_id_factory(secret: bytes) -> Callable[[Identifier], str]:
    """Where the offsets of an identifier's events no profile took in are indexed.

    An event without analytics consent is kept in the log but attached to no profile, so
    no timeline leads to it, and an access or erasure request for the person would miss it.
    Its offset is indexed in the timeline table under this id instead: keyed, so state.db
    does not hold the identifier, and distinct from every profile id (``u_``, not ``p_``),
    so no profile's timeline ever shows such an event.
    """
    return _keyed_ids(derive_key(secret, "unattached-events"), "u_")


def _decode_all(
    records: list[LogRecord], folder: Folder
) -> tuple[list[tuple[LogRecord, Event | None]], set[Identifier], dict[int, list[Identifier]]]:
    """The events, the identifiers to load for them, and each event's own identifiers by
    offset (worked out once here: the fold needs them again)."""
    events: list[tuple[LogRecord, Event | None]] = []
    wanted: set[Identifier] = set()
    own: dict[int, list[Identifier]] = {}
    for record in records:
        try:
            event: Event | None = _decoder.decode(record.body)
        except msgspec.DecodeError:
            _log.error("undecodable_log_record", offset=record.offset)
            event = None
        events.append((record, event))
        if event is not None:
            found = own[record.offset] = identifiers_of(event, folder.rules)
            wanted.update(folder.wanted(event, found))
    return events, wanted, own


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
        batch_size: int = 4000,
        rules: IdentityRules | None = None,
        survivorship: Survivorship | None = None,
        legal_basis: Mapping[str, str] | None = None,
        matching: bool = True,
        match_threshold: float | None = None,
        possible_threshold: float | None = None,
        behaviour: BehaviourStage | None = None,
        state_cache: int = 20_000,
    ) -> None:
        self._log = log
        self._store = store
        self._clock = clock
        self._consumer = consumer
        self._batch_size = batch_size
        #: the timeline id under which an identifier's unattached events are indexed
        self.unattached_id = unattached_id_factory(secret)
        self.folder = Folder(
            rules or IdentityRules(),
            survivorship or Survivorship(),
            profile_id_factory(secret),
            legal_basis,
        )
        #: the links, profiles and match records this processor last committed
        self.cache = StateCache(state_cache)
        self.linker: Linker | None = (
            Linker(
                store,
                self.folder,
                match_threshold=match_threshold,
                possible_threshold=possible_threshold,
                cache=self.cache,
            )
            if matching
            else None
        )
        #: features and item models (None: identity only)
        self.behaviour: BehaviourStage | None = behaviour
        #: called after each commit with the changes and the decision feedback seen
        self.on_commit: Callable[[Changeset, list[Feedback]], Awaitable[None]] | None = None
        self.position = 0
        #: version of the state this processor last read or wrote (the commit fence)
        self.version = 0
        #: whether this process folds the log (else another process does: ``segue worker``)
        self.running = False
        #: set to hold a lease (``segue worker``): only the holder folds, others stand by
        self.holder: str | None = None
        self.lease_ttl = 5.0
        #: called when this processor becomes the active one (reload what others learned)
        self.on_activate: Callable[[], Awaitable[None]] | None = None
        self._lease: _Lease | None = None
        self.processed = 0
        self.last_received_at = 0.0
        self._stopping = asyncio.Event()
        #: seconds between checks whether the match model should be re-estimated
        self.reestimate_every = 2.0
        self._estimated_at = 0.0
        #: one writer of state at a time: batches and admin operations (unmerge) serialise
        self._lock = asyncio.Lock()
        #: erased people (the suppression list): their events are skipped, never folded
        self.suppression: Callable[[Event], bool] | None = None
        #: offsets of skipped events of erased people, for the log's compaction (under lock)
        self.screened: list[int] = []
        #: count events without analytics consent in item popularity (no person attached)
        self.aggregate_unattached = False
        #: the last batch was full: more is waiting in the log (the reports consumer yields)
        self.behind = False
        #: batches of at most this many records are decoded and folded on the event loop
        self.inline_up_to = 8
        #: the most records a batch takes while the processor is less than
        #: ``catch_up_after`` seconds behind (see :meth:`_limit`)
        self.live_batch = 500
        self.catch_up_after = 1.0
        #: clock time of the last batch that folded records (the reports consumer keeps its
        #: batches short while live traffic is being folded)
        self.folded_at = float("-inf")
        #: how many records the last batch could take (a failed one is retried record by
        #: record for that many)
        self._read_limit = batch_size

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        async with self._lock:
            self.cache.clear()  # whoever holds it now may change state behind the cache
            yield

    @property
    def lock(self) -> AbstractAsyncContextManager[None]:
        """Held while state is written; an erasure holds it so no batch writes a person back.
        Taking it empties the processor's state cache."""
        return self._exclusive()

    async def start(self) -> None:
        """Load the checkpoint and the match model; call before ``run`` or ``step``."""
        self.position, self.version = await self._store.position(self._consumer)
        self.cache.clear()
        if self.linker is not None:
            await self.linker.load()

    async def step(self) -> int:
        """Process one batch; return how many records it folded (0 when caught up)."""
        async with self._lock:
            try:
                with batch_pause():
                    return await self._step()
            except BaseException:
                # profiles were changed in place, and the store may or may not hold the commit
                self.cache.clear()
                raise

    async def _step(self) -> int:
        limit = self._read_limit = self._limit()
        records = await self._log.read(self.position, limit)
        self.behind = len(records) >= limit
        if not records:
            return 0
        self.folded_at = self._clock.now()
        # decoding and folding are CPU work: off the event loop, so request latency stays
        # low, unless the batch is so small that a thread hand-off costs more (offload.py)
        inline = len(records) <= self.inline_up_to
        events, wanted, own = await off_loop(inline, _decode_all, records, self.folder)
        links, unknown = self.cache.split_links(wanted)
        if unknown:
            links.update(await self._store.lookup(unknown))
        profiles, unread = self.cache.split_profiles(set(links.values()))
        if unread:
            profiles.update(await self._store.profiles(unread))
        # the working set is closed: the fold only follows identifiers of this batch
        ws = WorkingSet(links, profiles)
        landed = await off_loop(inline, self._fold, ws, events, own)
        if self.linker is not None:
            await self.linker.link(ws, self._clock.now())
        feedback: list[Feedback] = []
        if self.behaviour is not None and landed:
            redirects = ws.changes.redirects
            touched = {pid for _, _, pid, _ in landed} | set(redirects) | set(redirects.values())
            stored = await self._store.features(touched)
            ws.changes.features, feedback = await off_loop(
                inline, self.behaviour.fold, stored, landed, redirects
            )
        if self.behaviour is not None and ws.unattached:
            await off_loop(inline, self.behaviour.count_unattached, ws.unattached)
        last = records[-1]
        await self._store.commit(ws.changes, self._consumer, last.offset, expected=self.version)
        self.version += 1
        self.cache.committed(ws.changes, ws.links, ws.profiles)
        if self.on_commit is not None:
            await self.on_commit(ws.changes, feedback)
        self.position = last.offset
        self.processed += len(records)
        self.last_received_at = last.received_at
        return len(records)

    def _limit(self) -> int:
        """How many records the next batch may take.

        Every event of a batch becomes visible when the batch commits, so a batch's length
        is a wait for its first events and for everything that arrives meanwhile. Live
        traffic is folded in batches of at most ``live_batch`` (~0.1 s of work); only a
        processor more than ``catch_up_after`` seconds behind (a restart, a backlog, a burst
        it could not absorb) takes full batches, which cost about a sixth less CPU an event
        (``bench/worker.py``: 134–136 µs against 162–164 µs with batches of 500).
        """
        if self.behind and self._clock.now() - self.last_received_at > self.catch_up_after:
            return self._batch_size
        return min(self._batch_size, self.live_batch)

    def _fold(
        self,
        ws: WorkingSet,
        events: list[tuple[LogRecord, Event | None]],
        own: dict[int, list[Identifier]],
    ) -> list[tuple[LogRecord, Event, str, float]]:
        landed: list[tuple[LogRecord, Event, str, float]] = []
        blocked = self.suppression
        for record, event in events:
            if event is None:
                continue
            if blocked is not None and blocked(event):
                self.screened.append(record.offset)
                continue
            pid = self.folder.apply(ws, record, event, identifiers=own.get(record.offset))
            if pid is None:
                if attachable(event):
                    continue  # nothing in it names anyone
                self._index_unattached(ws, record, event)
                if not self.aggregate_unattached:
                    continue
                at = event_time(event, datetime.fromtimestamp(record.received_at, UTC))
                # no analytics consent: counted in aggregates only
                ws.unattached.append((event, min(at.timestamp(), record.received_at)))
                continue
            # the event's time, as the fold put it in the timeline row it just appended; a
            # device clock ahead of the server must not push windows into the future
            when = min(ws.changes.timeline[-1][2], record.received_at)
            landed.append((record, event, pid, when))
        return landed

    def unattached_keys(self, event: Event) -> list[str]:
        """The index ids an event no profile takes in is kept under: one per usable user
        and anonymous id (see :func:`unattached_id_factory`)."""
        usable = self.folder.rules.usable
        return [
            self.unattached_id(Identifier(kind, value))
            for kind, value in (("user_id", event.uid), ("anonymous_id", event.aid))
            if value is not None and usable(value)
        ]

    def _index_unattached(self, ws: WorkingSet, record: LogRecord, event: Event) -> None:
        """Index an event no profile takes in: a privacy request for the person finds it."""
        for key in self.unattached_keys(event):
            ws.changes.timeline.append((key, record.offset, record.received_at))

    async def unmerge(self, profile_id: str, merged_id: str) -> list[str]:
        """Undo the merge of ``merged_id`` into ``profile_id`` by re-deriving from the log.

        The survivor's events are folded again from scratch with a separation between the
        identifiers the merged profile brought and the rest, so they are never joined again;
        other recorded probabilistic merges are re-applied. Profile ids come out as before
        (they derive from each profile's first identifier).

        Returns:
            the ids of the profiles the survivor was split into, ``profile_id`` first.

        Raises:
            NotFound: no such profile, or it has no record of merging ``merged_id``.
        """
        return await self._fenced(partial(self._unmerge, profile_id, merged_id))

    async def _fenced(self, operation: Callable[[int, int], Awaitable[T]]) -> T:
        """Run an admin operation on the newest state, again if a batch landed meanwhile.

        ``operation(offset, version)`` reads what it needs and commits with
        ``expected=version``: a batch committed in between (by this process or by a
        ``segue worker``) makes the commit fail as stale, and the operation starts over.
        """
        for _ in range(50):
            async with self._exclusive():
                offset, version = await self._store.position(self._consumer)
                try:
                    result = await operation(offset, version)
                except StaleState:
                    pass
                else:
                    if self.version == version:  # this process's own loop is at that state
                        self.version = version + 1
                    return result
            await asyncio.sleep(0.01)
        raise Conflict("the state kept changing; try again")

    async def _announce(self, changes: Changeset) -> None:
        """An admin operation committed: tell decide and the other processes, as a batch
        does, or their caches keep the old identity graph for as long as their TTL."""
        if self.on_commit is not None:
            await self.on_commit(changes, [])

    async def _unmerge(
        self, profile_id: str, merged_id: str, offset: int, version: int
    ) -> list[str]:
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
        events, _, _ = await loop.run_in_executor(None, _decode_all, records, self.folder)
        ws = WorkingSet({}, {})
        ws.separations = [*survivor.separations, (split_off, rest)]
        owned = set(survivor.identities)
        landed = await loop.run_in_executor(None, self._refold, ws, events, owned, survivor)
        changes = ws.changes
        if self.behaviour is not None:
            # features re-derived from the same events; item models already learned them
            changes.features, _ = await loop.run_in_executor(
                None, partial(self.behaviour.fold, {}, landed, changes.redirects, learn=False)
            )
        changes.drop_profiles = [profile_id]
        changes.clear_redirects = [pid for pid in ws.profiles if pid != profile_id]
        changes.unlink = sorted(owned - set(ws.links))
        changes.new_profiles = len(ws.profiles) - 1
        changes.new_identities = -len(changes.unlink)
        if self.linker is not None:
            for profile in ws.profiles.values():
                self.linker.index_profile(profile, changes)
        await self._store.commit(changes, self._consumer, offset, expected=version)
        await self._announce(changes)
        # the profile unmerged first (it keeps its id: ids derive from a profile's first
        # identifier), then the ones split off
        return sorted(ws.profiles, key=lambda pid: (pid != profile_id, pid))

    async def forget_separated(
        self, erased: Collection[Identifier], erased_profiles: Collection[str]
    ) -> int:
        """Take an erased person's identifiers out of the separations other profiles keep.

        An unmerge, or a rejected possible match, writes both sides' identifiers into every
        profile it leaves (so the two are never joined again): the other person's profile
        names the erased one's email. The erased identifiers are suppressed from now on, so
        the separation has nothing left to keep apart: it goes; a side with identifiers of
        others left keeps them. Returns how many profiles were rewritten.
        """
        gone = set(erased)
        return await self._fenced(partial(self._forget_separated, gone, set(erased_profiles)))

    async def _forget_separated(
        self, gone: set[Identifier], skip: set[str], offset: int, version: int
    ) -> int:
        mine = await self._store.profiles(skip)
        named = {i for p in mine.values() for sep in p.separations for side in sep for i in side}
        links = await self._store.lookup(named - gone)
        owners: set[str] = set()
        for pid in set(links.values()):
            survivor = await self._store.resolve(pid)
            if survivor is not None and survivor not in skip:
                owners.add(survivor)
        changes = Changeset(profiles={}, links={}, timeline=[], redirects={})
        for profile in (await self._store.profiles(owners)).values():
            kept = []
            for left, right in profile.separations:
                left = [i for i in left if i not in gone]
                right = [i for i in right if i not in gone]
                if left and right:
                    kept.append((left, right))
            if kept != profile.separations:
                profile.separations = kept
                changes.profiles[profile.profile_id] = profile
        if changes.profiles:
            await self._store.commit(changes, self._consumer, offset, expected=version)
        return len(changes.profiles)

    async def decide_match(
        self, match_id: int, accept: bool, reason: str = "manual"
    ) -> PossibleMatch:
        """Accept (merge the two profiles) or reject (keep them apart for good) a possible match.

        An automatic accept (``reason="match"``, re-estimation) that the identifier limits or
        a separation forbid sets the match to ``dismissed`` instead.

        Raises:
            NotFound: no such possible match, or one of its profiles no longer exists.
            Conflict: it was already decided, or a manual accept is forbidden by the
                identifier limits or a separation.
        """
        return await self._fenced(partial(self._decide_match, match_id, accept, reason))

    async def _decide_match(
        self, match_id: int, accept: bool, reason: str, offset: int, version: int
    ) -> PossibleMatch:
        found = [
            m
            for m in await self._store.possible_matches(None, None, match_id - 1, 1)
            if m.id == match_id
        ]
        if not found:
            raise NotFound(f"no possible match {match_id}")
        match = found[0]
        if match.status != "open":
            raise Conflict(f"possible match {match_id} is already {match.status}")
        ids = [await self._store.resolve(p) for p in (match.profile_a, match.profile_b)]
        if None in ids:
            raise NotFound("one of the two profiles no longer exists")
        a_id, b_id = str(ids[0]), str(ids[1])
        profiles = await self._store.profiles({a_id, b_id})
        ws = WorkingSet({}, profiles)
        for profile in profiles.values():
            for identifier in profile.identities:
                ws.links[identifier] = profile.profile_id
        status = "accepted" if accept else "rejected"
        if a_id != b_id:
            a, b = profiles[a_id], profiles[b_id]
            # identifiers that arrived since the match was proposed (a user id on each side)
            # or a separation may forbid the merge now, as they would for an event
            if accept and not self.folder.allowed(ws, a.identities, b.identities, a, b):
                if reason != "match":
                    raise Conflict(
                        f"possible match {match_id} cannot be accepted: the identifier limits "
                        "or a separation keep its two profiles apart; reject it instead"
                    )
                status = "dismissed"  # re-estimation: no longer a candidate for anyone
            elif accept:
                survivor = self.folder.merge(
                    ws,
                    a,
                    b,
                    reason=reason,
                    via=[a.identities[0], b.identities[0]],
                    at=self._clock.now(),
                    score=match.score,
                    explanation=match.explanation,
                )
                if self.linker is not None:
                    self.linker.index_profile(survivor, ws.changes)
                if self.behaviour is not None:
                    # as a batch's merge does: the store drops the merged-away profile's
                    # features row, so the survivor's must already hold both
                    redirects = ws.changes.redirects
                    stored = await self._store.features({*redirects, *redirects.values()})
                    ws.changes.features, _ = self.behaviour.fold(stored, [], redirects, learn=False)
            else:
                separation = (sorted(a.identities), sorted(b.identities))
                for profile in (a, b):
                    profile.separations.append(separation)
                    ws.touch(profile)
        await self._store.commit(ws.changes, self._consumer, offset, expected=version)
        await self._announce(ws.changes)
        decided = await self._store.set_possible_match(match_id, status)
        assert decided is not None
        return decided

    def _refold(
        self,
        ws: WorkingSet,
        events: list[tuple[LogRecord, Event | None]],
        owned: set[Identifier],
        survivor: Profile,
    ) -> list[tuple[LogRecord, Event, str, float]]:
        landed: list[tuple[LogRecord, Event, str, float]] = []
        for record, event in events:
            if event is not None:
                pid = self.folder.apply(ws, record, event, only=owned)
                if pid is not None:
                    at = event_time(event, datetime.fromtimestamp(record.received_at, UTC))
                    landed.append((record, event, pid, min(at.timestamp(), record.received_at)))
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
        return landed

    async def run(self, on_poison: PoisonHandler | None = None) -> None:
        """Process until ``stop``; wait on the log when caught up; re-estimate the match
        model in the background as the number of profiles grows.

        A batch that fails is re-run one record at a time; a record that fails alone is a
        poison message: it is handed to ``on_poison`` (the runtime quarantines it) and
        skipped, so one bad event can never stop everyone else's processing. A backend that
        is down is not poison: the batch is retried after a pause.
        """
        await self.start()
        self.running = True
        estimating: asyncio.Task[None] | None = None
        lease = self._lease = _Lease(self) if self.holder is not None else None
        try:
            while not self._stopping.is_set():
                if lease is not None and not await lease.hold():
                    continue
                try:
                    done = await self.step()
                except StaleState:
                    # another process committed (a failover, an admin operation): its state
                    # is the truth; this batch is dropped and read again from there
                    _log.warning("processor_state_moved", position=self.position)
                    self.position, self.version = await self._store.position(self._consumer)
                    continue
                except BackendUnavailable:
                    _log.warning("processor_backend_unavailable")
                    await asyncio.sleep(1.0)
                    continue
                except Exception:
                    _log.exception("processor_batch_failed", position=self.position)
                    await self._isolate(on_poison)
                    continue
                if done == 0:
                    try:
                        await self._log.wait(self.position, 0.5)
                    except BackendUnavailable:  # the log is away: pause as long as a wait
                        await asyncio.sleep(0.5)
                if estimating is None or estimating.done():
                    estimating = await self._maybe_reestimate()
        finally:
            self.running = False
            if estimating is not None and not estimating.done():
                estimating.cancel()
            if lease is not None:
                await lease.release()

    async def _isolate(self, on_poison: PoisonHandler | None) -> None:
        # one record at a time for as many as the batch that failed could hold (a live
        # batch is shorter than a full one): then batches again
        failed = self._read_limit
        saved, self._batch_size = self._batch_size, 1
        try:
            for _ in range(failed):
                try:
                    if await self.step() == 0:
                        return
                except BackendUnavailable:
                    raise
                except Exception as exc:
                    async with self._lock:
                        (record,) = await self._log.read(self.position, 1)
                        await self._store.commit(
                            Changeset(), self._consumer, record.offset, expected=self.version
                        )
                        self.position, self.version = record.offset, self.version + 1
                    _log.error("processor_poison_record", offset=record.offset, error=repr(exc))
                    if on_poison is not None:
                        await on_poison(record, exc)
        finally:
            self._batch_size = saved

    async def _maybe_reestimate(self) -> asyncio.Task[None] | None:
        """Start a re-estimation each time the number of profiles has doubled (from 100)."""
        if self.linker is None:
            return None
        now = self._clock.now()
        if now - self._estimated_at < self.reestimate_every:
            return None
        self._estimated_at = now
        profiles = (await self._store.counts())["profiles"]
        if profiles < 100 or profiles < 2 * max(self.linker.estimated_at_profiles, 50):
            return None
        return asyncio.create_task(self.reestimate(seed=profiles))

    async def reestimate(self, seed: int = 0) -> None:
        """Re-estimate the match model, then re-score the open possible matches with it:
        those now sure are merged, those now unlikely are dismissed."""
        if self.linker is None or not await self.linker.reestimate(seed):
            return
        model = self.linker.model
        after = 0
        while True:
            page = await self._store.possible_matches(None, "open", after, 500)
            if not page:
                return
            for match in page:
                a = await self._store.resolve(match.profile_a)
                b = await self._store.resolve(match.profile_b)
                if a is None or b is None or a == b:
                    await self._store.set_possible_match(match.id, "dismissed")
                    continue
                probability = await self.linker.rescore(match, a, b)
                if probability is None:
                    continue
                if probability >= model.match_threshold:
                    try:
                        await self.decide_match(match.id, True, reason="match")
                    except (NotFound, Conflict):
                        continue
                elif probability < model.possible_threshold:
                    await self._store.set_possible_match(match.id, "dismissed")
            after = page[-1].id

    def stop(self) -> None:
        self._stopping.set()

    @property
    def active(self) -> bool:
        """Whether this process folds the log now (running, and holding the lease if any)."""
        return self.running and (self._lease is None or self._lease.active)

    async def lag(self) -> tuple[int, float]:
        """Return (records behind, milliseconds behind) the head of the log."""
        if not self.running:  # another process folds: its checkpoint is in the store
            self.position = await self._store.checkpoint(self._consumer)
        head = await self._log.last_offset()
        behind = max(0, head - self.position)
        if behind == 0:
            return 0, 0.0
        nxt = await self._log.read(self.position, 1)
        oldest = nxt[0].received_at if nxt else self._clock.now()
        return behind, max(0.0, (self._clock.now() - oldest) * 1000.0)


class _Lease:
    """The processor's lease: only its holder folds; the others stand by and take over
    within ``lease_ttl`` seconds when the holder stops renewing (it died)."""

    def __init__(self, processor: Processor) -> None:
        self.p = processor
        self.until = 0.0
        self.active = False

    async def hold(self) -> bool:
        """Renew when a third of the lease has passed; False (after a pause) on standby."""
        p, now = self.p, self.p._clock.now()
        if self.active and now < self.until - 2 * p.lease_ttl / 3:
            return True
        assert p.holder is not None
        try:
            granted = await p._store.lease(p._consumer, p.holder, now + p.lease_ttl, now)
        except BackendUnavailable:
            granted = False
        if not granted:
            if self.active:
                _log.warning("processor_lease_lost", holder=p.holder)
            self.active = False
            p.cache.clear()
            await asyncio.sleep(min(1.0, p.lease_ttl / 3))
            return False
        self.until = now + p.lease_ttl
        if not self.active:  # taking over: start from what the last holder committed
            self.active = True
            p.position, p.version = await p._store.position(p._consumer)
            p.cache.clear()
            if p.on_activate is not None:
                await p.on_activate()
            _log.info("processor_lease_taken", holder=p.holder, position=p.position)
        return True

    async def release(self) -> None:
        """Give the lease up on a clean stop, so a standby takes over at once."""
        if self.active:
            p = self.p
            with contextlib.suppress(BackendUnavailable):
                await p._store.lease(p._consumer, p.holder or "", 0.0, p._clock.now())
            self.active = False
