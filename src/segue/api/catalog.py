"""Catalog endpoints: the headless catalog of products, offers and content.

- ``PUT /v1/catalog/items/{item_id}`` stores one whole item (replacing any previous one) and
  answers the stored item. The body may omit ``item_id``; when it has one, it must equal the
  path's.
- ``GET /v1/catalog/items/{item_id}`` answers the item with ``is_available_now``;
  ``DELETE`` removes it. Both are 404 for an unknown id.
- ``POST /v1/catalog/items`` upserts up to 1,000 items ``{"items": [...]}``; valid items are
  stored even when others are not: ``{"stored": n, "rejected": [{"index", "code", "message",
  "field"}]}`` with ``field`` a JSON path inside the rejected item.
- ``GET /v1/catalog/items?after=&limit=&type=&category=`` pages through the catalog in id
  order: ``{"items": [...], "next": <cursor or null>}``.

Writes need the admin key, reads the admin or the publishable key (Bearer). Times are RFC 3339
strings with a time zone on the wire and epoch seconds in the store; ``updated_at`` is set by
the server.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from segue.api.http import Request, Response, Route, json_response
from segue.api.profile_view import iso
from segue.catalog import ITEM_TYPES, is_available, page
from segue.core.model import Item
from segue.errors import InvalidInput, NotFound, PayloadTooLarge

if TYPE_CHECKING:
    from segue.api.app import SegueApp

__all__ = [
    "BulkItemsRequest",
    "BulkItemsResponse",
    "DeleteItemResponse",
    "ItemIn",
    "ItemOut",
    "ItemPage",
    "ItemRejectedOut",
    "item_out",
    "routes",
]

#: items per bulk request
MAX_BULK_ITEMS = 1_000
#: bytes of one item (a PUT body, or one element of a bulk request)
MAX_ITEM_BYTES = 1024 * 1024
#: bytes of a bulk request
MAX_BULK_BYTES = 16 * 1024 * 1024

_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_ItemId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=256,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="the catalog's own id; events refer to it as product_id",
    ),
]
_Time = Annotated[
    datetime,
    msgspec.Meta(tz=True, description="RFC 3339 with a time zone, e.g. 2025-06-01T00:00:00Z"),
]
_Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Content = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description="channel (web, app, email, …) → the payload to render there",
        extra_json_schema={"additionalProperties": {"type": "object"}},
    ),
]


class ItemIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An item as clients send it; ``updated_at`` and ``is_available_now`` are read-only and
    ignored, so an item read with GET can be sent back as it is."""

    item_id: _ItemId | None = None
    type: Literal["product", "offer", "content"] = "product"
    title: Annotated[str, msgspec.Meta(max_length=1000)] = ""
    category: _Text | None = None
    brand: _Text | None = None
    price: Annotated[float, msgspec.Meta(ge=0)] | None = None
    tags: Annotated[list[_Tag], msgspec.Meta(max_length=100)] = []
    attributes: dict[str, Any] = {}
    available: bool = True
    stock: Annotated[int, msgspec.Meta(ge=0, description="omit when not tracked")] | None = None
    start_at: _Time | None = None
    end_at: _Time | None = None
    content: _Content = {}
    updated_at: str | None = None
    is_available_now: bool | None = None


class ItemOut(msgspec.Struct, kw_only=True):
    """A stored item; times are RFC 3339 UTC, ``is_available_now`` is computed at server time."""

    item_id: str
    type: str
    title: str
    category: str | None
    brand: str | None
    price: float | None
    tags: list[str]
    attributes: dict[str, Any]
    available: bool
    stock: int | None
    start_at: str | None
    end_at: str | None
    content: dict[str, dict[str, Any]]
    updated_at: str
    is_available_now: bool


class BulkItemsRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Up to 1,000 items, each with its ``item_id``."""

    items: Annotated[list[ItemIn], msgspec.Meta(max_length=MAX_BULK_ITEMS)]


class ItemRejectedOut(msgspec.Struct, kw_only=True):
    """An item of a bulk request that was not stored: its position and why."""

    index: int
    code: str
    message: str
    field: str | None = None


class BulkItemsResponse(msgspec.Struct, kw_only=True):
    stored: int
    rejected: list[ItemRejectedOut]


class ItemPage(msgspec.Struct, kw_only=True):
    items: list[ItemOut]
    next: str | None


class DeleteItemResponse(msgspec.Struct, kw_only=True):
    item_id: str
    deleted: bool


class _BulkEnvelope(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    items: list[msgspec.Raw]


_item_decoder = msgspec.json.Decoder(ItemIn)
_bulk_decoder = msgspec.json.Decoder(_BulkEnvelope)
_NAMED_FIELD = re.compile(r"^Object (?:contains unknown|missing required) field `(.+)`$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: the epoch seconds a window bound may take: 1970-01-01 to 9999-12-30 (UTC)
_EPOCH_RANGE = (0.0, 253_402_128_000.0)


def routes(app: SegueApp) -> list[Route]:
    """The catalog routes."""
    return _CatalogEndpoints(app).routes()


def _invalid(exc: msgspec.ValidationError) -> InvalidInput:
    """msgspec's message and JSON path (``… - at `$.price```) as an ``invalid_item`` error."""
    text, sep, path = str(exc).partition(" - at `")
    field = path.rstrip("`") if sep else "$"
    named = _NAMED_FIELD.match(text)
    if named:
        field = f"{field}.{named.group(1)}"
    return InvalidInput(text, field=field, code="invalid_item")


def _decode_item(raw: bytes) -> ItemIn:
    """Decode and check one item.

    Raises:
        InvalidInput: not JSON (``invalid_json``) or not a valid item (``invalid_item``), with
            the JSON path of the field at fault.
    """
    try:
        dto = _item_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}", code="invalid_json") from None
    for channel, payload in dto.content.items():
        if not channel or len(channel) > 64 or _CONTROL.search(channel):
            raise InvalidInput(
                "a channel name has 1–64 printable characters",
                field="$.content",
                code="invalid_item",
            )
        if not isinstance(payload, dict):
            raise InvalidInput(
                f"the content of a channel is an object, got {type(payload).__name__}",
                field=f"$.content.{channel}",
                code="invalid_item",
            )
    for name, when in (("start_at", dto.start_at), ("end_at", dto.end_at)):
        if when is not None and not _EPOCH_RANGE[0] <= when.timestamp() <= _EPOCH_RANGE[1]:
            raise InvalidInput(
                f"{name} must lie between 1970 and 9999", field=f"$.{name}", code="invalid_item"
            )
    if dto.start_at is not None and dto.end_at is not None and dto.end_at <= dto.start_at:
        raise InvalidInput("end_at must be after start_at", field="$.end_at", code="invalid_item")
    return dto


def _to_item(dto: ItemIn, item_id: str, now: float) -> Item:
    return Item(
        item_id=item_id,
        type=dto.type,
        title=dto.title,
        category=dto.category,
        brand=dto.brand,
        price=dto.price,
        tags=list(dto.tags),
        attributes=dto.attributes,
        available=dto.available,
        stock=dto.stock,
        start_at=None if dto.start_at is None else dto.start_at.timestamp(),
        end_at=None if dto.end_at is None else dto.end_at.timestamp(),
        content=dto.content,
        updated_at=now,
    )


def item_out(item: Item, now: float) -> ItemOut:
    """The wire form of a stored item, with its availability at ``now`` (epoch seconds)."""
    return ItemOut(
        item_id=item.item_id,
        type=item.type,
        title=item.title,
        category=item.category,
        brand=item.brand,
        price=item.price,
        tags=item.tags,
        attributes=item.attributes,
        available=item.available,
        stock=item.stock,
        start_at=None if item.start_at is None else iso(item.start_at),
        end_at=None if item.end_at is None else iso(item.end_at),
        content=item.content,
        updated_at=iso(item.updated_at),
        is_available_now=is_available(item, now),
    )


