"""A tiny HTTP/1.1 fault-injection proxy for end-to-end tests.

It sits between an SDK and segue, forwards each request unchanged and, for the requests a
test picks, lets segue answer and then closes the client's connection *instead of* passing
the answer on. The SDK sees a dropped connection for a batch segue already acknowledged and
stored, and retries it: the situation idempotent ingestion (messageId dedupe) exists for.

Threaded on purpose (one thread per client connection): the SDKs are synchronous and send
one request at a time per connection, so this stays simple and deterministic.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

MAX_HEADER_LINES = 200


@dataclass
class HttpMessage:
    start_line: bytes
    headers: dict[str, str]
    body: bytes  # de-chunked
    raw: bytes  # exactly the bytes read from the wire

    @property
    def wants_close(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


@dataclass
class Exchange:
    """One proxied request: what the client sent, what segue answered, what the client got."""

    index: int  # 1-based, counting every request the proxy read
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None  # segue's status; None when segue could not be reached
    dropped: bool = False  # True when the answer was withheld and the connection closed


def _read_line(stream: BinaryIO) -> bytes:
    line = stream.readline(65537)
    if len(line) > 65536:
        raise ValueError("header line too long")
    return line


def read_message(stream: BinaryIO, *, is_request: bool) -> HttpMessage | None:
    """Read one HTTP/1.1 message; None when the peer closed the connection between messages."""
    start = _read_line(stream)
    if not start:
        return None
    raw = [start]
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        line = _read_line(stream)
        if not line:
            raise ConnectionError("peer closed inside the header block")
        raw.append(line)
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    else:
        raise ValueError("too many header lines")

    body = b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts: list[bytes] = []
        while True:
            size_line = _read_line(stream)
            raw.append(size_line)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers up to the empty line
                    trailer = _read_line(stream)
                    raw.append(trailer)
                    if trailer in (b"\r\n", b"\n", b""):
                        break
                break
            chunk = stream.read(size)
            crlf = stream.read(2)
            raw.extend([chunk, crlf])
            parts.append(chunk)
        body = b"".join(parts)
    elif "content-length" in headers:
        body = stream.read(int(headers["content-length"]))
        raw.append(body)
    elif not is_request:
        status = int(start.split()[1])
        if status >= 200 and status not in (204, 304):
            body = stream.read()  # delimited by connection close
            raw.append(body)
    return HttpMessage(start_line=start, headers=headers, body=body, raw=b"".join(raw))


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``127.0.0.1:<upstream_port>``, dropping chosen answers.

    Args:
        upstream_port: segue's port.
        drop_response: decides, per request, whether to withhold segue's answer and close the
            client connection. Called with the request's 1-based index and the exchange.
    """

    def __init__(
        self, upstream_port: int, drop_response: Callable[[Exchange], bool] | None = None
    ) -> None:
        self.upstream_port = upstream_port
        self.drop_response = drop_response or (lambda exchange: False)
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[Exchange]:
        with self._lock:
            return list(self.exchanges)

    # --- one client connection ----------------------------------------------------------
    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._sockets.add(sock)
            else:
                self._sockets.discard(sock)

    def _serve(self, client: socket.socket) -> None:
        self._track(client, True)
        upstream: socket.socket | None = None
        client_in = client.makefile("rb")
        upstream_in: BinaryIO | None = None
        try:
            while True:
                request = read_message(client_in, is_request=True)
                if request is None:
                    return
                method, path = request.start_line.decode("latin-1").split()[:2]
                with self._lock:
                    exchange = Exchange(
                        index=len(self.exchanges) + 1,
                        method=method,
                        path=path,
                        headers=request.headers,
                        body=request.body,
                    )
                    self.exchanges.append(exchange)
                try:
                    if upstream is None:
                        upstream = socket.create_connection(
                            ("127.0.0.1", self.upstream_port), timeout=30
                        )
                        self._track(upstream, True)
                        upstream_in = upstream.makefile("rb")
                    upstream.sendall(request.raw)
                    assert upstream_in is not None
                    response = read_message(upstream_in, is_request=False)
                except OSError:
                    response = None
                if response is None:  # segue is down or hung up: the client sees a drop too
                    return
                exchange.status = int(response.start_line.split()[1])
                if self.drop_response(exchange):
                    exchange.dropped = True
                    return  # close without answering, after segue answered
                client.sendall(response.raw)
                if request.wants_close or response.wants_close:
                    return
        except (OSError, ValueError):
            return
        finally:
            client_in.close()
            if upstream_in is not None:
                upstream_in.close()
            for sock in (client, upstream):
                if sock is not None:
                    self._track(sock, False)
                    _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def drop_nth_batches(*which: int) -> Callable[[Exchange], bool]:
    """A ``drop_response`` policy: withhold the answer to the n-th ``POST /v1/batch`` (1-based).

    Only requests segue answered with 200 count as candidates, so a dropped answer is always
    an acknowledged batch.
    """
    wanted = set(which)
    seen = 0
    lock = threading.Lock()

    def decide(exchange: Exchange) -> bool:
        nonlocal seen
        if exchange.method != "POST" or not exchange.path.startswith("/v1/batch"):
            return False
        if exchange.status != 200:
            return False
        with lock:
            seen += 1
            return seen in wanted

    return decide
