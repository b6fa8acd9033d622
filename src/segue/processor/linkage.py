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
from collections.abc import Iterable

import msgspec
import structlog

from segue.core.model import PossibleMatch, Profile
from segue.core.ports import ProfileStore
from segue.identity.matching import (
    IncrementalMatcher,
    MatchModel,
    MatchRecord,
    MatchScore,
    TermFrequencies,
    blocking_keys,
    estimate,
    record_from_traits,
)
from segue.processor.fold import Folder, WorkingSet

__all__ = ["Linker"]

_log = structlog.get_logger("segue.linkage")
_MODEL_BLOB = "match_model"


class _Saved(msgspec.Struct):
    model: MatchModel
    tf: TermFrequencies
    profiles: int


def _records(profile: Profile) -> list[MatchRecord]:
    found = [record_from_traits(snapshot) for snapshot in profile.records]
    return [r for r in found if r is not None]


def _keys(records: Iterable[MatchRecord]) -> list[str]:
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(blocking_keys(record)))
    return list(keys)


class Linker:
    """Matches new records against held profiles and merges or records possible matches.

    Args:
        store: where the block index, possible matches and the model live.
        folder: the fold, whose merge and identity rules are reused.
        model: starting parameters (replaced by the stored or re-estimated model).
        cap: a blocking key shared by more profiles than this yields no candidates.
        match_threshold / possible_threshold: override the model's thresholds.
    """

    def __init__(
        self,
        store: ProfileStore,
        folder: Folder,
        model: MatchModel | None = None,
        *,
        cap: int = 200,
        match_threshold: float | None = None,
        possible_threshold: float | None = None,
    ) -> None:
        self._store = store
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

    def _with_overrides(self, model: MatchModel) -> MatchModel:
        return msgspec.structs.replace(model, **self._overrides) if self._overrides else model

    async def load(self) -> None:
        """Take the last estimated model and term frequencies from the store, if any."""
        blob = await self._store.load_blob(_MODEL_BLOB)
        if blob is None:
            return
        saved = msgspec.msgpack.decode(blob, type=_Saved)
        self.model = self._with_overrides(saved.model)
        self.tf = saved.tf
        self.estimated_at_profiles = saved.profiles

    async def link(self, ws: WorkingSet, at: float) -> None:
        """Match this batch's new trait snapshots; merge or record possible matches."""
        queries: list[tuple[str, MatchRecord]] = []
        for profile_id, _offset, snapshot in ws.new_records:
            record = record_from_traits(snapshot)
            if record is not None:
                queries.append((profile_id, record))
        if not queries:
            return
        wanted = _keys(r for _, r in queries)
        held = await self._store.block_candidates(wanted, self.cap)
        missing = {pid for ids in held.values() for pid in ids} - set(ws.profiles)
        missing -= set(ws.changes.redirects)
        if missing:
            loaded = await self._store.profiles(missing)
            for pid, profile in loaded.items():
                ws.profiles[pid] = profile
                for identifier in profile.identities:
                    ws.links.setdefault(identifier, pid)
        loop = asyncio.get_running_loop()
        # scoring is CPU work: off the event loop so request latency is not affected
        possible = await loop.run_in_executor(None, self._match, ws, queries, held, at)
        for match in possible:
            if not await self._recorded(match.profile_a, match.profile_b):
                ws.changes.possible.append(match)

    def _match(
        self,
        ws: WorkingSet,
        queries: list[tuple[str, MatchRecord]],
        held: dict[str, list[str]],
        at: float,
    ) -> list[PossibleMatch]:
        in_batch: dict[str, set[str]] = {}
        possible: dict[tuple[str, str], PossibleMatch] = {}
        for profile_id, record in queries:
            pid = _resolve(ws, profile_id)
            if pid not in ws.profiles:
                continue
            keys = blocking_keys(record)
            candidates: dict[str, None] = {}
            for key in keys:
                for other in (*held.get(key, ()), *sorted(in_batch.get(key, ()))):
                    other = _resolve(ws, other)
                    if other != pid and other in ws.profiles:
                        candidates[other] = None
            for other_id, score in self._rank(record, [ws.profiles[c] for c in candidates]):
                other_id, pid = _resolve(ws, other_id), _resolve(ws, pid)
                if other_id == pid:
                    continue
                mine, theirs = ws.profiles[pid], ws.profiles[other_id]
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
                    pair = (min(pid, other_id), max(pid, other_id))
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
            pid = _resolve(ws, pid)
            for key in keys:
                in_batch.setdefault(key, set()).add(pid)
            self.tf.add(record)
        for pid in {_resolve(ws, p) for p, _, _ in ws.new_records}:
            touched = ws.profiles.get(pid)
            if touched is not None:
                ws.changes.block_keys[pid] = _keys(_records(touched))
                ws.touch(touched)
        # a pair merged later in the batch is no longer a possible match
        out: list[PossibleMatch] = []
        for m in possible.values():
            a, b = _resolve(ws, m.profile_a), _resolve(ws, m.profile_b)
            if a != b:
                out.append(msgspec.structs.replace(m, profile_a=min(a, b), profile_b=max(a, b)))
        return out

    def index_keys(self, profile: Profile) -> list[str]:
        """The blocking keys a profile is indexed under (from all its snapshots)."""
        return _keys(_records(profile))

    def _rank(self, record: MatchRecord, profiles: list[Profile]) -> list[tuple[str, MatchScore]]:
        """Best score per profile over its snapshots, above the possible threshold, best first."""
        tf = self.tf.frequency
        floor = self.model.possible_weight
        out: list[tuple[str, MatchScore]] = []
        for profile in profiles:
            best: MatchRecord | None = None
            best_weight = floor
            for other in _records(profile):
                weight = self.model.weigh(record, other, tf)
                if weight >= best_weight:
                    best, best_weight = other, weight
            if best is not None:
                out.append((profile.profile_id, self.model.score(record, best, tf)))
        out.sort(key=lambda item: (-item[1].weight, item[0]))
        return out

    async def _recorded(self, a: str, b: str) -> bool:
        for match in await self._store.possible_matches(a, None, 0, 1000):
            if {match.profile_a, match.profile_b} == {a, b}:
                return True
        return False

    async def reestimate(self, seed: int = 0) -> None:
        """Re-estimate m/u and the term frequencies from every profile held (background).

        Runs off the processor's lock: it only reads profiles and then swaps the model in.
        """
        matcher = IncrementalMatcher(self.model)
        after, count = "", 0
        while True:
            page = await self._store.scan_profiles(after, 2000)
            if not page:
                break
            for profile in page:
                for i, record in enumerate(_records(profile)):
                    matcher.insert(f"{profile.profile_id}#{i}", record)
            count += len(page)
            after = page[-1].profile_id
        if len(matcher.records) < 100:
            return
        model = estimate(
            matcher.pairs(),
            self.model,
            rng=random.Random(seed),
            records=list(matcher.records.values()),
        )
        self.model = self._with_overrides(model)
        self.tf = matcher.tf
        self.estimated_at_profiles = count
        saved = _Saved(model=self.model, tf=self.tf, profiles=count)
        await self._store.save_blob(_MODEL_BLOB, msgspec.msgpack.encode(saved))
        _log.info("match_model_estimated", profiles=count, records=len(matcher.records))


def _resolve(ws: WorkingSet, profile_id: str) -> str:
    redirects = ws.changes.redirects
    seen = 0
    while profile_id in redirects and seen < 64:
        profile_id = redirects[profile_id]
        seen += 1
    return profile_id
