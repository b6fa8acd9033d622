"""``segue catalog import FILE``: load a product feed into a running segue's catalog.

The feed is a CSV file, a JSON array of items or JSON Lines (one item per line). It is read
lazily and posted to ``POST /v1/catalog/items`` in chunks (500 items by default), so a feed of
any size runs in constant memory. Every item keeps the number of the line (CSV, JSON Lines) or
the position (JSON array) it came from, so rejections are reported where the operator can fix
them. Items are upserted by id, which makes importing a feed again safe.

CSV columns:

- ``id`` (or ``item_id``), ``type``, ``title``, ``category``, ``brand``, ``start_at``,
  ``end_at`` (RFC 3339): taken as text;
- ``price`` (a number), ``stock`` (a whole number), ``available`` (true/false, yes/no, 1/0);
  a cell that does not parse is sent as it is, so the server rejects the row and names the
  field;
- ``tags``: separated by ``;``;
- ``content.<channel>.<key>`` (e.g. ``content.web.image_url``): folded into the channel's
  content payload;
- any other column becomes an attribute. Empty cells are left out.
"""

from __future__ import annotations

import csv
import math
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import msgspec
from tqdm import tqdm

__all__ = ["CatalogImportSummary", "Row", "detect_format", "row_to_item", "rows", "run_import"]

_EXTENSIONS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_TEXT_COLUMNS = ("type", "title", "category", "brand", "start_at", "end_at")
_TRUE = frozenset({"true", "yes", "y", "1", "t"})
_FALSE = frozenset({"false", "no", "n", "0", "f"})
_MAX_CHUNK_BYTES = 8 * 1024 * 1024  # the server takes 16 MiB per request
_SHOWN_REASONS = 10
_RETRIES = 4


class Row(NamedTuple):
    """One item of the feed, where it came from, and what the reader made of it.

    Attributes:
        where: line number (CSV, JSON Lines) or position (JSON array), from 1.
        size: bytes of the file it took (for the progress bar).
        item: the item as JSON bytes, or None when it could not be read.
        error: (code, message) when it could not be read.
    """

    where: int
    size: int
    item: bytes | None
    error: tuple[str, str] | None = None


class CatalogImportSummary(msgspec.Struct, kw_only=True):
    items: int = 0
    stored: int = 0
    rejected: list[dict[str, Any]] = msgspec.field(default_factory=list)


class _Failure(Exception):
    """The import cannot go on (bad key, server gone, unreadable file)."""


def detect_format(path: Path) -> str:
    """The format from the file name, else from its first non-blank byte."""
    by_name = _EXTENSIONS.get(path.suffix.lower())
    if by_name is not None:
        return by_name
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return {b"[": "json", b"{": "jsonl"}.get(head, "csv")


def row_to_item(cells: dict[str, str]) -> dict[str, Any]:
    """One CSV record (column → cell) as an item object for the API."""
    item: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    content: dict[str, dict[str, Any]] = {}
    for column, cell in cells.items():
        name, value = column.strip(), cell.strip()
        if not name or not value:
            continue
        if name in ("id", "item_id"):
            item["item_id"] = value
        elif name in _TEXT_COLUMNS:
            item[name] = value
        elif name == "price":
            item["price"] = _number(value)
        elif name == "stock":
            item["stock"] = _whole(value)
        elif name == "available":
            item["available"] = _boolean(value)
        elif name == "tags":
            item["tags"] = [tag.strip() for tag in value.split(";") if tag.strip()]
        elif name.startswith("content.") and name.count(".") >= 2:
            _, channel, key = name.split(".", 2)
            if channel and key:
                content.setdefault(channel, {})[key] = value
            else:
                attributes[name] = value
        else:
            attributes[name] = value
    if attributes:
        item["attributes"] = attributes
    if content:
        item["content"] = content
    return item


def _number(value: str) -> float | str:
    try:
        number = float(value)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


def _whole(value: str) -> int | str:
    try:
        return int(value)
    except ValueError:
        return value


def _boolean(value: str) -> bool | str:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return value


