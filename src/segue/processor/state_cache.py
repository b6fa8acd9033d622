"""The processor's copy of the state it last committed: links and profiles of recent people.

Most events come from people seen moments ago, and reading their profile back from the
store (a query, then decoding the document) costs about as much as folding the event. The
processor is the only writer of this state while it folds (a lease and fenced commits make
sure of that), so what it committed is what the store holds, and it can keep it.

The copy is trusted only between the processor's own commits. It is emptied whenever that
chain breaks: a batch that fails (its folded profiles were changed in place and never
committed), another writer's commit (``StaleState``), a lease lost or taken over, and any
other holder of the processor's lock (an erasure, an unmerge, a match decision, retention).

It also keeps the match records (encoded) of the profiles that were candidates lately:
probabilistic matching scores each new record against ~40 candidates spread over the
whole store, and reading those rows back was an eighth of an identify's cost.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from segue.core.bounded import trim_oldest
from segue.core.model import Changeset, Identifier, Profile

__all__ = ["StateCache"]

K = TypeVar("K")
V = TypeVar("V")


class StateCache:
    """Bounded maps identifier → profile id and profile id → profile, oldest out first.

    Only positive links are kept: an identifier not found is asked of the store again,
    since the cache cannot tell "unknown" from "evicted".
    """

    def __init__(self, profiles: int = 20_000) -> None:
        self.max_profiles = profiles
        self.max_links = profiles * 4
        #: encoded match records are ~150 bytes: 100,000 took 28.7 MB with the dict (tracemalloc)
        self.max_records = profiles * 5
        self.links: dict[Identifier, str] = {}
        self.profiles: dict[str, Profile] = {}
        self.records: dict[str, bytes] = {}
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self.links.clear()
        self.profiles.clear()
        self.records.clear()

    def split_records(self, wanted: Iterable[str]) -> tuple[dict[str, bytes], list[str]]:
        """The match records held here (left in place: the matcher only reads them), and
        the profile ids to read from the store."""
        return _held(self.records, wanted)

    def keep_records(self, read: dict[str, bytes]) -> None:
        """Match records just read from the store (its committed state, under the lock)."""
        self.records.update(read)
        trim_oldest(self.records, self.max_records)

    def split_links(
        self, wanted: Iterable[Identifier]
    ) -> tuple[dict[Identifier, str], list[Identifier]]:
        """The links known here, and the identifiers to ask the store about."""
        return _held(self.links, wanted)

    def split_profiles(self, wanted: Iterable[str]) -> tuple[dict[str, Profile], list[str]]:
        """The profiles held here (taken out: the fold changes them in place), and the ids
        to read from the store."""
        found: dict[str, Profile] = {}
        missing: list[str] = []
        for pid in wanted:
            profile = self.profiles.pop(pid, None)
            if profile is None:
                missing.append(pid)
            else:
                found[pid] = profile
        self.hits += len(found)
        self.misses += len(missing)
        return found, missing

    def committed(
        self,
        changes: Changeset,
        links: dict[Identifier, str],
        profiles: dict[str, Profile],
    ) -> None:
        """Keep what a batch left once its commit succeeded: the working set's links and
        profiles, which are the store's state now."""
        records = self.records
        for old in changes.redirects:
            self.profiles.pop(old, None)
            records.pop(old, None)
        for pid in changes.drop_profiles:
            self.profiles.pop(pid, None)
            records.pop(pid, None)
        for pid, data in changes.match_records.items():
            records.pop(pid, None)
            if data:  # empty: the store deleted the row
                records[pid] = data
        for identifier in changes.unlink:
            self.links.pop(identifier, None)
        self.profiles.update(profiles)  # re-inserted: the newest last
        for identifier, pid in links.items():
            self.links.pop(identifier, None)
            self.links[identifier] = pid
        trim_oldest(self.profiles, self.max_profiles)
        trim_oldest(self.links, self.max_links)
        trim_oldest(records, self.max_records)


def _held(mapping: dict[K, V], wanted: Iterable[K]) -> tuple[dict[K, V], list[K]]:
    """What ``mapping`` holds of ``wanted``, and the keys it does not hold."""
    found: dict[K, V] = {}
    missing: list[K] = []
    for key in wanted:
        value = mapping.get(key)
        if value is None:
            missing.append(key)
        else:
            found[key] = value
    return found, missing
