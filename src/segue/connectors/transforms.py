"""Value transforms of the mapping language: pure functions from one input value to another.

A transform receives a value that is present (never ``None``) and returns the new value, or
``None`` when the result is empty. It raises :class:`ValueError` with a sentence when the value
cannot be transformed; the mapping turns that into ``InvalidInput`` with the field at fault.

Transforms are named in a mapping as a bare name (``trim``) or as a one-key mapping with an
argument (``{split_name: first}``, ``{datetime: "%d/%m/%Y %H:%M"}``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

__all__ = ["TRANSFORMS", "Transform", "build_transform", "text_of"]

Transform = Callable[[Any], Any]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE_NOISE = re.compile(r"[\s\-.()/]")
_PHONE = re.compile(r"^\+?\d{6,15}$")
_CURRENCY = r"(?:[A-Z]{3}|[A-Z]{0,2}\$|[€£¥₹₽₩₪₺]|kr|zł)"
_MONEY = re.compile(
    rf"^(?P<neg1>-)?\s*(?:{_CURRENCY}\s*)?(?P<neg2>-)?\s*"
    r"(?P<num>\d[\d.,' \u00a0\u202f]*)"
    rf"\s*(?:{_CURRENCY})?\s*(?P<neg3>-)?$"
)
_TRUE = frozenset({"true", "yes", "y", "1", "t", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "f", "off"})


def text_of(value: Any) -> str:
    """The text form of a scalar as it goes into a template or an id.

    Raises:
        ValueError: the value is an object or a list.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    raise ValueError(f"expected text or a number, got {_kind(value)}")


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _short(value: Any) -> str:
    text = msgspec.json.encode(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _none_if_empty(text: str) -> str | None:
    return text or None


def trim(value: Any) -> Any:
    return _none_if_empty(value.strip()) if isinstance(value, str) else value


def lower(value: Any) -> str:
    return text_of(value).lower()


def upper(value: Any) -> str:
    return text_of(value).upper()


def string(value: Any) -> str:
    return text_of(value)


def _float(text: str) -> float | None:
    text = text.strip()
    if "_" in text:
        return None
    try:
        result = float(text)
    except ValueError:
        return None
    return result if math.isfinite(result) else None


def integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit():
            return int(text)
        parsed = _float(text)
    else:
        parsed = value if isinstance(value, float) else None
    if parsed is None or not math.isfinite(parsed) or not parsed.is_integer():
        raise ValueError(f"expected a whole number, got {_short(value)}")
    return int(parsed)


def number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    parsed = _float(value) if isinstance(value, str) else None
    if parsed is None:
        raise ValueError(f"expected a number, got {_short(value)}")
    return parsed


def money(value: Any) -> float:
    """An amount of money as a float: ``"$1,234.50"``, ``"1.234,50 €"``, ``"(12.00)"``, ``9``.

    The last ``.`` or ``,`` followed by other than exactly three digits is the decimal mark;
    every other separator groups thousands.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected an amount of money, got {_short(value)}")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected an amount of money, got {_kind(value)}")
    text = value.strip()
    negative = False
    if text.startswith("(") and text.endswith(")"):
        text, negative = text[1:-1].strip(), True
    found = _MONEY.match(text)
    if found is None:
        raise ValueError(f"expected an amount of money, got {_short(value)}")
    signs = [found.group(g) for g in ("neg1", "neg2", "neg3")]
    if sum(1 for s in signs if s) > 1 or (negative and any(signs)):
        raise ValueError(f"expected an amount of money, got {_short(value)}")
    negative = negative or any(signs)
    digits = re.sub(r"['\s\u00a0\u202f]", "", found.group("num"))
    whole, fraction = digits, ""
    last = max(digits.rfind("."), digits.rfind(","))
    if last >= 0:
        mark = digits[last]
        decimal = ("." in digits and "," in digits) or (
            digits.count(mark) == 1 and (len(digits) - last - 1 != 3 or mark == ".")
        )
        if decimal:
            whole, fraction = digits[:last], digits[last + 1 :]
    groups = re.split(r"[.,]", whole)
    if len(groups) > 1 and (
        len({c for c in whole if c in ".,"}) > 1
        or not 1 <= len(groups[0]) <= 3
        or any(len(g) not in (2, 3) for g in groups[1:-1])
        or len(groups[-1]) != 3
    ):
        raise ValueError(f"expected an amount of money, got {_short(value)}")
    whole = "".join(groups)
    if not whole.isdigit() or not (fraction == "" or fraction.isdigit()):
        raise ValueError(f"expected an amount of money, got {_short(value)}")
    try:
        amount = Decimal(f"{whole}.{fraction or '0'}")
    except InvalidOperation:
        raise ValueError(f"expected an amount of money, got {_short(value)}") from None
    return float(-amount if negative else amount)


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = text_of(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {_short(value)}")


def email(value: Any) -> str:
    """Trimmed, lower-cased and checked to look like ``local@domain.tld``."""
    text = text_of(value).strip().lower()
    if not _EMAIL.match(text):
        raise ValueError(f"not an email address: {_short(value)}")
    return text


def phone(value: Any) -> str:
    """Spaces, dashes, dots, slashes and brackets removed; 6–15 digits, optional leading ``+``."""
    text = _PHONE_NOISE.sub("", text_of(value))
    if text.startswith("00"):
        text = "+" + text[2:]
    if not _PHONE.match(text):
        raise ValueError(f"not a phone number: {_short(value)}")
    return text


def _moment(value: Any, fmt: str | None) -> datetime | date:
    if isinstance(value, bool):
        raise ValueError(f"expected a date, got {_short(value)}")
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) > 1e11 else value  # epoch milliseconds
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"expected a date, got {_short(value)}") from None
    text = text_of(value).strip()
    try:
        if fmt is not None:
            return datetime.strptime(text, fmt)  # naive: read as UTC by the caller
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text)
    except ValueError:
        wanted = f"a date like {fmt!r}" if fmt else "an ISO 8601 date"
        raise ValueError(f"expected {wanted}, got {_short(value)}") from None


def to_date(fmt: str | None = None) -> Transform:
    """``YYYY-MM-DD``, the calendar date as written (no time zone conversion)."""

    def apply(value: Any) -> str:
        moment = _moment(value, fmt)
        day = moment.date() if isinstance(moment, datetime) else moment
        return day.isoformat()

    return apply


def to_datetime(fmt: str | None = None) -> Transform:
    """ISO 8601 in UTC with milliseconds and ``Z``; naive times and bare dates are UTC."""

    def apply(value: Any) -> str:
        moment = _moment(value, fmt)
        if not isinstance(moment, datetime):
            moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
        elif moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    return apply


def split_name(part: str) -> Transform:
    """One part of a full name: ``first`` (first word) or ``last`` (the rest).

    ``"Last, First"`` is understood as well.
    """
    if part not in ("first", "last"):
        raise ValueError("split_name takes first or last")

    def apply(value: Any) -> str | None:
        text = " ".join(text_of(value).split())
        if "," in text:
            last, _, first = (s.strip() for s in text.partition(","))
        else:
            first, _, last = text.partition(" ")
        return _none_if_empty(first if part == "first" else last)

    return apply


def split(separator: str) -> Transform:
    """Text → list of its trimmed, non-empty parts."""
    if not isinstance(separator, str) or not separator:
        raise ValueError("split takes a non-empty separator")

    def apply(value: Any) -> list[str] | None:
        parts = [p.strip() for p in text_of(value).split(separator)]
        return [p for p in parts if p] or None

    return apply


def prefix(text: str) -> Transform:
    if not isinstance(text, str):
        raise ValueError("prefix takes text")
    return lambda value: text + text_of(value)


def suffix(text: str) -> Transform:
    if not isinstance(text, str):
        raise ValueError("suffix takes text")
    return lambda value: text_of(value) + text


def lookup(table: dict[str, Any]) -> Transform:
    """Replace a value found in ``table`` (compared as text); others pass unchanged."""
    if not isinstance(table, dict):
        raise ValueError("map takes a mapping of value: replacement")
    keyed = {str(k): v for k, v in table.items()}
    return lambda value: keyed.get(text_of(value), value)


_PLAIN: dict[str, Transform] = {
    "trim": trim,
    "lower": lower,
    "upper": upper,
    "string": string,
    "int": integer,
    "number": number,
    "money": money,
    "bool": boolean,
    "email": email,
    "phone": phone,
    "date": to_date(),
    "datetime": to_datetime(),
}
_WITH_ARGUMENT: dict[str, Callable[[Any], Transform]] = {
    "date": to_date,
    "datetime": to_datetime,
    "split_name": split_name,
    "split": split,
    "prefix": prefix,
    "suffix": suffix,
    "map": lookup,
}
TRANSFORMS: tuple[str, ...] = tuple(sorted({*_PLAIN, *_WITH_ARGUMENT}))


def build_transform(spec: Any) -> Transform:
    """Compile one transform as written in a mapping file.

    Raises:
        ValueError: unknown name or a bad argument (the sentence says which).
    """
    if isinstance(spec, str):
        if spec in _PLAIN:
            return _PLAIN[spec]
        if spec in _WITH_ARGUMENT:
            raise ValueError(f"transform {spec!r} needs an argument: {{{spec}: ...}}")
        raise ValueError(f"unknown transform {spec!r}; known: {', '.join(TRANSFORMS)}")
    if isinstance(spec, dict) and len(spec) == 1:
        ((name, argument),) = spec.items()
        if name in _WITH_ARGUMENT:
            return _WITH_ARGUMENT[name](argument)
        raise ValueError(f"unknown transform {name!r}; known: {', '.join(TRANSFORMS)}")
    raise ValueError(f"a transform is a name or a one-key mapping, got {spec!r}")
