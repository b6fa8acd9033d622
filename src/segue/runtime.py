"""The composition root: settings → adapters → services, and their start/stop.

The only module that constructs adapters (through the registries in ``segue.storage``).
The API, the CLI and the tests reach every service through a :class:`Runtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from segue.core.changes import Change
from segue.core.model import LogRecord, QuarantineEntry
from segue.core.ports import (
    CatalogStore,
    ChangeFeed,
    ConsentStore,
    DecisionStore,
    EventLog,
    PrivacyStore,
    ProfileStore,
    Quarantine,
    SharedCache,
)
from segue.decide.engine import DecideEngine
from segue.decide.rank import RankService
from segue.errors import ConfigError
from segue.identity.identifiers import IdentityRules
from segue.ingest.backlog import LogBacklog
from segue.ingest.pipeline import IngestService
from segue.ingest.plans import TrackingPlan
from segue.ingest.validate import Limits
from segue.keys import KeyRing, Keys, resolve_keys
from segue.privacy.audit import Verdict
from segue.privacy.audit_service import AuditService
from segue.privacy.policy import RegionPolicy
from segue.privacy.preferences import PREFERENCE_SOURCE
from segue.privacy.requests import PrivacyRequests
from segue.privacy.screen import ConsentScreen
from segue.privacy.service import ConsentService
from segue.privacy.shredding import SealedEventLog
from segue.processor.service import Processor
from segue.profiles.golden import Survivorship
from segue.settings import Settings
from segue.storage import (
    AUDITS,
    CATALOGS,
    CHANGES,
    CONSENTS,
    DECISIONS,
    KEYS,
    LOGS,
    PRIVACY,
    QUARANTINES,
    REPORTS,
    SHARED_CACHES,
    STORES,
)

if TYPE_CHECKING:
    from segue.decisioning import Decisioning
    from segue.reporting import Reporting

__all__ = ["Runtime", "SystemClock"]

_log = structlog.get_logger("segue.runtime")


class SystemClock:
    """The wall clock, as epoch seconds."""

    def now(self) -> float:
        return time.time()


def _load(registry: dict[str, str], url: str, what: str) -> Any:
    scheme = url.split(":", 1)[0]
    target = registry.get(scheme)
    if target is None:
        raise ConfigError([f"unknown {what} backend {url!r}; known: {', '.join(sorted(registry))}"])
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _place(store: str, data: Path) -> Path | str:
    """Where an adapter of ``store`` keeps its data: a server's URL, else the data folder."""
    return store if "://" in store else data


def _build(registry: dict[str, str], url: str, what: str, data: Path, *args: Any) -> Any:
    """The ``what`` adapter of ``url``'s backend: a memory one takes only ``args``; the
    others take where they keep their data first (see :func:`_place`)."""
    cls = _load(registry, url, what)
    return cls(*args) if url.startswith("memory") else cls(_place(url, data), *args)


