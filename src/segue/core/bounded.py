"""Bounded insertion-ordered dicts: the oldest entries go first, in batches.

A dict finds its first key by scanning past every slot deleted before it, until its next
resize. Dropping the oldest entry at each insert therefore costs more the longer a table
has been full: ~30 µs an insert at 100,000 entries, ~70 µs for the item models' 50,000
open sessions. Dropping a sixteenth of the cap at once pays that scan once per batch.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

__all__ = ["trim_oldest"]


def trim_oldest(table: dict[Any, Any], cap: int) -> None:
    """Past ``cap`` entries, drop the oldest (first inserted) down to ``cap - cap // 16``."""
    over = len(table) - cap
    if over > 0:
        for key in list(islice(table, over + cap // 16)):
            del table[key]
