"""Minimal ASGI plumbing: request, response, router.

segue's hot paths (collection, decide) are a few routes with small JSON bodies, where a
framework's per-request machinery costs more than the work itself (measured: a bare ASGI
app ~20k req/s per core, Starlette 12–14k, FastAPI 4–5k). Routing here is one dict lookup for
static paths and a short list of templates for parameterised ones.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote

import msgspec

from segue.errors import InvalidInput, PayloadTooLarge, SegueError

__all__ = ["Request", "Response", "Route", "Router", "decode_json", "json_response"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_encoder = msgspec.json.Encoder()


class Request:
    """One HTTP request; headers are lower-cased, the body is read on demand with a limit."""

    __slots__ = ("_query", "headers", "method", "params", "path", "receive", "route", "scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.headers: dict[str, str] = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
        }
        self.params: dict[str, str] = {}
        self.route = ""
        self._query: dict[str, str] | None = None

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            raw = self.scope.get("query_string", b"").decode("latin-1")
            self._query = dict(parse_qsl(raw, keep_blank_values=True))
        return self._query

    async def body(self, limit: int) -> bytes:
        """Read the whole body, un-gzipped, refusing more than ``limit`` bytes either way.

        Raises:
            PayloadTooLarge: the body or its decompressed form is over ``limit``.
            InvalidInput: the body claims gzip but is not, or uses an unknown encoding.
        """
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"request body is {declared} bytes, over the limit of {limit}")
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise InvalidInput("client disconnected", code="client_disconnected")
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        encoding = self.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            return body
        if encoding not in ("gzip", "x-gzip", "deflate"):
            raise InvalidInput(
                f"unsupported Content-Encoding {encoding!r}; use gzip or none",
                code="unsupported_encoding",
            )
        return _inflate(body, limit, gzip=encoding != "deflate")


_GZIP_MAGIC = b"\x1f\x8b"
#: input is fed to zlib this much at a time: zlib copies the input left over at each gzip
#: member's end, so a body of many tiny members would cost quadratic time if fed at once
_INFLATE_FEED = 4096


def _inflate(body: bytes, limit: int, *, gzip: bool) -> bytes:
    """Inflate a gzip (or zlib) body, every member of a multi-member gzip body (RFC 1952
    2.2) in turn, all within one output ``limit`` so a bomb split into members is still one
    bomb."""
    wbits = 47 if gzip else 15
    inflater = zlib.decompressobj(wbits)
    view = memoryview(body)
    fed = 0
    pending = b""  # what the previous member left over: the start of the next one
    parts: list[bytes] = []
    size = 0
    while pending or fed < len(view):
        if pending:
            data: bytes | memoryview = pending
            pending = b""
        else:
            data = view[fed : fed + _INFLATE_FEED]
            fed += len(data)
        try:
            part = inflater.decompress(data, limit + 1 - size)
        except zlib.error as exc:
            raise InvalidInput(f"body is not valid gzip: {exc}", code="invalid_gzip") from None
        size += len(part)
        parts.append(part)
        if size > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"decompressed request body is over the limit of {limit} bytes")
        if not inflater.eof:
            continue
        pending = inflater.unused_data
        if not pending and fed == len(view):
            return b"".join(parts)
        head = (pending + view[fed : fed + 2].tobytes())[:2]
        if not gzip or head != _GZIP_MAGIC:
            raise InvalidInput(
                "the body has bytes after its compressed data that are not a gzip member",
                code="invalid_gzip",
            )
        inflater = zlib.decompressobj(wbits)
    raise InvalidInput("gzip body is truncated", code="invalid_gzip")


T = TypeVar("T")


def decode_json(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """Decode a request body with a typed decoder; errors name the JSON path at fault.

    Raises:
        InvalidInput: ``invalid_json`` (not JSON, not UTF-8, nested too deeply) or
            ``invalid_request`` (wrong shape) with ``field`` set.
    """
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        text, _, path = str(exc).partition(" - at `")
        field = path.rstrip("`") or "$"
        if text.startswith("Object missing required field `"):
            field = f"{field}.{text.split('`')[1]}"
        raise InvalidInput(text, field=field, code="invalid_request") from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}", code="invalid_json") from None


class Response:
    """A complete response: status, body bytes, extra headers."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = [(b"content-type", content_type.encode()), *(headers or [])]

    async def send(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [*self.headers, (b"content-length", str(len(self.body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": self.body})


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(status, _encoder.encode(payload))


Handler = Callable[[Request], Awaitable[Response]]


class Route(msgspec.Struct, frozen=True, kw_only=True):
    """A route and what the OpenAPI spec says about it."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: str | None = None  # "write", "admin", "publishable" or None
    request: Any = None
    response: Any = None
    query: dict[str, str] = {}
    errors: tuple[int, ...] = ()
    content_type: str = "application/json"


class Router:
    """Static paths in a dict; templated ones (``{name}`` segments) as anchored regexes."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self._static: dict[str, dict[str, Route]] = {}
        self._dynamic: list[tuple[re.Pattern[str], dict[str, Route]]] = []
        templates: dict[str, dict[str, Route]] = {}
        for route in routes:
            if "{" in route.path:
                templates.setdefault(route.path, {})[route.method] = route
            else:
                self._static.setdefault(route.path, {})[route.method] = route
        for path, methods in templates.items():
            pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
            self._dynamic.append((re.compile(f"^{pattern}$"), methods))

    def match(self, request: Request) -> Route:
        """Find the route; fill ``request.params``.

        Raises:
            SegueError: with code ``not_found`` (404) or ``method_not_allowed`` (405).
        """
        methods = self._static.get(request.path)
        if methods is None:
            # match on the raw path so an encoded "/" inside a value stays inside the value
            raw = request.scope.get("raw_path") or request.path.encode()
            raw_path = raw.decode("latin-1").split("?", 1)[0]
            for pattern, candidates in self._dynamic:
                found = pattern.match(raw_path)
                if found:
                    methods = candidates
                    request.params = {k: unquote(v) for k, v in found.groupdict().items()}
                    break
        if methods is None:
            raise SegueError(f"no route for {request.path}", code="not_found")
        route = methods.get(request.method)
        if route is None:
            if request.method == "HEAD" and "GET" in methods:
                return methods["GET"]
            raise SegueError(
                f"{request.method} is not allowed here; use {', '.join(sorted(methods))}",
                code="method_not_allowed",
            )
        return route
