"""The audit chain: canonical entries, SHA-256 links, a keyed head seal, verification.

Each entry's hash is SHA-256 over the previous entry's hash and the entry's canonical
encoding, so changing, removing or reordering any entry breaks every link after it. Plain
hashes let anyone check the chain without a secret, but they cannot show that the tail was
cut off or that the chain was recomputed from some entry onwards; the head (last seq and
hash) is therefore sealed with an HMAC under the installation secret and checked too.

Subjects are stored as ``subject_hash(secret, identifier)``: the log can be filtered by
person, holds nothing personal, and stays valid after that person's erasure.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgspec

from segue.core.model import AuditEntry, AuditHead

__all__ = [
    "GENESIS",
    "ChainVerifier",
    "Verdict",
    "canonical",
    "chain",
    "entry_hash",
    "key_fingerprint",
    "normalise_details",
    "normalise_subject",
    "seal",
    "subject_hash",
    "verify",
]

#: the ``prev_hash`` of the first entry
GENESIS: Final = "0" * 64
_VERSION: Final = 1
_encoder = msgspec.json.Encoder(order="sorted")


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """The result of a verification: ``first_bad_seq`` and ``reason`` when not ``ok``."""

    ok: bool
    entries: int
    first_bad_seq: int | None = None
    reason: str | None = None


def canonical(entry: AuditEntry) -> bytes:
    """The bytes an entry's hash covers: every field but the hashes, keys sorted, compact.

    A version field lets the encoding change later without making old entries ambiguous.
    """
    return _encoder.encode(
        {
            "v": _VERSION,
            "seq": entry.seq,
            "at": entry.at,
            "actor": entry.actor,
            "action": entry.action,
            "subjects": entry.subjects,
            "details": entry.details,
        }
    )


def entry_hash(prev_hash: str, entry: AuditEntry) -> str:
    """SHA-256 over the previous hash and the canonical entry, as hex."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(b"\n")
    digest.update(canonical(entry))
    return digest.hexdigest()


def chain(prev_seq: int, prev_hash: str, drafts: Iterable[AuditEntry]) -> list[AuditEntry]:
    """Number and link ``drafts`` after the entry (``prev_seq``, ``prev_hash``).

    The adapter calls this inside its single write transaction, with the head it read
    there, so two appends can never link to the same predecessor.
    """
    out: list[AuditEntry] = []
    seq, prev = prev_seq, prev_hash
    for draft in drafts:
        seq += 1
        linked = msgspec.structs.replace(draft, seq=seq, prev_hash=prev, hash="")
        prev = entry_hash(prev, linked)
        out.append(msgspec.structs.replace(linked, hash=prev))
    return out


def seal(key: bytes, seq: int, head_hash: str) -> str:
    """The HMAC that vouches for the head (seq, hash) of the chain."""
    message = b"segue-audit-head\x00" + f"{seq}:{head_hash}".encode("ascii")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def normalise_subject(subject: str) -> str:
    """The form a subject is hashed in, so ``email:A@B.c`` and ``email:a@b.c`` match.

    Identifiers are ``type:value``; anything else (a profile id) is taken as it is.
    """
    text = subject.strip()
    kind, sep, value = text.partition(":")
    if sep and kind.strip().lower() == "email":
        return f"email:{value.strip().lower()}"
    return text


def subject_hash(key: bytes, subject: str) -> str:
    """HMAC-SHA256 of the normalised subject (128 bits, hex): filterable, not reversible
    without the key, and the same for the writer and for ``GET /v1/audit?subject=``."""
    message = b"segue-audit-subject\x00" + normalise_subject(subject).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def key_fingerprint(key: bytes, presented: str) -> str:
    """A short keyed fingerprint of a presented API key: tells keys apart in the log
    without recording the key, even a low-entropy wrong one a person typed by mistake."""
    message = b"segue-audit-key\x00" + presented.encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:12]


def normalise_details(details: dict[str, Any]) -> dict[str, Any]:
    """The details as JSON gives them back (tuples as lists, non-string keys as strings),
    so the hash computed at append equals the one recomputed from storage."""
    decoded: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(details))
    return decoded


