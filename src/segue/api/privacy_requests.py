"""Privacy requests over HTTP (admin key).

- ``POST /v1/privacy/requests`` ``{"type": "access" | "erasure", "user": {...identifiers}}``
  → 202 ``{"request_id", "status"}``; the request runs in the background;
- ``GET /v1/privacy/requests/{id}`` → ``{"request_id", "type", "status", "receipt",
  "export"?}``: ``status`` is ``pending``, ``running``, ``done`` or ``failed``; a finished
  access request carries its export inline (one JSON document of everything held).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from segue.api.http import Request, Response, Route, decode_json, json_response
from segue.api.profile_view import iso
from segue.errors import NotFound

if TYPE_CHECKING:
    from segue.api.app import SegueApp

__all__ = ["PrivacyRequestIn", "PrivacyRequestOut", "PrivacyRequestStatus", "routes"]

_BODY_LIMIT = 64 * 1024
IdentifierValue = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class PrivacyRequestIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A data subject request: what, and the person's identifiers (any known type)."""

    type: Literal["access", "erasure"]
    user: Annotated[dict[str, IdentifierValue], msgspec.Meta(min_length=1, max_length=32)]


class PrivacyRequestOut(msgspec.Struct, frozen=True, kw_only=True):
    """The request as accepted: it runs in the background; poll its status."""

    request_id: str
    status: str


class PrivacyRequestStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Where a request stands. ``receipt`` says what was found (access) or removed
    (erasure) where, store by store; ``export`` is the access export, once done."""

    request_id: str
    type: str
    status: str
    receipt: dict[str, Any]
    created_at: str
    updated_at: str
    error: str | None = None
    export: dict[str, Any] | None = None


_decoder = msgspec.json.Decoder(PrivacyRequestIn)


def routes(app: SegueApp) -> list[Route]:
    """The privacy-request routes of ``app``."""
    endpoints = _Endpoints(app)
    return [
        Route(
            method="POST",
            path="/v1/privacy/requests",
            handler=endpoints.submit,
            tag="privacy",
            auth="admin",
            request=PrivacyRequestIn,
            response=PrivacyRequestOut,
            errors=(400, 401, 413),
            summary="Open an access or erasure request for one person",
        ),
        Route(
            method="GET",
            path="/v1/privacy/requests/{request_id}",
            handler=endpoints.status,
            tag="privacy",
            auth="admin",
            response=PrivacyRequestStatus,
            errors=(401, 404),
            summary="A privacy request's status, receipt and (access) export",
        ),
    ]


class _Endpoints:
    def __init__(self, app: SegueApp) -> None:
        self.app = app

    async def submit(self, request: Request) -> Response:
        wanted = decode_json(_decoder, await request.body(_BODY_LIMIT))
        created = await self.app.runtime.privacy_requests.submit(wanted.type, wanted.user)
        return json_response({"request_id": created.request_id, "status": created.status}, 202)

    async def status(self, request: Request) -> Response:
        request_id = request.params["request_id"]
        found = await self.app.runtime.privacy_requests.get(request_id)
        if found is None:
            raise NotFound(f"no privacy request {request_id}")
        held, export = found
        out: dict[str, Any] = {
            "request_id": held.request_id,
            "type": held.type,
            "status": held.status,
            "receipt": held.receipt,
            "created_at": iso(held.created_at),
            "updated_at": iso(held.updated_at),
        }
        if held.error is not None:
            out["error"] = held.error
        if export is not None:
            out["export"] = msgspec.Raw(export)
        return json_response(out)
