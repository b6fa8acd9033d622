"""Data subject requests: access and erasure of one person across every store.

A request is stored (``pending``) before it is acknowledged and runs in the background
(``running`` → ``done`` or ``failed``); one left unfinished by a crash is resumed at start.

Erasure of the person the identifiers resolve to — the whole profile, every identifier it
holds and every profile merged into it:

1. their identifiers go on the suppression list first, so ingestion and the processor drop
   their events from that moment on;
2. under the processor's lock (no batch can write them back meanwhile): the state store
   (profile, identities, redirects, timeline, features, block index, match records,
   possible matches), the event log (their events removed physically), their data keys
   (crypto-shredding: copies of the log elsewhere reveal nothing), the match model's term
   frequencies (they count names), and the read side's caches;
3. then their decisions (in memory and logged), their KPI report rows and attribution
   state, consent ledger, quarantined messages that name them and earlier access exports.

Each store's erase overwrites what it removed and truncates its write-ahead log, so no
copy stays on disk. The receipt counts what was removed where. The request keeps the
identifiers only until it has run; afterwards it holds only their keyed hashes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import msgspec
import structlog

from segue.core.changes import Change
from segue.core.events import Event
from segue.core.model import Identifier, PrivacyRequest, Profile
from segue.errors import BackendUnavailable, InvalidInput
from segue.identity.identifiers import attachable, normalise_phone
from segue.identity.matching import TF_FIELDS, record_from_traits
from segue.privacy.retention import event_type, lifetimes
from segue.privacy.shredding import SealedEventLog
from segue.privacy.suppression import SuppressionList, normalise_identifier

if TYPE_CHECKING:
    from segue.runtime import Runtime

__all__ = ["ACCESS", "ERASURE", "PrivacyRequests", "term_values"]

_log = structlog.get_logger("segue.privacy.requests")
ACCESS: Final = "access"
ERASURE: Final = "erasure"
_PAGE: Final = 5000
#: keys of a (quarantined) message whose values are identifiers
_ID_KEYS: Final = frozenset(
    {"userId", "anonymousId", "previousId", "user_id", "anonymous_id", "email", "phone"}
)
_event_decoder = msgspec.json.Decoder(Event)
_any_decoder = msgspec.json.Decoder()


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def term_values(profiles: Iterable[Profile]) -> list[tuple[str, str, int]]:
    """(field, normalised value, records holding it) of the term-frequency fields of the
    records these profiles were built from: what the match model counted for them."""
    counts: Counter[tuple[str, str]] = Counter()
    for profile in profiles:
        for snapshot in profile.records:
            record = record_from_traits(snapshot)
            if record is None:
                continue
            for field in TF_FIELDS:
                value = getattr(record, field)
                if isinstance(value, str):
                    counts[(field, value)] += 1
    return [(field, value, n) for (field, value), n in sorted(counts.items())]


def mentions(
    body: bytes, values: set[str], phone_region: str, extra_keys: Iterable[str] = ()
) -> bool:
    """Whether a stored message names one of ``values`` (lower-cased identifier values)
    under an identifier key (``userId``, ``email``, ``phone``, …), at any depth."""
    keys = _ID_KEYS | set(extra_keys)
    try:
        doc = _any_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        text = body.decode("utf-8", "replace").lower()
        return any(len(v) >= 6 and v in text for v in values)
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > 16:
            continue
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, dict | list):
                    stack.append((value, depth + 1))
                elif key in keys and isinstance(value, str | int) and not isinstance(value, bool):
                    text = str(value).strip().lower()
                    if text in values:  # already as normalise_email would give it
                        return True
                    if key == "phone" and normalise_phone(value, phone_region) in values:
                        return True
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
    return False


class PrivacyRequests:
    """Accepts, runs and reports privacy requests; enforces retention; compacts the log.

    Args:
        runtime: the started runtime's stores and services (the composition root).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.store = runtime.privacy_store
        self.rules = runtime.processor.folder.rules
        self.suppression = SuppressionList(
            runtime.keys.secret.encode(), runtime.processor.folder.wanted, self.rules
        )
        settings = runtime.settings.privacy
        self.lifetimes = lifetimes(settings.retention_days)
        self.retention_interval = settings.retention_interval_s
        self.compact_interval = 5.0
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._retained_at = 0.0
        self._compacted_at = 0.0
        #: what the last retention run removed
        self.last_retention: dict[str, int] = {}
        #: whether this process runs requests: the one that folds the log (its lock keeps
        #: a batch from writing an erased person back); API processes only queue them
        self.executes: Callable[[], bool] = lambda: True
        #: tells the other processes that the suppression list grew
        self.on_suppressed: Callable[[], Awaitable[None]] | None = None
        self._polled_at = 0.0

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Load the suppression list, hook it into ingestion and the processor, and queue
        the requests a previous run left unfinished."""
        self.suppression.add(await self.store.suppressed())
        self.rt.ingest.suppression = self.suppression
        self.rt.processor.suppression = self.suppression.blocks

    async def reload_suppression(self) -> None:
        """Another process erased someone: their identifiers are suppressed here too."""
        self.suppression.add(await self.store.suppressed())

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Run queued requests one at a time; compact and enforce retention between them."""
        while not self._stopping.is_set():
            try:
                request_id: str | None = await asyncio.wait_for(self._queue.get(), 1.0)
            except TimeoutError:
                request_id = None
            if not self.executes():
                continue
            try:
                if request_id is None:
                    # submitted by another process, or left unfinished by a crash
                    for request in await self.store.unfinished():
                        await self.process(request.request_id)
                        if self._stopping.is_set():
                            return
                else:
                    await self.process(request_id)
            except BackendUnavailable:
                # a store is down: the request stays unfinished in the store, and the next
                # poll (every second) takes it up again once the store is back
                _log.warning("privacy_backend_unavailable")
                continue
            try:
                await self._upkeep()
            except Exception:
                _log.exception("privacy_upkeep_failed")

    async def _upkeep(self) -> None:
        now = self.rt.clock.now()
        if now - self._compacted_at >= self.compact_interval:
            self._compacted_at = now
            await self.compact()
        if self.lifetimes and now - self._retained_at >= self.retention_interval:
            self._retained_at = now
            self.last_retention = await self.enforce_retention()

    # --- requests -----------------------------------------------------------------------
    def identifiers(self, user: Mapping[str, object]) -> list[Identifier]:
        """The request's identifiers as the processor links them.

        Raises:
            InvalidInput: none of them is a usable identifier.
        """
        found: list[Identifier] = []
        for kind, value in user.items():
            identifier = normalise_identifier(kind, value, self.rules)
            if identifier is not None and identifier not in found:
                found.append(identifier)
        if not found:
            raise InvalidInput(
                'user must hold at least one identifier, e.g. {"email": "a@b.c"}',
                field="user",
            )
        return found

    async def submit(
        self, kind: str, user: Mapping[str, str], actor: str = "admin"
    ) -> PrivacyRequest:
        """Store a new request (durably) and queue it.

        Raises:
            InvalidInput: unknown type, or no usable identifier.
        """
        if kind not in (ACCESS, ERASURE):
            raise InvalidInput("type must be access or erasure", field="type")
        identifiers = self.identifiers(user)
        now = self.rt.clock.now()
        request = PrivacyRequest(
            request_id="pr_" + uuid.uuid4().hex,
            type=kind,
            created_at=now,
            updated_at=now,
            user={k: str(v) for k, v in user.items()},
            subjects=sorted({self.suppression.hash(i) for i in identifiers}),
        )
        await self.store.put(request)
        self._queue.put_nowait(request.request_id)
        await self._audit(request, identifiers, actor)
        return request

    async def get(self, request_id: str) -> tuple[PrivacyRequest, bytes | None] | None:
        """A request and, for a finished access request, its export."""
        request = await self.store.get(request_id)
        if request is None:
            return None
        export = None
        if request.type == ACCESS and request.status == "done":
            export = await self.store.export(request_id)
        return request, export

    async def process(self, request_id: str) -> PrivacyRequest | None:
        """Run one request to ``done`` or ``failed`` (idempotent: a resumed erasure that
        already removed everything removes nothing more)."""
        request = await self.store.get(request_id)
        if request is None or request.status in ("done", "failed"):
            return request
        request.status, request.updated_at = "running", self.rt.clock.now()
        await self.store.put(request)
        identifiers: list[Identifier] = []
        try:
            identifiers = self.identifiers(request.user)
            if request.type == ERASURE:
                request.receipt = await self.erase(identifiers)
            else:
                request.receipt, export = await self.access(identifiers, request)
                await self.store.put_export(request.request_id, request.subjects, export)
            request.status = "done"
        except BackendUnavailable:
            raise  # not the request's fault: it stays unfinished and runs again later
        except Exception as exc:
            # the message may quote personal data: keep only what kind of failure it was
            _log.exception("privacy_request_failed", request_id=request_id)
            request.status, request.error = "failed", type(exc).__name__
        request.user = {}
        request.updated_at = self.rt.clock.now()
        await self.store.put(request)
        await self._audit(request, identifiers, "system")
        return request

    async def _audit(
        self, request: PrivacyRequest, identifiers: list[Identifier], actor: str
    ) -> None:
        details: dict[str, Any] = {
            "request_id": request.request_id,
            "type": request.type,
            "status": request.status,
        }
        stores = request.receipt.get("stores")
        if isinstance(stores, dict):
            details["stores"] = sorted(stores)
        try:
            await self.rt.audit.record(
                "privacy.request",
                actor=actor,
                subjects=[str(i) for i in identifiers],
                details=details,
            )
        except Exception:  # the audit must not undo an erasure that already happened
            _log.exception("privacy_audit_failed", request_id=request.request_id)

    # --- finding the person -------------------------------------------------------------
    async def _find(self, identifiers: Iterable[Identifier]) -> dict[str, Profile]:
        store = self.rt.store
        links = await store.lookup(identifiers)
        survivors = {await store.resolve(pid) for pid in set(links.values())}
        return await store.profiles(pid for pid in survivors if pid is not None)

    async def _timeline(self, profile_id: str) -> list[int]:
        offsets: list[int] = []
        while True:
            page = await self.rt.store.timeline(profile_id, offsets[-1] if offsets else 0, _PAGE)
            offsets += page
            if len(page) < _PAGE:
                return offsets

    async def _unattached(self, identifiers: Iterable[Identifier]) -> list[tuple[str, int]]:
        """(index id, offset) of the person's events no profile took in (sent without
        analytics consent), as the processor indexed them by user and anonymous id."""
        index = self.rt.processor.unattached_id
        rows: list[tuple[str, int]] = []
        for identifier in sorted(identifiers):
            if identifier.type in ("user_id", "anonymous_id"):
                key = index(identifier)
                rows += [(key, offset) for offset in await self._timeline(key)]
        return rows

    async def _suppress(self, identifiers: Iterable[Identifier]) -> int:
        hashes = {self.suppression.hash(i) for i in identifiers}
        new = await self.store.suppress(hashes, self.rt.clock.now())
        self.suppression.add(hashes)
        if self.on_suppressed is not None:
            await self.on_suppressed()
        return new

    # --- erasure ------------------------------------------------------------------------
    async def erase(self, identifiers: Iterable[Identifier]) -> dict[str, Any]:
        """Erase the person these identifiers resolve to from every store; the receipt."""
        started = time.perf_counter()
        rt = self.rt
        every = set(identifiers)
        first = await self._find(every)
        for profile in first.values():
            every.update(profile.identities)
        suppressed = await self._suppress(every)
        # while the person's profiles are still there: their separations (an unmerge, a
        # rejected match) name the other profiles that name them back
        separations = await rt.processor.forget_separated(every, set(first))
        stores: dict[str, dict[str, int]] = {}
        async with rt.processor.lock:
            # a batch may have linked more identifiers before the lock was ours
            found = await self._find(every)
            for profile in found.values():
                every.update(profile.identities)
            suppressed += await self._suppress(every)
            profile_ids = set(found)
            for profile in found.values():
                profile_ids.update(profile.merged_from)
            offsets: set[int] = set()
            for profile_id in found:
                offsets.update(await self._timeline(profile_id))
            unattached = await self._unattached(every)
            offsets.update(offset for _, offset in unattached)
            screened, rt.processor.screened = rt.processor.screened, []
            linker = rt.processor.linker
            forgotten = 0
            if linker is not None:
                forgotten = linker.forget(term_values(found.values()))
                if forgotten:
                    await linker.save()  # first: the store's erasure scrubs what this frees
            stores["state"] = await rt.store.erase(sorted(profile_ids), sorted(every))
            if rt.processor.running:
                # the erasure moved the state's version (the commit fence) by one, with no
                # batch of this process in flight (the lock is ours): its next one follows
                rt.processor.version += 1
            stores["state"]["unattached_events"] = await rt.store.erase_timeline(unattached)
            stores["state"]["separations_elsewhere"] = separations
            stores["match_model"] = {"term_counts": forgotten}
            log: dict[str, int] = {"events": await rt.log.erase(sorted(offsets | set(screened)))}
            if isinstance(rt.log, SealedEventLog):
                log["data_keys"] = await rt.log.destroy_keys(str(i) for i in every)
            stores["event_log"] = log
            # a decision made before the person had a profile is under the profile id their
            # identifiers would give one (an experiment's unit for a visitor not known yet)
            units = rt.reporting.units_of(profile_ids, every)
            # after the keys are gone: the other processes drop the ones they cached
            # this process's decisions first, then the note that has the others drop theirs
            # (and delete any they wrote meanwhile): the receipt counts what the log held
            in_memory = await rt.engine.forget(units)
            stores["decisions"] = {
                "decisions": await rt.decisions.erase_decisions(units),
                "in_memory": in_memory,
            }
            stores["caches"] = await self._forget_cached(every, profile_ids, units)
        stores["reports"] = await rt.reporting.forget(profile_ids, every)
        subjects = sorted({str(i) for i in every} | profile_ids)
        stores["consent"] = {"records": await rt.consent.erase(subjects)}
        stores["quarantine"] = {"entries": await self._erase_quarantine(every, found)}
        hashes = {self.suppression.hash(i) for i in every}
        stores["privacy_exports"] = {"exports": await self.store.erase_exports(hashes)}
        stores["suppression"] = {"identifiers": suppressed}
        # last: the notes that told the other processes about this erasure name the person
        stores["change_feed"] = {"notes": await rt.changes.erase()}
        return {
            "profiles": len(found),
            "identifiers": len(every),
            "stores": stores,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }

    async def _forget_cached(
        self, identifiers: set[Identifier], profile_ids: set[str], units: set[str]
    ) -> dict[str, int]:
        """Here and in every other process (through the change feed), with the data keys
        the erasure destroyed and the decisions the others hold for the person."""
        decisioning = self.rt.decisioning
        for identifier in identifiers:
            decisioning.identity_cache.invalidate(identifier)
        for profile_id in profile_ids:
            decisioning.signals_cache.invalidate(profile_id)
            decisioning.facts_cache.invalidate(profile_id)
        await decisioning.drop_shared(identifiers, profile_ids)
        await decisioning.publish(
            Change(
                origin=decisioning.origin,
                identifiers=sorted(str(i) for i in identifiers),
                profiles=sorted(profile_ids),
                keys_destroyed=isinstance(self.rt.log, SealedEventLog),
                erased=sorted(units),
            )
        )
        return {"identity": len(identifiers), "signals": len(profile_ids)}

    async def _erase_quarantine(
        self, identifiers: set[Identifier], profiles: Mapping[str, Profile]
    ) -> int:
        values = {i.value.strip().lower() for i in identifiers}
        for profile in profiles.values():  # the raw forms seen (a phone as typed)
            for name in ("email", "phone"):
                for observation in profile.alternates.get(name, []):
                    if isinstance(observation.value, str):
                        values.add(observation.value.strip().lower())
        region = self.rules.phone_region
        extra = self.rules.trait_identifiers
        doomed: list[int] = []
        after = 0
        while True:
            page = await self.rt.quarantine.list(None, after, 1000)
            doomed += [e.id for e in page if mentions(e.body, values, region, extra)]
            if len(page) < 1000:
                break
            after = page[-1].id
        return await self.rt.quarantine.erase(doomed)

    # --- access -------------------------------------------------------------------------
    async def access(
        self, identifiers: Iterable[Identifier], request: PrivacyRequest | None = None
    ) -> tuple[dict[str, Any], bytes]:
        """Everything held about the person: (receipt, the export as JSON)."""
        started = time.perf_counter()
        rt = self.rt
        every = set(identifiers)
        found = await self._find(every)
        for profile in found.values():
            every.update(profile.identities)
        events: dict[int, msgspec.Raw] = {}
        profiles: list[dict[str, Any]] = []
        decisions = 0
        for profile_id, profile in sorted(found.items()):
            records = await rt.log.get(await self._timeline(profile_id))
            events.update((r.offset, msgspec.Raw(r.body)) for r in records)
            logged = await rt.decisions.decisions_for(profile_id, 100_000)
            decisions += len(logged)
            body = msgspec.to_builtins(profile)
            body.pop("records", None)  # the same traits again, as match snapshots
            body["identities"] = [str(i) for i in profile.identities]
            # a separation names another person's identifiers too: theirs are not this
            # person's to receive, only how many there are
            own = set(profile.identities)
            body["separations"] = [
                {
                    "own": [str(i) for side in sep for i in side if i in own],
                    "others": sum(1 for side in sep for i in side if i not in own),
                }
                for sep in profile.separations
            ]
            body["features"] = await rt.decisioning.profile_features(profile_id)
            body["decisions"] = msgspec.to_builtins(logged)
            body["possible_matches"] = msgspec.to_builtins(
                await rt.store.possible_matches(profile_id, None, 0, 1000)
            )
            body["event_count_in_log"] = len(records)
            profiles.append(body)
        # the events no profile took in (sent without analytics consent) are theirs too
        unattached = sorted({offset for _, offset in await self._unattached(every)})
        events.update((r.offset, msgspec.Raw(r.body)) for r in await rt.log.get(unattached))
        # decisions under no profile held now: those of profiles merged into theirs, and
        # those made while they were a visitor decide did not know (an experiment's unit)
        merged = {m for profile in found.values() for m in profile.merged_from}
        units = rt.reporting.units_of({*found, *merged}, every)
        rows, covariates = await rt.reporting.store.of_units(sorted(units))
        states = await rt.reporting.store.people(sorted({*found, *merged}))
        reports = {
            "rows": msgspec.to_builtins(rows),
            "covariates": msgspec.to_builtins(covariates),
            "attribution_state": {
                key: msgspec.msgpack.decode(state) for key, state in sorted(states.items())
            },
        }
        earlier: list[Any] = []
        for unit in sorted(rt.reporting.units_of(merged, every) - set(found)):
            earlier += msgspec.to_builtins(await rt.decisions.decisions_for(unit, 100_000))
        decisions += len(earlier)
        subjects = sorted({str(i) for i in every} | set(found))
        consent = await rt.consents.history(subjects)
        audit_entries: list[Any] = []
        after = 0
        while True:
            page = await rt.audit.list(subjects=subjects, after=after, limit=1000)
            audit_entries += page
            if len(page) < 1000:
                break
            after = page[-1].seq
        doc = {
            "request_id": request.request_id if request else None,
            "generated_at": _iso(rt.clock.now()),
            "identifiers": sorted(str(i) for i in every),
            "profiles": profiles,
            "decisions_outside_profiles": earlier,
            "reports": reports,
            "events": [events[offset] for offset in sorted(events)],
            "consent": msgspec.to_builtins(consent),
            "audit": msgspec.to_builtins(audit_entries),
        }
        data = msgspec.json.encode(doc)
        receipt = {
            "profiles": len(profiles),
            "identifiers": len(every),
            "events": len(events),
            "decisions": decisions,
            "consent_records": len(consent),
            "audit_entries": len(audit_entries),
            "bytes": len(data),
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        return receipt, data

    # --- compaction and retention -------------------------------------------------------
    async def compact(self) -> int:
        """Remove the events of erased people the processor skipped (late arrivals)."""
        processor = self.rt.processor
        if not processor.screened:
            return 0
        async with processor.lock:
            offsets, processor.screened = processor.screened, []
            return await self.rt.log.erase(offsets)

    async def enforce_retention(self) -> dict[str, int]:
        """Remove events older than their type's lifetime (and their timeline rows).

        Reads the log from its start (oldest first) up to the shortest lifetime's cutoff,
        only among events the processor has already folded.
        """
        if not self.lifetimes:
            return {}
        rt = self.rt
        now = rt.clock.now()
        cutoff = now - min(self.lifetimes.values())
        removed = {"events": 0, "timeline": 0}
        after = 0
        while not self._stopping.is_set():
            page = await rt.log.read(after, 2000)
            if not page:
                break
            expired = []
            done = False
            for record in page:
                if record.received_at > cutoff or record.offset > rt.processor.position:
                    done = True
                    break
                life = self.lifetimes.get(event_type(record.body))
                if life is not None and now - record.received_at > life:
                    expired.append(record)
            if expired:
                async with rt.processor.lock:
                    rows = await self._timeline_rows(expired)
                    removed["timeline"] += await rt.store.erase_timeline(rows)
                    removed["events"] += await rt.log.erase([r.offset for r in expired])
            if done:
                break
            after = page[-1].offset
        return removed

    async def _timeline_rows(self, records: list[Any]) -> list[tuple[str, int]]:
        """(profile id, offset) of each record: the profile its identifiers lead to now,
        and the index rows of a record no profile took in."""
        wanted: dict[int, list[Identifier]] = {}
        unattached: list[tuple[str, int]] = []
        for record in records:
            try:
                event = _event_decoder.decode(record.body)
            except msgspec.DecodeError:
                continue
            wanted[record.offset] = self.rt.processor.folder.wanted(event)
            if not attachable(event):
                keys = self.rt.processor.unattached_keys(event)
                unattached += [(key, record.offset) for key in keys]
        links = await self.rt.store.lookup({i for ids in wanted.values() for i in ids})
        rows: list[tuple[str, int]] = []
        survivors: dict[str, str | None] = {}
        for offset, ids in wanted.items():
            for profile_id in {links[i] for i in ids if i in links}:
                if profile_id not in survivors:
                    survivors[profile_id] = await self.rt.store.resolve(profile_id)
                survivor = survivors[profile_id]
                if survivor is not None:
                    rows.append((survivor, offset))
        return rows + unattached
