"""A small asyncio HTTP/1.1 client with keep-alive connections, for the demo traffic.

The demo sends a few hundred requests a second from one process; a thread per request
(urllib) would spend most of its time on thread switches and new TCP connections. This client
keeps a pool of persistent connections opened with :func:`asyncio.open_connection` and speaks
just enough HTTP/1.1 for segue: a request with a body and ``Content-Length``, a response
with ``Content-Length``, chunked encoding, or read-to-close.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = ["HttpClient", "HttpResponse", "TransportError"]

_MAX_HEADER_LINES = 100


class HttpResponse(NamedTuple):
    status: int
    body: bytes


class TransportError(Exception):
    """The request could not be sent or its answer not read (connection refused, reset, …)."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class HttpClient:
    """Requests to one base URL over at most ``connections`` persistent connections.

    Args:
        url: ``http://host:port`` (or ``https://…``), optionally with a path prefix.
        connections: the most requests in flight at once.
        timeout: seconds for one attempt (connect, send, read the whole answer).
    """

    def __init__(self, url: str, connections: int = 32, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        default_port = (self.tls and self.port == 443) or (not self.tls and self.port == 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        if ":" in self.host and not default_port:
            self.host_header = f"[{self.host}]:{self.port}"
        self.timeout = timeout
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[_Connection] = []

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """Send one request and read its answer.

        A connection that the server closed while it was idle is detected on use and the
        request is sent again on a new one.

        Raises:
            TransportError: the server cannot be reached or broke the connection.
        """
        head = [f"{method} {self.prefix}{path} HTTP/1.1", f"Host: {self.host_header}"]
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}")
        if body is not None:
            head.append(f"Content-Length: {len(body)}")
        raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")
        async with self._slots:
            for attempt in range(2):
                connection = self._idle.pop() if self._idle else None
                reused = connection is not None
                try:
                    async with asyncio.timeout(self.timeout):
                        if connection is None:
                            connection = await self._connect()
                        connection.writer.write(raw)
                        await connection.writer.drain()
                        status, answer, keep = await _read_response(connection.reader, method)
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                    if connection is not None:
                        connection.close()
                    if reused and attempt == 0 and not isinstance(exc, TimeoutError):
                        continue  # the server closed an idle keep-alive connection
                    raise TransportError(f"{method} {path}: {exc!r}") from None
                except BaseException:  # cancelled mid-request: the connection state is unknown
                    if connection is not None:
                        connection.close()
                    raise
                if keep:
                    self._idle.append(connection)
                else:
                    connection.close()
                return HttpResponse(status, answer)
        raise TransportError(f"{method} {path}: no connection")  # pragma: no cover

    async def _connect(self) -> _Connection:
        context = ssl.create_default_context() if self.tls else None
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=context)
        return _Connection(reader, writer)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        for connection in idle:
            with contextlib.suppress(OSError):
                await connection.writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader, method: str) -> tuple[int, bytes, bool]:
    """(status, body, whether the connection may be reused)."""
    line = await reader.readline()
    if not line:
        raise ConnectionResetError("the server closed the connection")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ValueError(f"not an HTTP response: {line[:80]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADER_LINES):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    keep = headers.get("connection", "").lower() != "close" and parts[0] != b"HTTP/1.0"
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, b"", keep
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"])), keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return status, b"".join(chunks), keep
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    return status, await reader.read(), False
