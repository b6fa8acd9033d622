"""Every adapter of a port runs the same contract suite (memory is the reference)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from segue.storage.memory import MemoryEventLog, MemoryProfileStore, MemoryQuarantine
from segue.storage.memory_catalog import MemoryCatalogStore
from segue.storage.memory_consent import MemoryConsentStore
from segue.storage.memory_decisions import MemoryDecisionStore
from segue.storage.sqlite import SqliteEventLog, SqliteProfileStore, SqliteQuarantine
from segue.storage.sqlite_catalog import SqliteCatalogStore
from segue.storage.sqlite_consent import SqliteConsentStore
from segue.storage.sqlite_decisions import SqliteDecisionStore
from tests.backends import (
    nats_stream,  # noqa: F401  (a fixture: NATS URL, fresh stream name)
    pg_dsn,  # noqa: F401  (a fixture: a DSN on a fresh schema)
    redis_url,  # noqa: F401  (a fixture: Redis URL, fresh key prefix)
)


class Sync:
    """Drives an async adapter from sync tests on one private event loop."""

    def __init__(self, adapter: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.adapter = adapter
        self.run(adapter.open())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.adapter, name)
        return lambda *a, **kw: self.run(method(*a, **kw))

    def close(self) -> None:
        self.run(self.adapter.aclose())
        self.loop.close()


def _make(kind: str, memory: type, sqlite: type, tmp_path) -> Iterator[Sync]:
    adapter = memory() if kind == "memory" else sqlite(tmp_path)
    sync = Sync(adapter)
    yield sync
    sync.close()


@pytest.fixture(params=["memory", "sqlite", "nats"])
def event_log(request, tmp_path) -> Iterator[Sync]:
    if request.param == "nats":
        from segue.storage.nats_log import NatsEventLog

        url, stream = request.getfixturevalue("nats_stream")
        sync = Sync(NatsEventLog(f"{url}?stream={stream}"))
        yield sync
        sync.close()
        return
    yield from _make(request.param, MemoryEventLog, SqliteEventLog, tmp_path)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def profile_store(request, tmp_path) -> Iterator[Sync]:
    if request.param == "postgresql":
        from segue.storage.postgres import PostgresProfileStore

        yield from _on_server(PostgresProfileStore(request.getfixturevalue("pg_dsn")))
        return
    yield from _make(request.param, MemoryProfileStore, SqliteProfileStore, tmp_path)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def quarantine(request, tmp_path) -> Iterator[Sync]:
    if request.param == "postgresql":
        from segue.storage.postgres import PostgresQuarantine

        yield from _on_server(PostgresQuarantine(request.getfixturevalue("pg_dsn")))
        return
    yield from _make(request.param, MemoryQuarantine, SqliteQuarantine, tmp_path)


def _on_server(adapter: Any) -> Iterator[Sync]:
    """An adapter of a server backend (its namespace comes from a backends fixture)."""
    sync = Sync(adapter)
    yield sync
    sync.close()


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def catalog_store(request, tmp_path) -> Iterator[Sync]:
    if request.param == "postgresql":
        from segue.storage.postgres_catalog import PostgresCatalogStore

        yield from _on_server(PostgresCatalogStore(request.getfixturevalue("pg_dsn")))
        return
    yield from _make(request.param, MemoryCatalogStore, SqliteCatalogStore, tmp_path)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def decision_store(request, tmp_path) -> Iterator[Sync]:
    if request.param == "postgresql":
        from segue.storage.postgres_decisions import PostgresDecisionStore

        yield from _on_server(PostgresDecisionStore(request.getfixturevalue("pg_dsn")))
        return
    yield from _make(request.param, MemoryDecisionStore, SqliteDecisionStore, tmp_path)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def consent_store(request, tmp_path) -> Iterator[Sync]:
    if request.param == "postgresql":
        from segue.storage.postgres_consent import PostgresConsentStore

        yield from _on_server(PostgresConsentStore(request.getfixturevalue("pg_dsn")))
        return
    yield from _make(request.param, MemoryConsentStore, SqliteConsentStore, tmp_path)
