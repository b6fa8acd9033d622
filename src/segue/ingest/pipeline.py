"""The collection pipeline: validate → tracking plan → event log, quarantining what fails.

A request is acknowledged only after every accepted message is durable in the event log and
every rejected one is durable in the quarantine, so nothing a client sends is silently lost.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import msgspec

from segue.core.model import NewRecord, QuarantineEntry
from segue.core.ports import Clock, EventLog, Quarantine
from segue.errors import NotFound, SegueError
from segue.ingest.plans import TrackingPlan
from segue.ingest.validate import (
    Limits,
    ParsedRequest,
    Rejected,
    parse_request,
    prepare_message,
    reject,
    to_record,
)

__all__ = ["CollectResult", "IngestCounters", "IngestService"]


class CollectResult(msgspec.Struct, frozen=True):
    """What happened to one request: how many were stored, duplicates, and rejections."""

    stored: int
    duplicates: int
    rejected: list[Rejected]
    offsets: list[int | None]


class IngestCounters(msgspec.Struct):
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0


class IngestService:
    """Turns collection requests into durable log records.

    Args:
        log: the event log (appends are durable before they return).
        quarantine: where rejected messages are kept with their reason.
        clock: wall clock, injected so tests can freeze time.
        limits: message and request size limits.
        plans: tracking plan per source name; sources without one accept everything.
        new_id: generator of message ids for messages that came without one.
    """

    def __init__(
        self,
        log: EventLog,
        quarantine: Quarantine,
        clock: Clock,
        limits: Limits,
        plans: Mapping[str, TrackingPlan] | None = None,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self._log = log
        self._quarantine = quarantine
        self._clock = clock
        self.limits = limits
        self._plans = dict(plans or {})
        self._new_id = new_id or (lambda: str(uuid.uuid4()))
        self.counters = IngestCounters()

    parse = staticmethod(parse_request)

    async def collect(self, source: str, parsed: ParsedRequest) -> CollectResult:
        """Validate, plan-check and store every message of one request.

        Returns:
            the result; ``rejected`` lists messages that went to the quarantine.

        Raises:
            BackendUnavailable: the log or quarantine failed; the client must retry.
        """
        now = self._clock.now()
        received = datetime.fromtimestamp(now, UTC)
        plan = self._plans.get(source)
        records: list[NewRecord] = []
        rejected: list[Rejected] = []
        for index, raw in parsed.messages:
            try:
                message, event = prepare_message(
                    raw, parsed, limits=self.limits, received_at=received, new_id=self._new_id
                )
                if plan is not None:
                    event, message = plan.apply(event, message)
            except SegueError as exc:
                rejected.append(reject(index, raw, exc))
                continue
            records.append(to_record(source, message, event, now))
        self.counters.received += len(parsed.messages)
        offsets: list[int | None] = []
        if rejected:
            entries = [
                QuarantineEntry(
                    id=0,
                    source=source,
                    received_at=now,
                    reason=f"{r.code}: {r.message}",
                    field=r.field,
                    body=r.body,
                )
                for r in rejected
            ]
            if records:
                offsets, _ = await asyncio.gather(
                    self._log.append(records), self._quarantine.add(entries)
                )
            else:
                await self._quarantine.add(entries)
        elif records:
            offsets = await self._log.append(records)
        stored = sum(1 for o in offsets if o is not None)
        duplicates = len(offsets) - stored
        self.counters.stored += stored
        self.counters.duplicates += duplicates
        self.counters.rejected += len(rejected)
        return CollectResult(
            stored=stored, duplicates=duplicates, rejected=rejected, offsets=offsets
        )

    async def replay(self, entry_id: int, replacement: bytes | None) -> int | None:
        """Re-submit a quarantined message, optionally corrected, through the same checks.

        Returns:
            the new log offset (None if it was a duplicate of a stored message).

        Raises:
            NotFound: no such quarantine entry.
            InvalidEvent: the message still fails; it stays in the quarantine.
        """
        entry = await self._quarantine.get(entry_id)
        if entry is None:
            raise NotFound(f"no quarantine entry {entry_id}")
        raw = replacement if replacement is not None else entry.body
        parsed = ParsedRequest(
            write_key=None,
            messages=[(0, raw)],
            context=None,
            integrations=None,
            sent_at=None,
            kind=None,
        )
        now = self._clock.now()
        message, event = prepare_message(
            raw,
            parsed,
            limits=self.limits,
            received_at=datetime.fromtimestamp(now, UTC),
            new_id=self._new_id,
        )
        plan = self._plans.get(entry.source)
        if plan is not None:
            event, message = plan.apply(event, message)
        offsets = await self._log.append([to_record(entry.source, message, event, now)])
        await self._quarantine.remove(entry_id)
        self.counters.stored += sum(1 for o in offsets if o is not None)
        return offsets[0]
