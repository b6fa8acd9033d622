"""``segue import SOURCE FILE``: stream a file in chunks to a running segue, with progress.

The file is cut into chunks of whole rows (CSV records may span lines; every CSV chunk repeats
the header line) and each chunk is posted to ``/v1/sources/{SOURCE}/import`` with the number
of its first row, so rejections come back with the row's line number in the file. Message ids
are derived from the rows, so a chunk sent again after a failure (or a whole file imported
again) stores nothing twice; that is what makes retrying safe.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, TextIO
from urllib.parse import quote, urlencode

import msgspec
from tqdm import tqdm

__all__ = ["ImportSummary", "Piece", "pieces", "run_import"]

_CONTENT_TYPES = {"csv": "text/csv", "json": "application/json", "jsonl": "application/x-ndjson"}
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
_SHOWN_REASONS = 10
_RETRIES = 4


class Piece(NamedTuple):
    """One row of the file as bytes, with the number of its first line."""

    line: int
    raw: bytes


class ImportSummary(msgspec.Struct, kw_only=True):
    rows: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = msgspec.field(default_factory=list)


class _Failure(Exception):
    """The import cannot go on (bad key, unknown source, server gone)."""


def detect_format(path: Path, head: bytes) -> str:
    """The format from the file name, else from its first bytes.

    A file that starts with ``{`` is one JSON object when it decodes as one, else JSON Lines.
    """
    by_name = _EXTENSIONS.get(path.suffix.lower())
    if by_name in ("csv", "jsonl"):
        return by_name
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"[":
        return "json"
    if start == b"{":
        try:
            msgspec.json.decode(path.read_bytes(), type=dict[str, Any])
        except msgspec.DecodeError:
            return "jsonl"
        return "json"
    return by_name or "csv"


def pieces(path: Path, fmt: str) -> tuple[bytes, Iterator[Piece]]:
    """The CSV header line (empty for JSON formats) and the file's rows, lazily.

    Every physical line belongs to exactly one piece (blank lines too), so a chunk made of
    consecutive pieces numbers its rows as the whole file does.
    """
    if fmt == "csv":
        return _csv_pieces(path)
    if fmt == "jsonl":
        return b"", _jsonl_pieces(path)
    return b"", _json_pieces(path)


def _csv_pieces(path: Path) -> tuple[bytes, Iterator[Piece]]:
    handle = path.open(encoding="utf-8", errors="surrogateescape", newline="")
    consumed: list[str] = []

    def lines(source: TextIO) -> Iterator[str]:
        for line in source:
            consumed.append(line)
            yield line

    first = handle.readline()
    delimiter = ","
    with contextlib.suppress(csv.Error):  # record boundaries depend on the delimiter
        delimiter = csv.Sniffer().sniff(first, delimiters=",;\t|").delimiter
    handle.seek(0)
    reader = csv.reader(lines(handle), delimiter=delimiter)
    with contextlib.suppress(csv.Error):  # the server reports an unreadable header
        next(reader, None)
    header = "".join(consumed).encode("utf-8", "surrogateescape")
    consumed.clear()

    def rows() -> Iterator[Piece]:
        with handle:
            line = reader.line_num + 1
            while True:
                try:
                    record = next(reader, None)
                except csv.Error:
                    record = []  # the server reports the broken row by its line
                if record is None and not consumed:
                    return
                raw = "".join(consumed).encode("utf-8", "surrogateescape")
                consumed.clear()
                yield Piece(line, raw)
                line = reader.line_num + 1
                if record is None:
                    return

    return header, rows()


def _jsonl_pieces(path: Path) -> Iterator[Piece]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            yield Piece(number, line)


def _json_pieces(path: Path) -> Iterator[Piece]:
    body = path.read_bytes()
    if body.lstrip()[:1] == b"[":
        try:
            items = msgspec.json.decode(body, type=list[msgspec.Raw])
        except msgspec.DecodeError:
            items = None  # sent whole: the server quarantines it and says why
        if items is not None:
            for index, item in enumerate(items):
                yield Piece(index + 1, bytes(item))
            return
    yield Piece(1, body)


def _chunk_body(fmt: str, header: bytes, batch: list[Piece]) -> bytes:
    if fmt == "json":
        if len(batch) == 1 and batch[0].raw.lstrip()[:1] != b"{":
            return batch[0].raw
        return b"[" + b",".join(p.raw for p in batch) + b"]"
    if fmt == "csv" and header and not header.endswith((b"\n", b"\r")):
        header += b"\n"
    body = b"".join(p.raw if p.raw.endswith(b"\n") else p.raw + b"\n" for p in batch)
    return header + body


def _batches(rows: Iterator[Piece], max_rows: int, max_bytes: int) -> Iterator[list[Piece]]:
    batch: list[Piece] = []
    size = 0
    for piece in rows:
        if batch and (len(batch) >= max_rows or size + len(piece.raw) > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(piece)
        size += len(piece.raw)
    if batch:
        yield batch


class _Client:
    def __init__(self, url: str, source: str, auth: str, query: dict[str, str]) -> None:
        self.base = f"{url.rstrip('/')}/v1/sources/{quote(source, safe='')}/import"
        self.auth = auth
        self.query = query
        self.reached = False  # retry connection failures only once the server answered

    def post(self, body: bytes, fmt: str, first_line: int) -> tuple[int, dict[str, Any]]:
        query = urlencode({**self.query, "format": fmt, "first_line": str(first_line)})
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own
            f"{self.base}?{query}",
            data=body,
            method="POST",
            headers={"Authorization": self.auth, "Content-Type": _CONTENT_TYPES[fmt]},
        )
        delay = 0.5
        for attempt in range(_RETRIES + 1):
            try:
                with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
                    self.reached = True
                    return int(response.status), msgspec.json.decode(response.read())
            except urllib.error.HTTPError as exc:
                self.reached = True
                payload = _error_body(exc)
                if exc.code < 500 or attempt == _RETRIES:
                    return exc.code, payload
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == _RETRIES or not self.reached:
                    raise _Failure(f"cannot reach segue at {self.base}: {exc}") from None
            time.sleep(delay)
            delay *= 2
        raise _Failure("unreachable")  # pragma: no cover - the loop always returns or raises


def _error_body(exc: urllib.error.HTTPError) -> dict[str, Any]:
    raw = exc.read()
    try:
        decoded = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        decoded = None
    if isinstance(decoded, dict):
        return decoded
    return {"code": "http_error", "message": raw.decode("utf-8", "replace")[:300] or exc.reason}


def _send(
    client: _Client, fmt: str, header: bytes, batch: list[Piece], summary: ImportSummary
) -> None:
    status, payload = client.post(_chunk_body(fmt, header, batch), fmt, batch[0].line)
    if status == 200:
        summary.rows += int(payload.get("rows", 0))
        summary.stored += int(payload.get("stored", 0))
        summary.duplicates += int(payload.get("duplicates", 0))
        summary.rejected += list(payload.get("rejected", []))
        return
    if status == 413 and len(batch) > 1:  # the server's limit is lower than our chunks
        half = len(batch) // 2
        _send(client, fmt, header, batch[:half], summary)
        _send(client, fmt, header, batch[half:], summary)
        return
    if status == 413:  # one row over the limit: it never reached segue, so report it here
        summary.rows += 1
        summary.rejected.append(
            {
                "line": batch[0].line,
                "code": "payload_too_large",
                "message": str(payload.get("message", "row is over the request size limit")),
                "field": None,
            }
        )
        return
    message = payload.get("message", "")
    raise _Failure(f"segue refused the import ({status} {payload.get('code')}): {message}")


def run_import(
    *,
    source: str,
    path: Path,
    url: str,
    auth: str,
    connector: str | None,
    fmt: str | None,
    chunk_rows: int,
    chunk_bytes: int,
    quiet: bool,
    out: TextIO,
) -> int:
    """Import one file; print a summary.

    Returns:
        the exit code: 0 when every row was stored (or already there), 1 when rows were
        rejected, 2 when the import could not run.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(64 * 1024)
    except OSError as exc:
        print(f"segue import: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    fmt = fmt or detect_format(path, head)
    header, rows = pieces(path, fmt)
    client = _Client(url, source, auth, {"connector": connector} if connector else {})
    summary = ImportSummary()
    started = time.monotonic()
    with tqdm(
        total=path.stat().st_size,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=path.name,
        disable=quiet,
        file=sys.stderr,
    ) as bar:
        bar.update(len(header))
        try:
            for batch in _batches(rows, chunk_rows, chunk_bytes):
                _send(client, fmt, header, batch, summary)
                bar.update(sum(len(p.raw) for p in batch))
                bar.set_postfix(rows=summary.rows, rejected=len(summary.rejected))
        except _Failure as exc:
            bar.close()
            if summary.rows:
                _print_summary(summary, path, source, fmt, time.monotonic() - started, out)
            print(f"segue import: {exc}", file=sys.stderr)
            return 2
    _print_summary(summary, path, source, fmt, time.monotonic() - started, out)
    return 1 if summary.rejected else 0


def _print_summary(
    summary: ImportSummary, path: Path, source: str, fmt: str, seconds: float, out: TextIO
) -> None:
    lines = sorted({int(r["line"]) for r in summary.rejected})
    shown = ", ".join(str(n) for n in lines[:20]) + (", …" if len(lines) > 20 else "")
    text = [
        f"imported {path.name} ({fmt}) into source {source} in {seconds:.1f} s",
        f"  rows        {summary.rows}",
        f"  stored      {summary.stored}",
        f"  duplicates  {summary.duplicates}",
        f"  rejected    {len(lines)}" + (f" (lines {shown})" if lines else ""),
    ]
    ordered = sorted(summary.rejected, key=lambda r: int(r["line"]))
    for rejection in ordered[:_SHOWN_REASONS]:
        field = f" (field {rejection['field']})" if rejection.get("field") else ""
        text.append(
            f"    line {rejection['line']}: {rejection['code']}: {rejection['message']}{field}"
        )
    if len(ordered) > _SHOWN_REASONS:
        text.append(f"    … {len(ordered) - _SHOWN_REASONS} more in GET /v1/admin/quarantine")
    if lines:
        text.append("  rejected rows are in the quarantine; fix them and import the file again")
    print("\n".join(text), file=out, flush=True)


def authorization(key: str | None, write_key: str | None) -> str | None:
    """The Authorization header: Bearer for the admin key, Basic for a write key."""
    if write_key:
        return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    if key:
        return f"Bearer {key}"
    return None
