"""Ports: the small async Protocols the domain needs from storage and the event log.

Adapters satisfy them structurally (no inheritance); ``tests/contracts`` proves each one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from segue.core.model import (
    AuditEntry,
    AuditHead,
    Changeset,
    ConsentRecord,
    Covariate,
    Decision,
    Identifier,
    Item,
    LogRecord,
    NewRecord,
    PossibleMatch,
    PrivacyRequest,
    Profile,
    QuarantineEntry,
    RankEvent,
    ReportBatch,
    ReportCell,
    ReportRow,
)

__all__ = [
    "CatalogStore",
    "ChangeFeed",
    "Clock",
    "ConsentStore",
    "DecisionStore",
    "EventLog",
    "KeyStore",
    "PrivacyStore",
    "ProfileStore",
    "Quarantine",
    "SharedCache",
]


class Clock(Protocol):
    def now(self) -> float:
        """Return the current time as epoch seconds (UTC)."""
        ...


class EventLog(Protocol):
    """The append-only, ordered, durable record of accepted events (the write side)."""

    async def open(self) -> None:
        """Connect and create or migrate the schema; idempotent."""
        ...

    async def append(self, records: Sequence[NewRecord]) -> list[int | None]:
        """Make records durable, de-duplicated per (source, message_id).

        Returns only once the records are durable (survive a kill -9 of the process).
        Idempotent: a record whose (source, message_id) is already in the log is not stored
        again.

        Returns:
            for each record, in order, its new offset, or None when it was a duplicate.

        Raises:
            BackendUnavailable: the log could not make the records durable; nothing is acked.
        """
        ...

    async def read(self, after: int, limit: int) -> list[LogRecord]:
        """Return up to ``limit`` records with offset > ``after``, in offset order."""
        ...

    async def get(self, offsets: Sequence[int]) -> list[LogRecord]:
        """Return the records at these offsets (missing ones are skipped), in the given order."""
        ...

    async def last_offset(self) -> int:
        """Return the highest offset in the log (0 when empty)."""
        ...

    async def wait(self, after: int, timeout: float) -> None:
        """Return when a record past ``after`` exists, or after ``timeout`` seconds."""
        ...

    async def erase(self, offsets: Sequence[int]) -> int:
        """Remove the records at these offsets physically (a person's erasure, retention).

        Offsets are never reused: ``last_offset`` does not go back, even after the newest
        records are removed and the log is reopened. A removed record's (source,
        message_id) may be appended again (ingestion's suppression list stops erased
        people's retries before they get here). What the backend still holds of removed
        records on disk (write-ahead log, free pages) is overwritten or truncated before
        this returns.

        Returns:
            how many records were removed (missing offsets are skipped).
        """
        ...

    async def aclose(self) -> None:
        """Flush pending appends and release resources."""
        ...


class ProfileStore(Protocol):
    """Profiles, the identity graph, timelines and processor checkpoints (the read model)."""

    async def open(self) -> None:
        """Connect and create or migrate the schema; idempotent."""
        ...

    async def checkpoint(self, consumer: str) -> int:
        """Return the last log offset ``consumer`` committed (0 if never)."""
        ...

    async def lookup(self, identifiers: Iterable[Identifier]) -> dict[Identifier, str]:
        """Map each known identifier to its (current, surviving) profile id."""
        ...

    async def profiles(self, profile_ids: Iterable[str]) -> dict[str, Profile]:
        """Return the profiles with these ids; merged-away or unknown ids are absent."""
        ...

    async def position(self, consumer: str) -> tuple[int, int]:
        """Return ``consumer``'s checkpoint and the version of its state (0, 0 if never).

        The version grows by one with every commit of ``consumer``, whoever made it: the
        fence that lets several processes write one state without losing an update.
        """
        ...

    async def commit(
        self, changes: Changeset, consumer: str, offset: int, *, expected: int | None = None
    ) -> None:
        """Apply ``changes`` and move ``consumer``'s checkpoint to ``offset``, atomically.

        Either both happen or neither, so a processor that crashes re-reads exactly the
        records it had not committed. With ``expected`` (a version read by ``position``),
        the commit happens only if no other commit landed since: else ``StaleState`` is
        raised and nothing is applied.
        """
        ...

    async def lease(self, name: str, holder: str, until: float, now: float) -> bool:
        """Take or renew the lease ``name`` for ``holder`` until ``until`` (epoch seconds).

        Granted when it is free, expired at ``now`` or already ``holder``'s; returns whether
        ``holder`` holds it. ``until=0`` by the holder gives it up. One active processor per
        state (the others stand by) saves the work that fencing alone would throw away.
        """
        ...

    async def identities(self, profile_id: str) -> list[Identifier]:
        """Return every identifier linked to the profile, sorted."""
        ...

    async def resolve(self, profile_id: str) -> str | None:
        """Follow merge redirects; return the surviving id or None when unknown."""
        ...

    async def merged_into(self, profile_ids: Iterable[str]) -> dict[str, list[str]]:
        """The ids merged into each of these profiles (the ids that redirect to it: its
        ``merged_from``), sorted; a profile nothing was merged into is absent.

        An index read: a consumer that only needs the merges does not read and decode
        whole profile documents.
        """
        ...

    async def timeline(self, profile_id: str, after: int, limit: int) -> list[int]:
        """Return up to ``limit`` log offsets of the profile's events after offset ``after``."""
        ...

    async def counts(self) -> dict[str, int]:
        """Return ``{"profiles": n, "identities": m}``."""
        ...

    async def block_candidates(self, keys: Sequence[str], cap: int) -> dict[str, list[str]]:
        """Profiles indexed under each blocking key; a key with more than ``cap`` profiles
        is too common to be useful and comes back empty."""
        ...

    async def features(self, profile_ids: Iterable[str]) -> dict[str, bytes]:
        """The stored real-time features of these profiles (absent when none)."""
        ...

    async def match_records(self, profile_ids: Iterable[str]) -> dict[str, bytes]:
        """The stored match records of these profiles (absent when none)."""
        ...

    async def scan_match_records(self, after: str, limit: int) -> list[tuple[str, bytes]]:
        """(profile id, match records) in profile id order after ``after`` (re-estimation)."""
        ...

    async def possible_matches(
        self, profile_id: str | None, status: str | None, after: int, limit: int
    ) -> list[PossibleMatch]:
        """Grey-zone matches by id, optionally of one profile and/or in one status."""
        ...

    async def set_possible_match(self, match_id: int, status: str) -> PossibleMatch | None:
        """Change a possible match's status; return it (None when unknown)."""
        ...

    async def scan_profiles(self, after: str, limit: int) -> list[Profile]:
        """Profiles in id order after ``after`` (for background model estimation)."""
        ...

    async def load_blob(self, name: str) -> bytes | None:
        """A named blob of derived state (e.g. a match model), or None."""
        ...

    async def save_blob(self, name: str, data: bytes) -> None:
        """Store a named blob, replacing any previous one."""
        ...

    async def erase(
        self, profile_ids: Sequence[str], identifiers: Sequence[Identifier]
    ) -> dict[str, int]:
        """Remove everything held about these profiles (a person's erasure), atomically.

        Removes the profiles, the identifiers given and every identifier linked to the
        profiles, redirects from or to them, their timeline, features, block index entries,
        match records and possible matches; the profile and identity counters go down.
        What the backend still holds of removed rows on disk is overwritten or truncated
        before this returns. Every consumer's state version moves on in the same
        transaction, so a commit fenced on an earlier version (a batch or an admin operation
        that read the person before, in any process) fails with ``StaleState``.

        Returns:
            rows removed per kind (``profiles``, ``identities``, ``redirects``,
            ``timeline``, ``features``, ``blocks``, ``match_records``, ``possible_matches``).
        """
        ...

    async def erase_timeline(self, rows: Sequence[tuple[str, int]]) -> int:
        """Remove (profile id, offset) timeline rows (events that expired); return how many."""
        ...

    async def aclose(self) -> None:
        """Release resources."""
        ...


class Quarantine(Protocol):
    """Messages kept aside with the reason, so nothing a client sends is silently lost."""

    async def open(self) -> None:
        """Connect and create or migrate the schema; idempotent."""
        ...

    async def add(self, entries: Sequence[QuarantineEntry]) -> list[int]:
        """Store entries durably (their ``id`` is ignored); return the assigned ids."""
        ...

    async def list(self, source: str | None, after: int, limit: int) -> list[QuarantineEntry]:
        """Return up to ``limit`` entries with id > ``after``, optionally for one source."""
        ...

    async def get(self, entry_id: int) -> QuarantineEntry | None:
        """Return one entry or None."""
        ...

    async def remove(self, entry_id: int) -> bool:
        """Delete an entry (after a successful replay); return whether it existed."""
        ...

    async def count(self) -> int:
        """Return how many entries are held."""
        ...

    async def erase(self, entry_ids: Sequence[int]) -> int:
        """Remove entries for good (a person's erasure), overwriting what the backend keeps
        of them on disk; return how many existed."""
        ...


class KeyStore(Protocol):
    """Per-subject data keys that seal personal fields of logged events (crypto-shredding).

    A key id is a keyed hash of the subject (never the subject itself). Destroying a key
    makes every event sealed with it unreadable, wherever copies of the log live.
    """

    async def open(self) -> None:
        """Create what is missing; idempotent."""
        ...

    async def get(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        """The keys with these ids; destroyed or unknown ids are absent."""
        ...

    async def create(self, key_ids: Sequence[str]) -> dict[str, bytes]:
        """The keys with these ids, creating the missing ones; returns only once the new
        keys are durable (an event must never be sealed with a key that can be lost)."""
        ...

    async def destroy(self, key_ids: Iterable[str]) -> int:
        """Remove these keys for good, overwriting them on disk; return how many existed."""
        ...

    async def aclose(self) -> None:
        """Release resources."""
        ...


class PrivacyStore(Protocol):
    """Data subject requests, their exports, and the suppression list of erased people."""

    async def open(self) -> None:
        """Create what is missing; idempotent."""
        ...

    async def put(self, request: PrivacyRequest) -> None:
        """Insert or replace a request by ``request_id``, durably."""
        ...

    async def get(self, request_id: str) -> PrivacyRequest | None:
        """One request or None."""
        ...

    async def unfinished(self) -> list[PrivacyRequest]:
        """Requests still ``pending`` or ``running`` (resumed after a restart), oldest first."""
        ...

    async def recent(self, limit: int) -> list[PrivacyRequest]:
        """The ``limit`` most recently created requests, whatever their status, newest first
        (by ``created_at``, then ``request_id``, both descending): the operators' queue view."""
        ...

    async def put_export(self, request_id: str, subjects: Sequence[str], data: bytes) -> None:
        """Keep an access request's export, findable by the person's subject hashes."""
        ...

    async def export(self, request_id: str) -> bytes | None:
        """An access request's export, or None."""
        ...

    async def erase_exports(self, subjects: Iterable[str]) -> int:
        """Remove every export that names one of ``subjects`` (a later erasure)."""
        ...

    async def suppress(self, hashes: Iterable[str], at: float) -> int:
        """Add hashed identifiers to the suppression list; return how many were new."""
        ...

    async def suppressed(self) -> list[str]:
        """Every hashed identifier on the suppression list."""
        ...

    async def aclose(self) -> None:
        """Release resources."""
        ...


class CatalogStore(Protocol):
    """The headless catalog: items with attributes, availability and content per channel."""

    async def open(self) -> None:
        """Connect and create or migrate the schema; idempotent."""
        ...

    async def put(self, items: Sequence[Item]) -> None:
        """Insert or replace items by ``item_id`` (whole items), atomically."""
        ...

    async def get(self, item_ids: Iterable[str]) -> dict[str, Item]:
        """The items with these ids; unknown ids are absent."""
        ...

    async def scan(self, after: str, limit: int) -> list[Item]:
        """Items in id order after ``after`` (paging, model building)."""
        ...

    async def delete(self, item_id: str) -> bool:
        """Remove an item; return whether it existed."""
        ...

    async def count(self) -> int:
        """How many items are held."""
        ...

    async def aclose(self) -> None:
        """Release resources."""
        ...


class DecisionStore(Protocol):
    """The decision log and rank events awaiting rewards."""

    async def open(self) -> None:
        """Connect and create or migrate the schema; idempotent."""
        ...

    async def put_decisions(self, decisions: Sequence[Decision]) -> None:
        """Append decisions (idempotent by ``decision_id``)."""
        ...

    async def get_decision(self, decision_id: str) -> Decision | None:
        """One decision or None."""
        ...

    async def decisions_for(self, profile_id: str, limit: int) -> list[Decision]:
        """The profile's most recent decisions, newest first."""
        ...

    async def put_rank_event(self, event: RankEvent) -> None:
        """Insert or replace a rank event by ``event_id``."""
        ...

    async def get_rank_event(self, event_id: str) -> RankEvent | None:
        """One rank event or None."""
        ...

    async def due_rank_events(self, created_before: float, limit: int) -> list[RankEvent]:
        """Activated, not yet learned rank events created before the given time (their
        reward wait is over), oldest first."""
        ...

    async def erase_decisions(self, profile_ids: Iterable[str]) -> int:
        """Remove every decision of these profiles (a person's erasure); return how many."""
        ...

    async def aclose(self) -> None:
        """Release resources."""
        ...


class ConsentStore(Protocol):
    """The consent ledger: every consent signal per subject, in order, with its proof."""

    async def open(self) -> None:
        """Create what is missing."""
        ...

    async def record(self, records: Sequence[ConsentRecord]) -> list[ConsentRecord]:
        """Append ``records`` durably; return them with ``seq`` set."""
        ...

    async def history(self, subjects: Iterable[str], limit: int = 10_000) -> list[ConsentRecord]:
        """The ledger entries of ``subjects``, oldest first (at most ``limit``, the newest)."""
        ...

    async def erase(self, subjects: Iterable[str]) -> int:
        """Remove every entry of ``subjects`` (a person's erasure); return how many."""
        ...

    async def subjects(self) -> list[str]:
        """Every subject with at least one entry (lets readers skip people with none)."""
        ...

    async def scan(self, after: int, limit: int) -> list[ConsentRecord]:
        """Ledger entries with ``seq`` greater than ``after``, in ``seq`` order, at most
        ``limit`` (paging through the whole ledger, e.g. for consent rates). Erased entries
        are gone, so ``seq`` may have gaps."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class AuditLog(Protocol):
    """The append-only, hash-chained audit log (see ``segue.privacy.audit``)."""

    async def open(self) -> None:
        """Create what is missing; idempotent."""
        ...

    async def append(self, entries: Sequence[AuditEntry]) -> list[AuditEntry]:
        """Chain ``entries`` in order after the current head and store them durably.

        ``seq``, ``prev_hash`` and ``hash`` of the given entries are ignored: the log sets
        them. Appends are serialised (one writer), so concurrent calls never fork the chain;
        the head is re-sealed in the same transaction. Returns only once durable.

        Returns:
            the entries as stored, with ``seq``, ``prev_hash`` and ``hash`` set.
        """
        ...

    async def scan(self, after: int, limit: int) -> list[AuditEntry]:
        """Up to ``limit`` entries with seq > ``after`` in seq order, exactly as stored
        (every stored field, for verification)."""
        ...

    async def head(self) -> AuditHead | None:
        """The sealed head: seq 0 and ``GENESIS`` while the log is empty, sealed by
        ``open`` when it creates the log (and never again, so a log emptied along with its
        head stays headless); None only when someone removed it."""
        ...

    async def list(
        self,
        *,
        subjects: Sequence[str] = (),
        action: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Entries with seq > ``after`` in seq order, at most ``limit``: only those naming
        any of ``subjects`` (subject hashes) when given, of ``action`` when given, and with
        ``since <= at < until`` when given."""
        ...

    async def aclose(self) -> None:
        """Finish pending appends and release resources."""
        ...


__all__ += ["AuditLog"]


class ReportStore(Protocol):
    """KPI report numbers per unit, the reports consumer's state, and privacy budgets.

    Per-unit rows are personal data (a unit is a profile id): :meth:`erase` forgets them.
    """

    async def open(self) -> None:
        """Create or migrate the schema; idempotent."""
        ...

    async def checkpoint(self, consumer: str) -> int:
        """The last log offset ``consumer`` committed (0 if never)."""
        ...

    async def people(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The stored attribution state of these people (absent when none)."""
        ...

    async def commit(self, batch: ReportBatch, consumer: str, after: int, offset: int) -> None:
        """Apply ``batch`` and move ``consumer``'s checkpoint from ``after`` to ``offset``,
        atomically, only if the checkpoint still is ``after``.

        So a batch is counted exactly once, even by two consumers racing on one store.

        Raises:
            StaleState: the checkpoint moved since it was read; nothing was applied.
        """
        ...

    async def cells(
        self, placement: str | None, experiment: str | None, first_day: str, last_day: str
    ) -> list[ReportCell]:
        """Sums per (placement, experiment, variant, day) with ``first_day <= day <=
        last_day`` (``YYYY-MM-DD``), of one placement and/or experiment when given."""
        ...

    async def units(
        self,
        placement: str | None,
        experiment: str | None,
        first_day: str,
        last_day: str,
        *,
        by_day: bool,
    ) -> list[ReportRow]:
        """Each unit's rows in the days given: per day, or summed over them (``day`` is
        ``""``), in (placement, experiment, variant, unit, day) order."""
        ...

    async def covariates(self, placement: str | None, experiment: str | None) -> list[Covariate]:
        """The units' pre-period covariates, of one placement and/or experiment when given."""
        ...

    async def spend(
        self, consumer: str, epsilon: float, delta: float, max_epsilon: float, max_delta: float
    ) -> tuple[bool, float, float]:
        """Charge a release of (``epsilon``, ``delta``) to ``consumer``'s privacy budget if
        its spent ε and δ stay within ``max_epsilon`` and ``max_delta`` (up to float
        rounding), atomically: two releases never both pass on one remaining share.

        Returns:
            whether it was charged, and the consumer's total spent ε and δ afterwards.
        """
        ...

    async def spent(self, consumer: str) -> tuple[float, float]:
        """The ε and δ ``consumer`` has spent (0 when it never released anything)."""
        ...

    async def of_units(self, units: Sequence[str]) -> tuple[list[ReportRow], list[Covariate]]:
        """Every row (per day) and covariate of ``units``: a person's access export."""
        ...

    async def erase(self, units: Sequence[str], people: Sequence[str]) -> dict[str, int]:
        """Remove the rows and covariates of ``units`` and the state of ``people`` (a
        person's erasure); what the backend keeps of them on disk is overwritten.

        Returns:
            rows removed per kind (``rows``, ``covariates``, ``people``).
        """
        ...

    async def aclose(self) -> None:
        """Release resources."""
        ...


__all__ += ["ReportStore"]


class ChangeFeed(Protocol):
    """Notes between the processes of one installation (see ``segue.core.changes``).

    Delivery is best effort and fast (milliseconds); a receiver that may have missed
    notes says so with a ``flush`` note of its own making, never silently.
    """

    #: whether notes are getting through; while false, caches must not be trusted
    live: bool

    async def open(self, origin: str) -> None:
        """Connect as the process ``origin``; notes published before are not received."""
        ...

    async def publish(self, note: bytes, *, confirm: bool = False) -> None:
        """Send ``note`` to every other process; returns once the others can see it, or
        with ``confirm`` once every other live process has applied it (a consent change:
        the next request anywhere must see it), within a bounded wait."""
        ...

    async def applied(self) -> None:
        """Report that the notes received so far are applied (and that this process is
        alive): what a confirmed publish elsewhere waits for."""
        ...

    async def receive(self, timeout: float) -> list[bytes]:
        """The notes that arrived since the last call, waiting up to ``timeout`` seconds
        for the first; an empty list when none came."""
        ...

    async def erase(self) -> int:
        """Forget every note kept so far (they may name an erased person); the receivers
        that had not read them yet are told to flush. Returns how many were dropped."""
        ...

    async def aclose(self) -> None:
        """Release resources."""
        ...


class SharedCache(Protocol):
    """A cache shared by the processes of an installation (the second layer behind each
    process's own): copies of state that whoever changes the state invalidates first.

    Every method treats the cache being unreachable as a miss or a no-op. Keys name people
    (``id:email:…``, ``facts:<profile id>``): an adapter that keeps them anywhere others
    can list them stores a keyed hash of each, never the key itself.
    """

    async def get(self, key: str) -> tuple[bytes | None, bytes]:
        """The cached bytes (None: a miss) and a token to pass to ``put``."""
        ...

    async def put(self, key: str, value: bytes, token: bytes) -> None:
        """Keep ``value`` unless ``key`` was invalidated since ``token`` was read."""
        ...

    async def invalidate(self, keys: Iterable[str]) -> bool:
        """Drop ``keys``; False when the cache could not be told."""
        ...

    async def reset(self) -> None:
        """Make every entry unreachable (after an outage some invalidations were lost)."""
        ...

    async def aclose(self) -> None:
        """Release resources."""
        ...
