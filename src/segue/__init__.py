"""segue: a real-time personalization engine with its own customer data platform.

The public Python surface is small on purpose; everything else may move between releases.
Names are imported on first use, so ``import segue`` stays cheap and loads no numeric
library before the command line has configured it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segue.errors import SegueError
    from segue.runtime import Runtime
    from segue.settings import Settings, load_settings

__all__ = ["Runtime", "SegueError", "Settings", "load_settings"]

_WHERE = {
    "Runtime": "segue.runtime",
    "SegueError": "segue.errors",
    "Settings": "segue.settings",
    "load_settings": "segue.settings",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'segue' has no attribute {name!r}")
    return getattr(import_module(module), name)
