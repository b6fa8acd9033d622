"""The Segment e-commerce spec, read leniently: what kind an event is and which products it names.

Real senders differ: ids arrive as numbers, prices as strings, event names in snake case,
``products[]`` on events the spec gives a single product. Everything here accepts that and
never raises; a value it cannot read is treated as absent. Sizes are capped (product lines per
event, text length) so that one hostile event cannot make a fold slow or a profile large.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NamedTuple

import msgspec

from segue.core.events import Event, Page, Screen, Track

__all__ = [
    "ADD",
    "CART",
    "CLICK",
    "MAX_LINES",
    "MAX_QUANTITY",
    "MAX_TEXT",
    "NONE",
    "ORDER",
    "OTHER",
    "PAGE",
    "REMOVE",
    "VIEW",
    "ItemInfo",
    "ItemLookup",
    "ProductLine",
    "kind_of",
    "number",
    "order_value",
    "product_lines",
    "region_of",
    "session_id_of",
    "text",
]

# event kinds, as small ints: they are compared on every event
NONE: Final = 0  # identify, group, alias: no behaviour
PAGE: Final = 1  # page or screen
VIEW: Final = 2  # Product Viewed
CLICK: Final = 3  # Product Clicked
ADD: Final = 4  # Product Added
REMOVE: Final = 5  # Product Removed
CART: Final = 6  # Cart Viewed
ORDER: Final = 7  # Order Completed
OTHER: Final = 8  # any other track

_NAMES: Final = {
    "product viewed": VIEW,
    "product clicked": CLICK,
    "product added": ADD,
    "product removed": REMOVE,
    "cart viewed": CART,
    "order completed": ORDER,
}
_EXACT: Final = {name.title(): kind for name, kind in _NAMES.items()}

#: product lines read from one event, at most
MAX_LINES: Final = 100
#: characters kept of an id, category or brand
MAX_TEXT: Final = 200
#: quantities above this are read as this
MAX_QUANTITY: Final = 10_000


class ItemInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What the catalog knows about an item, for events that omit it.

    Attributes:
        category: the item's category (``Shoes`` or a path such as ``Shoes/Running``).
        brand: the item's brand.
        price: unit price in the shop's currency.
    """

    category: str | None = None
    brand: str | None = None
    price: float | None = None


ItemLookup = Callable[[str], ItemInfo | None]


class ProductLine(NamedTuple):
    """One product named by an event; ``quantity`` is None when the event did not say."""

    product_id: str | None
    category: str | None
    brand: str | None
    price: float | None
    quantity: int | None


def kind_of(event: Event) -> int:
    """The kind of an event: one of the module's constants (``VIEW``, ``ORDER``, …)."""
    if isinstance(event, Track):
        kind = _EXACT.get(event.event)
        if kind is None:
            kind = _NAMES.get(event.event.strip().lower().replace("_", " "), OTHER)
        return kind
    if isinstance(event, Page | Screen):
        return PAGE
    return NONE


def text(value: Any) -> str | None:
    """A non-empty, stripped, length-capped string from a string or a number, else None."""
    if isinstance(value, str):
        value = value.strip()
        return value[:MAX_TEXT] if value else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)[:MAX_TEXT]
    if isinstance(value, float) and value.is_integer():
        return str(int(value))[:MAX_TEXT]
    return None


def number(value: Any) -> float | None:
    """A finite float from a number or a numeric string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value) if -1e15 < value < 1e15 else math.nan
    elif isinstance(value, str) and len(value) < 40:
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def _quantity(value: Any) -> int | None:
    amount = number(value)
    if amount is None or amount < 1:
        return None
    return min(int(amount), MAX_QUANTITY)


def product_lines(props: Mapping[str, Any], lookup: ItemLookup | None) -> list[ProductLine]:
    """The products an event names: ``products[]`` when it is a list, else the event itself.

    A line needs a ``product_id`` (or ``sku``, or the v1 ``id``) or at least a category or a
    brand. Category, brand and price missing from the event come from ``lookup``.
    """
    raw = props.get("products")
    entries: Sequence[Any] = raw[:MAX_LINES] if type(raw) is list else (props,)
    lines: list[ProductLine] = []
    for entry in entries:
        if type(entry) is not dict:
            continue
        get = entry.get
        # the common case (strings, float prices) inline: this runs for every product event
        value = get("product_id")
        product_id = (value.strip()[:MAX_TEXT] or None) if type(value) is str else text(value)
        if product_id is None:
            product_id = text(get("sku")) or text(get("id"))
        value = get("category")
        category = (value.strip()[:MAX_TEXT] or None) if type(value) is str else text(value)
        value = get("brand")
        brand = (value.strip()[:MAX_TEXT] or None) if type(value) is str else text(value)
        value = get("price")
        if type(value) is float and -1e15 < value < 1e15:
            price: float | None = value
        else:
            price = None if value is None else number(value)
        if (category is None or brand is None or price is None) and (
            lookup is not None and product_id is not None
        ):
            info = lookup(product_id)
            if info is not None:
                category = category or text(info.category)
                brand = brand or text(info.brand)
                price = price if price is not None else number(info.price)
        if product_id is None and category is None and brand is None:
            continue
        value = get("quantity")
        quantity = None if value is None else _quantity(value)
        lines.append(ProductLine(product_id, category, brand, price, quantity))
    return lines


def order_value(props: Mapping[str, Any], lines: list[ProductLine]) -> float:
    """What an order is worth: ``revenue``, else ``total``, else ``value``, else the sum of
    price × quantity of its products; negative or unreadable amounts count as 0."""
    for key in ("revenue", "total", "value"):
        amount = number(props.get(key))
        if amount is not None and amount >= 0:
            return amount
    total = 0.0
    for line in lines:
        if line.price is not None and line.price > 0:
            total += line.price * (line.quantity or 1)
    return total


def session_id_of(event: Event) -> str | None:
    """The sender's session id: ``context.sessionId`` (RudderStack, analytics-next plugins),
    ``context.session_id``, or ``integrations.Amplitude.session_id``; None when absent."""
    context = event.context
    if context:
        found = context.get("sessionId")
        if found is None:
            found = context.get("session_id")
        if found is not None:
            return text(found)
    integrations = event.integrations
    if integrations:
        amplitude = integrations.get("Amplitude")
        if isinstance(amplitude, dict):
            return text(amplitude.get("session_id"))
    return None


def region_of(event: Event) -> str | None:
    """The coarse region of an event: ``context.location.country``, upper-cased; or None."""
    location = event.context.get("location")
    if isinstance(location, dict):
        country = text(location.get("country"))
        if country is not None:
            return country[:64].upper()
    return None
