"""Consent at ingestion: record the consent events carry, and keep what lacks analytics
consent away from profiles.

Runs on each accepted message before it is written to the event log:

1. a message whose context carries consent (``context.consent``, ``context.gpc``), or that
   came with ``Sec-GPC: 1``, is a consent signal: it goes to the ledger — once, not on every
   event that repeats it (SDKs send the same ``categoryPreferences`` with every call) —
   before the message is stored;
2. the ``analytics`` purpose is evaluated for the message's person (ledger + the message's
   own signals + region policy). Without it, the message is still logged (the sender gets
   its 200 and nothing is lost) but marked ``context.segue.attach = false`` so no profile
   takes it in, the configured personal fields are dropped, and the configured quasi-
   identifiers (the IP address by default) are replaced by a keyed hash.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import msgspec

from segue.core.events import Event
from segue.privacy.preferences import PREFERENCE_SOURCE
from segue.privacy.service import ConsentService
from segue.privacy.signals import from_context, region_of

__all__ = ["ConsentScreen"]


class ConsentScreen:
    """The consent step of the ingestion pipeline.

    Args:
        consent: the consent service.
        secret: keys the hash of hashed fields (so equal values stay comparable).
        drop_fields / hash_fields: dotted paths (``traits``, ``context.ip``).
    """

    def __init__(
        self,
        consent: ConsentService,
        secret: bytes,
        *,
        drop_fields: Sequence[str] = ("traits", "context.traits"),
        hash_fields: Sequence[str] = ("context.ip",),
    ) -> None:
        self.consent = consent
        self._secret = secret
        self._drop = [f.split(".") for f in drop_fields]
        self._hash = [f.split(".") for f in hash_fields]
        self.unattached = 0
        self.recorded = 0

    async def screen(
        self,
        source: str,
        prepared: Sequence[tuple[dict[str, Any], Event]],
        gpc: bool = False,
    ) -> list[int]:
        """Record consent signals and mark/strip messages without analytics consent.

        Args:
            gpc: the request carried ``Sec-GPC: 1``: every message counts as one with
                ``context.gpc`` true (the browser sends the header on each of its requests).

        Returns:
            the positions of the messages changed (ingest encodes those again).
        """
        changed: list[int] = []
        if source == PREFERENCE_SOURCE:
            return changed  # the person's own statement, given for personalization
        for at, (message, event) in enumerate(prepared):
            context = message.get("context")
            context = context if isinstance(context, dict) else {}
            subjects = _subjects(event)
            carries = gpc or isinstance(context.get("consent"), dict) or "gpc" in context
            if not carries and not self.consent.known(subjects):
                # the common case, kept cheap: nothing said, nothing on record — the
                # region's regime alone decides
                _, regime = self.consent.policy.regime(region_of(context))
                if regime == "opt_out":
                    continue
            signal = from_context(context, gpc_header=gpc, vendor_id=self.consent.vendor_id)
            state = await self.consent.state(subjects)
            if carries and subjects:
                consent_block = context.get("consent")
                explicit = consent_block.get("region") if isinstance(consent_block, dict) else None
                recordable = msgspec.structs.replace(
                    signal, region=explicit.upper() if isinstance(explicit, str) else None
                )
                if not recordable.empty and self.consent.changes(state, recordable):
                    await self.consent.record(
                        subjects,
                        recordable,
                        source=f"event:{source}",
                        actor=f"source:{source}",
                    )
                    self.recorded += 1
                    state = await self.consent.state(subjects)
            verdict = self.consent.evaluate("analytics", state, signal.request())
            if not verdict.allowed:
                self._strip(message, verdict.reason)
                changed.append(at)
                self.unattached += 1
        return changed

    def _strip(self, message: dict[str, Any], reason: str) -> None:
        for path in self._drop:
            parent = _parent(message, path)
            if parent is not None:
                parent.pop(path[-1], None)
        for path in self._hash:
            parent = _parent(message, path)
            value = parent.get(path[-1]) if parent is not None else None
            if parent is not None and value is not None:
                digest = hmac.new(self._secret, str(value).encode(), hashlib.sha256).hexdigest()
                parent[path[-1]] = f"hmac:{digest[:32]}"
        context = message.get("context")
        if not isinstance(context, dict):
            context = message["context"] = {}
        context["segue"] = {"attach": False, "reason": reason}


def _subjects(event: Event) -> list[str]:
    out = []
    if event.uid is not None:
        out.append(f"user_id:{event.uid}")
    if event.aid is not None:
        out.append(f"anonymous_id:{event.aid}")
    return out


def _parent(doc: dict[str, Any], path: list[str]) -> dict[str, Any] | None:
    """The object that holds the last member of a dotted ``path`` (None: not there)."""
    node: Any = doc
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None
