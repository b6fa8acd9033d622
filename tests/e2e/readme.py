"""The README, as the tests that hold it to what segue does read it."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def banner_line(line: str) -> str:
    """A line of segue's start-up banner without what is the reader's own: the port, the
    data folder and a generated key."""
    line = re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:<port>", line)
    line = re.sub(r"^( +data +).*$", r"\1<folder>", line)
    return re.sub(r"^( +(?:admin|publishable) key +|  write key \(\S+\) )\S+$", r"\1<key>", line)
