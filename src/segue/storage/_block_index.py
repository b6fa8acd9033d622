"""Which profiles hold each block key, in memory, for the SQLite state store.

The store keeps each profile's block keys as one row (``profile_blocks``) and answers
"who holds these keys" from this index. A table ordered by key made every new record write
~9 random B-tree pages (one per key) into each commit: with 100,000 profiles that was more
than half of the bytes an identify wrote, and its reads a sixth of an identify's time.

Keys are held as their hash (the process's keyed string hash), not as text: the index holds
no names or places, and two keys that collide only bring a few extra candidates to score.
The index is trusted while it is at the database's epoch (a counter every write of block
keys advances in its transaction); a write by another process moves the epoch and the index
is read again from ``profile_blocks``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

__all__ = ["BlockIndex"]


class BlockIndex:
    """Members per block key, with the epoch of the database they reflect."""

    def __init__(self) -> None:
        #: hash of a key → its one member, or a list of them (most keys have one)
        self._members: dict[int, str | list[str]] = {}
        #: the database's epoch this index reflects; None: not built (or no longer trusted)
        self.epoch: int | None = None
        #: held by a writer from its COMMIT until its changes are in, and by readers: a
        #: reader never sees the database ahead of the index for the writer's own changes
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._members)

    def reset(self, epoch: int | None, profiles: Iterable[tuple[str, Sequence[str]]] = ()) -> None:
        """Start over from every profile's keys, at ``epoch`` (None: untrusted, empty)."""
        self._members = {}
        for profile_id, keys in profiles:
            self.add(profile_id, keys)
        self.epoch = epoch

    def adopt(self, other: BlockIndex) -> None:
        """Take ``other``'s members and epoch (a fresh read of the database)."""
        self._members, self.epoch = other._members, other.epoch

    def add(self, profile_id: str, keys: Iterable[str]) -> None:
        """``profile_id`` now holds ``keys`` (none of which it held before)."""
        members = self._members
        for key in keys:
            h = hash(key)
            held = members.get(h)
            if held is None:
                members[h] = profile_id
            elif isinstance(held, str):
                members[h] = [held, profile_id]
            else:
                held.append(profile_id)

    def remove(self, profile_id: str, keys: Iterable[str]) -> None:
        """``profile_id`` no longer holds ``keys``."""
        members = self._members
        for key in keys:
            h = hash(key)
            held = members.get(h)
            if held is None:
                continue
            if isinstance(held, str):
                if held == profile_id:
                    del members[h]
                continue
            try:
                held.remove(profile_id)
            except ValueError:
                continue
            if len(held) == 1:
                members[h] = held[0]

    def members(self, keys: Iterable[str], cap: int) -> dict[str, list[str]]:
        """The profiles holding each key, sorted; none for a key more than ``cap`` hold
        (it tells nothing about who is who and would only be slow)."""
        found: dict[str, list[str]] = {}
        get = self._members.get
        for key in keys:
            held = get(hash(key))
            if held is None:
                found[key] = []
            elif isinstance(held, str):
                found[key] = [held]
            else:
                found[key] = [] if len(held) > cap else sorted(held)
        return found
