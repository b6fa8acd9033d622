"""Probabilistic matching: link records that share no identifier, on their traits.

A Fellegi–Sunter record-linkage engine, pure and synchronous (no I/O, no clock, no global RNG):

- :func:`record_from_traits` turns Segment reserved traits into a normalised :class:`MatchRecord`;
- :func:`blocking_keys` gives the keys under which a record is indexed; two records are compared
  only when they share a key (several rules OR-ed, so a duplicate with a typo in one field
  still meets its original under another rule);
- :func:`compare` turns a pair into a comparison vector, one level per field (``-1`` = a side
  is missing, which weighs nothing);
- :class:`MatchModel` holds ``m = P(level | match)`` and ``u = P(level | non-match)`` per field
  level and the prior; :meth:`MatchModel.score` adds up ``log2(m/u)`` per field, with a
  term-frequency adjustment on exact matches of names, city and postcode, and explains itself
  field by field;
- :func:`estimate` re-estimates ``m`` by expectation–maximisation on blocked candidate pairs and
  ``u`` on random pairs (the RNG is passed in);
- :class:`IncrementalMatcher` is the in-memory reference of matching each record as it
  arrives; the processor does the same against a store-backed block index, using
  :func:`blocking_keys`, :func:`rank` and :class:`TermFrequencies` directly.

Weights are in bits: ``weight = log2(prior odds) + Σ log2(m/u)``, and
``probability = 2**weight / (1 + 2**weight)``.
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from functools import cached_property
from typing import Any, Final

import jellyfish
import msgspec
from rapidfuzz import fuzz
from rapidfuzz.distance import OSA, JaroWinkler

__all__ = [
    "ADDRESS_FIELDS",
    "FIELDS",
    "LEVELS",
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
    "rank",
    "record_from_traits",
]

#: The compared fields, in the order of a comparison vector.
FIELDS: Final = (
    "first_name",
    "last_name",
    "birth",
    "street",
    "city",
    "postal_code",
    "state",
    "country",
    "email",
    "phone",
)

#: Level labels per field; a comparison vector holds an index into these, or -1 for "null".
LEVELS: Final[Mapping[str, tuple[str, ...]]] = {
    "first_name": ("exact", "swapped", "close", "similar", "different"),
    "last_name": ("exact", "swapped", "close", "similar", "different"),
    "birth": ("exact", "day_month_swapped", "one_part_differs", "different"),
    "street": ("exact", "close", "similar", "different"),
    "city": ("exact", "close", "different"),
    "postal_code": ("exact", "one_edit", "different"),
    "state": ("exact", "different"),
    "country": ("exact", "different"),
    "email": ("exact", "close", "different"),
    "phone": ("exact", "one_edit", "different"),
}

#: The address fields, finest first.
ADDRESS_FIELDS: Final = ("street", "postal_code", "city", "state")

#: Fields whose exact level is adjusted by the relative frequency of the shared value.
TF_FIELDS: Final = ("first_name", "last_name", "city", "postal_code")

NULL: Final = -1
_EXACT: Final = 0
_ADDRESS: Final = tuple(FIELDS.index(f) for f in ADDRESS_FIELDS)

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


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


class MatchRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The normalised traits of one record, as compared by the matcher.

    Strings are case-folded, stripped of accents and punctuation, with runs of white space
    collapsed; ``None`` means the trait is missing. ``phone`` keeps digits only.

    Attributes:
        first_name: given name.
        last_name: family name.
        birth: date of birth.
        street: street line(s), house number included.
        city: city or suburb.
        postal_code: postcode without spaces.
        state: state or region.
        country: country.
        email: e-mail address.
        phone: phone number, digits only.
    """

    first_name: str | None = None
    last_name: str | None = None
    birth: date | None = None
    street: str | None = None
    city: str | None = None
    postal_code: str | None = None
    state: str | None = None
    country: str | None = None
    email: str | None = None
    phone: str | None = None


