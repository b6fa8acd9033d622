"""Fellegi–Sunter model: weights and explanations, term frequencies, estimation by EM.

Private: import from :mod:`segue.identity.matching`.
"""

from __future__ import annotations

import math
import operator
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import cached_property
from typing import Final

import msgspec
import numpy as np
import numpy.typing as npt

from segue.identity._pairs import weigh_pairs
from segue.identity._records import (
    _ADDRESS,
    _EXACT,
    ADDRESS_FIELDS,
    FIELD_COMPARISONS,
    FIELDS,
    LEVELS,
    NULL,
    TF_FIELDS,
    MatchRecord,
    compare,
    presence,
)

# Probabilities are kept away from 0 and 1 so that every weight stays finite.
_EPS: Final = 1e-6
# A value's relative frequency is floored here: a one-off value can't win more than this allows.
_TF_FLOOR: Final = 1e-4
# EM: the starting parameters count as this many pairs, and a field needs this many expected
# matches holding it before its m is re-estimated.
_PSEUDO: Final = 5.0
# The prior never falls below this (one match in a billion pairs: about 45,000 people).
_MIN_PRIOR: Final = 1e-9
_MIN_EVIDENCE: Final = 20.0
_FIRST: Final = FIELDS.index("first_name")
_LAST: Final = FIELDS.index("last_name")
_SWAPPED: Final = LEVELS["first_name"].index("swapped")
# weigh_above's order: the fields outside the address first, the strongest cheap evidence
# leading (most candidates a blocking key brings are someone else, and a date of birth or a
# surname says so at once); then the address, its costly street comparison last.
_EARLY: Final = tuple(
    FIELDS.index(f) for f in ("birth", "last_name", "first_name", "email", "phone", "country")
)
_LATE: Final = tuple(FIELDS.index(f) for f in ("postal_code", "city", "state"))
_STREET: Final = FIELDS.index("street")
_ADDRESS_MASK: Final = sum(1 << i for i in _ADDRESS)
# weigh_above prunes only below the floor by more than this, so a pair that weigh() puts
# exactly on the floor is never lost to rounding (its bounds add up in another order).
_SLACK: Final = 1e-9
_NO_TF: Final = (False,) * len(FIELDS)

# --------------------------------------------------------------------------------------------
# Model and scores
# --------------------------------------------------------------------------------------------


class FieldParams(msgspec.Struct, frozen=True, kw_only=True):
    """``m`` and ``u`` of one field, one probability per level of :data:`LEVELS`."""

    m: tuple[float, ...]
    u: tuple[float, ...]


class MatchScore(msgspec.Struct, frozen=True, kw_only=True):
    """How strongly two records look like the same person, and why.

    Attributes:
        weight: the match weight in bits, prior included: ``log2`` of the posterior odds.
        probability: the match probability, ``2**weight / (1 + 2**weight)``.
        fields: ``(field, level label, weight in bits)`` for every field both records have,
            the prior first as ``("prior", "", weight)``.
    """

    weight: float
    probability: float
    fields: tuple[tuple[str, str, float], ...]


def _unknown_frequency(_field: str, _value: str) -> float | None:
    return None


def _clamp(p: float) -> float:
    return min(max(p, _EPS), 1.0 - _EPS)


def _odds_weight(probability: float) -> float:
    p = min(max(probability, _MIN_PRIOR), 1.0 - _EPS)
    return math.log2(p / (1.0 - p))


def _probability(weight: float) -> float:
    if weight > 60:
        return 1.0
    odds = math.exp2(weight)
    return odds / (1.0 + odds)


