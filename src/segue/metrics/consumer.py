"""The reports consumer: a second reader of the event log that folds it into report rows.

It keeps its own checkpoint in the report store, so it never slows the processor and the
processor never waits for it: it reads the same records later, at its own pace. Three rules
keep its numbers right:

- **Never ahead of the processor.** It reads only records the processor has committed
  (the processor's checkpoint in the profile store), so every event's identifiers already
  lead to their profile, and a person is the same person in both.
- **Exactly once.** A batch's rows, covariates and attribution state commit together with
  the checkpoint, which moves only from where the batch was read (compare and set). After a
  crash the uncommitted records are read again; nothing is counted twice, even with two
  consumers on one store.
- **Decisions first.** An exposure needs its decision (placement, experiment, arm, unit).
  Decisions are written to the decision log in the background right after they are
  answered; a record that names a decision not found yet and is younger than
  ``decision_grace`` seconds ends the batch, which is retried shortly. Older ones are
  counted without it (the decision is unknown: erased, or never logged).

People are profiles. When profiles merged, the survivor takes over the attribution state of
the profiles merged into it, so an order after a login is attributed to the exposures the
visitor saw before it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime

import msgspec
import structlog

from segue.core.events import Event, Track, event_time
from segue.core.model import Decision, Identifier, LogRecord, ReportBatch
from segue.core.ports import Clock, EventLog, ProfileStore, ReportStore
from segue.errors import BackendUnavailable, StaleState
from segue.metrics.attribution import (
    Arm,
    Attribution,
    PersonState,
    decode_person,
    encode_person,
    merge_people,
)
from segue.processor.behaviour import CLICK_EVENTS, EXPOSURE_EVENTS

__all__ = ["DecisionLookup", "ReportsConsumer"]

_log = structlog.get_logger("segue.reports")
_decoder = msgspec.json.Decoder(Event)

#: decision ids → the decisions found (the in-process recent ones, else the decision log)
DecisionLookup = Callable[[Sequence[str]], Awaitable[dict[str, Decision]]]


class ReportsConsumer:
    """Folds the event log into the report store, from its own checkpoint.

    Args:
        log: the event log.
        reports: where rows, state and the checkpoint go.
        profiles: identifiers → profiles, and the processor's checkpoint.
        decisions: finds the decisions exposures name.
        identifiers: an event's identifiers, highest priority first (the processor's rules).
        clock: wall clock (only for the decision grace period).
        attribution: the fold.
        consumer: this consumer's checkpoint name.
        follow: the processor's checkpoint name, which this consumer never passes.
    """

    def __init__(
        self,
        log: EventLog,
        reports: ReportStore,
        profiles: ProfileStore,
        decisions: DecisionLookup,
        identifiers: Callable[[Event], list[Identifier]],
        clock: Clock,
        attribution: Attribution,
        *,
        consumer: str = "reports",
        follow: str = "profiles",
        batch_size: int = 1000,
        decision_grace: float = 10.0,
    ) -> None:
        self._log = log
        self._reports = reports
        self._profiles = profiles
        self._decisions = decisions
        self._identifiers = identifiers
        self._clock = clock
        self.attribution = attribution
        self.consumer = consumer
        self.follow = follow
        self.batch_size = batch_size
        self.decision_grace = decision_grace
        self.position = 0
        #: records folded by this process (a counter for logs and tests)
        self.processed = 0
        #: whether this process should fold now (a standby worker does not)
        self.active: Callable[[], bool] = lambda: True
        #: whether the processor has a backlog: reports then wait, up to ``max_defer`` s
        self.processor_behind: Callable[[], bool] = lambda: False
        self.max_defer = 5.0
        #: whether the processor is folding live traffic (it found records a moment ago):
        #: batches then take at most ``live_batch`` records (see :meth:`_size`)
        self.processor_live: Callable[[], bool] = lambda: False
        self.live_batch = 250
        self._last_batch = float("-inf")
        #: held while a batch is folded and committed; an erasure takes it
        self.lock = asyncio.Lock()
        #: offsets of records that failed alone: folded as if they named nobody
        self.poison: set[int] = set()
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self.position = await self._reports.checkpoint(self.consumer)

    async def step(self) -> int:
        """Fold one batch; return how many records it consumed (0: nothing to do now)."""
        async with self.lock:
            try:
                return await self._step()
            except StaleState:  # another consumer committed: carry on from where it is
                self.position = await self._reports.checkpoint(self.consumer)
                return 0

    async def _step(self) -> int:
        limit = await self._profiles.checkpoint(self.follow)
        if limit <= self.position:
            return 0
        # no further than the processor: a record past it would be read (and opened) now
        # and again at the next step, ~4,000 of them a step while the processor keeps up
        wanted = min(self._size(), limit - self.position)
        records = [r for r in await self._log.read(self.position, wanted) if r.offset <= limit]
        if not records:
            return 0
        events = [(r, None if r.offset in self.poison else _decode(r)) for r in records]
        arms = await self._arms(events)
        events = self._until_decisions_known(events, arms)
        if not events:
            return 0
        people, timed = await self._people(events)
        loop = asyncio.get_running_loop()
        states = await self._states(set(people.values()))
        rows, covariates = await loop.run_in_executor(
            None, self.attribution.fold, states.people, timed, arms.get
        )
        batch = ReportBatch(
            rows=rows,
            covariates=covariates,
            people={key: encode_person(state) for key, state in states.people.items()},
            drop_people=states.merged_away,
        )
        last = events[-1][0].offset
        await self._reports.commit(batch, self.consumer, self.position, last)
        self.position = last
        self.processed += len(events)
        return len(events)

    def _size(self) -> int:
        """How many records this batch may take.

        In one process a batch of reports holds the processor up while it runs: 4,000
        records are ~0.2 s, and every event arriving meanwhile becomes visible in its
        profile that much later (a worker at 5,000 events/s: event → visible p99 0.37–0.49
        s with such batches, 0.27–0.29 s with batches of 250; BENCHMARKS.md). So while the
        processor folds live traffic, reports go in short batches, and in full ones when it
        has nothing to fold (a backlog of reports after a restart drains at full speed).
        """
        if self.processor_live():
            return min(self.batch_size, self.live_batch)
        return self.batch_size

    async def _arms(self, events: list[tuple[LogRecord, Event | None]]) -> dict[str, Arm]:
        wanted = {d for _, event in events if (d := _decision_id(event)) is not None}
        found = await self._decisions(sorted(wanted)) if wanted else {}
        return {
            decision_id: Arm(
                d.placement,
                d.experiment or "",
                d.variant or "",
                d.profile_id or "",
                _window(d.context.get("attribution_window_s")),
            )
            for decision_id, d in found.items()
        }

    def _until_decisions_known(
        self, events: list[tuple[LogRecord, Event | None]], arms: dict[str, Arm]
    ) -> list[tuple[LogRecord, Event | None]]:
        """The events up to the first young one whose decision is not logged yet."""
        now = self._clock.now()
        for i, (record, event) in enumerate(events):
            decision_id = _decision_id(event)
            if (
                decision_id is not None
                and decision_id not in arms
                and now - record.received_at < self.decision_grace
            ):
                return events[:i]
        return events

    async def _people(
        self, events: list[tuple[LogRecord, Event | None]]
    ) -> tuple[dict[int, str], list[tuple[str, Event, float]]]:
        """Each event's person (its profile now) and the (person, event, time) to fold.

        Events without a profile are left out: no analytics consent, an erased person,
        or nothing that identifies anybody.
        """
        wanted: dict[int, list[Identifier]] = {}
        for record, event in events:
            if event is not None:
                wanted[record.offset] = self._identifiers(event)
        # the first identifier (highest priority) names the person almost always: the others
        # are asked for only for events whose first is not linked (half the lookups)
        links = await self._profiles.lookup({ids[0] for ids in wanted.values() if ids})
        rest = {i for ids in wanted.values() if ids and ids[0] not in links for i in ids[1:]}
        if rest:
            links.update(await self._profiles.lookup(rest))
        people: dict[int, str] = {}
        timed: list[tuple[str, Event, float]] = []
        for record, event in events:
            if event is None:
                continue
            person = next((links[i] for i in wanted[record.offset] if i in links), None)
            if person is None:
                continue
            people[record.offset] = person
            received = datetime.fromtimestamp(record.received_at, UTC)
            at = min(event_time(event, received).timestamp(), record.received_at)
            timed.append((person, event, at))
        return people, timed

    async def _states(self, people: set[str]) -> _States:
        """The attribution state of these people, with what profiles merged into them had."""
        merged = {
            pid: [m for m in olds if m not in people]
            for pid, olds in (await self._profiles.merged_into(people)).items()
        }
        stored = await self._reports.people(people | {m for ms in merged.values() for m in ms})
        out = _States()
        for person in people:
            state = decode_person(stored.get(person))
            others = [m for m in merged.get(person, []) if m in stored]
            if others:
                merge_people(state, (decode_person(stored[m]) for m in others))
                out.merged_away += others
            out.people[person] = state
        return out

    async def run(self) -> None:
        """Fold until stopped; wait on the log when caught up; retry after backend trouble."""
        await self.start()
        while not self._stopping.is_set():
            if self.deferring():
                await self._pause(0.05)
                continue
            try:
                done = await self.step() if self.active() else 0
                self._last_batch = self._clock.now()
            except BackendUnavailable:
                _log.warning("reports_backend_unavailable")
                done = 0
                await self._pause(1.0)
            except Exception:
                _log.exception("reports_batch_failed", position=self.position)
                try:
                    done = await self.isolate()
                except BackendUnavailable:
                    done = 0
                if done == 0:
                    await self._pause(5.0)
            if done == 0:
                await self._pause(0.5)

    def deferring(self) -> bool:
        """Whether to leave the CPU to the processor now.

        Profiles are what decide reads and what a person sees; reports are read by people
        minutes later. In one process the two share a core, so while the processor has a
        backlog the reports consumer waits, but never more than ``max_defer`` seconds
        between two batches: under a sustained overload reports lag, they do not stop.
        """
        return self.processor_behind() and self._clock.now() - self._last_batch < self.max_defer

    async def isolate(self) -> int:
        """Fold the batch that failed one record at a time, skipping any that fails alone.

        A record the store cannot take (say, a value PostgreSQL's text cannot hold) would
        otherwise stop the reports for good; skipped, it only leaves the KPIs without one
        event, and the error log names its offset. Returns the records consumed.
        """
        size, self.batch_size = self.batch_size, 1
        done = 0
        try:
            for _ in range(size):
                try:
                    step = await self.step()
                except BackendUnavailable:
                    raise
                except Exception as exc:
                    page = await self._log.read(self.position, 1)
                    if not page or page[0].offset in self.poison:
                        raise  # not this record's fault: the batch is retried later
                    self.poison.add(page[0].offset)
                    _log.error("reports_poison_record", offset=page[0].offset, error=repr(exc))
                    continue
                if step == 0:
                    break
                done += step
        finally:
            self.batch_size = size
        return done

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def stop(self) -> None:
        self._stopping.set()

    async def forget(self, units: Iterable[str], people: Iterable[str]) -> dict[str, int]:
        """Erase these units' rows and these people's state, between two batches (so no
        batch in flight writes them back)."""
        async with self.lock:
            return await self._reports.erase(sorted(set(units)), sorted(set(people)))


class _States:
    def __init__(self) -> None:
        self.people: dict[str, PersonState] = {}
        self.merged_away: list[str] = []


def _decode(record: LogRecord) -> Event | None:
    try:
        event: Event = _decoder.decode(record.body)
    except msgspec.DecodeError:
        return None
    return event


def _decision_id(event: Event | None) -> str | None:
    """The decision an exposure or a click names (other events need none)."""
    if not isinstance(event, Track) or event.event not in EXPOSURE_EVENTS | CLICK_EVENTS:
        return None
    decision_id = event.properties.get("decision_id")
    return decision_id if isinstance(decision_id, str) and decision_id else None


def _window(value: object) -> float:
    """A decision's recorded attribution window (0: none recorded, use the configured one)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return 0.0
