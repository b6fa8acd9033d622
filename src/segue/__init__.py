"""segue: a real-time personalization engine with its own customer data platform.

The public Python surface is small on purpose; everything else may move between releases.
"""

from segue.errors import SegueError
from segue.runtime import Runtime
from segue.settings import Settings, load_settings

__all__ = ["Runtime", "SegueError", "Settings", "load_settings"]
