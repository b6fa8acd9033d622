"""Shared fixtures: a live segue server per test module, real services gated on CI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import CLUSTER, SegueServer


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``make cluster`` runs the end-to-end suite on a cluster; tests about the embedded
    backends (SQLite files, one process's counters; the marker says which) do not apply
    there and are deselected, never skipped: a skip would read as a missing server."""
    if not CLUSTER:
        return
    embedded = [item for item in items if item.get_closest_marker("embedded") is not None]
    if embedded:
        config.hook.pytest_deselected(items=embedded)
        items[:] = [item for item in items if item.get_closest_marker("embedded") is None]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SegueServer]:
    """A running segue with the embedded backends, fresh data folder, fixed test keys."""
    data: Path = tmp_path_factory.mktemp("segue") / "data"
    srv = SegueServer(data).start()
    try:
        yield srv
    finally:
        srv.stop()
