"""API keys: resolution (config → environment → stored file → generated) and checking.

Keys are compared in constant time and never logged. Generated keys are written once to
``<data>/keys.json`` (mode 0600) and printed once, at the start that created them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import secrets
from pathlib import Path

import msgspec

from segue.errors import Unauthorized

__all__ = ["KeyRing", "Keys", "resolve_keys"]


class Keys(msgspec.Struct, kw_only=True):
    admin: str
    publishable: str
    write: dict[str, str]
    secret: str


def resolve_keys(
    data: Path, admin: str | None, publishable: str | None, write: dict[str, str | None]
) -> tuple[Keys, list[str]]:
    """Fill in missing keys from ``keys.json`` or by generating them.

    Returns:
        the keys and the names of those generated now (the caller prints them once).
    """
    path = data / "keys.json"
    stored: dict[str, object] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    stored_write = stored.get("write") if isinstance(stored.get("write"), dict) else {}
    assert isinstance(stored_write, dict)
    generated: list[str] = []

    def pick(name: str, given: str | None, old: object) -> str:
        if given:
            return given
        if isinstance(old, str) and old:
            return old
        generated.append(name)
        return secrets.token_urlsafe(24)

    keys = Keys(
        admin=pick("admin", admin, stored.get("admin")),
        publishable=pick("publishable", publishable, stored.get("publishable")),
        write={n: pick(f"write:{n}", key, stored_write.get(n)) for n, key in write.items()},
        secret=pick("secret", None, stored.get("secret")),
    )
    changed = bool(generated) or msgspec.to_builtins(keys) != {
        "admin": stored.get("admin"),
        "publishable": stored.get("publishable"),
        "write": stored_write,
        "secret": stored.get("secret"),
    }
    data.mkdir(parents=True, exist_ok=True)
    if changed or not path.exists():
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(msgspec.to_builtins(keys), fh)
        os.replace(tmp, path)
    return keys, generated


class KeyRing:
    """Answers "which source / role does this credential belong to?" in constant time."""

    def __init__(self, keys: Keys) -> None:
        self._admin = keys.admin.encode()
        self._publishable = keys.publishable.encode()
        self._write = [(name, key.encode()) for name, key in keys.write.items()]

    def source_for(self, write_key: str | None) -> str:
        """Return the source whose write key this is.

        Raises:
            Unauthorized: missing or unknown key.
        """
        if not write_key:
            raise Unauthorized("a write key is required (HTTP Basic user name or writeKey)")
        given = write_key.encode()
        found: str | None = None
        for name, key in self._write:  # no early exit: timing does not reveal which matched
            if hmac.compare_digest(given, key):
                found = name
        if found is None:
            raise Unauthorized("unknown write key")
        return found

    def is_admin(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self._admin)

    def is_publishable(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self._publishable)


def basic_user(header: str) -> str | None:
    """The user name of an HTTP Basic ``Authorization`` header, or None if not Basic.

    Raises:
        Unauthorized: the header says Basic but is not valid base64 ``user:password``.
    """
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("malformed HTTP Basic credentials") from None
    user, _, _password = decoded.partition(":")
    return user