def _dependent(
    vector: Sequence[int], weights: list[float | None], independence: Sequence[float]
) -> None:
    """Count dependent agreements once (in place).

    Fields are compared one by one, but some agreements are one fact seen twice. Swapped names
    show as "swapped" in both name fields: the swap counts once. And the address fields are
    nested rather than independent: two records on the same street are in the same postcode,
    city and state too, and a postcode lies in one city. Adding up their agreements would count
    one address three or four times (and merge the members of a household, or neighbours with
    a common name). So the strongest address agreement counts in full and the others only by
    their independence (0 for real addresses, near 1 where they are drawn independently, as in
    synthetic data); every disagreement still counts against.
    """
    if vector[_FIRST] == _SWAPPED and vector[_LAST] == _SWAPPED:
        weights[_LAST] = 0.0
    best, best_weight = -1, 0.0
    for i in _ADDRESS:
        weight = weights[i]
        if weight is not None and weight > best_weight:
            best, best_weight = i, weight
    for i in _ADDRESS:
        weight = weights[i]
        if i != best and weight is not None and weight > 0:
            weights[i] = weight * independence[i]


class MatchModel(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """Fellegi–Sunter parameters and the decision thresholds; serialisable with msgspec.

    Attributes:
        fields: ``m``/``u`` per field of :data:`FIELDS`.
        prior: probability that two records drawn at random are the same person (λ).
        match_threshold: probability from which a pair is merged.
        possible_threshold: probability from which a pair is kept as a possible match.
        tf_fields: fields whose exact matches get the term-frequency adjustment.
        address_independence: per address field, the share of its agreement weight that still
            counts when a stronger address field agrees too (0: nested, as real addresses are;
            1: independent). :func:`estimate` measures it.
    """

    fields: dict[str, FieldParams]
    prior: float = 1e-4
    match_threshold: float = 0.99
    possible_threshold: float = 0.5
    tf_fields: tuple[str, ...] = TF_FIELDS
    address_independence: dict[str, float] = msgspec.field(
        default_factory=lambda: dict.fromkeys(ADDRESS_FIELDS, 0.0)
    )

    @classmethod
    def default(cls) -> MatchModel:
        """Hand-set parameters that work before any data has been seen.

        ``m`` assumes a few percent of typos per field; ``u`` reflects how often two different
        people agree by chance (about 1 in 100 share a first name, 1 in 300 a last name, 1 in
        30,000 a date of birth, 1 in 20 a city: customers crowd into a few cities, and at
        1 in 500, as it was until 2026-12-07, first name, last name and city alone merged
        two people before the term frequencies and the first re-estimation could tell).
        """
        name_m = (0.83, 0.01, 0.08, 0.03, 0.05)
        return cls(
            fields={
                "first_name": FieldParams(m=name_m, u=(0.01, 0.0002, 0.003, 0.03, 0.9568)),
                "last_name": FieldParams(m=name_m, u=(0.003, 0.0002, 0.002, 0.02, 0.9748)),
                "birth": FieldParams(
                    m=(0.86, 0.02, 0.1, 0.02), u=(0.000035, 0.00001, 0.0025, 0.997455)
                ),
                "street": FieldParams(
                    m=(0.7, 0.15, 0.1, 0.05), u=(0.00005, 0.0001, 0.005, 0.99485)
                ),
                "city": FieldParams(m=(0.88, 0.07, 0.05), u=(0.05, 0.005, 0.945)),
                "postal_code": FieldParams(m=(0.88, 0.08, 0.04), u=(0.001, 0.01, 0.989)),
                "state": FieldParams(m=(0.92, 0.08), u=(0.2, 0.8)),
                "country": FieldParams(m=(0.97, 0.03), u=(0.5, 0.5)),
                "email": FieldParams(m=(0.85, 0.05, 0.1), u=(0.00001, 0.0001, 0.99989)),
                "phone": FieldParams(m=(0.85, 0.05, 0.1), u=(0.00001, 0.0001, 0.99989)),
            }
        )

    @cached_property
    def _weights(self) -> tuple[tuple[float, ...], ...]:
        return tuple(
            tuple(
                math.log2(_clamp(m) / _clamp(u))
                for m, u in zip(self.fields[f].m, self.fields[f].u, strict=True)
            )
            for f in FIELDS
        )

    @cached_property
    def _independence(self) -> tuple[float, ...]:
        return tuple(self.address_independence.get(f, 0.0) for f in FIELDS)

    @cached_property
    def _tf_index(self) -> tuple[bool, ...]:
        return tuple(f in self.tf_fields for f in FIELDS)

    @cached_property
    def prior_weight(self) -> float:
        """``log2`` of the prior odds, in bits."""
        return _odds_weight(self.prior)

    @cached_property
    def match_weight(self) -> float:
        """The match threshold as a weight in bits."""
        return _odds_weight(self.match_threshold)

    @cached_property
    def possible_weight(self) -> float:
        """The possible-match threshold as a weight in bits."""
        return _odds_weight(self.possible_threshold)

    def weigh(
        self,
        a: MatchRecord,
        b: MatchRecord,
        tf: Callable[[str, str], float | None] | None = None,
    ) -> float:
        """The total weight in bits of a pair, as :meth:`score` without the explanation (faster)."""
        total = self.prior_weight
        for weight in self._field_weights(compare(a, b), a, tf):
            if weight is not None:
                total += weight
        return total

    def weigh_above(
        self,
        a: MatchRecord,
        b: MatchRecord,
        floor: float,
        tf: Callable[[str, str], float | None] | None = None,
        present: int | None = None,
    ) -> float | None:
        """:meth:`weigh`, stopping as soon as the pair can no longer reach ``floor``.

        Fields are compared one at a time, and after each the weight so far plus the most
        the fields still to compare could add (their :attr:`_caps`, address fields counted as
        :func:`_dependent` counts them) is an upper bound of the total; once it falls below
        ``floor`` the pair is dropped. Most candidates that blocking brings are plainly
        someone else, and two or three comparisons tell it.

        Args:
            a: one record (the ``tf`` adjustment reads its values, as in :meth:`weigh`).
            b: the other.
            floor: the weight in bits a caller needs; anything below is of no interest.
            tf: as in :meth:`score`.
            present: ``presence(a) & presence(b)``, when the caller keeps masks.

        Returns:
            exactly ``weigh(a, b, tf)`` whenever that is at or above ``floor`` (and possibly
            when below), or None, which only ever means it is below.
        """
        if present is None:
            present = presence(a) & presence(b)
        early_bound = self._early_bound[present]
        address_bound = self._address_bound[present & _ADDRESS_MASK]
        target = floor - _SLACK - address_bound
        if early_bound < target:
            return None
        caps = self._caps
        weights = self._weights
        # fields whose exact level is weighed by term frequency (none without ``tf``)
        by_tf = self._tf_index if tf is not None else _NO_TF
        frequency = tf if tf is not None else _unknown_frequency
        compare_field = FIELD_COMPARISONS
        levels = [NULL] * len(FIELDS)
        counted: list[float | None] = [None] * len(FIELDS)
        for i in _EARLY:
            if not present >> i & 1:
                continue
            level = compare_field[i](a, b)
            if level == NULL:
                early_bound -= caps[i]
                continue
            levels[i] = level
            if level == _EXACT and by_tf[i]:
                weight = self._tf_weight(i, getattr(a, FIELDS[i]), frequency)
            else:
                weight = weights[i][level]
            counted[i] = weight
            if level == _SWAPPED and i == _LAST and weight < 0.0:
                weight = 0.0  # both names swapped: the surname's swap weighs nothing
            early_bound += weight - caps[i]
            if early_bound < target:
                return None
        if present & _ADDRESS_MASK:
            independence = self._independence
            negative = strongest = spread = 0.0
            for i in _LATE:
                if not present >> i & 1:
                    continue
                level = compare_field[i](a, b)
                if level == NULL:
                    continue
                levels[i] = level
                if level == _EXACT and by_tf[i]:
                    weight = self._tf_weight(i, getattr(a, FIELDS[i]), frequency)
                else:
                    weight = weights[i][level]
                counted[i] = weight
                if weight > 0.0:
                    strongest = max(strongest, weight)
                    spread += max(independence[i], 0.0) * weight
                else:
                    negative += weight
            if present >> _STREET & 1:
                cap = caps[_STREET]
                strongest = max(strongest, cap)
                spread += max(independence[_STREET], 0.0) * cap
            if early_bound + negative + strongest + spread < floor - _SLACK:
                return None
            if present >> _STREET & 1:
                level = compare_field[_STREET](a, b)
                if level != NULL:
                    levels[_STREET] = level
                    counted[_STREET] = self._level_weight(_STREET, level, a, tf)
        # as weigh() adds them up, in the same order, so the sum is the same to the last bit
        _dependent(levels, counted, self._independence)
        total = self.prior_weight
        for value in counted:
            if value is not None:
                total += value
        return total

    def exact_weights(
        self, a: MatchRecord, tf: Callable[[str, str], float | None] | None = None
    ) -> tuple[float, ...]:
        """Per field, what an exact agreement with ``a`` weighs: ``log2(m / u)``, or on a
        term-frequency field ``log2(m / frequency)`` of ``a``'s value, as :meth:`weigh`
        counts it. :meth:`weigh_many` takes these, so that it weighs as ``tf`` stood."""
        if tf is None:
            return self._exact_weights
        out = list(self._exact_weights)
        for i in self._tf_positions:
            value = getattr(a, FIELDS[i])
            if value is not None:
                out[i] = self._tf_weight(i, value, tf)
        return tuple(out)

    @cached_property
    def _exact_weights(self) -> tuple[float, ...]:
        return tuple(w[_EXACT] for w in self._weights)

    @cached_property
    def _tf_positions(self) -> tuple[int, ...]:
        return tuple(i for i, on in enumerate(self._tf_index) if on)

    def weigh_many(
        self,
        a: Sequence[MatchRecord],
        a_index: npt.NDArray[np.intp],
        b: Sequence[MatchRecord],
        b_index: npt.NDArray[np.intp],
        exact: npt.NDArray[np.float64],
        floor: float,
    ) -> npt.NDArray[np.float64]:
        """:meth:`weigh_above` for many pairs ``(a[a_index[k]], b[b_index[k]])`` at once.

        Args:
            a: records of one side.
            a_index: per pair, its record in ``a``.
            b: records of the other side.
            b_index: per pair, its record in ``b``.
            exact: one row of :meth:`exact_weights` per record of ``a``.
            floor: the weight in bits a caller needs.

        Returns:
            per pair, exactly ``weigh(a, b, tf)`` wherever that is at or above ``floor``
            (and possibly where below), or ``-inf``, which only means below.
        """
        return weigh_pairs(self, a, a_index, b, b_index, exact, floor)

    @cached_property
    def _caps(self) -> tuple[float, ...]:
        """The most each field can add to a pair's weight, in bits (never below 0)."""
        caps: list[float] = []
        for i, field in enumerate(FIELDS):
            cap = max(0.0, *self._weights[i])
            if self._tf_index[i]:
                m = _clamp(self.fields[field].m[_EXACT])
                cap = max(cap, math.log2(m / _TF_FLOOR))
            caps.append(cap)
        return tuple(caps)

    @cached_property
    def _early_bound(self) -> tuple[float, ...]:
        """Per presence mask: the prior plus the caps of the fields outside the address."""
        caps = self._caps
        return tuple(
            self.prior_weight + sum(caps[i] for i in _EARLY if mask >> i & 1)
            for mask in range(1 << len(FIELDS))
        )

    @cached_property
    def _address_bound(self) -> tuple[float, ...]:
        """Per presence mask: the most the address fields can add, :func:`_dependent`
        counting the strongest in full and the others by their independence."""
        caps = self._caps
        out: list[float] = []
        for mask in range(1 << len(FIELDS)):
            held = [caps[i] for i in _ADDRESS if mask >> i & 1]
            shares = [max(self._independence[i], 0.0) for i in _ADDRESS if mask >> i & 1]
            out.append(max(held, default=0.0) + sum(map(operator.mul, shares, held)))
        return tuple(out)

    def _field_weights(
        self,
        vector: tuple[int, ...],
        a: MatchRecord,
        tf: Callable[[str, str], float | None] | None,
    ) -> list[float | None]:
        out: list[float | None] = [
            None if level == NULL else self._level_weight(i, level, a, tf)
            for i, level in enumerate(vector)
        ]
        _dependent(vector, out, self._independence)
        return out

    def _level_weight(
        self,
        i: int,
        level: int,
        a: MatchRecord,
        tf: Callable[[str, str], float | None] | None,
    ) -> float:
        """The weight of field ``i`` at ``level`` (not NULL), term-frequency adjusted on an
        exact match of a TF field, before :func:`_dependent`."""
        if level == _EXACT and tf is not None and self._tf_index[i]:
            return self._tf_weight(i, getattr(a, FIELDS[i]), tf)
        return self._weights[i][level]

    def _tf_weight(self, i: int, value: str, tf: Callable[[str, str], float | None]) -> float:
        field = FIELDS[i]
        frequency = tf(field, value)
        if frequency is None:
            return self._weights[i][_EXACT]
        m = _clamp(self.fields[field].m[_EXACT])
        return math.log2(m / max(frequency, _TF_FLOOR))

    def score(
        self,
        a: MatchRecord,
        b: MatchRecord,
        tf: Callable[[str, str], float | None] | None = None,
    ) -> MatchScore:
        """Score a pair of records.

        Args:
            a: one record.
            b: the other.
            tf: ``tf(field, value)`` → the relative frequency of ``value`` among the records
                held (``None`` when unknown). An exact match on a field of ``tf_fields`` then
                weighs ``log2(m / frequency)`` instead of ``log2(m / u)``: sharing a common
                surname says less than sharing a rare one. Without ``tf`` there is no
                adjustment.

        Returns:
            The total weight (prior included), the probability, and the weight of each field.
        """
        explained: list[tuple[str, str, float]] = [("prior", "", self.prior_weight)]
        total = self.prior_weight
        vector = compare(a, b)
        for i, weight in enumerate(self._field_weights(vector, a, tf)):
            if weight is None:
                continue
            field = FIELDS[i]
            total += weight
            explained.append((field, LEVELS[field][vector[i]], round(weight, 3)))
        return MatchScore(weight=total, probability=_probability(total), fields=tuple(explained))


# --------------------------------------------------------------------------------------------
# Term frequencies
# --------------------------------------------------------------------------------------------


class TermFrequencies(msgspec.Struct, kw_only=True):
    """Counts of values per field over the records held, for the term-frequency adjustment.

    Serialisable with msgspec. Call :meth:`frequency` (or pass the bound method as ``tf``).

    Attributes:
        counts: field → value → number of records holding it.
        totals: field → number of records holding a value.
        min_total: below this many values for a field, :meth:`frequency` answers None
            (too few to tell a common value from a rare one).
    """

    counts: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    totals: dict[str, int] = msgspec.field(default_factory=dict)
    min_total: int = 200

    def add(self, record: MatchRecord, fields: Iterable[str] = TF_FIELDS) -> None:
        """Count the values of a record."""
        self._change(record, fields, 1)

    def remove(self, record: MatchRecord, fields: Iterable[str] = TF_FIELDS) -> None:
        """Forget the values of a record counted before (after an erasure or an update)."""
        self._change(record, fields, -1)

    def _change(self, record: MatchRecord, fields: Iterable[str], delta: int) -> None:
        for field in fields:
            value = getattr(record, field)
            if not isinstance(value, str):
                continue
            values = self.counts.setdefault(field, {})
            count = values.get(value, 0) + delta
            if count > 0:
                values[value] = count
            else:
                values.pop(value, None)
            self.totals[field] = max(self.totals.get(field, 0) + delta, 0)

    def frequency(self, field: str, value: str) -> float | None:
        """The share of the records counted that hold ``value`` in ``field`` (at least one).

        Returns:
            ``max(count, 1) / total``, or None below ``min_total`` values.
        """
        total = self.totals.get(field, 0)
        if total < self.min_total:
            return None
        return max(self.counts.get(field, {}).get(value, 0), 1) / total


# --------------------------------------------------------------------------------------------
# Estimation
# --------------------------------------------------------------------------------------------


def _level_counts(vectors: Iterable[tuple[int, ...]]) -> list[Counter[int]]:
    counts: list[Counter[int]] = [Counter() for _ in FIELDS]
    for vector in vectors:
        for i, level in enumerate(vector):
            if level != NULL:
                counts[i][level] += 1
    return counts


def _random_u(
    records: Sequence[MatchRecord], samples: int, rng: random.Random
) -> list[list[float] | None]:
    """Level frequencies per field over random pairs; None for a field seen too rarely."""
    n = len(records)
    vectors = []
    for _ in range(samples):
        i, j = rng.randrange(n), rng.randrange(n - 1)
        vectors.append(compare(records[i], records[j + (j >= i)]))
    counts = _level_counts(vectors)
    out: list[list[float] | None] = []
    for i, field in enumerate(FIELDS):
        size = len(LEVELS[field])
        total = sum(counts[i].values())
        if total < _MIN_EVIDENCE * 10:
            out.append(None)
        else:
            out.append([(counts[i][lv] + 0.5) / (total + 0.5 * size) for lv in range(size)])
    return out


def _normalised(values: Sequence[float]) -> tuple[float, ...]:
    total = sum(values)
    return tuple(_clamp(v / total) for v in values)


def estimate(
    pairs: Sequence[tuple[MatchRecord, MatchRecord]],
    model: MatchModel,
    *,
    iterations: int = 20,
    rng: random.Random,
    u_samples: int = 50_000,
    records: Sequence[MatchRecord] | None = None,
    pair_share: float = 1.0,
    population_size: int | None = None,
) -> MatchModel:
    """Re-estimate ``m``, ``u``, the prior and the address independence from the data.

    ``u`` comes from random pairs of records (nearly all non-matches; the few matches among
    them are taken out using the prior). ``m`` and the prior are then estimated by
    expectation–maximisation over the comparison vectors of the candidate pairs, scored as the
    matcher scores them (global prior, random-pair ``u``, nested address fields), with one
    safeguard: the ``m`` of a field is learnt from each pair's match probability computed
    *without* that field. Plain EM over blocked pairs lets the "match" class drift to whatever
    dense cluster the blocking produces (say everyone in the same city) when true duplicates
    are rare; leaving the field out keeps a field from confirming itself. The starting ``m``
    acts as a weak Dirichlet prior, so a level seldom seen keeps about its old value, and a
    field with too little evidence (say no record has a phone yet) keeps its parameters.

    Args:
        pairs: candidate pairs, as produced by blocking (all of them, or those of a random
            sample of records: see ``pair_share``).
        model: the starting point; its thresholds and TF fields are kept.
        iterations: at most this many EM rounds (it stops earlier once stable).
        rng: the source of randomness for sampling random pairs.
        u_samples: how many random pairs to draw for ``u``.
        records: all the records held (default: those in ``pairs``); with fewer than 100 the
            model is returned unchanged.
        pair_share: the share of all candidate pairs that ``pairs`` holds, when it is a
            sample (for the prior).
        population_size: how many records are held in all, when ``records`` is a sample of
            them (for the prior; default ``len(records)``).

    Returns:
        A new model.
    """
    population = list(records) if records is not None else _distinct_records(pairs)
    n = population_size or len(population)
    if not pairs or len(population) < 100:
        return model
    all_pairs = n * (n - 1) / 2 * pair_share
    start_m = [model.fields[f].m for f in FIELDS]
    start_u = [model.fields[f].u for f in FIELDS]
    prior = model.prior
    u: list[Sequence[float]] = list(start_u)
    for i, observed in enumerate(_random_u(population, u_samples, rng)):
        if observed is not None:
            # A random pair is a match with probability `prior`: take those out. A level never
            # seen in the sample is only known to be rarer than about 3 in `u_samples` (the
            # rule of three): it is not credited with more.
            u[i] = _normalised(
                [
                    max((o - prior * mm) / (1.0 - prior), 3.0 / u_samples)
                    for o, mm in zip(observed, start_m[i], strict=True)
                ]
            )
    patterns = Counter(compare(a, b) for a, b in pairs)
    independence = [model.address_independence.get(f, 0.0) for f in FIELDS]
    m: list[Sequence[float]] = list(start_m)
    m_seen = [0.0] * len(FIELDS)
    for _ in range(iterations):
        ratio = [
            [math.log2(_clamp(mm) / _clamp(uu)) for mm, uu in zip(m[i], u[i], strict=True)]
            for i in range(len(FIELDS))
        ]
        prior_weight = _odds_weight(prior)
        m_num = [[_PSEUDO * x for x in start_m[i]] for i in range(len(FIELDS))]
        m_seen = [0.0] * len(FIELDS)
        expected = 0.0
        for vector, count in patterns.items():
            weights: list[float | None] = [
                None if level == NULL else ratio[i][level] for i, level in enumerate(vector)
            ]
            _dependent(vector, weights, independence)
            total = prior_weight + sum(w for w in weights if w is not None)
            expected += count * _probability(total)
            for i, level in enumerate(vector):
                weight = weights[i]
                if weight is not None:
                    p = count * _probability(total - weight)
                    m_num[i][level] += p
                    m_seen[i] += p
        old_prior = prior
        prior = min(max(expected / all_pairs, _MIN_PRIOR), 0.5)
        m = [
            _normalised(m_num[i]) if m_seen[i] >= _MIN_EVIDENCE else start_m[i]
            for i in range(len(FIELDS))
        ]
        if abs(prior - old_prior) <= 1e-3 * old_prior:
            break
    fields = {f: FieldParams(m=tuple(m[i]), u=tuple(u[i])) for i, f in enumerate(FIELDS)}
    found = _address_independence(population, m, u, prior, u_samples, rng)
    return msgspec.structs.replace(
        model,
        fields=fields,
        prior=prior,
        address_independence=dict(model.address_independence) | found,
    )


def _distinct_records(pairs: Iterable[tuple[MatchRecord, MatchRecord]]) -> list[MatchRecord]:
    seen: dict[int, MatchRecord] = {}
    for a, b in pairs:
        seen.setdefault(id(a), a)
        seen.setdefault(id(b), b)
    return list(seen.values())


def _address_independence(
    records: Sequence[MatchRecord],
    m: Sequence[Sequence[float]],
    u: Sequence[Sequence[float]],
    prior: float,
    samples: int,
    rng: random.Random,
) -> dict[str, float]:
    """How much each address field still tells once another one agrees.

    For each address field, random pairs are drawn among records sharing the postcode (the
    city, for the postcode itself), and the share ``r`` of them that agree on the field is
    compared with its share ``a`` among all random pairs: the field keeps
    ``log(m/r) / log(m/a)`` of its weight (1 when independent, 0 when implied). True matches
    among the drawn pairs are taken out using the prior.
    """
    out: dict[str, float] = {}
    n = len(records)
    for field in ADDRESS_FIELDS:
        given = "city" if field == "postal_code" else "postal_code"
        fi, gi = FIELDS.index(field), FIELDS.index(given)
        groups: dict[str, list[MatchRecord]] = {}
        for r in records:
            key = getattr(r, given)
            if key is not None and getattr(r, field) is not None:
                groups.setdefault(key, []).append(r)
        members = [g for g in groups.values() if len(g) > 1]
        sizes = [len(g) * (len(g) - 1) / 2 for g in members]
        if sum(sizes) < _MIN_EVIDENCE * 10:
            continue
        agree = [lv for lv in range(len(LEVELS[field])) if m[fi][lv] > u[fi][lv]]
        m_agree = sum(m[fi][lv] for lv in agree)
        u_agree = sum(u[fi][lv] for lv in agree)
        if m_agree <= u_agree:
            continue
        hits = 0
        draws = min(samples, int(sum(sizes)) * 4)
        for group in rng.choices(members, weights=sizes, k=draws):
            a, b = rng.sample(group, 2)
            hits += compare(a, b)[fi] in agree
        observed = hits / draws
        # Share of true matches among pairs agreeing on `given`.
        share = min(prior * m[gi][_EXACT] * n * (n - 1) / 2 / sum(sizes), 0.9)
        rate = min(max((observed - share * m_agree) / (1.0 - share), u_agree), 1.0)
        value = math.log(m_agree / rate) / math.log(m_agree / u_agree) if rate < m_agree else 0.0
        out[field] = min(max(value, 0.0), 1.0)
    return out
