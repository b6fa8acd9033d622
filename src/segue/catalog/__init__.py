"""The headless catalog: item types, availability, and filtered paging over the port."""

from segue.catalog.items import ITEM_TYPES, is_available, page

__all__ = ["ITEM_TYPES", "is_available", "page"]
