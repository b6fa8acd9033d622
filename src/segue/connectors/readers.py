"""Input formats: bytes of a file (or of one chunk of it) → rows numbered by line.

Three formats, each numbered the way a person finds the row in the file:

- ``csv``: the first record is the header; a row's number is the physical line it starts on,
  counting the header as line 1 (quoted fields may span lines). A UTF-8 byte order mark is
  ignored. Blank lines are skipped.
- ``jsonl``: one JSON object per line; a row's number is its line. Blank lines are skipped.
- ``json``: a JSON array of objects (row number = index + 1) or a single object (row 1).

A chunk of a larger file is read with ``first_line``, the number of its first row in the
whole file (CSV chunks repeat the header line, which is not counted). Rows that cannot be read
are returned as failures with their raw bytes, never skipped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any, NamedTuple

import msgspec

from segue.errors import InvalidInput

__all__ = ["FORMATS", "Row", "default_first_line", "read_rows", "sniff_format"]

FORMATS = ("csv", "json", "jsonl")

_object_decoder = msgspec.json.Decoder(dict[str, Any])
_array_decoder = msgspec.json.Decoder(list[msgspec.Raw])


class Row(NamedTuple):
    """One input row: its line number, raw bytes, and either its data or why it is unreadable."""

    line: int
    raw: bytes
    data: dict[str, Any] | None
    error: InvalidInput | None


def default_first_line(fmt: str) -> int:
    """The number of the first row of a whole file: 2 for CSV (after the header), else 1."""
    return 2 if fmt == "csv" else 1


def sniff_format(data: bytes, allowed: tuple[str, ...]) -> str:
    """Guess the format of ``data`` among ``allowed`` from its first bytes.

    ``[`` means a JSON array; ``{`` a single JSON object when the whole body decodes as one
    (else JSON Lines); anything else CSV. The first allowed format wins when the guess is not
    allowed, so a connector that only reads CSV reads CSV.
    """
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    guess = "csv"
    if head == b"[":
        guess = "json"
    elif head == b"{":
        guess = "jsonl"
        if "json" in allowed:
            try:
                _object_decoder.decode(data)
                guess = "json"
            except msgspec.DecodeError:
                guess = "jsonl"
    if guess in allowed:
        return guess
    if guess == "jsonl" and "json" in allowed:
        return "json"
    if guess == "json" and "jsonl" in allowed and head == b"{":
        return "jsonl"
    return allowed[0]


def read_rows(data: bytes, fmt: str, first_line: int, *, delimiter: str = ",") -> Iterator[Row]:
    """Yield every row of ``data`` in order.

    Args:
        data: the file or chunk.
        fmt: ``csv``, ``json`` or ``jsonl``.
        first_line: the number of the first row (see the module docstring).
        delimiter: the CSV field separator.

    Raises:
        InvalidInput: the format is unknown, or a CSV header is missing, unreadable or has a
            column twice (no row of the chunk can be read then).
    """
    if fmt == "csv":
        yield from _csv_rows(data, first_line, delimiter)
    elif fmt == "jsonl":
        yield from _jsonl_rows(data, first_line)
    elif fmt == "json":
        yield from _json_rows(data, first_line)
    else:
        raise InvalidInput(
            f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}", field="format"
        )


def _decode_object(raw: bytes) -> tuple[dict[str, Any] | None, InvalidInput | None]:
    try:
        return _object_decoder.decode(raw), None
    except msgspec.ValidationError:
        return None, InvalidInput("a row must be a JSON object", field="$")
    except msgspec.DecodeError as exc:
        return None, InvalidInput(f"row is not valid JSON: {exc}", field="$", code="invalid_json")


def _jsonl_rows(data: bytes, first_line: int) -> Iterator[Row]:
    for number, line in enumerate(data.split(b"\n"), start=first_line):
        raw = line.rstrip(b"\r")
        if not raw.strip():
            continue
        row, error = _decode_object(raw)
        yield Row(number, raw, row, error)


def _json_rows(data: bytes, first_line: int) -> Iterator[Row]:
    body = data.strip()
    if not body:
        return
    if body[:1] != b"[":
        row, error = _decode_object(body)
        yield Row(first_line, body, row, error)
        return
    try:
        items = _array_decoder.decode(body)
    except msgspec.DecodeError as exc:
        error = InvalidInput(
            f"body is not a valid JSON array: {exc}", field="$", code="invalid_json"
        )
        yield Row(first_line, body, None, error)
        return
    for index, item in enumerate(items):
        raw = bytes(item)
        row, error = _decode_object(raw)
        yield Row(first_line + index, raw, row, error)


def _csv_rows(data: bytes, first_line: int, delimiter: str) -> Iterator[Row]:
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    consumed: list[str] = []

    def lines() -> Iterator[str]:
        for line in io.StringIO(text, newline=""):
            consumed.append(line)
            yield line

    reader = csv.reader(lines(), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise InvalidInput(f"the CSV header is unreadable: {exc}", field="header") from None
    if header is None:
        return
    header_text = "".join(consumed)
    if not _is_utf8(header_text):
        raise InvalidInput("the CSV header is not valid UTF-8", field="header")
    names = [name.strip() for name in header]
    twice = sorted({n for n in names if n and names.count(n) > 1})
    if twice:
        raise InvalidInput(f"the CSV header names {', '.join(twice)} twice", field="header")
    header_lines = reader.line_num
    done = header_lines
    consumed.clear()
    while True:
        error: InvalidInput | None = None
        try:
            fields = next(reader, None)
        except csv.Error as exc:
            fields, error = [], InvalidInput(f"row is not valid CSV: {exc}", field="$")
        raw_text = "".join(consumed)
        consumed.clear()
        if fields is None:
            return
        number = first_line + done - header_lines
        done = reader.line_num
        raw = raw_text.rstrip("\r\n").encode("utf-8", "surrogateescape")
        if error is None and not fields:
            continue
        if error is None and not _is_utf8(raw_text):
            error = InvalidInput("row is not valid UTF-8", field="$", code="invalid_encoding")
        if error is None and len(fields) > len(names):
            error = InvalidInput(
                f"row has {len(fields)} fields but the header has {len(names)}", field="$"
            )
        if error is not None:
            yield Row(number, raw, None, error)
            continue
        row = {name: value for name, value in zip(names, fields, strict=False) if name}
        yield Row(number, raw, row, None)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
