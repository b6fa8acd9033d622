"""Probabilistic matching: link records that share no identifier, on their traits.

A Fellegi–Sunter record-linkage engine, pure and synchronous (no I/O, no clock, no global RNG):

- :func:`record_from_traits` turns Segment reserved traits into a normalised :class:`MatchRecord`;
- :func:`blocking_keys` gives the keys under which a record is indexed; two records are compared
  only when they share a key (several rules OR-ed, so a duplicate with errors in one or two
  fields still meets its original under another rule, while blocks stay small);
- :func:`compare` turns a pair into a comparison vector, one level per field (``-1`` = a side
  is missing, which weighs nothing);
- :class:`MatchModel` holds ``m = P(level | match)`` and ``u = P(level | non-match)`` per field
  level, the prior and the thresholds; :meth:`MatchModel.score` adds up ``log2(m/u)`` per
  field, with a term-frequency adjustment on exact names, city and postcode, counts nested
  address fields once, and explains itself field by field;
- :func:`estimate` re-estimates ``u`` on random pairs and ``m``, the prior and the address
  independence by expectation–maximisation on candidate pairs (the RNG is passed in);
- :class:`IncrementalMatcher` is the in-memory reference of matching each record as it
  arrives (and of re-estimating in the background); the processor does the same against a
  store-backed block index with :func:`blocking_keys`, :func:`rank` and
  :class:`TermFrequencies`.

Weights are in bits: ``weight = log2(prior odds) + Σ log2(m/u)``, and
``probability = 2**weight / (1 + 2**weight)``. A pair at or above ``match_threshold`` is
merged; between ``possible_threshold`` and it, it is kept as a possible match.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from segue.identity._model import (
    FieldParams,
    MatchModel,
    MatchScore,
    TermFrequencies,
    estimate,
)
from segue.identity._records import (
    ADDRESS_FIELDS,
    FIELDS,
    LEVELS,
    NULL,
    TF_FIELDS,
    MatchRecord,
    blocking_keys,
    compare,
    legacy_keys,
    presence,
    probe_keys,
    record_from_traits,
)

__all__ = [
    "ADDRESS_FIELDS",
    "FIELDS",
    "LEVELS",
    "NULL",
    "TF_FIELDS",
    "FieldParams",
    "IncrementalMatcher",
    "MatchModel",
    "MatchRecord",
    "MatchScore",
    "TermFrequencies",
    "blocking_keys",
    "compare",
    "estimate",
    "legacy_keys",
    "presence",
    "probe_keys",
    "rank",
    "record_from_traits",
]


# --------------------------------------------------------------------------------------------
# Matching as records arrive
# --------------------------------------------------------------------------------------------


def rank(
    record: MatchRecord,
    candidates: Iterable[tuple[str, MatchRecord]],
    model: MatchModel,
    tf: Callable[[str, str], float | None] | None = None,
    *,
    floor: float | None = None,
) -> list[tuple[str, MatchScore]]:
    """Score a record against its candidates and keep those above the possible-match threshold.

    Args:
        record: the arriving record.
        candidates: ``(id, record)`` of the records sharing a block key with it.
        model: the parameters.
        tf: the term-frequency lookup, as for :meth:`MatchModel.score`.
        floor: keep the candidates from this weight in bits instead (default: the
            possible-match threshold).

    Returns:
        ``(id, score)`` with ``score.weight >= floor``, best first (ties by id, so the order
        is deterministic).
    """
    if floor is None:
        floor = model.possible_weight
    kept = [
        (cid, model.score(record, other, tf))
        for cid, other in candidates
        if (weight := model.weigh_above(record, other, floor, tf)) is not None and weight >= floor
    ]
    kept.sort(key=lambda item: (-item[1].weight, item[0]))
    return kept


class IncrementalMatcher:
    """Match each record as it arrives against the records held so far (in memory).

    Holds the records, a block index (key → record ids), the term frequencies and a union-find
    of clusters. :meth:`add` scores a record against its candidates and then indexes it; the
    caller decides what to merge (:meth:`link`), as the processor will.
    """

    def __init__(
        self,
        model: MatchModel | None = None,
        *,
        max_block_size: int = 100,
        rescore_margin: float = 10.0,
    ) -> None:
        """Start empty.

        Args:
            model: the parameters (default: :meth:`MatchModel.default`).
            max_block_size: a block key already holding this many records no longer yields
                candidates (a very common name or a shared postcode would otherwise make
                every arrival compare against thousands).
            rescore_margin: :meth:`resolve` also keeps the pairs up to this many bits below
                the possible-match threshold, for :meth:`rescore` after a re-estimation
                (few pairs: most candidates score tens of bits lower).
        """
        self.model = model or MatchModel.default()
        self.max_block_size = max_block_size
        self.rescore_margin = rescore_margin
        self.records: dict[str, MatchRecord] = {}
        self.blocks: dict[str, list[str]] = {}
        self.tf = TermFrequencies()
        #: (new record, held record) → weight, for the pairs not merged that may be later.
        self.pending: dict[tuple[str, str], float] = {}
        self._parent: dict[str, str] = {}

    @property
    def possible(self) -> dict[tuple[str, str], float]:
        """The pending pairs at or above the possible-match threshold (for review)."""
        floor = self.model.possible_weight
        return {pair: weight for pair, weight in self.pending.items() if weight >= floor}

    def candidates(self, record: MatchRecord) -> list[str]:
        """The ids of the records sharing a usable block key with ``record``, in index order."""
        seen: dict[str, None] = {}
        for key in blocking_keys(record):
            block = self.blocks.get(key)
            if block and len(block) < self.max_block_size:
                seen.update(dict.fromkeys(block))
        return list(seen)

    def add(self, record_id: str, record: MatchRecord) -> list[tuple[str, MatchScore]]:
        """Score ``record`` against the records held, then hold it too.

        Args:
            record_id: a new, unique id.
            record: the record.

        Returns:
            The candidates at or above the possible-match threshold, best first.
        """
        found = self._rank(record, self.model.possible_weight)
        self.insert(record_id, record)
        return found

    def _rank(self, record: MatchRecord, floor: float) -> list[tuple[str, MatchScore]]:
        candidates = ((cid, self.records[cid]) for cid in self.candidates(record))
        return rank(record, candidates, self.model, self.tf.frequency, floor=floor)

    def insert(self, record_id: str, record: MatchRecord) -> None:
        """Hold a record without scoring it (bulk loads); it starts as its own cluster."""
        self.tf.add(record)
        self.records[record_id] = record
        self._parent[record_id] = record_id
        for key in blocking_keys(record):
            self.blocks.setdefault(key, []).append(record_id)

    def resolve(self, record_id: str, record: MatchRecord) -> list[tuple[str, MatchScore]]:
        """Add a record and merge it as the processor does.

        Scores it (as :meth:`add`), :meth:`link` s it to every candidate at or above the match
        threshold and keeps the others within reach as pending (possible matches, and near
        misses for :meth:`rescore`).

        Returns:
            The candidates at or above the possible-match threshold, best first.
        """
        model = self.model
        found = self._rank(record, model.possible_weight - self.rescore_margin)
        self.insert(record_id, record)
        for other, score in found:
            if score.weight >= model.match_weight:
                self.link(record_id, other)
            else:
                self.pending[(record_id, other)] = score.weight
        return [item for item in found if item[1].weight >= model.possible_weight]

    def reestimate(
        self, rng: random.Random, *, sample: int = 20_000, **options: Any
    ) -> list[tuple[str, str]]:
        """Re-estimate the model from the records held, then re-score the possible matches.

        A pending pair (see :meth:`resolve`) is merged when the new model puts it at or above
        the match threshold.

        Args:
            rng: the source of randomness (record and pair sampling).
            sample: estimate from the candidate pairs of at most this many records.
            **options: passed to :func:`estimate` (``iterations``, ``u_samples``).

        Returns:
            The pairs merged by the re-scoring.
        """
        pairs, share = self.sample_pairs(sample, rng)
        self.model = estimate(
            pairs,
            self.model,
            rng=rng,
            records=list(self.records.values()),
            pair_share=share,
            **options,
        )
        return self.rescore()

    def rescore(self) -> list[tuple[str, str]]:
        """Score the pending pairs again under the current model (after it changed).

        Returns:
            The pairs now at or above the match threshold, which are merged; pairs that fell
            out of reach are forgotten.
        """
        merged = []
        floor = self.model.possible_weight - self.rescore_margin
        for pair in sorted(self.pending):
            a, b = self.records[pair[0]], self.records[pair[1]]
            weight = self.model.weigh(a, b, self.tf.frequency)
            if weight >= self.model.match_weight:
                self.link(*pair)
                merged.append(pair)
                del self.pending[pair]
            elif weight < floor:
                del self.pending[pair]
            else:
                self.pending[pair] = weight
        return merged

    def pairs(self) -> list[tuple[MatchRecord, MatchRecord]]:
        """Every candidate pair of the records held (for :func:`estimate`)."""
        seen: set[tuple[str, str]] = set()
        out = []
        for block in self.blocks.values():
            if len(block) >= self.max_block_size:
                continue
            for i, a in enumerate(block):
                for b in block[i + 1 :]:
                    key = (a, b) if a < b else (b, a)
                    if key not in seen:
                        seen.add(key)
                        out.append((self.records[a], self.records[b]))
        return out

    def sample_pairs(
        self, size: int, rng: random.Random
    ) -> tuple[list[tuple[MatchRecord, MatchRecord]], float]:
        """The candidate pairs of ``size`` records drawn at random, and the share of all
        candidate pairs that this is expected to hold (``pair_share`` for :func:`estimate`)."""
        n = len(self.records)
        if size >= n:
            return self.pairs(), 1.0
        seen: set[tuple[str, str]] = set()
        out = []
        for a in rng.sample(sorted(self.records), size):
            for b in self.candidates(self.records[a]):
                key = (a, b) if a < b else (b, a)
                if a != b and key not in seen:
                    seen.add(key)
                    out.append((self.records[a], self.records[b]))
        # A pair is drawn when either of its records is.
        return out, 1.0 - (n - size) * (n - size - 1) / (n * (n - 1))

    def cluster(self, record_id: str) -> str:
        """The id that stands for the cluster of ``record_id``."""
        parent = self._parent
        root = record_id
        while parent[root] != root:
            root = parent[root]
        while parent[record_id] != root:
            parent[record_id], record_id = root, parent[record_id]
        return root

    def link(self, a: str, b: str) -> None:
        """Merge the clusters of two records."""
        ra, rb = self.cluster(a), self.cluster(b)
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)

    def clusters(self) -> list[list[str]]:
        """Every cluster as a sorted list of record ids, the clusters sorted too."""
        groups: dict[str, list[str]] = {}
        for record_id in self.records:
            groups.setdefault(self.cluster(record_id), []).append(record_id)
        return sorted(sorted(group) for group in groups.values())
