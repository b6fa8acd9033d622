"""Probabilistic matching on arrival: the processor's second stage for each batch.

After the deterministic fold, every trait snapshot that arrived in the batch (a CRM row, a
store sign-up, a web form) is compared with the profiles that share a blocking key with it —
those held in the store and those built earlier in the same batch — using the Fellegi–Sunter
model of :mod:`segue.identity.matching`. At or above the match threshold the profiles merge
(recorded with the field-by-field explanation); in the grey zone a possible match is kept for
a person to decide. A profile is compared through every snapshot it was built from, so a
record that matches any one of them links, as record-level linkage would.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable

import msgspec
import numpy as np
import structlog

from segue.core.model import Changeset, PossibleMatch, Profile
from segue.core.ports import ProfileStore
from segue.identity.matching import (
    IncrementalMatcher,
    MatchModel,
    MatchRecord,
    MatchScore,
    TermFrequencies,
    blocking_keys,
    estimate,
    legacy_keys,
    presence,
    record_from_traits,
)
from segue.processor.fold import Folder, WorkingSet
from segue.processor.offload import off_loop
from segue.processor.state_cache import StateCache

__all__ = ["Linker"]

_log = structlog.get_logger("segue.linkage")
_MODEL_BLOB = "match_model"


class _Saved(msgspec.Struct):
    model: MatchModel
    tf: TermFrequencies
    profiles: int


_encode_records = msgspec.msgpack.Encoder().encode
_decode_records = msgspec.msgpack.Decoder(list[MatchRecord]).decode


def _records(profile: Profile) -> list[MatchRecord]:
    found = [record_from_traits(snapshot) for snapshot in profile.records]
    return [r for r in found if r is not None]


def _keys(records: Iterable[MatchRecord]) -> list[str]:
    return _union(blocking_keys(record) for record in records)


class _Derived:
    """The match record and block keys of each snapshot of one batch, worked out once.

    A new snapshot is normalised when it is matched, again when its profile is a candidate
    of a later record of the batch, and again when its profile is indexed; its block keys
    were derived three times too (~10 % of a batch of identifies). Keyed by object identity,
    with the object held in the entry so that its id cannot be reused while this lives: one
    batch.
    """

    def __init__(self) -> None:
        self._records: dict[int, tuple[object, MatchRecord | None]] = {}
        self._keys: dict[int, tuple[MatchRecord, list[str]]] = {}
        self._probes: dict[int, tuple[MatchRecord, list[str]]] = {}

    def record(self, snapshot: dict[str, object]) -> MatchRecord | None:
        found = self._records.get(id(snapshot))
        if found is None:
            found = self._records[id(snapshot)] = (snapshot, record_from_traits(snapshot))
        return found[1]

    def records(self, profile: Profile) -> list[MatchRecord]:
        found = [self.record(snapshot) for snapshot in profile.records]
        return [r for r in found if r is not None]

    def keys(self, record: MatchRecord) -> list[str]:
        found = self._keys.get(id(record))
        if found is None:
            found = self._keys[id(record)] = (record, blocking_keys(record))
        return found[1]

    def probes(self, record: MatchRecord) -> list[str]:
        """The keys to look the record's candidates up by (``probe_keys``), from its block
        keys worked out once."""
        found = self._probes.get(id(record))
        if found is None:
            probes = self.keys(record) + legacy_keys(record)
            found = self._probes[id(record)] = (record, probes)
        return found[1]

    def keys_of(self, records: Iterable[MatchRecord]) -> list[str]:
        return _union(self.keys(record) for record in records)

    def probes_of(self, records: Iterable[MatchRecord]) -> list[str]:
        return _union(self.probes(record) for record in records)


def _union(lists: Iterable[list[str]]) -> list[str]:
    """The keys of all the lists, each once, in first-seen order."""
    keys: dict[str, None] = {}
    for found in lists:
        keys.update(dict.fromkeys(found))
    return list(keys)


class Linker:
    """Matches new records against held profiles and merges or records possible matches.

    Args:
        store: where the block index, possible matches and the model live.
        folder: the fold, whose merge and identity rules are reused.
        model: starting parameters (replaced by the stored or re-estimated model).
        cap: a blocking key shared by more profiles than this yields no candidates.
        match_threshold / possible_threshold: override the model's thresholds.
        cache: the processor's state cache, which keeps candidates' match records.
    """

    def __init__(
        self,
        store: ProfileStore,
        folder: Folder,
        model: MatchModel | None = None,
        *,
        cap: int = 100,
        match_threshold: float | None = None,
        possible_threshold: float | None = None,
        cache: StateCache | None = None,
    ) -> None:
        self._store = store
        #: the processor's copy of committed state: candidates' match records come from it
        self.cache = cache
        self._folder = folder
        self._overrides: dict[str, float] = {}
        if match_threshold is not None:
            self._overrides["match_threshold"] = match_threshold
        if possible_threshold is not None:
            self._overrides["possible_threshold"] = possible_threshold
        self.model = self._with_overrides(model or MatchModel.default())
        self.tf = TermFrequencies()
        self.estimated_at_profiles = 0
        self.cap = cap
        #: records whose candidate pairs feed EM at each re-estimation
        self.sample = 20_000
        #: batches with at most this many new records are scored on the event loop (~8
        #: candidates of ~6 µs each a record: less than a thread hand-off, offload.py)
        self.inline_up_to = 2
        #: batches with at least this many new records weigh all their pairs at once
        #: (:meth:`MatchModel.weigh_many`): the arrays cost ~0.5 ms a batch before any
        #: pair, and they break even at ~450 pairs, 64 records since a record has ~7.5
        #: candidates (`bench/matching.py`, 2026-12-07: 5.06 against 5.03 µs a pair at 64
        #: records, 8.24 against 5.16 at 16, 4.88 against 5.12 at 1,000)
        self.many_from = 64
        #: the last log offset whose record taught the term frequencies: a batch whose
        #: commit failed is scored again from the same offsets, and must not count twice
        self.taught_through = 0
        #: id(record) → its offset, for the records of the batch being scored that teach
        #: (None outside ``link``: every record scored teaches)
        self._teach: dict[int, int] | None = None
        #: values forgotten while a re-estimation runs, taken out of its result too
        self._forgotten: list[tuple[str, str, int]] | None = None

    def _with_overrides(self, model: MatchModel) -> MatchModel:
        return msgspec.structs.replace(model, **self._overrides) if self._overrides else model

    async def load(self) -> None:
        """Take the last estimated model and term frequencies from the store, if any."""
        self.taught_through = 0  # what the stored frequencies counted is not known here
        blob = await self._store.load_blob(_MODEL_BLOB)
        if blob is None:
            return
        saved = msgspec.msgpack.decode(blob, type=_Saved)
        self.model = self._with_overrides(saved.model)
        self.tf = saved.tf
        self.estimated_at_profiles = saved.profiles

    async def link(self, ws: WorkingSet, at: float) -> None:
        """Match this batch's new trait snapshots; merge or record possible matches.

        Three steps keep whole profiles off the hot path: score against the compact match
        records of the candidates; load in full only the few that scored above the
        possible threshold; then merge or record, in arrival order.
        """
        derived = _Derived()
        queries: list[tuple[str, MatchRecord]] = []
        teach: dict[int, int] = {}
        for profile_id, offset, snapshot in ws.new_records:
            record = derived.record(snapshot)
            if record is not None:
                queries.append((profile_id, record))
                if offset > self.taught_through:
                    teach[id(record)] = offset
        if not queries:
            self._index(ws, derived)
            return
        held = await self._store.block_candidates(
            derived.probes_of(r for _, r in queries), self.cap
        )
        outside = {pid for ids in held.values() for pid in ids}
        outside -= set(ws.profiles) | set(ws.changes.redirects)
        if self.cache is None:
            stored = await self._store.match_records(outside)
        else:
            stored, missing = self.cache.split_records(outside)
            if missing:
                read = await self._store.match_records(missing)
                self.cache.keep_records(read)
                stored.update(read)
        inline = len(queries) <= self.inline_up_to
        score = self._score_many if len(queries) >= self.many_from else self._score
        self._teach = teach
        try:
            hits = await off_loop(inline, score, ws, queries, held, stored, derived)
        finally:
            self._teach = None
        need = {other for _, other, _ in hits} - set(ws.profiles) - set(ws.changes.redirects)
        if need:
            for pid, profile in (await self._store.profiles(need)).items():
                ws.profiles[pid] = profile
                for identifier in profile.identities:
                    ws.links.setdefault(identifier, pid)
        possible = await off_loop(inline, self._apply, ws, hits, at, derived)
        for match in possible:
            if not await self._recorded(match.profile_a, match.profile_b):
                ws.changes.possible.append(match)

    def _learn(self, record: MatchRecord) -> None:
        """Count a scored record's values in the term frequencies, unless a failed
        attempt at its batch counted them already (see ``taught_through``)."""
        if self._teach is None:
            self.tf.add(record)
            return
        offset = self._teach.get(id(record))
        if offset is not None:
            self.tf.add(record)
            self.taught_through = max(self.taught_through, offset)

    def _score(
        self,
        ws: WorkingSet,
        queries: list[tuple[str, MatchRecord]],
        held: dict[str, list[str]],
        stored: dict[str, bytes],
        derived: _Derived,
    ) -> list[tuple[str, str, MatchScore]]:
        """Every (query profile, candidate, score) at or above the possible threshold."""
        cache: dict[str, list[tuple[MatchRecord, int]]] = {}

        def records_of(pid: str) -> list[tuple[MatchRecord, int]]:
            found = cache.get(pid)
            if found is None:
                records = self._records_of(ws, pid, stored, derived)
                found = cache[pid] = [(r, presence(r)) for r in records]
            return found

        in_batch: dict[str, list[str]] = {}
        hits: list[tuple[str, str, MatchScore]] = []
        tf = self.tf.frequency
        model = self.model
        floor = model.possible_weight
        for profile_id, record in queries:
            pid = _resolve(ws, profile_id)
            keys = derived.keys(record)
            mine = presence(record)
            scored: list[tuple[str, MatchScore]] = []
            for other in _candidates(ws, pid, derived.probes(record), held, in_batch):
                best: MatchRecord | None = None
                best_weight = floor
                for theirs, held_fields in records_of(other):
                    weight = model.weigh_above(record, theirs, best_weight, tf, mine & held_fields)
                    if weight is not None and weight >= best_weight:
                        best, best_weight = theirs, weight
                if best is not None:
                    scored.append((other, model.score(record, best, tf)))
            scored.sort(key=lambda item: (-item[1].weight, item[0]))
            hits.extend((pid, other, score) for other, score in scored)
            for key in keys:
                in_batch.setdefault(key, []).append(pid)
            self._learn(record)
        return hits

    def _score_many(
        self,
        ws: WorkingSet,
        queries: list[tuple[str, MatchRecord]],
        held: dict[str, list[str]],
        stored: dict[str, bytes],
        derived: _Derived,
    ) -> list[tuple[str, str, MatchScore]]:
        """:meth:`_score`, with every pair of the batch weighed in one pass.

        The records are walked in arrival order as in :meth:`_score` (each query's
        candidates include the batch's earlier records; the term frequencies grow record
        by record), noting each pair and the frequencies of each query's values as they
        stood; the pairs are then weighed together, and the hits scored with those
        frequencies. The hits come out the same, in the same order.
        """
        records: dict[str, list[MatchRecord]] = {}
        slot: dict[int, int] = {}  # id(candidate record) -> its place in ``theirs``
        theirs: list[MatchRecord] = []
        mine: list[MatchRecord] = []
        frequencies: list[Callable[[str, str], float | None]] = []
        exact: list[tuple[float, ...]] = []
        pair_query: list[int] = []
        pair_record: list[int] = []
        pair_candidate: list[int] = []  # index into ``candidates``
        candidates: list[tuple[int, str]] = []  # (query, candidate profile)
        in_batch: dict[str, list[str]] = {}
        model = self.model
        for query, (profile_id, record) in enumerate(queries):
            pid = _resolve(ws, profile_id)
            keys = derived.keys(record)
            for other in _candidates(ws, pid, derived.probes(record), held, in_batch):
                found = records.get(other)
                if found is None:
                    found = records[other] = self._records_of(ws, other, stored, derived)
                candidate = len(candidates)
                candidates.append((query, other))
                for candidate_record in found:
                    at = slot.get(id(candidate_record))
                    if at is None:
                        at = slot[id(candidate_record)] = len(theirs)
                        theirs.append(candidate_record)
                    pair_query.append(query)
                    pair_record.append(at)
                    pair_candidate.append(candidate)
            frozen = self._frozen_frequencies(record, model)
            mine.append(record)
            frequencies.append(frozen)
            exact.append(model.exact_weights(record, frozen))
            for key in keys:
                in_batch.setdefault(key, []).append(pid)
            self._learn(record)
        weights = model.weigh_many(
            mine,
            np.asarray(pair_query, dtype=np.intp),
            theirs,
            np.asarray(pair_record, dtype=np.intp),
            np.asarray(exact, dtype=np.float64).reshape(len(mine), -1),
            model.possible_weight,
        )
        # per candidate profile, its best record (the last of equal weights, as in _score)
        best: dict[int, tuple[float, int]] = {}
        for pair in np.flatnonzero(weights >= model.possible_weight).tolist():
            weight = float(weights[pair])
            candidate = pair_candidate[pair]
            kept = best.get(candidate)
            if kept is None or weight >= kept[0]:
                best[candidate] = (weight, pair_record[pair])
        hits: list[tuple[str, str, MatchScore]] = []
        by_query: dict[int, list[tuple[str, MatchScore]]] = {}
        for candidate, (_, at) in sorted(best.items()):
            query, other = candidates[candidate]
            score = model.score(mine[query], theirs[at], frequencies[query])
            by_query.setdefault(query, []).append((other, score))
        for query, scored in sorted(by_query.items()):
            scored.sort(key=lambda item: (-item[1].weight, item[0]))
            pid = _resolve(ws, queries[query][0])
            hits.extend((pid, other, score) for other, score in scored)
        return hits

    @staticmethod
    def _records_of(
        ws: WorkingSet, pid: str, stored: dict[str, bytes], derived: _Derived
    ) -> list[MatchRecord]:
        """A candidate's match records: from its profile when the batch holds it (its
        records may have changed in this batch), else as the store or cache keeps them."""
        profile = ws.profiles.get(pid)
        if profile is not None:
            return derived.records(profile)
        if pid in stored:
            return _decode_records(stored[pid])
        return []

    def _frozen_frequencies(
        self, record: MatchRecord, model: MatchModel
    ) -> Callable[[str, str], float | None]:
        """``tf`` as it stands now, for the values of ``record`` (the only ones a pair with
        it as the first record asks about), on ``model``'s term-frequency fields."""
        now = {
            field: self.tf.frequency(field, value)
            for field in model.tf_fields
            if (value := getattr(record, field, None)) is not None
        }

        def frequency(field: str, _value: str) -> float | None:
            return now.get(field)

        return frequency

    def _apply(
        self,
        ws: WorkingSet,
        hits: list[tuple[str, str, MatchScore]],
        at: float,
        derived: _Derived,
    ) -> list[PossibleMatch]:
        """Merge the sure pairs and collect the grey-zone ones, in arrival order."""
        possible: dict[tuple[str, str], PossibleMatch] = {}
        for query_id, other_id, score in hits:
            pid, other = _resolve(ws, query_id), _resolve(ws, other_id)
            if pid == other or pid not in ws.profiles or other not in ws.profiles:
                continue
            mine, theirs = ws.profiles[pid], ws.profiles[other]
            if not self._folder.allowed(ws, mine.identities, theirs.identities, mine, theirs):
                continue
            explanation = [(f, level, w) for f, level, w in score.fields]
            if score.probability >= self.model.match_threshold:
                self._folder.merge(
                    ws,
                    mine,
                    theirs,
                    reason="match",
                    via=[mine.identities[0], theirs.identities[0]],
                    at=at,
                    score=round(score.probability, 6),
                    explanation=explanation,
                )
            else:
                pair = (min(pid, other), max(pid, other))
                possible.setdefault(
                    pair,
                    PossibleMatch(
                        profile_a=pair[0],
                        profile_b=pair[1],
                        score=round(score.probability, 6),
                        explanation=explanation,
                        created_at=at,
                    ),
                )
        self._index(ws, derived)
        # a pair merged later in the batch is no longer a possible match
        out: list[PossibleMatch] = []
        for m in possible.values():
            a, b = _resolve(ws, m.profile_a), _resolve(ws, m.profile_b)
            if a != b:
                out.append(msgspec.structs.replace(m, profile_a=min(a, b), profile_b=max(a, b)))
        return out

    def _index(self, ws: WorkingSet, derived: _Derived) -> None:
        """Block keys and match records of every profile whose snapshots changed: new
        snapshots, and survivors of merges (they inherit the merged profile's snapshots)."""
        changed = {p for p, _, _ in ws.new_records} | set(ws.changes.redirects.values())
        for pid in {_resolve(ws, p) for p in changed}:
            touched = ws.profiles.get(pid)
            if touched is not None:
                records = derived.records(touched)
                ws.changes.block_keys[pid] = derived.keys_of(records)
                ws.changes.match_records[pid] = _encode_records(records)
                ws.touch(touched)

    def index_profile(self, profile: Profile, changes: Changeset) -> None:
        """Put a profile's block keys and match records into a changeset (after a re-derive)."""
        records = _records(profile)
        changes.block_keys[profile.profile_id] = _keys(records)
        changes.match_records[profile.profile_id] = _encode_records(records)

    async def _recorded(self, a: str, b: str) -> bool:
        for match in await self._store.possible_matches(a, None, 0, 1000):
            if {match.profile_a, match.profile_b} == {a, b}:
                return True
        return False

    async def reestimate(self, seed: int = 0) -> bool:
        """Re-estimate m/u, the prior and the term frequencies from the data held.

        Runs beside the processor (it reads the compact match records, never whole
        profiles) and swaps the new model in. EM runs on the candidate pairs of a random
        sample of records, so its cost stays bounded as the base grows.

        Returns:
            whether a new model was estimated (there must be at least 100 records).
        """
        matcher = IncrementalMatcher(self.model, max_block_size=self.cap)
        self._forgotten = []
        try:
            return await self._reestimate(matcher, seed)
        finally:
            self._forgotten = None

    async def _reestimate(self, matcher: IncrementalMatcher, seed: int) -> bool:
        after, profiles = "", 0
        loop = asyncio.get_running_loop()
        while True:
            page = await self._store.scan_match_records(after, 5000)
            if not page:
                break
            await loop.run_in_executor(None, _insert_all, matcher, page)
            profiles += len(page)
            after = page[-1][0]
        if len(matcher.records) < 100:
            return False
        rng = random.Random(seed)

        def fit() -> MatchModel:
            pairs, share = matcher.sample_pairs(self.sample, rng)
            return estimate(
                pairs,
                self.model,
                rng=rng,
                records=list(matcher.records.values()),
                pair_share=share,
            )

        model = await loop.run_in_executor(None, fit)
        self.model = self._with_overrides(model)
        self.tf = matcher.tf
        # people erased while this ran may have been read before their records were gone
        for field, value, times in self._forgotten or []:
            self._uncount(field, value, times)
        self.estimated_at_profiles = profiles
        await self.save()
        _log.info("match_model_estimated", profiles=profiles, records=len(matcher.records))
        return True

    def forget(self, values: Iterable[tuple[str, str, int]]) -> int:
        """Take an erased person's values out of the term frequencies (they hold names,
        cities, postcodes): each ``(field, value, times)`` is uncounted ``times`` times.

        Returns:
            how many counts were taken out.
        """
        removed = 0
        for field, value, times in values:
            removed += self._uncount(field, value, times)
            if self._forgotten is not None:
                self._forgotten.append((field, value, times))
        return removed

    def _uncount(self, field: str, value: str, times: int) -> int:
        """Uncount ``value`` of ``field`` up to ``times`` times (never below zero)."""
        n = min(times, self.tf.counts.get(field, {}).get(value, 0))
        record = msgspec.convert({field: value}, MatchRecord)
        for _ in range(n):
            self.tf.remove(record, (field,))
        return n

    async def save(self) -> None:
        """Store the model and term frequencies (after an erasure changed them)."""
        saved = _Saved(model=self.model, tf=self.tf, profiles=self.estimated_at_profiles)
        await self._store.save_blob(_MODEL_BLOB, msgspec.msgpack.encode(saved))

    async def rescore(self, match: PossibleMatch, a: str, b: str) -> float | None:
        """The probability of a possible match under the current model (None if unscorable)."""
        stored = await self._store.match_records([a, b])
        if a not in stored or b not in stored:
            return None
        mine, theirs = _decode_records(stored[a]), _decode_records(stored[b])
        tf = self.tf.frequency
        best = max((self.model.weigh(x, y, tf) for x in mine for y in theirs), default=None)
        if best is None:
            return None
        return _probability(best)


def _insert_all(matcher: IncrementalMatcher, page: list[tuple[str, bytes]]) -> None:
    for profile_id, data in page:
        for i, record in enumerate(_decode_records(data)):
            matcher.insert(f"{profile_id}#{i}", record)


def _probability(weight: float) -> float:
    if weight > 60:
        return 1.0
    odds: float = 2.0**weight
    return odds / (1.0 + odds)


def _candidates(
    ws: WorkingSet,
    pid: str,
    keys: list[str],
    held: dict[str, list[str]],
    in_batch: dict[str, list[str]],
) -> dict[str, None]:
    """The profiles that share a block key with a record of ``pid`` (held ones, and those of
    the batch's earlier records), resolved through this batch's merges, in key order."""
    found: dict[str, None] = {}
    for key in keys:
        for other in (*held.get(key, ()), *in_batch.get(key, ())):
            other = _resolve(ws, other)
            if other != pid:
                found[other] = None
    return found


def _resolve(ws: WorkingSet, profile_id: str) -> str:
    redirects = ws.changes.redirects
    seen = 0
    while profile_id in redirects and seen < 64:
        profile_id = redirects[profile_id]
        seen += 1
    return profile_id