class ChainVerifier:
    """Checks entries one at a time in the order they are read; stops at the first break.

    Streaming, so a long log is verified page by page in constant memory. With
    ``sealed=True`` the chain must also end exactly at the sealed head, whose seal is
    checked with ``key``: this is what catches a cut-off tail, a recomputed chain, and
    entries chained after the head (a SHA-256 link needs no secret, so anyone can add one).
    The head may be given up front (``head``) or to :meth:`judge` once the entries up to it
    were fed, for a caller that re-reads it as the log grows.
    """

    def __init__(
        self, *, sealed: bool = False, head: AuditHead | None = None, key: bytes | None = None
    ) -> None:
        self.count = 0
        self.last_seq = 0
        self.last_hash = GENESIS
        self.first_bad_seq: int | None = None
        self.reason: str | None = None
        self._sealed = sealed
        self._head = head
        self._key = key
        # the hash of the entry at the given head's seq, once fed (the chain may run past it)
        self._hash_at_head: str | None = GENESIS if head is not None and head.seq == 0 else None

    @property
    def broken(self) -> bool:
        return self.reason is not None

    def _fail(self, seq: int, reason: str) -> bool:
        self.first_bad_seq, self.reason = seq, reason
        return False

    def feed(self, entry: AuditEntry, *, later: Iterable[int] = ()) -> bool:
        """Check the next entry; False (and ``first_bad_seq``, ``reason`` set) on a break.

        ``later`` holds the seqs still to come, when known, to tell a removed entry from
        one moved further down.
        """
        if self.broken:
            return False
        expected = self.last_seq + 1
        if entry.seq < expected:
            return self._fail(
                entry.seq, f"reordered: entry {entry.seq} comes after entry {self.last_seq}"
            )
        if entry.seq > expected:
            if expected in later:
                return self._fail(
                    expected, f"reordered: entry {entry.seq} comes before entry {expected}"
                )
            return self._fail(expected, f"removed: entry {expected} is missing")
        if entry_hash(entry.prev_hash, entry) != entry.hash:
            return self._fail(entry.seq, f"edited: entry {entry.seq} does not match its hash")
        if entry.prev_hash != self.last_hash:
            return self._fail(
                entry.seq,
                f"broken link: entry {entry.seq} does not carry the hash of entry "
                f"{self.last_seq} (one of them was rewritten)",
            )
        self.count += 1
        self.last_seq, self.last_hash = entry.seq, entry.hash
        if self._head is not None and entry.seq == self._head.seq:
            self._hash_at_head = entry.hash
        return True

    def finish(self) -> Verdict:
        """The verdict over everything fed, against the head given up front."""
        return self.judge(self._head)

    def judge(self, head: AuditHead | None) -> Verdict:
        """The verdict over everything fed so far, against ``head``; changes nothing, so a
        caller may judge again after feeding more.

        ``head`` must have been read after the entries fed: every append writes its entries
        and the head in one transaction, so an entry past a head read later was not
        written by the log.
        """
        if self.broken:
            return self._verdict(self.first_bad_seq or 0, self.reason or "")
        if not self._sealed:
            return Verdict(ok=True, entries=self.count)
        if head is None:
            # a log's head is sealed when the log is created, before any entry
            what = "a non-empty log" if self.count else "an empty log"
            return self._verdict(1, f"head missing: {what} has no sealed head")
        if self._key is not None and not hmac.compare_digest(
            head.seal, seal(self._key, head.seq, head.hash)
        ):
            if head.seq == 0:
                return self._verdict(1, "head edited: the seal of the empty log's head is wrong")
            return self._verdict(head.seq, f"head edited: the seal of entry {head.seq} is wrong")
        if self.last_seq < head.seq:
            return self._verdict(
                self.last_seq + 1,
                f"truncated: entries {self.last_seq + 1} to {head.seq} are missing",
            )
        if self.last_seq == head.seq:
            at_head: str | None = self.last_hash
        elif self._head is not None and self._head.seq == head.seq:
            at_head = self._hash_at_head
        else:  # fed past a head not known while feeding: its hash is gone, the tail tells
            at_head = None
        if at_head is not None and at_head != head.hash:
            return self._verdict(
                head.seq,
                f"rewritten: entry {head.seq} does not match the sealed head (the chain was "
                "recomputed after an edit)",
            )
        if self.last_seq > head.seq:
            first, last = head.seq + 1, self.last_seq
            what = f"entry {first} comes" if first == last else f"entries {first} to {last} come"
            return self._verdict(
                first,
                f"unsealed: {what} after the sealed head (entry {head.seq}): "
                "the log did not write them",
                entries=head.seq,
            )
        return Verdict(ok=True, entries=self.count)

    def _verdict(self, seq: int, reason: str, *, entries: int | None = None) -> Verdict:
        good = self.count if entries is None else entries
        return Verdict(ok=False, entries=good, first_bad_seq=seq, reason=reason)


def verify(
    entries: Sequence[AuditEntry],
    head: AuditHead | None = None,
    key: bytes | None = None,
    *,
    sealed: bool | None = None,
) -> Verdict:
    """Verify a whole chain in the order given and, when sealed, against its head.

    ``sealed`` defaults to "a head was given". Sealed, the last entry must be the head's:
    read ``head`` after ``entries``. Unsealed, only the chain's own consistency is checked
    (edits, removals, reorderings, broken links), not a cut-off tail nor an added one.
    """
    verifier = ChainVerifier(
        sealed=head is not None if sealed is None else sealed, head=head, key=key
    )
    seqs = [e.seq for e in entries]
    for i, entry in enumerate(entries):
        later = seqs[i + 1 :] if entry.seq != verifier.last_seq + 1 else ()
        if not verifier.feed(entry, later=later):
            break
    return verifier.finish()
