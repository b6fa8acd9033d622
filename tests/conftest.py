"""Shared fixtures: a live segue server per test module, real services gated on CI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import SegueServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SegueServer]:
    """A running segue with the embedded backends, fresh data folder, fixed test keys."""
    data: Path = tmp_path_factory.mktemp("segue") / "data"
    srv = SegueServer(data).start()
    try:
        yield srv
    finally:
        srv.stop()
