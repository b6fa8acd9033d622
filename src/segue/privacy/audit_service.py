"""AuditService: what the rest of segue calls to write, read and verify the audit log.

- ``record`` writes one entry and returns once it is durable: a consent change or a
  privacy request is acknowledged only after its audit entry is on disk.
- ``note`` writes one in the background, for events on request paths that must not wait
  (an admin reading a profile, an admin key used); ``flush`` and ``aclose`` wait for them.
  Concurrent entries share one transaction in the adapter (group commit).
- ``auth_failed`` counts rejected keys and writes at most one entry per key fingerprint per
  window, so a flood of bad requests costs a dict update each, not an audit entry each.

Subjects (identifiers ``type:value`` or profile ids) are stored only as keyed hashes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

import structlog

from segue.core.model import AuditEntry
from segue.core.ports import AuditLog, Clock
from segue.privacy.audit import (
    ChainVerifier,
    Verdict,
    key_fingerprint,
    normalise_details,
    normalise_subject,
    subject_hash,
)

__all__ = ["AuditService"]

_log = structlog.get_logger("segue.audit")
_PAGE: Final = 1000
#: how often a verification follows a head that moves while it runs
_ROUNDS: Final = 100
#: at most this many distinct fingerprints per window; the rest share one entry
_MAX_FINGERPRINTS: Final = 100
_OTHER: Final = "other"
_REDACTED: Final = "[subject]"


class _Failures:
    """Rejected-key attempts of one fingerprint within the current window."""

    __slots__ = ("count", "first_at", "last_at", "routes")

    def __init__(self, at: float) -> None:
        self.count = 0
        self.first_at = at
        self.last_at = at
        self.routes: set[str] = set()


class AuditService:
    """The audit log with subject hashing, background notes and rejected-key aggregation.

    Args:
        log: the audit-log adapter.
        key: the installation secret (subject hashes, key fingerprints).
        clock: wall clock for entry times.
        failure_window_s: how long rejected attempts of one fingerprint are counted into
            one ``auth.failed`` entry.
    """

    def __init__(
        self, log: AuditLog, key: bytes, clock: Clock, *, failure_window_s: float = 60.0
    ) -> None:
        self.log = log
        self._key = key
        self._clock = clock
        self._window = failure_window_s
        self._pending: set[asyncio.Task[None]] = set()
        self._failures: dict[str, _Failures] = {}
        self._failures_opened = 0.0
        self._ticker: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.log.open()
        self._ticker = asyncio.create_task(self._tick(), name="audit-failures")

    # --- writing ------------------------------------------------------------------------
    def subject(self, identifier: str) -> str:
        """The keyed hash an identifier or profile id is stored (and searched) as."""
        return subject_hash(self._key, identifier)

    def fingerprint(self, presented_key: str) -> str:
        """A short keyed fingerprint of an API key (never the key itself)."""
        return key_fingerprint(self._key, presented_key)

    def _entry(
        self,
        action: str,
        actor: str,
        subjects: Sequence[str],
        details: Mapping[str, Any] | None,
    ) -> AuditEntry:
        if isinstance(subjects, str):
            raise TypeError("subjects is a sequence of identifiers, not one string")
        raw = {normalise_subject(s) for s in subjects if s}
        personal = raw | {v for s in raw if len(v := s.partition(":")[2]) >= 3}
        clean = _redact(normalise_details(dict(details or {})), personal)
        hashed = sorted({self.subject(s) for s in raw})
        return AuditEntry(
            at=self._clock.now(), actor=actor, action=action, subjects=hashed, details=clean
        )

    async def record(
        self,
        action: str,
        *,
        actor: str,
        subjects: Sequence[str] = (),
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry and return it once durable.

        Args:
            action: what happened, dotted (``consent.changed``, ``privacy.request``).
            actor: who did it (``admin:<fingerprint>``, ``api``, ``system``, a source name).
            subjects: identifiers (``type:value``) or profile ids the action concerns; each
                is stored as a keyed hash, never as given.
            details: JSON data about the action; it must hold nothing personal (a string
                equal to one of the subjects is replaced by ``"[subject]"``).

        Raises:
            BackendUnavailable: the entry could not be made durable.
        """
        entry = self._entry(action, actor, subjects, details)
        (stored,) = await self.log.append([entry])
        return stored

    def note(
        self,
        action: str,
        *,
        actor: str,
        subjects: Sequence[str] = (),
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Like ``record`` but in the background: for request paths that must not wait."""
        entry = self._entry(action, actor, subjects, details)
        task = asyncio.get_running_loop().create_task(self._append_quietly(entry))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _append_quietly(self, entry: AuditEntry) -> None:
        try:
            await self.log.append([entry])
        except Exception:  # a background note has no caller to tell; the log line says it
            _log.exception("audit_append_failed", action=entry.action)

    def auth_failed(self, presented_key: str | None, route: str) -> None:
        """Count one rejected key; entries are written per fingerprint per window."""
        now = self._clock.now()
        if self._failures and now - self._failures_opened >= self._window:
            self._flush_failures()
        if not self._failures:
            self._failures_opened = now
        fp = "none" if not presented_key else self.fingerprint(presented_key)
        if fp not in self._failures and len(self._failures) >= _MAX_FINGERPRINTS:
            fp = _OTHER
        seen = self._failures.get(fp)
        if seen is None:
            seen = self._failures[fp] = _Failures(now)
        seen.count += 1
        seen.last_at = now
        if len(seen.routes) < 10:
            seen.routes.add(route)

    def _flush_failures(self) -> None:
        failures, self._failures = self._failures, {}
        for fp, seen in failures.items():
            self.note(
                "auth.failed",
                actor=f"key:{fp}",
                details={
                    "key": fp,
                    "count": seen.count,
                    "first_at": seen.first_at,
                    "last_at": seen.last_at,
                    "routes": sorted(seen.routes),
                },
            )

    async def _tick(self) -> None:
        """Close the rejected-key window once it is over, even when no request comes."""
        while True:
            await asyncio.sleep(min(self._window / 4, 5.0))
            if self._failures and self._clock.now() - self._failures_opened >= self._window:
                self._flush_failures()

    async def flush(self) -> None:
        """Write the counted rejected keys and wait for every background note."""
        self._flush_failures()
        while self._pending:
            await asyncio.gather(*list(self._pending))

    # --- reading ------------------------------------------------------------------------
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
        """Entries about any of ``subjects`` (identifiers or profile ids, hashed here)."""
        return await self.log.list(
            subjects=sorted({self.subject(s) for s in subjects}),
            action=action,
            since=since,
            until=until,
            after=after,
            limit=limit,
        )

    async def verify(self) -> Verdict:
        """Check the whole chain and its sealed head, page by page, while the log grows.

        The chain is checked up to the head exactly. Entries past it were either appended
        since (each append writes its entries and the head in one transaction) or chained
        there by someone without the secret; so the head is read again after they were
        seen: if it covers them, they are checked up to it in turn, and if it does not, they
        are reported as unsealed. Entries appended during the last of ``_ROUNDS`` rounds
        are left to the next verification.
        """
        verifier = ChainVerifier(sealed=True, key=self._key)
        head = await self.log.head()
        for _ in range(_ROUNDS):
            while head is not None and verifier.last_seq < head.seq:
                page = await self.log.scan(
                    verifier.last_seq, min(_PAGE, head.seq - verifier.last_seq)
                )
                if not page or not all(verifier.feed(entry) for entry in page):
                    break
            verdict = verifier.judge(head)
            if not verdict.ok or head is None:
                return verdict
            past = await self.log.scan(head.seq, 1)
            if not past:
                return verdict
            later = await self.log.head()
            if later is None or later.seq <= head.seq:
                # nothing was appended since: what lies past the head was not written here
                verifier.feed(past[0])
                return verifier.judge(later)
            head = later
        return verdict

    async def aclose(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self.flush()
        await self.log.aclose()


def _redact(value: Any, personal: set[str]) -> Any:
    """The value with every string equal to a subject (or its value) replaced, so a caller
    that repeats an identifier in the details cannot put it in the log."""
    if isinstance(value, str):
        return _REDACTED if normalise_subject(value) in personal else value
    if isinstance(value, dict):
        return {k: _redact(v, personal) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, personal) for v in value]
    return value
