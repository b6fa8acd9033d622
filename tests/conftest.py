"""Shared fixtures: a live segue server per test module, real services gated on CI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import CLUSTER, SegueServer


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``make cluster`` runs the end-to-end suite on a cluster; tests about the embedded
    backends (SQLite files, one process's counters) say why they do not apply there."""
    if not CLUSTER:
        return
    for item in items:
        marker = item.get_closest_marker("embedded")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"embedded backends only: {reason}"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SegueServer]:
    """A running segue with the embedded backends, fresh data folder, fixed test keys."""
    data: Path = tmp_path_factory.mktemp("segue") / "data"
    srv = SegueServer(data).start()
    try:
        yield srv
    finally:
        srv.stop()
