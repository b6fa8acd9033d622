"""The collection pipeline: validate → tracking plan → event log, quarantining what fails.

A request is acknowledged only after every accepted message is durable in the event log and
every rejected one is durable in the quarantine, so nothing a client sends is silently lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from segue.core.events import Event
from segue.core.model import NewRecord, QuarantineEntry
from segue.core.ports import Clock, EventLog, Quarantine
from segue.errors import NotFound, SegueError
from segue.ingest.backlog import LogBacklog
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

__all__ = [
    "CollectResult",
    "ImportResult",
    "IngestCounters",
    "IngestService",
    "ReplayResult",
    "RowRejected",
]


class CollectResult(msgspec.Struct, frozen=True):
    """What happened to one request: how many were stored, duplicates, and rejections."""

    stored: int
    duplicates: int
    rejected: list[Rejected]
    offsets: list[int | None]


class ReplayResult(msgspec.Struct, frozen=True):
    """What a replay did: the log offset (None: a duplicate, or dropped), and whether the
    message named an erased person and was dropped as collection drops it."""

    offset: int | None
    suppressed: bool = False


class RowRejected(msgspec.Struct, frozen=True):
    """One rejected row (or one rejected message of a row) of an import, by line number."""

    line: int
    code: str
    message: str
    field: str | None


class ImportResult(msgspec.Struct, frozen=True):
    """What happened to one chunk of an import: rows read, messages stored, rejections."""

    rows: int
    stored: int
    duplicates: int
    rejected: list[RowRejected]


class IngestCounters(msgspec.Struct):
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    #: messages of erased people, dropped (acknowledged, so SDKs do not retry forever)
    suppressed: int = 0


class Suppression(Protocol):
    """Recognises messages of erased people (``segue.privacy.suppression``)."""

    def blocks(self, event: Event) -> bool: ...

    def blocks_message(self, message: Mapping[str, Any]) -> bool: ...


_message_decoder = msgspec.json.Decoder(dict[str, Any])


def _names_erased(suppression: Suppression, body: bytes) -> bool:
    try:
        message = _message_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return False
    return suppression.blocks_message(message)


def _planned(
    plan: TrackingPlan, event: Event, message: dict[str, Any], body: bytes | None
) -> tuple[Event, dict[str, Any], bytes | None]:
    """The tracking plan applied; the JSON body is dropped when the plan changed the
    message (it returns a new one then, and never changes one in place)."""
    planned_event, planned = plan.apply(event, message)
    if planned is not message or planned_event is not event:
        body = None
    return planned_event, planned, body


class IngestService:
    """Turns collection requests into durable log records.

    Args:
        log: the event log (appends are durable before they return).
        quarantine: where rejected messages are kept with their reason.
        clock: wall clock, injected so tests can freeze time.
        limits: message and request size limits.
        plans: tracking plan per source name; sources without one accept everything.
        new_id: generator of message ids for messages that came without one.
        backlog: the bound on records waiting for the log (load shedding); None: unbounded.
    """

    def __init__(
        self,
        log: EventLog,
        quarantine: Quarantine,
        clock: Clock,
        limits: Limits,
        plans: Mapping[str, TrackingPlan] | None = None,
        new_id: Callable[[], str] | None = None,
        backlog: LogBacklog | None = None,
    ) -> None:
        self._log = log
        self.backlog = backlog
        self._quarantine = quarantine
        self._clock = clock
        self.limits = limits
        self._plans = dict(plans or {})
        self._new_id = new_id or (lambda: str(uuid.uuid4()))
        self.counters = IngestCounters()
        #: the consent step (privacy.screen): runs on accepted messages before they are
        #: logged, with whether the request said ``Sec-GPC: 1``, and answers the positions
        #: of the messages it changed
        self.screen: (
            Callable[[str, list[tuple[dict[str, Any], Event]], bool], Awaitable[Collection[int]]]
            | None
        ) = None
        #: the suppression list: messages of erased people are dropped silently (acknowledged
        #: with 200 so SDKs stop retrying; counted in ``counters.suppressed``)
        self.suppression: Suppression | None = None

    parse = staticmethod(parse_request)

    def _writing(self, records: int) -> AbstractContextManager[None]:
        """Hold places in the write pipeline; raises Overloaded when the log is behind."""
        return nullcontext() if self.backlog is None else self.backlog.admit(records)

    def _suppressed(self, event: Event) -> bool:
        """Whether the event names an erased person (then it is dropped, and counted)."""
        if self.suppression is not None and self.suppression.blocks(event):
            self.counters.suppressed += 1
            return True
        return False

    async def _screen(
        self,
        source: str,
        prepared: list[tuple[dict[str, Any], Event]],
        bodies: list[bytes | None],
        gpc: bool = False,
    ) -> None:
        """The consent step; a message it changed loses its JSON, to be encoded again."""
        if self.screen is not None and prepared:
            for at in await self.screen(source, prepared, gpc):
                bodies[at] = None

    async def collect(
        self, source: str, parsed: ParsedRequest, *, gpc: bool = False
    ) -> CollectResult:
        """Validate, plan-check and store every message of one request.

        Args:
            gpc: the request carried ``Sec-GPC: 1`` (Global Privacy Control).

        Returns:
            the result; ``rejected`` lists messages that went to the quarantine.

        Raises:
            Overloaded: the event log is behind; nothing was written, the client must retry.
            BackendUnavailable: the log or quarantine failed; the client must retry.
        """
        now = self._clock.now()
        received = datetime.fromtimestamp(now, UTC)
        plan = self._plans.get(source)
        prepared: list[tuple[dict[str, Any], Event]] = []
        #: each prepared message as JSON, None where a step changed the message after
        bodies: list[bytes | None] = []
        rejected: list[Rejected] = []
        body: bytes | None
        for index, raw in parsed.messages:
            try:
                message, event, body = prepare_message(
                    raw, parsed, limits=self.limits, received_at=received, new_id=self._new_id
                )
                if plan is not None:
                    event, message, body = _planned(plan, event, message, body)
            except SegueError as exc:
                bad = reject(index, raw, exc, parsed.kind)
                if self.suppression is not None and _names_erased(self.suppression, bad.body):
                    self.counters.suppressed += 1
                else:
                    rejected.append(bad)
                continue
            if self._suppressed(event):
                continue
            prepared.append((message, event))
            bodies.append(body)
        offsets: list[int | None] = []
        with self._writing(len(prepared) + len(rejected)):
            await self._screen(source, prepared, bodies, gpc)
            records = [
                to_record(source, message, event, now, body)
                for (message, event), body in zip(prepared, bodies, strict=True)
            ]
            self.counters.received += len(parsed.messages)
            # log first, quarantine second: a failure between them makes the client retry,
            # and the retry is de-duplicated by the log, so the quarantine never holds a
            # message twice
            if records:
                offsets = await self._log.append(records)
            if rejected:
                await self._quarantine.add(
                    [
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
                )
        stored = sum(1 for o in offsets if o is not None)
        duplicates = len(offsets) - stored
        self.counters.stored += stored
        self.counters.duplicates += duplicates
        self.counters.rejected += len(rejected)
        return CollectResult(
            stored=stored, duplicates=duplicates, rejected=rejected, offsets=offsets
        )

    async def collect_rows(
        self,
        source: str,
        mapped: list[tuple[int, list[dict[str, Any]]]],
        failed: list[tuple[int, bytes, SegueError]],
    ) -> ImportResult:
        """Validate, plan-check and store the messages a connector made of a chunk of rows.

        Each message goes through the same checks as one of a collection batch; rows the
        connector could not read or map, and messages that fail, go to the quarantine with
        ``line N`` in the reason. Re-importing the same rows is idempotent when the connector
        gives each message a deterministic ``messageId``.

        Args:
            source: the source the rows belong to.
            mapped: per row, its line number and the messages made of it.
            failed: per unusable row, its line number, its bytes and why.

        Returns:
            rows read, messages stored and duplicates, and every rejection by line.

        Raises:
            Overloaded: the event log is behind; nothing was written, the caller must retry.
            BackendUnavailable: the log or quarantine failed; the caller must retry.
        """
        now = self._clock.now()
        received = datetime.fromtimestamp(now, UTC)
        plan = self._plans.get(source)
        parsed = ParsedRequest(
            write_key=None, messages=[], context=None, integrations=None, sent_at=None, kind=None
        )
        records: list[NewRecord] = []
        problems = [(line, body, error) for line, body, error in failed]
        messages = 0
        body: bytes | None
        for line, row_messages in mapped:
            for row_message in row_messages:
                messages += 1
                raw = msgspec.json.encode(row_message)
                try:
                    message, event, body = prepare_message(
                        raw, parsed, limits=self.limits, received_at=received, new_id=self._new_id
                    )
                    if plan is not None:
                        event, message, body = _planned(plan, event, message, body)
                except SegueError as exc:
                    problems.append((line, raw, exc))
                    continue
                if self._suppressed(event):
                    continue
                records.append(to_record(source, message, event, now, body))
        problems.sort(key=lambda p: p[0])
        entries = [
            QuarantineEntry(
                id=0,
                source=source,
                received_at=now,
                reason=f"line {line}: {error.code}: {error.message}",
                field=error.field,
                body=body,
            )
            for line, body, error in problems
        ]
        offsets: list[int | None] = []
        # log first, quarantine second, as in collect: a chunk retried after a failure between
        # the two is de-duplicated by the log and its bad rows are quarantined once
        with self._writing(len(records) + len(entries)):
            if records:
                offsets = await self._log.append(records)
            if entries:
                await self._quarantine.add(entries)
        stored = sum(1 for o in offsets if o is not None)
        duplicates = len(offsets) - stored
        self.counters.received += messages + len(failed)
        self.counters.stored += stored
        self.counters.duplicates += duplicates
        self.counters.rejected += len(problems)
        return ImportResult(
            rows=len(mapped) + len(failed),
            stored=stored,
            duplicates=duplicates,
            rejected=[
                RowRejected(line=line, code=e.code, message=e.message, field=e.field)
                for line, _, e in problems
            ],
        )

    async def replay(self, entry_id: int, replacement: bytes | None) -> ReplayResult:
        """Re-submit a quarantined message, optionally corrected, through the steps of
        :meth:`collect`: validation, the tracking plan, suppression and the consent screen.

        Returns:
            the new log offset (None if it was a duplicate of a stored message, or if it
            names an erased person: then it is dropped, and the entry deleted, as
            collection drops such a message).

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
        body: bytes | None
        message, event, body = prepare_message(
            raw,
            parsed,
            limits=self.limits,
            received_at=datetime.fromtimestamp(now, UTC),
            new_id=self._new_id,
        )
        plan = self._plans.get(entry.source)
        if plan is not None:
            event, message, body = _planned(plan, event, message, body)
        if self._suppressed(event):
            await self._quarantine.remove(entry_id)
            return ReplayResult(offset=None, suppressed=True)
        with self._writing(1):
            bodies = [body]
            await self._screen(entry.source, [(message, event)], bodies)
            offsets = await self._log.append(
                [to_record(entry.source, message, event, now, bodies[0])]
            )
        await self._quarantine.remove(entry_id)
        self.counters.stored += sum(1 for o in offsets if o is not None)
        return ReplayResult(offset=offsets[0])
