"""One PostgreSQL database used from asyncio: a connection pool, versioned migrations, and
transactions that fail as :class:`BackendUnavailable` instead of leaking driver errors.

Shared by every PostgreSQL adapter. Each adapter is a *component* (``catalog``, ``audit``,
…) with its own list of migrations; ``schema_migrations`` records which versions of which
component are applied in the current schema. Two processes opening the same database at
once are safe: migrations run under a transaction-scoped advisory lock keyed by the schema,
so the second waits and then finds everything applied.

Connections are in autocommit mode: a single read is its own transaction and never leaves
a connection idle in a transaction; writes that must be atomic go through
:meth:`PgDatabase.transaction`, which commits on success and rolls back on any error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from segue.errors import BackendUnavailable, InvalidInput

__all__ = ["Migration", "PgDatabase", "advisory_key"]

#: a migration: an SQL script, or a coroutine function run with the migrating connection
Migration = str | Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]

#: seconds a request waits for a pooled connection before it fails
_CHECKOUT_TIMEOUT_S = 5.0

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component  TEXT NOT NULL,
    version    INTEGER NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""


def advisory_key(name: str) -> str:
    """SQL for a 64-bit advisory lock key naming ``name`` in the current schema.

    Advisory locks are database-wide; folding the schema in keeps two installations (or two
    test schemas) in one database from waiting on each other.
    """
    literal = name.replace("'", "''")
    return f"hashtextextended(current_schema() || ':{literal}', 0)"


class PgDatabase:
    """A pool of connections to one database, with the migrations of one component.

    Args:
        url: a libpq URL (``postgresql://user@host:5432/db?options=-csearch_path%3Dx``).
        component: the name migrations are recorded under (one per adapter).
        migrations: SQL scripts, applied in order; version n is ``migrations[n - 1]``.
            Never edit an applied script: append a new one. A migration may also be a
            coroutine function taking the connection, for one that needs more than SQL
            (a key the server does not have); it runs in the same transaction.
        synchronous_commit: ``on`` acknowledges a commit once it is flushed to disk on the
            server (the consent ledger, the audit log, keys, the catalog); ``off`` may lose
            the last moments on a server crash but never corrupts (a decision log).
        min_size, max_size: pool bounds per process. Every adapter has its own pool, so
            keep them small: a process holds the sum of them, and the server's
            ``max_connections`` (100 by default) is shared by every process. By default
            a pool holds no connection until it is used (most stores are used rarely).
    """

    def __init__(
        self,
        url: str,
        component: str,
        migrations: Sequence[Migration],
        *,
        synchronous_commit: str = "on",
        min_size: int = 0,
        max_size: int = 4,
    ) -> None:
        if synchronous_commit not in ("on", "off", "local", "remote_write", "remote_apply"):
            raise ValueError(f"bad synchronous_commit {synchronous_commit!r}")
        self.url = url
        self.component = component
        self._migrations = list(migrations)
        self._synchronous_commit = synchronous_commit
        self._min_size, self._max_size = min_size, max_size
        # created by open(), inside the event loop that will use it
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._checking: asyncio.Task[None] | None = None

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        # set per connection, so a server default of synchronous_commit=off can never make
        # an acknowledged consent change or audit entry losable
        await conn.execute(f"SET synchronous_commit = {self._synchronous_commit}")

    async def open(self) -> None:
        """Open the pool and apply missing migrations; idempotent."""
        if self._pool is not None:
            return
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            self.url,
            min_size=self._min_size,
            max_size=self._max_size,
            kwargs={"autocommit": True},
            configure=self._configure,
            open=False,
            name=f"segue-{self.component}",
            # a request waits this long for a connection, then fails as BackendUnavailable
            # (503 + Retry-After): when the server is gone, clients hear so in seconds, not
            # after the driver's default of 30 s with their requests piled up behind it
            timeout=_CHECKOUT_TIMEOUT_S,
            # a pool of a rarely used store gives its connections back soon
            max_idle=60.0 if self._min_size == 0 else 600.0,
        )
        try:
            await pool.open(wait=True, timeout=10.0)
        except psycopg.Error as exc:  # PoolTimeout is an OperationalError
            await pool.close()  # stop its background reconnection attempts
            raise BackendUnavailable(f"postgresql {self.component}: {exc}") from exc
        self._pool = pool
        await self.migrate()

    async def migrate(self) -> None:
        """Apply the component's missing migrations, one transaction, under the lock."""
        async with self.transaction() as conn:
            await conn.execute(f"SELECT pg_advisory_xact_lock({advisory_key('migrations')})")
            await conn.execute(_MIGRATIONS_TABLE)
            cur = await conn.execute(
                "SELECT coalesce(max(version), 0) FROM schema_migrations WHERE component = %s",
                (self.component,),
            )
            row = await cur.fetchone()
            applied = int(row[0]) if row else 0
            for version, script in enumerate(self._migrations, start=1):
                if version <= applied:
                    continue
                if isinstance(script, str):
                    await conn.execute(script)
                else:
                    await script(conn)
                await conn.execute(
                    "INSERT INTO schema_migrations (component, version) VALUES (%s, %s)",
                    (self.component, version),
                )

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection in autocommit mode (each statement is its own transaction)."""
        if self._pool is None:
            raise BackendUnavailable(f"postgresql {self.component}: not open")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.DataError as exc:  # e.g. a NUL character, which text cannot hold
            raise InvalidInput(f"postgresql {self.component}: {exc}") from exc
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError):
                self._check_idle()
            raise BackendUnavailable(f"postgresql {self.component}: {exc}") from exc

    def _check_idle(self) -> None:
        """The server may have gone away: test the idle connections now, in the background.

        Otherwise each connection idle through an outage fails one request after it, one
        by one; checked at once, they are replaced as soon as the server is back.
        """
        if self._pool is None or (self._checking is not None and not self._checking.done()):
            return
        self._checking = asyncio.get_running_loop().create_task(self._pool.check())
        # a failed check only means the server is still away; the pool keeps reconnecting
        self._checking.add_done_callback(lambda task: task.cancelled() or task.exception())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection inside BEGIN … COMMIT (ROLLBACK on any error).

        The commit has returned (and, with ``synchronous_commit=on``, is on disk) before
        the ``async with`` block is left.
        """
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read statement and return its rows."""
        async with self.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """Run one read statement and return its first row (None when there is none)."""
        async with self.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchone()

    async def vacuum(self, *tables: str) -> None:
        """Reclaim the dead rows an erasure left behind, now rather than at autovacuum's pace.

        PostgreSQL keeps a deleted row's bytes in its page until vacuum prunes it; the write-
        ahead log and any base backup keep their own copies until they are recycled, which
        is the operator's retention policy. VACUUM cannot run in a transaction block: the
        connection is in autocommit mode.
        """
        async with self.connection() as conn:
            for table in tables:
                await conn.execute(f"VACUUM {table}")

    async def aclose(self) -> None:
        """Close every connection of the pool."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            if self._checking is not None:
                await asyncio.gather(self._checking, return_exceptions=True)
            await pool.close()