_DROP = re.compile(r"['’`.]")
_PUNCT = re.compile(r"[^\w@+ ]+")
_SPACES = re.compile(r"\s+")
_NOT_DIGIT = re.compile(r"\D+")
_ISO_DATE = re.compile(r"(\d{4})-?(\d{1,2})-?(\d{1,2})")
_INFORMATIVE: Final = (
    "first_name",
    "last_name",
    "birth",
    "street",
    "city",
    "postal_code",
    "email",
    "phone",
)


def _text(value: Any) -> str | None:
    """Case-fold, drop accents and punctuation, collapse spaces; None when nothing is left."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    text = unicodedata.normalize("NFKD", str(value).casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _SPACES.sub(" ", _PUNCT.sub(" ", _DROP.sub("", text))).strip()
    return text or None


def _email(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = _SPACES.sub("", value).casefold()
    return text if "@" in text else None


def _phone(value: Any) -> str | None:
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    digits = _NOT_DIGIT.sub("", str(value))
    return digits if len(digits) >= 6 else None


def _postal_code(value: Any) -> str | None:
    text = _text(value)
    return text.replace(" ", "") if text else None


def _birth(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    text = str(value).strip()
    # YYYY-MM-DD, YYYYMMDD, and ISO timestamps (whose date part is what counts).
    found = _ISO_DATE.match(text)
    if found is None or (len(text) > 10 and text[10:11] not in ("T", " ")):
        return None
    if "-" not in text[:10] and len(text) != 8:
        return None
    try:
        return date(int(found[1]), int(found[2]), int(found[3]))
    except ValueError:
        return None


def record_from_traits(traits: Mapping[str, Any]) -> MatchRecord | None:
    """Build the record the matcher compares from an identify event's traits.

    Reads Segment's reserved traits: ``firstName``/``lastName`` (or ``first_name``/``last_name``,
    or ``name`` split at its last space), ``birthday`` (ISO ``YYYY-MM-DD``, ``YYYYMMDD`` or an
    ISO timestamp; anything else is ignored), ``email``, ``phone`` and
    ``address{street, city, postalCode, state, country}``.

    Args:
        traits: the ``traits`` object of an identify event (or a profile's golden traits).

    Returns:
        The normalised record, or None when fewer than two informative traits are present
        (nothing could then reach the match threshold).
    """
    first = _text(traits.get("firstName", traits.get("first_name")))
    last = _text(traits.get("lastName", traits.get("last_name")))
    if first is None and last is None:
        name = _text(traits.get("name"))
        if name is not None:
            head, _, tail = name.rpartition(" ")
            first, last = (head or None), tail
    address = traits.get("address")
    if not isinstance(address, Mapping):
        address = {"street": address} if isinstance(address, str) else {}
    postal = address.get("postalCode", address.get("postal_code", address.get("zip")))
    record = MatchRecord(
        first_name=first,
        last_name=last,
        birth=_birth(traits.get("birthday")),
        street=_text(address.get("street")),
        city=_text(address.get("city")),
        postal_code=_postal_code(postal),
        state=_text(address.get("state")),
        country=_text(address.get("country")),
        email=_email(traits.get("email")),
        phone=_phone(traits.get("phone")),
    )
    informative = sum(getattr(record, name) is not None for name in _INFORMATIVE)
    return record if informative >= 2 else None


# --------------------------------------------------------------------------------------------
# Blocking
# --------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"\d+")


def _phonetic(name: str) -> str:
    """A short phonetic code (Metaphone, first 5 symbols) of the first word of a name."""
    word = name.split(" ", 1)[0]
    return jellyfish.metaphone(word)[:5] or word[:3]


def _street_key(street: str) -> str | None:
    """House number and the phonetic code of the first word of the street name."""
    number = _NUMBER.search(street)
    words = [w for w in street.split(" ") if w.isalpha() and len(w) > 2]
    if number is None or not words:
        return None
    return f"{number[0]}:{_phonetic(words[0])}"


def blocking_keys(r: MatchRecord) -> list[str]:
    """The block keys of a record; candidates for a record are the records sharing any key.

    Several rules are OR-ed so that a duplicate with errors in a field or two still meets
    its original under some rule, while each block stays small (a key is ``rule:part:part``,
    and a rule whose parts are missing gives no key):

    - ``nm_by``: phonetic first and last name (order-free, so swapped names meet) and the
      year of birth;
    - ``dob``: the date of birth with day and month order-free (a swapped day/month meets);
    - ``fn_md`` / ``ln_md``: phonetic first / last name and the (order-free) day and month of
      birth, for a typo in the year or a changed family name;
    - ``pc_fi`` / ``pc_li``: postcode and the first letter of the first / last name;
    - ``st_pc``: house number and postcode; ``st_li``: house number, phonetic street name and
      the family name's first letter;
    - ``nm_pc``: phonetic first and last name (order-free) and the postcode's first 3 symbols;
    - ``nm_ct``: phonetic first or last name (either: two keys) and city;
    - ``em``: the e-mail address; ``ph``: the last 9 digits of the phone number.

    Args:
        r: the record.

    Returns:
        The keys, in rule order.
    """
    keys: list[str] = []
    first = _phonetic(r.first_name) if r.first_name else None
    last = _phonetic(r.last_name) if r.last_name else None
    if r.birth is not None:
        low, high = sorted((r.birth.month, r.birth.day))
        if first and last:
            keys.append("nm_by:{}:{}:{}".format(*sorted((first, last)), r.birth.year))
        keys.append(f"dob:{r.birth.year}:{low}:{high}")
        if first:
            keys.append(f"fn_md:{first}:{low}:{high}")
        if last:
            keys.append(f"ln_md:{last}:{low}:{high}")
    if r.postal_code:
        if first and last:
            keys.append("nm_pc:{}:{}:{}".format(*sorted((first, last)), r.postal_code[:3]))
        if r.first_name:
            keys.append(f"pc_fi:{r.postal_code}:{r.first_name[0]}")
        if r.last_name:
            keys.append(f"pc_li:{r.postal_code}:{r.last_name[0]}")
        if r.street:
            number = _NUMBER.search(r.street)
            if number is not None:
                keys.append(f"st_pc:{number[0]}:{r.postal_code}")
    if r.street and (r.first_name or r.last_name):
        street = _street_key(r.street)
        if street:
            initial = (r.last_name or r.first_name or "")[0]
            keys.append(f"st_li:{street}:{initial}")
    if r.city:
        keys.extend(f"nm_ct:{code}:{r.city}" for code in sorted({c for c in (first, last) if c}))
    if r.email:
        keys.append(f"em:{r.email}")
    if r.phone:
        keys.append(f"ph:{r.phone[-9:]}")
    return keys


# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------

_jw = JaroWinkler.normalized_similarity
_osa = OSA.distance


def _name(a: str | None, b: str | None, a_other: str | None, b_other: str | None) -> int:
    if a is None or b is None:
        return NULL
    if a == b:
        return 0
    # Swapped: one name equals the other record's other name, and the remaining pair is alike
    # (so "james thomas" / "thomas garcia" is not a swap).
    if (a == b_other and a_other is not None and _jw(a_other, b) >= 0.8) or (
        b == a_other and b_other is not None and _jw(a, b_other) >= 0.8
    ):
        return 1
    similarity = _jw(a, b)
    if similarity >= 0.92 or _osa(a, b) <= 1:
        return 2
    if similarity >= 0.8 or (min(len(a), len(b)) == 1 and a[0] == b[0]):
        return 3
    return 4


def _birth_level(a: date | None, b: date | None) -> int:
    if a is None or b is None:
        return NULL
    if a == b:
        return 0
    if a.year == b.year and a.month == b.day and a.day == b.month:
        return 1
    same = (a.year == b.year) + (a.month == b.month) + (a.day == b.day)
    return 2 if same == 2 else 3


def _street(a: str | None, b: str | None) -> int:
    if a is None or b is None:
        return NULL
    if a == b:
        return 0
    similarity = fuzz.token_set_ratio(a, b)
    if similarity >= 90 and set(_NUMBER.findall(a)) == set(_NUMBER.findall(b)):
        return 1
    if similarity >= 75:
        return 2
    return 3


def _city(a: str | None, b: str | None) -> int:
    if a is None or b is None:
        return NULL
    if a == b:
        return 0
    return 1 if _jw(a, b) >= 0.9 else 2


def _edit(a: str | None, b: str | None) -> int:
    if a is None or b is None:
        return NULL
    if a == b:
        return 0
    return 1 if _osa(a, b) <= 1 else 2


def _exact(a: str | None, b: str | None) -> int:
    if a is None or b is None:
        return NULL
    return 0 if a == b else 1


def _email_level(a: str | None, b: str | None) -> int:
    if a is None or b is None:
        return NULL
    if a == b:
        return 0
    return 1 if _osa(a, b) <= 1 or a.split("@", 1)[0] == b.split("@", 1)[0] else 2


def _phone_level(a: str | None, b: str | None) -> int:
    if a is None or b is None:
        return NULL
    if a[-9:] == b[-9:]:
        return 0
    return 1 if _osa(a[-9:], b[-9:]) <= 1 else 2


def compare(a: MatchRecord, b: MatchRecord) -> tuple[int, ...]:
    """Compare two records field by field.

    Args:
        a: one record.
        b: the other.

    Returns:
        One level per field of :data:`FIELDS`, an index into that field's :data:`LEVELS`
        labels, or -1 when either side lacks the field.
    """
    return (
        _name(a.first_name, b.first_name, a.last_name, b.last_name),
        _name(a.last_name, b.last_name, a.first_name, b.first_name),
        _birth_level(a.birth, b.birth),
        _street(a.street, b.street),
        _city(a.city, b.city),
        _edit(a.postal_code, b.postal_code),
        _exact(a.state, b.state),
        _exact(a.country, b.country),
        _email_level(a.email, b.email),
        _phone_level(a.phone, b.phone),
    )


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


def _nest(weights: list[float | None], independence: Sequence[float]) -> None:
    """Count nested address fields once (in place).

    The address fields are nested rather than independent: two records on the same street are
    in the same postcode, city and state too, and a postcode lies in one city. Adding up their
    agreements would count one address three or four times (and merge the members of a
    household, or neighbours with a common name). So the strongest agreement among them counts
    in full and the others only by their independence (0 for real addresses, near 1 where they
    are drawn independently, as in synthetic data); every disagreement still counts against.
    """
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
        30,000 a date of birth).
        """
        name_m = (0.83, 0.01, 0.08, 0.03, 0.05)
        return cls(
            fields={
                "first_name": FieldParams(m=name_m, u=(0.01, 0.0002, 0.003, 0.03, 0.9668)),
                "last_name": FieldParams(m=name_m, u=(0.003, 0.0002, 0.002, 0.02, 0.9748)),
                "birth": FieldParams(
                    m=(0.86, 0.02, 0.1, 0.02), u=(0.000035, 0.00001, 0.0025, 0.997455)
                ),
                "street": FieldParams(
                    m=(0.7, 0.15, 0.1, 0.05), u=(0.00005, 0.0001, 0.005, 0.99485)
                ),
                "city": FieldParams(m=(0.88, 0.07, 0.05), u=(0.002, 0.001, 0.997)),
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

    def _field_weights(
        self,
        vector: tuple[int, ...],
        a: MatchRecord,
        tf: Callable[[str, str], float | None] | None,
    ) -> list[float | None]:
        weights = self._weights
        tf_index = self._tf_index
        out: list[float | None] = []
        for i, level in enumerate(vector):
            if level == NULL:
                out.append(None)
            elif level == _EXACT and tf is not None and tf_index[i]:
                out.append(self._tf_weight(i, getattr(a, FIELDS[i]), tf))
            else:
                out.append(weights[i][level])
        _nest(out, self._independence)
        return out

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

    Returns:
        A new model.
    """
    population = list(records) if records is not None else _distinct_records(pairs)
    n = len(population)
    if not pairs or n < 100:
        return model
    all_pairs = n * (n - 1) / 2 * pair_share
    start_m = [model.fields[f].m for f in FIELDS]
    start_u = [model.fields[f].u for f in FIELDS]
    prior = model.prior
    u: list[Sequence[float]] = list(start_u)
    for i, observed in enumerate(_random_u(population, u_samples, rng)):
        if observed is not None:
            # A random pair is a match with probability `prior`: take those out.
            u[i] = _normalised(
                [
                    max((o - prior * mm) / (1.0 - prior), 0.5 / u_samples)
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
            _nest(weights, independence)
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


# --------------------------------------------------------------------------------------------
# Matching as records arrive
# --------------------------------------------------------------------------------------------


def rank(
    record: MatchRecord,
    candidates: Iterable[tuple[str, MatchRecord]],
    model: MatchModel,
    tf: Callable[[str, str], float | None] | None = None,
) -> list[tuple[str, MatchScore]]:
    """Score a record against its candidates and keep those above the possible-match threshold.

    Args:
        record: the arriving record.
        candidates: ``(id, record)`` of the records sharing a block key with it.
        model: the parameters.
        tf: the term-frequency lookup, as for :meth:`MatchModel.score`.

    Returns:
        ``(id, score)`` with ``score.probability >= model.possible_threshold``, best first
        (ties by id, so the order is deterministic).
    """
    floor = model.possible_weight
    kept = [
        (cid, model.score(record, other, tf))
        for cid, other in candidates
        if model.weigh(record, other, tf) >= floor
    ]
    kept.sort(key=lambda item: (-item[1].weight, item[0]))
    return kept


class IncrementalMatcher:
    """Match each record as it arrives against the records held so far (in memory).

    Holds the records, a block index (key → record ids), the term frequencies and a union-find
    of clusters. :meth:`add` scores a record against its candidates and then indexes it; the
    caller decides what to merge (:meth:`link`), as the processor will.
    """

    def __init__(self, model: MatchModel | None = None, *, max_block_size: int = 100) -> None:
        """Start empty.

        Args:
            model: the parameters (default: :meth:`MatchModel.default`).
            max_block_size: a block key already holding this many records no longer yields
                candidates (a very common name or a shared postcode would otherwise make
                every arrival compare against thousands).
        """
        self.model = model or MatchModel.default()
        self.max_block_size = max_block_size
        self.records: dict[str, MatchRecord] = {}
        self.blocks: dict[str, list[str]] = {}
        self.tf = TermFrequencies()
        #: (new record, held record) → weight of the pairs between the two thresholds.
        self.possible: dict[tuple[str, str], float] = {}
        self._parent: dict[str, str] = {}

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
        found = rank(
            record,
            ((cid, self.records[cid]) for cid in self.candidates(record)),
            self.model,
            self.tf.frequency,
        )
        self.insert(record_id, record)
        return found

    def insert(self, record_id: str, record: MatchRecord) -> None:
        """Hold a record without scoring it (bulk loads); it starts as its own cluster."""
        self.tf.add(record)
        self.records[record_id] = record
        self._parent[record_id] = record_id
        for key in blocking_keys(record):
            self.blocks.setdefault(key, []).append(record_id)

    def resolve(self, record_id: str, record: MatchRecord) -> list[tuple[str, MatchScore]]:
        """Add a record and merge it as the processor does: :meth:`add`, then :meth:`link` every
        candidate at or above the match threshold and keep the others as possible matches.

        Returns:
            What :meth:`add` returned.
        """
        found = self.add(record_id, record)
        for other, score in found:
            if score.probability >= self.model.match_threshold:
                self.link(record_id, other)
            else:
                self.possible[(record_id, other)] = score.weight
        return found

    def reestimate(
        self, rng: random.Random, *, sample: int = 20_000, **options: Any
    ) -> list[tuple[str, str]]:
        """Re-estimate the model from the records held, then re-score the possible matches.

        A pair kept as possible under the old model is merged when the new one puts it at or
        above the match threshold, and forgotten when it falls below the possible threshold.

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
        merged = []
        for pair in sorted(self.possible):
            weight = self.model.weigh(
                self.records[pair[0]], self.records[pair[1]], self.tf.frequency
            )
            if weight >= self.model.match_weight:
                self.link(*pair)
                merged.append(pair)
                del self.possible[pair]
            elif weight < self.model.possible_weight:
                del self.possible[pair]
            else:
                self.possible[pair] = weight
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
