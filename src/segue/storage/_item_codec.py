"""The stored form of a catalog item, shared by every catalog adapter.

msgpack (compact, fast) unless an attribute holds an integer msgpack cannot carry (beyond
64 bits): then JSON. The first byte tells them apart: a JSON document starts with ``{``, which
is never the first byte of a msgpack map of an item's size. Sharing one codec keeps every
adapter returning exactly the values the others return.
"""

from __future__ import annotations

import msgspec

from segue.core.model import Item
from segue.errors import InvalidInput

__all__ = ["decode_item", "encode_item"]

_msgpack_encode = msgspec.msgpack.Encoder().encode
_msgpack_decode = msgspec.msgpack.Decoder(Item).decode
_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder(Item).decode


def encode_item(item: Item) -> bytes:
    """The item as stored bytes.

    Raises:
        InvalidInput: a value is not plain data (str, number, bool, None, list, dict, bytes)
            or a string is not valid Unicode (a lone surrogate); nothing is stored.
    """
    try:
        return _msgpack_encode(item)
    except OverflowError:
        pass
    except (TypeError, UnicodeEncodeError) as exc:
        raise InvalidInput(f"item {item.item_id!r} cannot be stored: {exc}") from exc
    try:
        return _json_encode(item)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"item {item.item_id!r} cannot be stored: {exc}") from exc


def decode_item(doc: bytes) -> Item:
    """The item from its stored bytes."""
    return _json_decode(doc) if doc[:1] == b"{" else _msgpack_decode(doc)
