"""What one process tells the others when shared state changed (the change feed's message).

Every process keeps caches in front of the stores (identities, profile signals, consent,
the catalog mirror, item models). When one process changes what such a cache holds — the
processor committed a batch, a consent signal was recorded, an item was written — the
others must forget their copy within milliseconds, or a revoked consent would still be
honoured by a process that did not hear of it. The feed carries these notes; it is not a
log: a process that missed notes (a reconnect) drops every cache instead (``flush``).
"""

from __future__ import annotations

import msgspec

__all__ = ["Change", "decode_change", "encode_change"]


class Change(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One note on the change feed.

    Attributes:
        origin: the process that made the change (it ignores its own notes).
        identifiers: ``type:value`` whose profile may have changed (identity caches).
        profiles: profile ids whose document or features changed.
        consent: subjects whose consent was recorded.
        consent_erased: subjects whose consent ledger was erased.
        items: catalog items written or deleted.
        feedback: (decision id, kind, item ids, profile id, time) seen by a processor,
            for the processes that made those decisions and learn from them.
        models: the item models were saved: read them again.
        suppressed: the suppression list grew: read it again.
        keys_destroyed: data keys were destroyed (an erasure): drop the cached keys and the
            records opened with them.
        flush: drop every cache (the sender cannot say what changed).
        erased: the units (profile ids, and those a visitor's identifiers would give) of a
            person just erased: every process drops its decisions for them, from memory
            and from the decision log (one it wrote after the eraser's delete).
    """

    origin: str
    identifiers: list[str] = []
    profiles: list[str] = []
    consent: list[str] = []
    consent_erased: list[str] = []
    items: list[str] = []
    feedback: list[tuple[str, str, tuple[str, ...], str, float]] = []
    models: bool = False
    suppressed: bool = False
    keys_destroyed: bool = False
    flush: bool = False
    erased: list[str] = []


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Change)


def encode_change(change: Change) -> bytes:
    return _encoder.encode(change)


def decode_change(data: bytes) -> Change | None:
    """The note, or None for bytes that are not one (never raise on the receiving side)."""
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