class Runtime:
    """Every service of one segue process, wired from settings.

    Args:
        settings: parsed configuration.
        clock: injected wall clock (tests freeze it).
    """

    def __init__(
        self, settings: Settings, clock: SystemClock | None = None, *, role: str = "all"
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.data = Path(settings.data)
        self.keys: Keys
        self.keyring: KeyRing
        self.audit: AuditService
        self.generated_keys: list[str] = []
        self.log: EventLog
        self.store: ProfileStore
        self.quarantine: Quarantine
        self.catalog: CatalogStore
        self.decisions: DecisionStore
        self.consents: ConsentStore
        self.consent: ConsentService
        self.privacy_store: PrivacyStore
        self.privacy_requests: PrivacyRequests
        self.consent_screen: ConsentScreen
        self.rank: RankService
        self.decisioning: Decisioning
        self.reporting: Reporting
        self.engine: DecideEngine
        self.ingest: IngestService
        self.processor: Processor
        self.changes: ChangeFeed
        #: this process among the installation's (its own notes on the feed are ignored)
        self.origin = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        #: all: API and processor; api: API only; worker: processor only (``segue worker``)
        self.role = role
        self.started_at = self.clock.now()
        self.ready = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, *, run_processor: bool = True, role: str | None = None) -> None:
        """Open the backends and start the processor in the background.

        ``role`` splits the work between processes (see docs/scaling.md): ``all`` answers
        requests and folds the log; ``api`` only answers (a worker folds); ``worker`` only
        folds, holding a lease so that one worker at a time does (the others stand by).
        """
        role = role or self.role
        if role not in ("all", "api", "worker"):
            raise ConfigError([f"unknown role {role!r}: all, api or worker"])
        self.role = role
        s = self.settings
        write = {src.name: src.write_key for src in s.sources}
        write.setdefault("default", None)
        self.keys, self.generated_keys = resolve_keys(
            self.data, s.admin_key, s.publishable_key, write
        )
        self.keyring = KeyRing(self.keys)
        if s.log.startswith("memory") and not s.store.startswith("memory"):
            raise ConfigError(
                [
                    "a memory event log needs a memory store: a persistent store would keep a "
                    "checkpoint past the end of a log that starts empty at every restart"
                ]
            )
        self.audit = self._audit_service(self.keys.secret)
        await self.audit.open()
        # notes between processes: Redis across machines, else a file in the data folder
        feed_url = s.redis_url or ("memory" if s.store.startswith("memory") else "sqlite")
        self.changes = _build(CHANGES, feed_url, "change feed", self.data)
        await self.changes.open(self.origin)
        #: the second cache layer, shared by the processes (only with Redis); its keys name
        #: people, so it stores them only as keyed hashes under the installation secret
        self.shared_cache: SharedCache | None = (
            _build(SHARED_CACHES, s.redis_url, "shared cache", self.data, self.keys.secret.encode())
            if s.redis_url
            else None
        )
        # a server's adapters (nats://, postgresql://) take its URL; the embedded ones the
        # data folder (a memory log comes with a memory store: checked above)
        self.catalog = _build(CATALOGS, s.store, "catalog", self.data)
        self.decisions = _build(DECISIONS, s.store, "decisions", self.data)
        self.consents = _build(CONSENTS, s.store, "consent", self.data)
        self.log = _build(LOGS, s.log, "log", self.data)
        self.store = _build(STORES, s.store, "store", self.data)
        self.quarantine = _build(QUARANTINES, s.store, "quarantine", self.data)
        self.privacy_store = _build(PRIVACY, s.store, "privacy", self.data)
        await self.privacy_store.open()
        if s.privacy.encrypt_events:  # crypto-shredding: every reader goes through this
            # the keys live as long as the log does
            log_memory = s.log.startswith("memory")
            # on a server store every process must open what any process sealed: keys there
            keys_url = "memory" if log_memory else s.store if "://" in s.store else "sqlite"
            self.log = SealedEventLog(
                self.log,
                _build(KEYS, keys_url, "keys", self.data),
                self.keys.secret.encode(),
                s.privacy.personal_properties,
            )
        await self.log.open()
        await self.store.open()
        await self.quarantine.open()
        await self.catalog.open()
        await self.decisions.open()
        await self.consents.open()
        plans = {
            src.name: TrackingPlan(src.tracking_plan.mode, src.tracking_plan.events)
            for src in s.sources
            if src.tracking_plan is not None
        }
        overload = s.overload
        self.ingest = IngestService(
            self.log,
            self.quarantine,
            self.clock,
            Limits(max_message_bytes=s.max_message_bytes, max_request_bytes=s.max_request_bytes),
            plans,
            backlog=LogBacklog(
                self.clock, overload.log_backlog, overload.log_stall_s, overload.retry_after_s
            )
            if overload.enabled
            else None,
        )
        ident = s.identity
        rules = IdentityRules(
            priority=ident.priority,
            limits={"user_id": 1, **ident.limits},
            blocked_values=ident.blocked_values,
            trait_identifiers=ident.trait_identifiers,
            phone_region=ident.phone_region,
        )
        survivorship = Survivorship(
            s.survivorship.default,
            s.survivorship.source_priority,
            {name: (r.rule, list(r.sources)) for name, r in s.survivorship.traits.items()},
        )
        self.processor = Processor(
            self.log,
            self.store,
            self.clock,
            self.keys.secret.encode(),
            batch_size=s.processor_batch,
            rules=rules,
            survivorship=survivorship,
            legal_basis={
                PREFERENCE_SOURCE: "consent",
                **{src.name: src.legal_basis for src in s.sources if src.legal_basis},
            },
            matching=ident.matching,
            match_threshold=ident.match_threshold,
            possible_threshold=ident.possible_threshold,
        )
        privacy = s.privacy
        self.consent = ConsentService(
            self.consents,
            RegionPolicy(
                {name: (r.regime, r.codes) for name, r in privacy.regions.items()},
                privacy.default_region,
                privacy.default_regime,
            ),
            self.clock,
            vendor_id=privacy.tcf_vendor_id,
        )
        await self.consent.start()
        self.consent.audit = self.audit.record
        self.consent.on_change = self._consent_changed
        self.consent_screen = ConsentScreen(
            self.consent,
            self.keys.secret.encode(),
            drop_fields=privacy.drop_fields,
            hash_fields=privacy.hash_fields,
        )
        self.ingest.screen = self.consent_screen.screen
        self.processor.aggregate_unattached = privacy.aggregate_unattached
        from segue.decisioning import start_decisioning

        self.decisioning = await start_decisioning(self)
        self.engine = self.decisioning.engine
        self._tasks.append(asyncio.create_task(self.decisioning.run(), name="decisioning"))
        await self.processor.start()
        self.privacy_requests = PrivacyRequests(self)
        await self.privacy_requests.start()
        folds = run_processor and role != "api"
        self.privacy_requests.executes = lambda: self.processor.active if folds else False
        self.privacy_requests.on_suppressed = self._suppressed
        self._tasks.append(asyncio.create_task(self.privacy_requests.run(), name="privacy"))
        if role == "worker":
            self.processor.holder = self.origin
            self.processor.on_activate = self._take_over
        elif role == "all":  # a restart on the same data folder takes its lease back at once
            self.processor.holder = f"serve:{socket.gethostname()}:{self.data.resolve()}"
        if folds:
            self._tasks.append(asyncio.create_task(self._run_processor(), name="processor"))
        from segue.reporting import start_reporting

        reports = _build(REPORTS, s.store, "reports", self.data)
        self.reporting = await start_reporting(self, reports, run=folds)
        rank = s.rank
        self.rank = RankService(
            self.decisions,
            self.store,
            self.clock,
            np.random.default_rng(),
            algorithm=rank.algorithm,
            exploration=rank.exploration,
            alpha=rank.alpha,
            feature_bits=rank.feature_bits,
            reward_wait_s=rank.reward_wait_s,
            default_reward=rank.default_reward,
            reward_bounds=(rank.reward_min, rank.reward_max),
        )
        await self.rank.start()
        self._tasks.append(asyncio.create_task(self.rank.run(), name="rank"))
        self.ready = True

    def _audit_service(self, secret: str) -> AuditService:
        """The audit log on the store's backend, keyed with the installation secret."""
        key = secret.encode()
        return AuditService(
            _build(AUDITS, self.settings.store, "audit", self.data, key), key, self.clock
        )

    async def verify_audit(self) -> Verdict:
        """Verify the audit log of the data folder without starting anything else.

        Reads the secret from ``keys.json`` and never writes it (``segue audit verify``).

        Raises:
            ConfigError: the data folder holds no audit log or no keys.
        """
        keys_path, audit_path = self.data / "keys.json", self.data / "audit.db"
        if self.settings.store.startswith("memory"):
            raise ConfigError(["a memory store keeps no audit log to verify"])
        on_server = "://" in self.settings.store  # the audit log is in the server's database
        if not (on_server or audit_path.exists()) or not keys_path.exists():
            raise ConfigError([f"no audit log in {self.data} (audit.db and keys.json)"])
        secret = json.loads(keys_path.read_text()).get("secret")
        if not isinstance(secret, str) or not secret:
            raise ConfigError([f"{keys_path} holds no secret"])
        audit = self._audit_service(secret)
        await audit.log.open()
        try:
            return await audit.verify()
        finally:
            await audit.log.aclose()

    async def _consent_changed(self, subjects: list[str], erased: bool) -> None:
        change = Change(origin=self.origin)
        if erased:
            change.consent_erased = subjects
        else:
            change.consent = subjects
        # confirmed: a revocation answered here holds for the next request to any process
        await self.decisioning.publish(change, confirm=True)

    def forget_data_keys(self) -> None:
        """Another process destroyed data keys: none cached here may be used again."""
        if isinstance(self.log, SealedEventLog):
            self.log.forget_cached()

    async def _suppressed(self) -> None:
        await self.decisioning.publish(Change(origin=self.origin, suppressed=True))

    async def _take_over(self) -> None:
        """This worker became the active one: start from what the last one learned."""
        await self.decisioning.load_models()
        await self.privacy_requests.reload_suppression()

    async def _run_processor(self) -> None:
        await self.processor.run(on_poison=self._quarantine_poison)

    async def _quarantine_poison(self, record: LogRecord, error: Exception) -> None:
        """A stored event the processor cannot fold goes to the quarantine, with the reason."""
        await self.quarantine.add(
            [
                QuarantineEntry(
                    id=0,
                    source=record.source,
                    received_at=record.received_at,
                    reason=f"processing_failed: offset {record.offset}: {error!r}"[:500],
                    field=None,
                    body=record.body,
                )
            ]
        )

    async def stats(self) -> dict[str, Any]:
        """The numbers of ``GET /v1/stats``."""
        head = await self.log.last_offset()
        lag_events, lag_ms = await self.processor.lag()
        counts = await self.store.counts()
        c = self.ingest.counters
        return {
            "events_received": head,
            "events_processed": self.processor.position,
            "lag_events": lag_events,
            "lag_ms": round(lag_ms, 3),
            "profiles": counts["profiles"],
            "identities": counts["identities"],
            "messages_received": c.received,
            "events_rejected": c.rejected,
            "events_duplicate": c.duplicates,
            "events_suppressed": c.suppressed,
            "quarantined": await self.quarantine.count(),
            "uptime_s": round(self.clock.now() - self.started_at, 3),
            # counters above marked per process are this one's (``serve --workers``)
            "process": self.origin,
            "role": self.role,
            # false: this process misses other processes' changes and reads through its caches
            "change_feed_live": bool(self.changes.live),
        }

    async def aclose(self) -> None:
        """Stop the processor after its current batch, flush the log, close the stores."""
        self.ready = False
        if hasattr(self, "processor"):
            self.processor.stop()
        if hasattr(self, "rank"):
            self.rank.stop()
        if hasattr(self, "privacy_requests"):
            self.privacy_requests.stop()
        if hasattr(self, "decisioning"):
            await self.decisioning.aclose()
        if hasattr(self, "reporting"):
            await self.reporting.aclose()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, 10)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for name in (
            "shared_cache",
            "changes",
            "log",
            "store",
            "quarantine",
            "catalog",
            "decisions",
            "consents",
            "privacy_store",
        ):
            backend = getattr(self, name, None)
            if backend is not None:
                await backend.aclose()
        if hasattr(self, "audit"):  # last: the services above may still record entries
            await self.audit.aclose()
