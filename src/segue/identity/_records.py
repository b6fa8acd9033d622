"""Match records: normalisation from traits, block keys and field-by-field comparison.

Private: import from :mod:`segue.identity.matching`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, Final

import jellyfish
import msgspec
from rapidfuzz import fuzz
from rapidfuzz.distance import OSA, JaroWinkler

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


# For ASCII text, what _DROP and _PUNCT do as one table: drop the quote marks and the full
# stop, turn every other character that is neither a word character, "@", "+" nor a space
# into a space (runs of spaces are collapsed after).
_ASCII_TABLE: Final = {
    code: (None if chr(code) in "'`." else " ")
    for code in range(128)
    if not (chr(code).isalnum() or chr(code) in "_@+ ")
}


def _text(value: Any) -> str | None:
    """Case-fold, drop accents and punctuation, collapse spaces; None when nothing is left.

    Most traits are ASCII once case-folded: they skip the Unicode decomposition and the
    regular expressions, a third of the cost of building a match record (the same result,
    tests/unit/test_matching.py checks it on random text).
    """
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    text = str(value).casefold()
    if text.isascii():
        return " ".join(text.translate(_ASCII_TABLE).split()) or None
    text = unicodedata.normalize("NFKD", text)
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
    if isinstance(value, datetime):
        return value.date()
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
    - ``dob_i``: the date of birth with day and month order-free (a swapped day/month
      meets) and the first letter of the first or of the last name (two keys: a typo in one
      name still meets); ``dob``, the date alone, for a record with no name;
    - ``nm_md``: phonetic first and last name (order-free) and the (order-free) day and month
      of birth, for a typo in the year;
    - ``st_pc``: house number and postcode; ``st_li``: house number, phonetic street name and
      the family name's first letter;
    - ``nm_pc``: phonetic first and last name (order-free) and the postcode's first 3 symbols;
    - ``nm_ct``: phonetic first or last name (either: two keys) and city;
    - ``em``: the e-mail address; ``ph``: the last 9 digits of the phone number.

    Postcode plus the first letter of either name was a rule too until 2026-12-06: it
    brought two thirds of all candidates and no pair that another rule missed on FEBRL1 or
    FEBRL2 (BENCHMARKS.md, identity). Until 2026-12-07 the date of birth alone was a key of
    every record: it brought a quarter of the candidates, and requiring an initial as well
    lost no pair on FEBRL1, FEBRL2 or the identity benchmark (see :func:`probe_keys` for
    the keys stored before). Also until then, either name alone with the day and month of
    birth was a key (``fn_md`` / ``ln_md``): they brought nearly half of all candidates, and
    no true pair of FEBRL1, FEBRL2 or the identity benchmark that no other rule brought (a
    changed family name still meets under ``dob_i`` with the first name's initial, and
    under ``nm_ct``).

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
        initials = sorted({name[0] for name in (r.first_name, r.last_name) if name})
        if initials:
            keys.extend(f"dob_i:{r.birth.year}:{low}:{high}:{i}" for i in initials)
        else:
            keys.append(f"dob:{r.birth.year}:{low}:{high}")
        if first and last:
            keys.append("nm_md:{}:{}:{}:{}".format(*sorted((first, last)), low, high))
    if r.postal_code:
        if first and last:
            keys.append("nm_pc:{}:{}:{}".format(*sorted((first, last)), r.postal_code[:3]))
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


def probe_keys(r: MatchRecord) -> list[str]:
    """The keys to look up a record's candidates by: its own block keys and
    :func:`legacy_keys`."""
    return blocking_keys(r) + legacy_keys(r)


def legacy_keys(r: MatchRecord) -> list[str]:
    """The keys earlier versions stored for ``r`` that :func:`blocking_keys` no longer gives,
    all from before 2026-12-07: the date of birth alone (stored for every record with one),
    and either phonetic name with the day and month of birth (``fn_md`` / ``ln_md``).

    Profiles stored by those versions keep those keys until their keys are next written; a
    new record still meets them under them, as it did then. A store that holds no such key
    answers it with nothing, for the price of a lookup each.
    """
    if r.birth is None or not (r.first_name or r.last_name):
        return []  # the date alone is among its block keys already (or it has no date)
    low, high = sorted((r.birth.month, r.birth.day))
    keys = [f"dob:{r.birth.year}:{low}:{high}"]
    if r.first_name:
        keys.append(f"fn_md:{_phonetic(r.first_name)}:{low}:{high}")
    if r.last_name:
        keys.append(f"ln_md:{_phonetic(r.last_name)}:{low}:{high}")
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


#: One comparison per field of :data:`FIELDS`, in that order: :func:`compare` runs them all,
#: :meth:`~segue.identity.matching.MatchModel.weigh_above` one at a time, stopping early.
#: ``_pairs.py`` states the same comparisons over arrays, for a batch's pairs at once: a
#: change here goes there too (``test_weigh_many_agrees_with_weigh`` holds them together).
FIELD_COMPARISONS: Final[tuple[Callable[[MatchRecord, MatchRecord], int], ...]] = (
    lambda a, b: _name(a.first_name, b.first_name, a.last_name, b.last_name),
    lambda a, b: _name(a.last_name, b.last_name, a.first_name, b.first_name),
    lambda a, b: _birth_level(a.birth, b.birth),
    lambda a, b: _street(a.street, b.street),
    lambda a, b: _city(a.city, b.city),
    lambda a, b: _edit(a.postal_code, b.postal_code),
    lambda a, b: _exact(a.state, b.state),
    lambda a, b: _exact(a.country, b.country),
    lambda a, b: _email_level(a.email, b.email),
    lambda a, b: _phone_level(a.phone, b.phone),
)


def compare(a: MatchRecord, b: MatchRecord) -> tuple[int, ...]:
    """Compare two records field by field.

    Args:
        a: one record.
        b: the other.

    Returns:
        One level per field of :data:`FIELDS`, an index into that field's :data:`LEVELS`
        labels, or -1 when either side lacks the field.
    """
    return tuple([level_of(a, b) for level_of in FIELD_COMPARISONS])


def presence(r: MatchRecord) -> int:
    """A bit mask of the fields a record holds, bit ``i`` for ``FIELDS[i]``.

    ``presence(a) & presence(b)`` names the fields a pair can be compared on.
    """
    return (
        (r.first_name is not None)
        | (r.last_name is not None) << 1
        | (r.birth is not None) << 2
        | (r.street is not None) << 3
        | (r.city is not None) << 4
        | (r.postal_code is not None) << 5
        | (r.state is not None) << 6
        | (r.country is not None) << 7
        | (r.email is not None) << 8
        | (r.phone is not None) << 9
    )
