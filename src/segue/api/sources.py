"""Connector endpoints of a source: file imports in chunks, and webhooks.

- ``POST /v1/sources/{source}/import?connector=&format=&first_line=`` takes one chunk of a
  file (CSV chunks start with the header line) and answers what became of its rows:
  ``{"rows", "stored", "duplicates", "rejected": [{"line", "code", "message", "field"}]}``.
  Rejected rows are in the quarantine with their line number. Admin key (Bearer) or the
  source's write key (Basic).
- ``POST /v1/sources/{source}/webhook`` maps a webhook body with the source's configured
  connector. The source's write key comes as HTTP Basic user name or ``?key=`` (for
  platforms that cannot set headers); with ``webhook_secret`` configured, the body must be
  signed: ``X-Shopify-Hmac-Sha256`` is the base64 HMAC-SHA256 of the body under the secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from typing import TYPE_CHECKING, Any

import msgspec

from segue.api.http import Request, Response, Route, json_response
from segue.connectors import Connector, load_connector
from segue.connectors.readers import FORMATS
from segue.errors import ConfigError, InvalidInput, NotFound, Unauthorized
from segue.ingest.pipeline import ImportResult
from segue.keys import basic_user
from segue.settings import SourceSettings

if TYPE_CHECKING:
    from segue.api.app import SegueApp

__all__ = ["ImportResponse", "RowRejectedOut", "WebhookResponse", "routes"]

_ERRORS = (400, 401, 404, 413, 415, 503)


class RowRejectedOut(msgspec.Struct, kw_only=True):
    """A row (or one message of it) that went to the quarantine, by line number."""

    line: int
    code: str
    message: str
    field: str | None = None


class ImportResponse(msgspec.Struct, kw_only=True):
    """What became of one chunk: rows read, messages stored and already stored, rejections."""

    rows: int
    stored: int
    duplicates: int
    rejected: list[RowRejectedOut]


class WebhookResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``{"success": true}`` when everything was stored; ``rejected`` lists the quarantined."""

    success: bool
    rejected: list[RowRejectedOut] = []


def routes(app: SegueApp) -> list[Route]:
    """The connector routes, with every configured connector loaded and checked.

    Raises:
        ConfigError: a source's connector is unknown or its mapping file is wrong (every
            problem listed).
    """
    return _SourceEndpoints(app).routes()


def _rejected(result: ImportResult) -> list[dict[str, Any]]:
    return [
        {"line": r.line, "code": r.code, "message": r.message, "field": r.field}
        for r in result.rejected
    ]


