"""In-memory reference adapters for every port: fast, hermetic, and the contract's yardstick.

Nothing here survives the process; use them in tests and for throwaway instances.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
from collections.abc import Iterable, Sequence

from segue.core.model import (
    Changeset,
    Identifier,
    LogRecord,
    NewRecord,
    PossibleMatch,
    Profile,
    QuarantineEntry,
)
from segue.errors import StaleState

__all__ = ["MemoryEventLog", "MemoryProfileStore", "MemoryQuarantine"]


class MemoryEventLog:
    """The event log as a Python list; offsets start at 1."""

    def __init__(self) -> None:
        #: by offset - 1; an erased record leaves None so offsets never move
        self._records: list[LogRecord | None] = []
        self._seen: dict[tuple[str, str], int] = {}
        self._changed = asyncio.Condition()

    async def open(self) -> None:
        return None

    async def append(self, records: Sequence[NewRecord]) -> list[int | None]:
        out: list[int | None] = []
        for r in records:
            key = (r.source, r.message_id)
            if key in self._seen:
                out.append(None)
                continue
            offset = len(self._records) + 1
            self._records.append(
                LogRecord(offset, r.source, r.message_id, r.received_at, r.key, r.body)
            )
            self._seen[key] = offset
            out.append(offset)
        if any(o is not None for o in out):
            async with self._changed:
                self._changed.notify_all()
        return out

    async def read(self, after: int, limit: int) -> list[LogRecord]:
        found: list[LogRecord] = []
        at = max(after, 0)
        while at < len(self._records) and len(found) < limit:
            record = self._records[at]
            at += 1
            if record is not None:
                found.append(record)
        return found

    async def get(self, offsets: Sequence[int]) -> list[LogRecord]:
        found = (self._records[o - 1] for o in offsets if 0 < o <= len(self._records))
        return [r for r in found if r is not None]

    async def erase(self, offsets: Sequence[int]) -> int:
        removed = 0
        for offset in set(offsets):
            if 0 < offset <= len(self._records):
                record = self._records[offset - 1]
                if record is not None:
                    self._records[offset - 1] = None
                    self._seen.pop((record.source, record.message_id), None)
                    removed += 1
        return removed

    async def last_offset(self) -> int:
        return len(self._records)

    async def wait(self, after: int, timeout: float) -> None:
        if len(self._records) > after:
            return
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: len(self._records) > after), timeout
                )

    async def aclose(self) -> None:
        return None


class MemoryProfileStore:
    """The read model in dicts; commits copy profiles so callers cannot alias stored state."""

    def __init__(self) -> None:
        self._checkpoints: dict[str, int] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._versions: dict[str, int] = {}
        self._links: dict[Identifier, str] = {}
        self._profiles: dict[str, Profile] = {}
        self._redirects: dict[str, str] = {}
        #: the other way round: survivor → the ids redirected to it (merges, erasure and the
        #: reports consumer ask "what merged into X?"; a scan of every redirect grew with
        #: every merge ever made)
        self._merged: dict[str, set[str]] = {}
        self._timeline: dict[str, list[int]] = {}
        self._counts = {"profiles": 0, "identities": 0}
        self._blocks: dict[str, set[str]] = {}
        self._keys_of: dict[str, list[str]] = {}
        self._possible: dict[int, PossibleMatch] = {}
        self._match_records: dict[str, bytes] = {}
        self._features: dict[str, bytes] = {}
        self._blobs: dict[str, bytes] = {}

    async def open(self) -> None:
        return None

    async def checkpoint(self, consumer: str) -> int:
        return self._checkpoints.get(consumer, 0)

    async def lookup(self, identifiers: Iterable[Identifier]) -> dict[Identifier, str]:
        return {i: self._links[i] for i in identifiers if i in self._links}

    async def profiles(self, profile_ids: Iterable[str]) -> dict[str, Profile]:
        return {p: copy.deepcopy(self._profiles[p]) for p in profile_ids if p in self._profiles}

    async def commit(
        self, changes: Changeset, consumer: str, offset: int, *, expected: int | None = None
    ) -> None:
        found = self._versions.get(consumer, 0)
        if expected is not None and found != expected:
            raise StaleState(f"state of {consumer!r} is at version {found}, not {expected}")
        self._versions[consumer] = found + 1
        for pid in changes.drop_profiles:
            self._profiles.pop(pid, None)
            self._timeline.pop(pid, None)
            self._features.pop(pid, None)
            self._match_records.pop(pid, None)
            self._unindex(pid)
        for pid in changes.clear_redirects:
            self._unredirect(pid)
        for identifier in changes.unlink:
            self._links.pop(identifier, None)
        for pid, off, _at in changes.timeline:
            rows = self._timeline.setdefault(pid, [])
            at = bisect.bisect_left(rows, off)
            if at == len(rows) or rows[at] != off:
                rows.insert(at, off)
        for old, new in changes.redirects.items():
            moved = self._timeline.pop(old, [])
            if moved:
                self._timeline[new] = sorted({*self._timeline.get(new, []), *moved})
            for earlier in self._merged.pop(old, set()):
                self._redirect(earlier, new)
            self._redirect(old, new)
            self._profiles.pop(old, None)
        self._links.update(changes.links)
        for pid, keys in changes.block_keys.items():
            self._unindex(pid)
            self._keys_of[pid] = list(keys)
            for key in keys:
                self._blocks.setdefault(key, set()).add(pid)
        for pid, data in changes.match_records.items():
            if data:
                self._match_records[pid] = data
            else:
                self._match_records.pop(pid, None)
        self._features.update(changes.features)
        for old, new in changes.redirects.items():
            self._unindex(old)
            self._match_records.pop(old, None)
            self._features.pop(old, None)
            for m in self._possible.values():
                if m.profile_a == old:
                    m.profile_a = new
                if m.profile_b == old:
                    m.profile_b = new
        for m in changes.possible:
            match_id = len(self._possible) + 1
            self._possible[match_id] = PossibleMatch(
                id=match_id,
                profile_a=m.profile_a,
                profile_b=m.profile_b,
                score=m.score,
                explanation=list(m.explanation),
                created_at=m.created_at,
                status=m.status,
            )
        # counted profiles too, whole: for objects that is as cheap as their counters
        for pid, profile in {**changes.profiles, **changes.activity}.items():
            self._profiles[pid] = copy.deepcopy(profile)
        self._counts["profiles"] += changes.new_profiles
        self._counts["identities"] += changes.new_identities
        self._checkpoints[consumer] = offset

    async def position(self, consumer: str) -> tuple[int, int]:
        return self._checkpoints.get(consumer, 0), self._versions.get(consumer, 0)

    async def lease(self, name: str, holder: str, until: float, now: float) -> bool:
        held = self._leases.get(name)
        if held is None or held[0] == holder or held[1] < now:
            self._leases[name] = (holder, until)
            return True
        return False

    async def identities(self, profile_id: str) -> list[Identifier]:
        profile = self._profiles.get(profile_id)
        return sorted(profile.identities) if profile else []

    async def resolve(self, profile_id: str) -> str | None:
        if profile_id in self._profiles:
            return profile_id
        return self._redirects.get(profile_id)

    async def merged_into(self, profile_ids: Iterable[str]) -> dict[str, list[str]]:
        return {pid: sorted(self._merged[pid]) for pid in set(profile_ids) if self._merged.get(pid)}

    def _redirect(self, old: str, new: str) -> None:
        self._unredirect(old)
        self._redirects[old] = new
        self._merged.setdefault(new, set()).add(old)

    def _unredirect(self, old: str) -> None:
        new = self._redirects.pop(old, None)
        if new is not None:
            olds = self._merged.get(new)
            if olds is not None:
                olds.discard(old)
                if not olds:
                    del self._merged[new]

    async def timeline(self, profile_id: str, after: int, limit: int) -> list[int]:
        rows = self._timeline.get(profile_id, [])
        start = bisect.bisect_right(rows, after)
        return rows[start : start + limit]

    async def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def _unindex(self, pid: str) -> None:
        for key in self._keys_of.pop(pid, []):
            members = self._blocks.get(key)
            if members is not None:
                members.discard(pid)
                if not members:
                    del self._blocks[key]

    async def block_candidates(self, keys: Sequence[str], cap: int) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for key in keys:
            members = self._blocks.get(key, set())
            found[key] = [] if len(members) > cap else sorted(members)
        return found

    async def features(self, profile_ids: Iterable[str]) -> dict[str, bytes]:
        return {p: self._features[p] for p in profile_ids if p in self._features}

    async def match_records(self, profile_ids: Iterable[str]) -> dict[str, bytes]:
        return {p: self._match_records[p] for p in profile_ids if p in self._match_records}

    async def scan_match_records(self, after: str, limit: int) -> list[tuple[str, bytes]]:
        ids = sorted(p for p in self._match_records if p > after)[:limit]
        return [(p, self._match_records[p]) for p in ids]

    async def possible_matches(
        self, profile_id: str | None, status: str | None, after: int, limit: int
    ) -> list[PossibleMatch]:
        found = [
            copy.copy(m)
            for i, m in sorted(self._possible.items())
            if i > after
            and (profile_id is None or profile_id in (m.profile_a, m.profile_b))
            and (status is None or m.status == status)
        ]
        return found[:limit]

    async def set_possible_match(self, match_id: int, status: str) -> PossibleMatch | None:
        match = self._possible.get(match_id)
        if match is None:
            return None
        match.status = status
        return copy.copy(match)

    async def scan_profiles(self, after: str, limit: int) -> list[Profile]:
        ids = sorted(p for p in self._profiles if p > after)[:limit]
        return [copy.deepcopy(self._profiles[p]) for p in ids]

    async def load_blob(self, name: str) -> bytes | None:
        return self._blobs.get(name)

    async def save_blob(self, name: str, data: bytes) -> None:
        self._blobs[name] = data

    async def erase(
        self, profile_ids: Sequence[str], identifiers: Sequence[Identifier]
    ) -> dict[str, int]:
        # a fenced commit that read the person before this fails as stale
        for consumer in self._versions:
            self._versions[consumer] += 1
        ids = set(profile_ids)
        ids.update(old for pid in list(ids) for old in self._merged.get(pid, ()))
        counts = dict.fromkeys(
            (
                "profiles",
                "identities",
                "redirects",
                "timeline",
                "features",
                "blocks",
                "match_records",
                "possible_matches",
            ),
            0,
        )
        held = set(identifiers)
        for pid in ids:
            profile = self._profiles.get(pid)
            if profile is not None:
                held.update(profile.identities)
        for identifier in held:
            if self._links.pop(identifier, None) is not None:
                counts["identities"] += 1
        for pid in ids:
            counts["profiles"] += self._profiles.pop(pid, None) is not None
            counts["timeline"] += len(self._timeline.pop(pid, []))
            counts["features"] += self._features.pop(pid, None) is not None
            counts["match_records"] += self._match_records.pop(pid, None) is not None
            counts["blocks"] += len(self._keys_of.get(pid, []))
            self._unindex(pid)
        # ids holds every id merged into an erased one (above), and redirects point at the
        # final survivor, so the redirects to drop are exactly those of ids
        for old in ids:
            if old in self._redirects:
                self._unredirect(old)
                counts["redirects"] += 1
        for match_id in [
            i for i, m in self._possible.items() if m.profile_a in ids or m.profile_b in ids
        ]:
            del self._possible[match_id]
            counts["possible_matches"] += 1
        self._counts["profiles"] = max(self._counts["profiles"] - counts["profiles"], 0)
        self._counts["identities"] = max(self._counts["identities"] - counts["identities"], 0)
        return counts

    async def erase_timeline(self, rows: Sequence[tuple[str, int]]) -> int:
        removed = 0
        for pid, offset in rows:
            offsets = self._timeline.get(pid)
            if offsets:
                at = bisect.bisect_left(offsets, offset)
                if at < len(offsets) and offsets[at] == offset:
                    del offsets[at]
                    removed += 1
        return removed

    async def aclose(self) -> None:
        return None


class MemoryQuarantine:
    """The quarantine as a dict keyed by id."""

    def __init__(self) -> None:
        self._entries: dict[int, QuarantineEntry] = {}
        self._next = 1

    async def open(self) -> None:
        return None

    async def add(self, entries: Sequence[QuarantineEntry]) -> list[int]:
        ids: list[int] = []
        for e in entries:
            entry = QuarantineEntry(
                id=self._next,
                source=e.source,
                received_at=e.received_at,
                reason=e.reason,
                field=e.field,
                body=e.body,
            )
            self._entries[self._next] = entry
            ids.append(self._next)
            self._next += 1
        return ids

    async def list(self, source: str | None, after: int, limit: int) -> list[QuarantineEntry]:
        found = [
            e
            for i, e in sorted(self._entries.items())
            if i > after and (source is None or e.source == source)
        ]
        return found[:limit]

    async def get(self, entry_id: int) -> QuarantineEntry | None:
        return self._entries.get(entry_id)

    async def remove(self, entry_id: int) -> bool:
        return self._entries.pop(entry_id, None) is not None

    async def count(self) -> int:
        return len(self._entries)

    async def erase(self, entry_ids: Sequence[int]) -> int:
        return sum(self._entries.pop(i, None) is not None for i in set(entry_ids))

    async def aclose(self) -> None:
        return None
