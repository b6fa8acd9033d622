"""A TCP relay in front of a real server (NATS, PostgreSQL, Redis) that a test can break.

segue connects to the relay's port instead of the server's. The test then makes the server
"go away" without touching the real one, which other tests share:

- :meth:`TcpRelay.cut` resets every open connection (a network blip; new ones still work);
- :meth:`TcpRelay.down` resets them and stops listening (the server is gone: connection
  refused) until :meth:`TcpRelay.up` listens again on the same port;
- :meth:`TcpRelay.freeze` keeps every connection open and drops what crosses it (a
  partition that resets nothing) until :meth:`TcpRelay.down` / :meth:`TcpRelay.up`.

The relay runs its own asyncio loop in a daemon thread, so blocking test code can drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any

__all__ = ["TcpRelay"]


class TcpRelay:
    """Forwards ``127.0.0.1:<port>`` to ``host:port``.

    Args:
        host, port: the real server.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.connections = 0  # accepted so far, for tests that check a reconnect happened
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._frozen = False
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._run(self._listen())

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, client_in: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_in, server = await asyncio.open_connection(*self.target)
        except OSError:
            client.transport.abort()
            return
        self._open.update((client, server))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while chunk := await src.read(1 << 16):
                    if self._frozen:
                        continue
                    dst.write(chunk)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(client_in, server), pump(server_in, client))
        self._open.difference_update((client, server))

    async def _reset(self, listen: bool) -> None:
        self._frozen = False
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()
        if not listen and self._server is not None:
            self._server.close()  # stops listening at once; its handlers are reset above
            self._server = None

    def cut(self) -> None:
        """Reset every open connection; keep accepting new ones."""
        self._run(self._reset(listen=True))

    def freeze(self) -> None:
        """Drop every byte both ways on the open connections, resetting none of them."""
        self._frozen = True

    def down(self) -> None:
        """Reset every open connection and refuse new ones until :meth:`up`."""
        self._run(self._reset(listen=False))

    def up(self) -> None:
        """Listen again, on the same port."""
        if self._server is None:
            self._run(self._listen())

    def close(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> TcpRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
