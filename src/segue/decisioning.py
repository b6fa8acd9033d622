"""Wiring of the read side: catalog mirror, item models, features stage, decide engine.

Part of the composition root (``runtime`` calls :func:`start_decisioning`): it builds the
objects that the processor and the decide path share in one process — the item models
(written by the processor under a lock, read by decide through snapshots), the catalog
mirror (written through by the catalog API), the caches invalidated on every commit — and a
background loop that settles feedback and persists the learned state.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import msgspec
import structlog

from segue.core.changes import Change, decode_change, encode_change
from segue.core.model import Changeset, Identifier, Item, TraitValue
from segue.core.ports import CatalogStore, ProfileStore
from segue.decide.cache import Cache
from segue.decide.catalog_view import CatalogView
from segue.decide.engine import DecideEngine, Placement
from segue.decide.item_view import ItemView
from segue.decide.ranking import LinearThompson
from segue.decide.rules import PlacementRules
from segue.decide.signals import PersonSignals
from segue.errors import BackendUnavailable
from segue.features._ecommerce import ItemInfo
from segue.features.items import ItemModels
from segue.features.view import features_view
from segue.privacy.preferences import PREFERENCES_TRAIT, with_preferences
from segue.privacy.suppression import normalise_identifier
from segue.processor.behaviour import (
    BehaviourStage,
    Feedback,
    behaviour_signals,
    decode_behaviour,
)

if TYPE_CHECKING:
    from segue.runtime import Runtime

__all__ = ["Decisioning", "ViewedCatalog", "start_decisioning"]

_log = structlog.get_logger("segue.decisioning")
_MODELS_BLOB = "item_models"
_RANKERS_BLOB = "rankers"


class ViewedCatalog:
    """A CatalogStore that keeps the in-memory mirror (and the item models' notion of new
    items, for cold start) in step with every write."""

    def __init__(
        self,
        store: CatalogStore,
        view: CatalogView,
        observe: Callable[[Sequence[Item]], None] | None = None,
        announce: Callable[[list[str]], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.view = view
        self.observe = observe
        #: tells the other processes which items changed (their mirrors follow)
        self.announce = announce

    async def open(self) -> None:
        await self.store.open()

    async def put(self, items: Sequence[Item]) -> None:
        await self.store.put(items)
        self.view.upsert(items)
        if self.observe is not None:
            self.observe(items)
        if self.announce is not None:
            await self.announce([item.item_id for item in items])

    async def get(self, item_ids: Iterable[str]) -> dict[str, Item]:
        return await self.store.get(item_ids)

    async def scan(self, after: str, limit: int) -> list[Item]:
        return await self.store.scan(after, limit)

    async def delete(self, item_id: str) -> bool:
        found = await self.store.delete(item_id)
        self.view.remove(item_id)
        if self.announce is not None:
            await self.announce([item_id])
        return found

    async def count(self) -> int:
        return await self.store.count()

    async def aclose(self) -> None:
        await self.store.aclose()


class _ProfileFacts(NamedTuple):
    subjects: tuple[str, ...]
    preferences: TraitValue | None


T = TypeVar("T")


class _Codec(Generic[T]):
    """Bytes for the shared cache layer, and back."""

    def __init__(self, kind: Any) -> None:
        self.encode = msgspec.msgpack.Encoder().encode
        self.decode: Callable[[bytes], T] = msgspec.msgpack.Decoder(kind).decode


_ID_CODEC: _Codec[str | None] = _Codec(str | None)
_FACTS_CODEC: _Codec[_ProfileFacts] = _Codec(_ProfileFacts)
_SIGNALS_CODEC: _Codec[PersonSignals | None] = _Codec(PersonSignals | None)


class Decisioning:
    """The read side's shared objects and their background upkeep."""

    def __init__(self, runtime: Runtime, view: CatalogView, models: ItemModels) -> None:
        self.runtime = runtime
        self.view = view
        self.models = models
        self.lock = threading.Lock()
        self.items = ItemView(models, self.lock)
        self.identity_cache: Cache[Identifier, str | None] = Cache(100_000, ttl=30.0)
        self.signals_cache: Cache[str, PersonSignals | None] = Cache(100_000, ttl=30.0)
        #: profile id → what decide needs from the profile document (one read for both)
        self.facts_cache: Cache[str, _ProfileFacts] = Cache(100_000, ttl=30.0)
        self.engine = DecideEngine(
            view,
            self.items,
            self.find_profile,
            self.person_signals,
            runtime.consent.gate,
            runtime.decisions,
            runtime.clock,
            _placements(runtime),
            seed=None,
        )
        self.behaviour = BehaviourStage(
            models, self.item_info, self.engine.decision_items, self.lock
        )
        self._stopping = asyncio.Event()
        self.origin = runtime.origin
        #: seconds between saves of the item models for API processes (worker role)
        self.share_models_every = 2
        self._models_changed = False
        #: an invalidation of the shared layer failed: reset it once it is reachable
        self._shared_lost = False

    @property
    def owns_models(self) -> bool:
        """Whether this process's item models are the ones others load: only while it
        folds the log. An API process or a standby worker learns nothing; it takes the
        active worker's models when told (and a standby again when it takes over)."""
        return self.runtime.processor.active

    def observe_items(self, items: Sequence[Item]) -> None:
        """New or changed catalog items: fresh items get exposure before any traffic."""
        now = self.runtime.clock.now()
        with self.lock:
            for item in items:
                self.models.observe_item(item, now)
        self.items.invalidate()

    def item_info(self, item_id: str) -> ItemInfo | None:
        item = self.view.items.get(item_id)
        if item is None:
            return None
        return ItemInfo(category=item.category, brand=item.brand, price=item.price)

    async def find_profile(self, user: dict[str, str]) -> tuple[str | None, list[str]]:
        """The profile of the first identifier that resolves, and the person's subjects:
        the request's identifiers and every identity of the profile (consent given under
        any of them is the person's)."""
        store: ProfileStore = self.runtime.store
        rules = self.runtime.processor.folder.rules
        # as the processor links them: ``Ann@Example.com`` is the profile of ann@example.com
        asked = [i for k, v in user.items() if (i := normalise_identifier(k, v, rules)) is not None]
        for identifier in asked:

            async def read(identifier: Identifier = identifier) -> str | None:
                return (await store.lookup([identifier])).get(identifier)

            async def load(identifier: Identifier = identifier) -> str | None:
                return await self._shared(f"id:{identifier}", read, _ID_CODEC)

            profile_id = await self.identity_cache.get(identifier, load)
            if profile_id is not None:
                facts = await self.profile_facts(profile_id)
                subjects = [str(i) for i in asked]
                return profile_id, list(dict.fromkeys((*subjects, *facts.subjects)))
        return None, []

    async def profile_facts(self, profile_id: str) -> _ProfileFacts:
        """The person's identifiers and stated preferences, from one cached profile read."""

        async def read() -> _ProfileFacts:
            profile = (await self.runtime.store.profiles([profile_id])).get(profile_id)
            if profile is None:
                return _ProfileFacts((), None)
            return _ProfileFacts(
                tuple(str(i) for i in profile.identities),
                profile.traits.get(PREFERENCES_TRAIT),
            )

        async def load() -> _ProfileFacts:
            return await self._shared(f"facts:{profile_id}", read, _FACTS_CODEC)

        return await self.facts_cache.get(profile_id, load)

    async def _shared(self, key: str, read: Callable[[], Awaitable[T]], codec: _Codec[T]) -> T:
        """``read()`` through the shared second layer (Redis), when there is one and the
        change feed is live (else its copies cannot be trusted: read the store)."""
        shared = self.runtime.shared_cache
        if shared is None or not self.runtime.changes.live:
            return await read()
        raw, token = await shared.get(key)
        if raw is not None:
            try:
                return codec.decode(raw)
            except msgspec.DecodeError:
                pass  # written by another version: read the store and overwrite it
        value = await read()
        await shared.put(key, codec.encode(value), token)
        return value

    async def drop_shared(self, identifiers: Iterable[Identifier], profiles: Iterable[str]) -> None:
        """Invalidate the shared copies of what just changed (before the change note)."""
        shared = self.runtime.shared_cache
        if shared is None:
            return
        keys = [f"id:{i}" for i in identifiers]
        for profile_id in profiles:
            keys += [f"facts:{profile_id}", f"sig:{profile_id}"]
        if not await shared.invalidate(keys):
            self._shared_lost = True

    async def person_signals(self, profile_id: str) -> PersonSignals | None:
        async def load() -> PersonSignals | None:
            return await self._shared(f"sig:{profile_id}", read, _SIGNALS_CODEC)

        async def read() -> PersonSignals | None:
            found, facts = await asyncio.gather(
                self.runtime.store.features([profile_id]), self.profile_facts(profile_id)
            )
            data = found.get(profile_id)
            behaviour = (
                behaviour_signals(decode_behaviour(data), self.runtime.clock.now())
                if data is not None
                else {}
            )
            stated = facts.preferences
            if stated is None:
                return PersonSignals(**behaviour)
            return with_preferences(PersonSignals(**behaviour), stated.value, stated.source)

        return await self.signals_cache.get(profile_id, load)

    async def profile_features(self, profile_id: str) -> dict[str, Any]:
        """The ``features`` object of the profile API: counts, affinities, cart, RFM…"""
        found = await self.runtime.store.features([profile_id])
        if profile_id not in found:
            return {}
        behaviour = decode_behaviour(found[profile_id])
        return features_view(behaviour.features, self.runtime.clock.now())

    async def on_commit(self, changes: Changeset, feedback: list[Feedback]) -> None:
        """The processor changed state: forget what the caches knew of it, pass feedback
        on, and tell the other processes the same."""
        identifiers = [*changes.links, *changes.unlink]
        # profiles that only counted an event (``changes.activity``) changed nothing these
        # caches hold (identifiers, stated preferences, features)
        features = {*changes.features, *changes.profiles, *changes.redirects}
        profiles = {*changes.profiles, *changes.redirects, *changes.drop_profiles}
        self._forget(identifiers, features, profiles)
        await self.drop_shared(identifiers, features | profiles)
        if feedback:
            self.engine.feedback(feedback)
        self._models_changed = True
        await self.publish(
            Change(
                origin=self.origin,
                identifiers=[str(i) for i in identifiers],
                profiles=sorted(features | profiles),
                feedback=[
                    (f.decision_id, f.kind, f.item_ids, f.profile_id, f.at) for f in feedback
                ],
            )
        )

    def _forget(
        self, identifiers: Iterable[Identifier], features: Iterable[str], profiles: Iterable[str]
    ) -> None:
        for identifier in identifiers:
            self.identity_cache.invalidate(identifier)
        for profile_id in features:
            self.signals_cache.invalidate(profile_id)
        for profile_id in profiles:
            self.facts_cache.invalidate(profile_id)

    async def publish(self, change: Change, *, confirm: bool = False) -> None:
        """Tell the other processes; with ``confirm``, return once they all applied it. A
        feed that is down is reported by the feed itself (the others then stop trusting
        their caches)."""
        await self.runtime.changes.publish(encode_change(change), confirm=confirm)

    async def apply(self, change: Change) -> None:
        """Follow a change another process made (see ``segue.core.changes``)."""
        if change.origin == self.origin:
            return
        runtime = self.runtime
        if change.flush:
            await self.flush()
            return
        parsed = [Identifier.parse(text) for text in change.identifiers if ":" in text]
        self._forget(parsed, change.profiles, change.profiles)
        if change.consent:
            runtime.consent.heard(change.consent, erased=False)
        if change.consent_erased:
            runtime.consent.heard(change.consent_erased, erased=True)
        if change.items:
            found = await runtime.catalog.get(change.items)
            for item_id in change.items:
                if item_id not in found:
                    self.view.remove(item_id)
            self.view.upsert(found.values())
            self.observe_items(list(found.values()))
        if change.feedback:
            self.engine.feedback(Feedback(*f) for f in change.feedback)
        if change.models and not self.owns_models:
            await self.load_models()
        if change.suppressed:
            await runtime.privacy_requests.reload_suppression()
        if change.keys_destroyed:
            runtime.forget_data_keys()
        if change.erased:
            # this process's decisions for the person: those in memory, and any it wrote
            # to the log after the eraser deleted theirs
            await self.engine.forget(change.erased)
            await runtime.decisions.erase_decisions(change.erased)

    async def flush(self) -> None:
        """Drop every cache and re-read what others may have changed unheard."""
        for cache in (self.identity_cache, self.signals_cache, self.facts_cache):
            cache.clear()
        if self.runtime.shared_cache is not None:  # invalidations may have been lost
            await self.runtime.shared_cache.reset()
            self._shared_lost = False
        await self.runtime.consent.flush()
        await self.view.load(self.runtime.catalog)
        self.items.invalidate()
        if not self.owns_models:
            await self.load_models()
        await self.runtime.privacy_requests.reload_suppression()
        self.runtime.forget_data_keys()  # an erasure may have destroyed some, unheard

    async def load_models(self) -> None:
        """Take the item models another process (the active worker) saved."""
        blob = await self.runtime.store.load_blob(_MODELS_BLOB)
        if not blob:
            return
        steps = ItemModels.served_from_bytes(blob, self.models.config)
        while True:  # in ~1 ms steps: requests keep being answered meanwhile
            try:
                next(steps)
            except StopIteration as done:
                loaded: ItemModels = done.value
                break
            await asyncio.sleep(0)
        with self.lock:
            self.models.state = loaded.state
            behaviour = self.runtime.processor.behaviour
            if behaviour is not None:
                # what the saved models learned is not known here: a batch folded again
                # after this (a lease regained) teaches them, as it would a fresh process
                behaviour.taught_through = 0
        self.items.invalidate()

    async def listen(self) -> None:
        """Apply the other processes' changes as they arrive. While the feed is down,
        caches are bypassed: what another process changed meanwhile is unknown."""
        feed = self.runtime.changes
        while not self._stopping.is_set():
            notes = await feed.receive(0.25)
            bypass = not feed.live
            if self._shared_lost and not bypass and self.runtime.shared_cache is not None:
                await self.runtime.shared_cache.reset()  # a lost invalidation: start afresh
                self._shared_lost = False
            for cache in (self.identity_cache, self.signals_cache, self.facts_cache):
                cache.bypass = bypass
            self.runtime.consent.bypass(bypass)
            for note in notes:
                change = decode_change(note)
                if change is None:
                    continue
                try:
                    await self.apply(change)
                except Exception:  # a store down: drop caches rather than keep stale ones
                    _log.exception("change_apply_failed")
                    for cache in (self.identity_cache, self.signals_cache, self.facts_cache):
                        cache.clear()
                    self.runtime.consent.bypass(True)
            with contextlib.suppress(Exception):  # a feed down says so through ``live``
                await feed.applied()

    async def run(self) -> None:
        """Settle feedback every second; persist the learned state every 30 seconds (the
        item models every few seconds where a worker shares them with API processes)."""
        ticks = 0
        listening = asyncio.create_task(self.listen(), name="changes")
        try:
            while not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)
                self.engine.settle(self.runtime.clock.now())
                self.prepare_catalog()  # not in a decision (after an import, a re-sync)
                ticks += 1
                try:
                    if ticks % 30 == 0:
                        await self.persist()
                    elif self.owns_models and ticks % self.share_models_every == 0:
                        await self.share_models()
                except BackendUnavailable:
                    # the store is down: decide keeps serving from memory; a later tick saves
                    _log.warning("decisioning_backend_unavailable")
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening

    def prepare_catalog(self) -> None:
        """Build the catalog's columns if they wait to be built, where decisions are made
        (a worker makes none): see :meth:`CatalogView.prepare`."""
        if self.runtime.role != "worker":
            self.view.prepare()

    async def share_models(self) -> None:
        """Save the item models and tell the API processes to take them."""
        if not self._models_changed:
            return
        self._models_changed = False
        models = await self._encode_models()
        try:
            await self.runtime.store.save_blob(_MODELS_BLOB, models)
        except BackendUnavailable:
            self._models_changed = True  # not shared yet: try again on a later tick
            raise
        await self.publish(Change(origin=self.origin, models=True))

    async def _encode_models(self) -> bytes:
        """The item models' bytes, encoded a step (~1 ms) at a time with the event loop free
        between steps (one encode of the whole state held it ~50 ms: see
        :meth:`ItemModels.to_bytes_in_steps`). Each step holds the lock the processor
        takes per event, so no step sees an event half applied."""
        steps = self.models.to_bytes_in_steps()
        while True:
            with self.lock:
                try:
                    next(steps)
                except StopIteration as done:
                    encoded: bytes = done.value
                    return encoded
            await asyncio.sleep(0)

    async def persist(self, owns_models: bool | None = None) -> None:
        """Save the rankers, and the item models where they are learnt (``owns_models``:
        whether they are, when the caller knows better than the processor's state now)."""
        store = self.runtime.store
        if self.owns_models if owns_models is None else owns_models:
            self._models_changed = True
            await self.share_models()
        if self.runtime.role != "worker":  # the decisions (and what they taught) are here
            rankers = {name: r.to_bytes().hex() for name, r in self.engine.rankers.items()}
            await store.save_blob(_RANKERS_BLOB, msgspec.json.encode(rankers))

    async def aclose(self) -> None:
        # asked before anything awaits: the runtime has just told the processor to stop,
        # and it gives up its lease meanwhile, but the models it learnt are still the ones
        # to keep
        owned = self.owns_models
        self._stopping.set()
        await self.engine.aclose()
        await self.persist(owned)