def rows(path: Path, fmt: str) -> Iterator[Row]:
    """The feed's items, lazily, in file order.

    Raises:
        _Failure: (while iterating) the file cannot be read, is not UTF-8, or is a CSV file
            without an id column.
    """
    if fmt == "csv":
        return _csv_rows(path)
    if fmt == "jsonl":
        return _jsonl_rows(path)
    return _json_rows(path)


def _csv_rows(path: Path) -> Iterator[Row]:
    sizes: list[int] = []

    def lines(source: TextIO) -> Iterator[str]:
        for line in source:
            sizes.append(len(line.encode("utf-8", "surrogateescape")))
            yield line

    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(lines(handle))
            header = [name.strip() for name in next(reader, [])]
            if "id" not in header and "item_id" not in header:
                raise _Failure(f"{path.name}: the CSV header has no id column")
            while True:
                where = reader.line_num + 1
                try:
                    record = next(reader, None)
                except csv.Error as exc:
                    yield Row(where, _used(sizes), None, ("invalid_csv", str(exc)))
                    continue
                if record is None:
                    return
                if not any(cell.strip() for cell in record):
                    continue  # a blank line; its bytes count with the next row
                size = _used(sizes)
                if len(record) != len(header):
                    message = f"the row has {len(record)} cells, the header {len(header)}"
                    yield Row(where, size, None, ("invalid_csv", message))
                    continue
                item = row_to_item(dict(zip(header, record, strict=True)))
                yield Row(where, size, msgspec.json.encode(item))
    except UnicodeDecodeError as exc:
        raise _Failure(f"{path.name} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise _Failure(f"cannot read {path}: {exc}") from None


def _used(sizes: list[int]) -> int:
    total = sum(sizes)
    sizes.clear()
    return total


def _jsonl_rows(path: Path) -> Iterator[Row]:
    try:
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    value = msgspec.json.decode(line)
                except msgspec.DecodeError as exc:
                    yield Row(number, len(line), None, ("invalid_json", str(exc)))
                    continue
                yield Row(number, len(line), _json_item(value))
    except OSError as exc:
        raise _Failure(f"cannot read {path}: {exc}") from None


def _json_rows(path: Path) -> Iterator[Row]:
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise _Failure(f"cannot read {path}: {exc}") from None
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise _Failure(f"{path.name} is not valid JSON: {exc}") from None
    values = value if isinstance(value, list) else [value]
    share = len(body) // max(len(values), 1)
    for position, element in enumerate(values, start=1):
        yield Row(position, share, _json_item(element))


def _json_item(value: Any) -> bytes:
    """An item object as JSON; ``id`` stands for ``item_id`` as in the CSV format."""
    if isinstance(value, dict) and "item_id" not in value and "id" in value:
        value = {"item_id": value["id"], **{k: v for k, v in value.items() if k != "id"}}
    return msgspec.json.encode(value)


class _Client:
    def __init__(self, url: str, key: str) -> None:
        self.endpoint = f"{url.rstrip('/')}/v1/catalog/items"
        self.key = key
        self.reached = False  # retry connection failures only once the server answered

    def post(self, items: list[bytes]) -> tuple[int, dict[str, Any]]:
        body = b'{"items":[' + b",".join(items) + b"]}"
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own
            self.endpoint,
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        delay = 0.5
        for attempt in range(_RETRIES + 1):
            try:
                with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
                    self.reached = True
                    return int(response.status), _object(response.read())
            except urllib.error.HTTPError as exc:
                self.reached = True
                if exc.code < 500 or attempt == _RETRIES:
                    return exc.code, _object(exc.read(), exc.reason)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == _RETRIES or not self.reached:
                    raise _Failure(f"cannot reach segue at {self.endpoint}: {exc}") from None
            time.sleep(delay)
            delay *= 2
        raise _Failure("unreachable")  # pragma: no cover - the loop always returns or raises


def _object(raw: bytes, reason: str = "") -> dict[str, Any]:
    try:
        decoded = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        decoded = None
    if isinstance(decoded, dict):
        return decoded
    return {"code": "http_error", "message": raw.decode("utf-8", "replace")[:300] or reason}


def _send(client: _Client, batch: list[Row], summary: CatalogImportSummary) -> None:
    status, payload = client.post([row.item for row in batch if row.item is not None])
    if status == 200:
        summary.stored += int(payload.get("stored", 0))
        for rejection in payload.get("rejected", []):
            summary.rejected.append({**rejection, "where": batch[int(rejection["index"])].where})
        return
    if status == 413 and len(batch) > 1:  # the server's limit is lower than our chunk
        half = len(batch) // 2
        _send(client, batch[:half], summary)
        _send(client, batch[half:], summary)
        return
    if status == 413:
        summary.rejected.append(
            {
                "where": batch[0].where,
                "code": "payload_too_large",
                "message": str(payload.get("message", "item is over the request size limit")),
                "field": None,
            }
        )
        return
    message = payload.get("message", "")
    raise _Failure(f"segue refused the import ({status} {payload.get('code')}): {message}")


def _batches(feed: Iterator[Row], size: int) -> Iterator[tuple[list[Row], list[Row], int]]:
    """(items to send, items the reader could not read, bytes consumed) per chunk."""
    batch: list[Row] = []
    unreadable: list[Row] = []
    consumed = payload = 0
    for row in feed:
        consumed += row.size
        if row.item is None:
            unreadable.append(row)
            continue
        if batch and (len(batch) >= size or payload + len(row.item) > _MAX_CHUNK_BYTES):
            yield batch, unreadable, consumed - row.size
            batch, unreadable, consumed, payload = [], [], row.size, 0
        batch.append(row)
        payload += len(row.item)
    if batch or unreadable:
        yield batch, unreadable, consumed


def run_import(
    *, path: Path, url: str, key: str, fmt: str | None, chunk_items: int, quiet: bool, out: TextIO
) -> int:
    """Import one feed into the catalog; print a summary to ``out``.

    Returns:
        the exit code: 0 when every item was stored, 1 when items were rejected, 2 when the
        import could not run (unreadable file, refused key, unreachable server).
    """
    try:
        total = path.stat().st_size
        fmt = fmt or detect_format(path)
    except OSError as exc:
        print(f"segue catalog import: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    client = _Client(url, key)
    summary = CatalogImportSummary()
    started = time.monotonic()
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=path.name,
        disable=quiet,
        file=sys.stderr,
    ) as bar:
        try:
            for batch, unreadable, consumed in _batches(rows(path, fmt), chunk_items):
                if batch:
                    _send(client, batch, summary)
                summary.items += len(batch) + len(unreadable)
                for row in unreadable:
                    code, message = row.error or ("unreadable", "")
                    summary.rejected.append(
                        {"where": row.where, "code": code, "message": message, "field": None}
                    )
                bar.update(consumed)
                bar.set_postfix(items=summary.items, rejected=len(summary.rejected))
        except _Failure as exc:
            bar.close()
            if summary.items:
                _print_summary(summary, path, fmt, time.monotonic() - started, out)
            print(f"segue catalog import: {exc}", file=sys.stderr)
            return 2
    _print_summary(summary, path, fmt, time.monotonic() - started, out)
    return 1 if summary.rejected else 0


def _print_summary(
    summary: CatalogImportSummary, path: Path, fmt: str, seconds: float, out: TextIO
) -> None:
    unit = "item" if fmt == "json" else "line"
    ordered = sorted(summary.rejected, key=lambda r: int(r["where"]))
    places = sorted({int(r["where"]) for r in ordered})
    shown = ", ".join(str(n) for n in places[:20]) + (", …" if len(places) > 20 else "")
    text = [
        f"imported {path.name} ({fmt}) into the catalog in {seconds:.1f} s",
        f"  items       {summary.items}",
        f"  stored      {summary.stored}",
        f"  rejected    {len(places)}" + (f" ({unit}s {shown})" if places else ""),
    ]
    for rejection in ordered[:_SHOWN_REASONS]:
        field = f" (field {rejection['field']})" if rejection.get("field") else ""
        text.append(
            f"    {unit} {rejection['where']}: {rejection['code']}: {rejection['message']}{field}"
        )
    if len(ordered) > _SHOWN_REASONS:
        text.append(f"    … {len(ordered) - _SHOWN_REASONS} more")
    if places:
        text.append("  fix the rejected items and import the feed again (items are upserted by id)")
    print("\n".join(text), file=out, flush=True)
