"""The crypto envelope of logged events: personal fields sealed with the person's data key.

A logged event is JSON. Its personal top-level fields (``traits``, ``context`` — where
``context.traits`` and ``context.ip`` live — and ``properties`` when it holds a configured
personal property) move into a ciphertext (AES-256-GCM) appended as the last member,
``"_sealed": {"k": key id, "n": nonce, "c": ciphertext}``; the rest stays readable and is
authenticated as associated data. Opening splices the decrypted members back in, with no
full JSON parse; when the key was destroyed (the person was erased) the sealed members are
simply absent. Pure: the caller supplies the AEAD objects.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Callable, Iterable

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "MARK",
    "Envelope",
    "derive_key",
    "key_id",
    "nonces",
    "open_body",
    "open_split",
    "seal_body",
    "sealed_key_id",
    "split",
]

#: how the envelope member starts; it is always the last member of a sealed body
MARK = b',"_sealed":'
#: top-level members sealed whenever present
SEALED_MEMBERS = ("traits", "context")


class Envelope(msgspec.Struct, frozen=True):
    """The sealed members: key id, 96-bit nonce and ciphertext (base64 in the JSON: msgspec
    converts ``bytes`` fields both ways in C, a sixth of sealing when done in Python)."""

    k: str
    n: bytes
    c: bytes


_shallow = msgspec.json.Decoder(dict[str, msgspec.Raw])
_encode = msgspec.json.Encoder().encode
_envelope = msgspec.json.Decoder(Envelope)


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose, derived from the installation secret."""
    return hashlib.sha256(b"segue\x00" + purpose.encode() + b"\x00" + secret).digest()


def key_id(hash_key: bytes, subject: str) -> str:
    """The id of a subject's data key: a keyed hash, so the key store names no one."""
    return hashlib.blake2b(subject.encode(), key=hash_key, digest_size=16).hexdigest()


@functools.lru_cache(maxsize=16)
def _mentions(needles: tuple[bytes, ...]) -> re.Pattern[bytes] | None:
    """One pattern for "any of the needles occurs": a single scan in C, about a third of
    the time of testing the needles one by one (ingest seals every event)."""
    return re.compile(b"|".join(re.escape(n) for n in needles)) if needles else None


#: bytes of nonce drawn at once: one ``getrandom`` call a request instead of one an event
#: (a system call cost more than the AES-GCM encryption of a typical event)
NONCE_BYTES = 12


def nonces(count: int) -> list[bytes]:
    """``count`` random 96-bit nonces from one call into the kernel's generator."""
    pool = os.urandom(NONCE_BYTES * count)
    return [pool[i : i + NONCE_BYTES] for i in range(0, len(pool), NONCE_BYTES)]


def seal_body(
    body: bytes,
    kid: str,
    aead: AESGCM,
    personal_properties: Iterable[bytes] = (),
    nonce: bytes | None = None,
) -> bytes:
    """Seal the personal members of one event body (returned unchanged when it has none).

    Args:
        body: the event as JSON (an object).
        kid: the id of the data key.
        aead: the data key.
        personal_properties: property names (as ``b'"name"'``) whose presence seals the
            whole ``properties`` member.
        nonce: a fresh random 96-bit nonce (see :func:`nonces`); drawn here when None.
    """
    members = _shallow.decode(body)
    forged = members.pop("_sealed", None) is not None  # only segue writes this member
    secret: dict[str, msgspec.Raw] = {}
    for name in SEALED_MEMBERS:
        raw = members.pop(name, None)
        if raw is not None:
            secret[name] = raw
    props = members.get("properties")
    if props is not None:
        mentions = _mentions(tuple(personal_properties))
        if mentions is not None and mentions.search(bytes(props)) is not None:
            secret["properties"] = members.pop("properties")
    plain = _encode(members)
    if not secret or plain == b"{}":  # nothing personal, or nothing left to authenticate
        return plain if forged else body
    if nonce is None:
        nonce = os.urandom(NONCE_BYTES)
    cipher = aead.encrypt(nonce, _encode(secret), plain)
    envelope = _encode(Envelope(kid, nonce, cipher))
    # one copy of the body, where ``plain[:-1] + MARK + …`` made four
    return b"".join((memoryview(plain)[:-1], MARK, envelope, b"}"))


def sealed_key_id(body: bytes) -> str | None:
    """The key id a body is sealed with (None: not sealed)."""
    part = split(body)
    return None if part is None else part[1].k


def split(body: bytes) -> tuple[int, Envelope] | None:
    """Where the envelope of a sealed body starts, and the envelope (None: not sealed).

    A body with nothing personal is stored as sent, and a sender may have put a
    ``"_sealed"`` member inside one of its objects (``properties``, say). Such a member is
    never the envelope: the envelope is the last member of the body itself, so what follows
    its mark is one object and the body's closing brace, while after a nested one come at
    least the closing braces of its own object and of the body. It does not decode as an
    envelope, and the body is read as not sealed (it used to stop every reader of the log).
    """
    pos = body.rfind(MARK)
    if pos < 0:
        return None
    try:
        return pos, _envelope.decode(body[pos + len(MARK) : -1])
    except msgspec.DecodeError:  # a member the sender named so, not an envelope
        return None


def open_split(body: bytes, pos: int, envelope: Envelope, aead: AESGCM | None) -> bytes:
    """``open_body`` for a body already split (readers look the keys up in between).

    Raises:
        cryptography.exceptions.InvalidTag: the body was tampered with.
    """
    plain = body[:pos] + b"}"
    if aead is None:
        return plain
    secret = aead.decrypt(envelope.n, envelope.c, plain)
    if secret == b"{}":
        return plain
    return body[:pos] + b"," + secret[1:]


def open_body(body: bytes, aead_for: Callable[[str], AESGCM | None]) -> bytes:
    """The body with its sealed members back in place, or without them when the key is gone.

    Raises:
        cryptography.exceptions.InvalidTag: the body was tampered with.
    """
    part = split(body)
    if part is None:
        return body
    pos, envelope = part
    return open_split(body, pos, envelope, aead_for(envelope.k))
