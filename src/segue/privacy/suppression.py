"""The suppression list: keyed hashes of erased people's identifiers.

Checked at ingestion and again by the processor, so late or retried events (same or new
messageIds) of an erased person never bring them back. Only hashes are kept (a keyed
BLAKE2b under a key derived from the installation secret): the list names no one, yet
recognises every identifier it was given. The check is a set lookup per identifier, and
nothing at all while the list is empty.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Final

from segue.core.events import Event
from segue.core.model import Identifier
from segue.identity.identifiers import IdentityRules, normalise_email, normalise_phone
from segue.privacy.envelope import derive_key

__all__ = ["SuppressionList", "normalise_identifier"]


def normalise_identifier(kind: str, value: object, rules: IdentityRules) -> Identifier | None:
    """An identifier as the processor would link it (emails lower-cased, phones in E.164)."""
    kind = kind.strip().lower()
    if kind == "email":
        text = normalise_email(value)
    elif kind == "phone":
        text = normalise_phone(value, rules.phone_region)
    elif isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value).strip() or None
    else:
        text = None
    return Identifier(kind, text) if kind and text else None


#: identifiers of a device or a browser rather than of a person: shared by a household
SHARED_KINDS: Final = frozenset({"anonymous_id", "device_id", "advertising_id"})


class SuppressionList:
    """Hashed identifiers of erased people, in memory (loaded from the privacy store).

    Args:
        secret: the installation secret.
        identify: the identifiers of an event, as the processor reads them.
        rules: identity rules (phone region) for messages that failed validation.
    """

    def __init__(
        self,
        secret: bytes,
        identify: Callable[[Event], Iterable[Identifier]],
        rules: IdentityRules,
    ) -> None:
        self._key = derive_key(secret, "suppression")
        self._identify = identify
        self._rules = rules
        self.hashes: set[str] = set()
        #: events dropped because they named a suppressed identifier
        self.dropped = 0

    def hash(self, identifier: Identifier) -> str:
        """The keyed hash of one identifier (``type:value``)."""
        data = f"{identifier.type}:{identifier.value}".encode()
        return hashlib.blake2b(data, key=self._key, digest_size=16).hexdigest()

    def add(self, hashes: Iterable[str]) -> None:
        self.hashes.update(hashes)

    def blocks(self, event: Event) -> bool:
        """Whether ``event`` is an erased person's (see :meth:`_names_erased`)."""
        if not self.hashes:
            return False
        identifiers = set(self._identify(event))  # usually holds uid and aid already
        uid, aid = event.uid, event.aid
        if uid is not None:
            identifiers.add(Identifier("user_id", uid))
        if aid is not None:
            identifiers.add(Identifier("anonymous_id", aid))
        if self._names_erased(identifiers):
            self.dropped += 1
            return True
        return False

    def _names_erased(self, identifiers: Collection[Identifier]) -> bool:
        """Whether a message with these identifiers is an erased person's.

        It is when one that names a person (a user id, an email, a phone, a CRM id) is on
        the list, or when the one that decides its profile is (the highest-priority one:
        a late event sent only under the person's anonymous id). A device's or browser's
        id (``SHARED_KINDS``) on the list beside another person's own id does not make it
        the erased person's: a family tablet stays with one profile, and erasing that
        person must not drop the next order another family member places on it.
        """
        erased = [i for i in identifiers if self.hash(i) in self.hashes]
        if not erased:
            return False
        if any(i.type not in SHARED_KINDS for i in erased):
            return True
        return min(identifiers, key=self._rules.sort_key) in erased

    def blocks_message(self, message: Mapping[str, Any]) -> bool:
        """Whether a raw message (one that failed validation) names an erased person:
        its user, anonymous and previous ids and the email and phone of its traits."""
        if not self.hashes:
            return False
        found: list[Identifier | None] = []
        for field, kind in (
            ("userId", "user_id"),
            ("anonymousId", "anonymous_id"),
            ("previousId", "user_id"),
            ("previousId", "anonymous_id"),
        ):
            found.append(normalise_identifier(kind, message.get(field), self._rules))
        context = message.get("context")
        for traits in (
            message.get("traits"),
            context.get("traits") if isinstance(context, Mapping) else None,
        ):
            if isinstance(traits, Mapping):
                found.append(normalise_identifier("email", traits.get("email"), self._rules))
                found.append(normalise_identifier("phone", traits.get("phone"), self._rules))
        if self._names_erased({i for i in found if i is not None}):
            self.dropped += 1
            return True
        return False