def _placements(runtime: Runtime) -> dict[str, Placement]:
    out: dict[str, Placement] = {}
    for name, p in runtime.settings.placements.items():
        out[name] = Placement(
            name=name,
            strategy=p.strategy,
            k=p.k,
            channel=p.channel,
            exploration=p.exploration,
            rules=PlacementRules(
                types=tuple(p.types),
                categories=tuple(p.categories),
                exclude_purchased=p.exclude_purchased,
                exclude_cart=p.exclude_cart,
                frequency_cap=p.frequency_cap,
                pinned=tuple(p.pinned),
                promoted=tuple(p.promoted),
                promoted_share=p.promoted_share,
                max_per_category=p.max_per_category,
            ),
        )
    return out


async def start_decisioning(runtime: Runtime) -> Decisioning:
    """Load the catalog mirror and the learned state; hook the processor; start upkeep."""
    view = CatalogView()
    await view.load(runtime.catalog)
    blob = await runtime.store.load_blob(_MODELS_BLOB)
    models = ItemModels.from_bytes(blob) if blob else ItemModels()
    decisioning = Decisioning(runtime, view, models)
    decisioning.prepare_catalog()  # before the process freezes its startup heap
    runtime.catalog = ViewedCatalog(
        runtime.catalog,
        view,
        decisioning.observe_items,
        lambda ids: decisioning.publish(Change(origin=decisioning.origin, items=ids)),
    )
    saved = await runtime.store.load_blob(_RANKERS_BLOB)
    if saved:
        rankers: dict[str, Any] = msgspec.json.decode(saved)
        for name, hexed in rankers.items():
            decisioning.engine.rankers[name] = LinearThompson.from_bytes(bytes.fromhex(hexed))
    runtime.processor.behaviour = decisioning.behaviour
    runtime.processor.on_commit = decisioning.on_commit
    _log.info("decisioning_ready", items=len(view.items))
    return decisioning