class _SourceEndpoints:
    def __init__(self, app: SegueApp) -> None:
        self._app = app
        settings = app.runtime.settings
        self._sources: dict[str, SourceSettings] = {s.name: s for s in settings.sources}
        self._configured: dict[str, Connector] = {}
        self._builtin: dict[str, Connector] = {}
        problems: list[str] = []
        for source in settings.sources:
            if source.connector is None:
                continue
            try:
                self._configured[source.name] = load_connector(
                    source.connector, source.connector_options, allow_files=True
                )
            except ConfigError as exc:
                problems += [f"source {source.name!r}: {p}" for p in exc.problems]
            except InvalidInput as exc:
                problems.append(f"source {source.name!r}: {exc.message}")
        if problems:
            raise ConfigError(problems)

    def routes(self) -> list[Route]:
        return [
            Route(
                method="POST",
                path="/v1/sources/{source}/import",
                handler=self.import_rows,
                tag="connectors",
                auth="write",
                response=ImportResponse,
                errors=_ERRORS,
                summary="Import one chunk of a file (CSV with its header line, JSON, JSON Lines) "
                "through a connector; admin key (Bearer) or the source's write key (Basic)",
                query={
                    "connector": "builtin connector name (default: the source's connector)",
                    "format": "csv, json or jsonl (default: guessed from the body)",
                    "first_line": "line number of the chunk's first row in the whole file "
                    "(default 2 for CSV, counting the header as line 1; else 1)",
                },
            ),
            Route(
                method="POST",
                path="/v1/sources/{source}/webhook",
                handler=self.webhook,
                tag="connectors",
                auth="write",
                response=WebhookResponse,
                errors=_ERRORS,
                summary="A webhook (e.g. a Shopify order) mapped by the source's connector; "
                "signed with X-Shopify-Hmac-Sha256 when the source has a webhook_secret",
                query={"key": "the source's write key, for senders that cannot set headers"},
            ),
        ]

    # --- import -------------------------------------------------------------------------
    async def import_rows(self, request: Request) -> Response:
        """Map and store one chunk of a file; row failures are reported, never fatal."""
        runtime = self._app.runtime
        source = request.params["source"]
        owner = self._authenticate_import(request)
        if source not in runtime.keys.write:
            raise NotFound(f"no source {source!r}")
        if owner is not None and owner != source:
            raise Unauthorized(f"not the write key of source {source!r}")
        connector = self._connector_for_import(source, request.query.get("connector") or None)
        fmt = request.query.get("format") or None
        if fmt is not None and fmt not in FORMATS:
            raise InvalidInput(f"format must be one of {', '.join(FORMATS)}", field="format")
        first_line = _first_line(request.query.get("first_line"))
        body = await request.body(runtime.ingest.limits.max_request_bytes)
        chunk = await asyncio.to_thread(connector.map, body, fmt=fmt, first_line=first_line)
        result = await runtime.ingest.collect_rows(source, chunk.mapped, chunk.failed)
        return json_response(
            {
                "rows": result.rows,
                "stored": result.stored,
                "duplicates": result.duplicates,
                "rejected": _rejected(result),
            }
        )

    def _authenticate_import(self, request: Request) -> str | None:
        """The source whose write key was given, or None for the admin key.

        Raises:
            Unauthorized: no key, or not a known admin or write key.
        """
        keyring = self._app.runtime.keyring
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            if not keyring.is_admin(token.strip()):
                raise Unauthorized("not an admin key")
            return None
        user = basic_user(header) if header else None
        if not user:
            raise Unauthorized(
                "imports need the admin key (Bearer) or the source's write key (HTTP Basic)"
            )
        return keyring.source_for(user)

    def _connector_for_import(self, source: str, name: str | None) -> Connector:
        configured = self._configured.get(source)
        settings = self._sources.get(source)
        if name is None:
            if configured is None:
                raise InvalidInput(
                    f"source {source!r} has no connector configured; pass ?connector=NAME",
                    field="connector",
                )
            return configured
        if configured is not None and settings is not None and settings.connector == name:
            return configured
        if name not in self._builtin:
            self._builtin[name] = load_connector(name)  # builtin names only, never a path
        return self._builtin[name]

    # --- webhook ------------------------------------------------------------------------
    async def webhook(self, request: Request) -> Response:
        """Map one webhook body with the source's connector; 200 once it is durable."""
        runtime = self._app.runtime
        source = request.params["source"]
        header = request.headers.get("authorization")
        key = basic_user(header) if header else None
        key = key or request.query.get("key") or None
        if key is None:
            raise Unauthorized("webhooks need the source's write key (HTTP Basic or ?key=)")
        owner = runtime.keyring.source_for(key)
        connector = self._configured.get(source)
        settings = self._sources.get(source)
        if connector is None or settings is None:
            raise NotFound(f"source {source!r} has no connector, so it takes no webhooks")
        if owner != source:
            raise Unauthorized(f"not the write key of source {source!r}")
        body = await request.body(runtime.ingest.limits.max_request_bytes)
        if settings.webhook_secret:
            _verify_signature(request, body, settings.webhook_secret)
        if not body.strip():
            raise InvalidInput("the webhook body is empty", field="$")
        chunk = connector.map(body, first_line=1)
        result = await runtime.ingest.collect_rows(source, chunk.mapped, chunk.failed)
        if not result.rejected:
            return json_response({"success": True})
        rejected = _rejected(result)
        if result.stored or result.duplicates:
            return json_response({"success": True, "rejected": rejected})
        first = rejected[0]
        problem: dict[str, Any] = {
            "code": first["code"],
            "message": f"line {first['line']}: {first['message']} (kept in the quarantine)",
            "rejected": rejected,
        }
        if first["field"] is not None:
            problem["field"] = first["field"]
        return json_response(problem, 413 if first["code"] == "payload_too_large" else 400)


def _first_line(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10) or not 1 <= int(raw) <= 2**31:
        raise InvalidInput("first_line must be a whole number from 1", field="first_line")
    return int(raw)


def _verify_signature(request: Request, body: bytes, secret: str) -> None:
    """Check the Shopify-style signature in constant time.

    Raises:
        Unauthorized: the header is missing or does not match the body.
    """
    given = request.headers.get("x-shopify-hmac-sha256", "").strip()
    if not given:
        raise Unauthorized("this source's webhooks must be signed (X-Shopify-Hmac-Sha256)")
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    if not hmac.compare_digest(given.encode("latin-1"), expected):
        raise Unauthorized("the X-Shopify-Hmac-Sha256 signature does not match the body")