class _CatalogEndpoints:
    def __init__(self, app: SegueApp) -> None:
        self._app = app

    def routes(self) -> list[Route]:
        return [
            Route(
                method="PUT",
                path="/v1/catalog/items/{item_id}",
                handler=self.put_item,
                tag="catalog",
                auth="admin",
                request=ItemIn,
                response=ItemOut,
                errors=(400, 401, 413, 503),
                summary="Store one whole item (insert or replace); answers the stored item",
            ),
            Route(
                method="GET",
                path="/v1/catalog/items/{item_id}",
                handler=self.get_item,
                tag="catalog",
                auth="publishable",
                response=ItemOut,
                errors=(401, 404, 503),
                summary="One item with is_available_now; admin or publishable key",
            ),
            Route(
                method="DELETE",
                path="/v1/catalog/items/{item_id}",
                handler=self.delete_item,
                tag="catalog",
                auth="admin",
                response=DeleteItemResponse,
                errors=(401, 404, 503),
                summary="Remove an item",
            ),
            Route(
                method="POST",
                path="/v1/catalog/items",
                handler=self.bulk_upsert,
                tag="catalog",
                auth="admin",
                request=BulkItemsRequest,
                response=BulkItemsResponse,
                errors=(400, 401, 413, 503),
                summary="Insert or replace up to 1,000 items; valid items are stored even "
                "when others are rejected",
            ),
            Route(
                method="GET",
                path="/v1/catalog/items",
                handler=self.list_items,
                tag="catalog",
                auth="publishable",
                response=ItemPage,
                errors=(400, 401, 503),
                summary="Page through the catalog in id order; admin or publishable key",
                query={
                    "after": "next of the previous page (default: from the start)",
                    "limit": "items, 1–1000 (default 100)",
                    "type": "only product, offer or content",
                    "category": "only this category",
                },
            ),
        ]

    def _now(self) -> float:
        return self._app.runtime.clock.now()

    async def put_item(self, request: Request) -> Response:
        """Store one item under the path's id; 400 when the body names another id."""
        item_id = request.params["item_id"]
        if len(item_id) > 256 or _CONTROL.search(item_id):
            raise InvalidInput(
                "an item id has 1–256 printable characters", field="item_id", code="invalid_item"
            )
        dto = _decode_item(await request.body(MAX_ITEM_BYTES))
        if dto.item_id is not None and dto.item_id != item_id:
            raise InvalidInput(
                f"the body's item_id {dto.item_id!r} is not the path's {item_id!r}",
                field="$.item_id",
                code="item_id_mismatch",
            )
        now = self._now()
        item = _to_item(dto, item_id, now)
        await self._app.runtime.catalog.put([item])
        return json_response(item_out(item, now))

    async def get_item(self, request: Request) -> Response:
        item_id = request.params["item_id"]
        item = (await self._app.runtime.catalog.get([item_id])).get(item_id)
        if item is None:
            raise NotFound(f"no item {item_id!r}")
        return json_response(item_out(item, self._now()))

    async def delete_item(self, request: Request) -> Response:
        item_id = request.params["item_id"]
        if not await self._app.runtime.catalog.delete(item_id):
            raise NotFound(f"no item {item_id!r}")
        return json_response({"item_id": item_id, "deleted": True})

    async def bulk_upsert(self, request: Request) -> Response:
        """Store every valid item of the request in one transaction; report the others."""
        body = await request.body(MAX_BULK_BYTES)
        try:
            envelope = _bulk_decoder.decode(body)
        except msgspec.ValidationError as exc:
            error = _invalid(exc)
            raise InvalidInput(error.message, field=error.field) from None
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"body is not valid JSON: {exc}", code="invalid_json") from None
        if len(envelope.items) > MAX_BULK_ITEMS:
            raise PayloadTooLarge(
                f"{len(envelope.items)} items in one request; send at most {MAX_BULK_ITEMS}",
                field="$.items",
            )
        now = self._now()
        valid: dict[str, Item] = {}
        stored = 0
        rejected: list[dict[str, Any]] = []
        for index, raw in enumerate(envelope.items):
            try:
                if len(raw) > MAX_ITEM_BYTES:
                    raise PayloadTooLarge(
                        f"item is {len(raw)} bytes, over the limit of {MAX_ITEM_BYTES}"
                    )
                dto = _decode_item(raw)
                if dto.item_id is None:
                    raise InvalidInput(
                        "item_id is required in a bulk request",
                        field="$.item_id",
                        code="invalid_item",
                    )
            except InvalidInput as exc:
                rejected.append(
                    {"index": index, "code": exc.code, "message": exc.message, "field": exc.field}
                )
                continue
            valid.pop(dto.item_id, None)  # the last one wins, in request order
            valid[dto.item_id] = _to_item(dto, dto.item_id, now)
            stored += 1
        if valid:
            await self._app.runtime.catalog.put(list(valid.values()))
        return json_response({"stored": stored, "rejected": rejected})

    async def list_items(self, request: Request) -> Response:
        after = request.query.get("after", "")
        limit = _limit(request.query.get("limit"))
        item_type = request.query.get("type") or None
        if item_type is not None and item_type not in ITEM_TYPES:
            raise InvalidInput(f"type must be one of {', '.join(ITEM_TYPES)}", field="type")
        category = request.query.get("category") or None
        items, cursor = await page(
            self._app.runtime.catalog, after, limit, item_type=item_type, category=category
        )
        now = self._now()
        return json_response({"items": [item_out(i, now) for i in items], "next": cursor})


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return 100
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= 1000:
        raise InvalidInput("limit must be a whole number from 1 to 1000", field="limit")
    return int(raw)
