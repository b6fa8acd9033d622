"""The audit log over HTTP, and the request hooks that feed it.

- ``GET /v1/audit?subject=type:value&action=&since=&until=&cursor=&limit=`` →
  ``{"entries": [...], "next_cursor"}``; ``subject`` also matches the entries recorded under
  the person's current profile id;
- ``GET /v1/audit/verify`` → ``{"ok", "entries", "first_bad_seq", "reason"}``.

Admin key. The hooks record an admin key's use on admin endpoints (``key.used``), rejected
keys (``auth.failed``, counted per fingerprint) and admin reads of a profile
(``profile.read``); all in the background, off the request's critical path.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import msgspec
import structlog

from segue.api.http import Request, Response, Route, json_response
from segue.api.profile_view import iso
from segue.core.model import AuditEntry, Identifier
from segue.errors import InvalidInput, Unauthorized
from segue.keys import basic_user
from segue.privacy.audit import normalise_subject

if TYPE_CHECKING:
    from segue.api.app import SegueApp
    from segue.runtime import Runtime

__all__ = [
    "AuditEntryOut",
    "AuditPage",
    "AuditVerifyResponse",
    "audit_request",
    "note_profile_read",
    "routes",
]

_log = structlog.get_logger("segue.api.audit")
#: admin endpoints polled by monitors and tests: auditing them would drown the rest
QUIET: Final = frozenset({"/v1/stats", "/metrics", "/healthz", "/readyz"})


class AuditEntryOut(msgspec.Struct, frozen=True, kw_only=True):
    """One audit entry; ``subjects`` are keyed hashes, never identifiers."""

    seq: int
    at: str
    actor: str
    action: str
    subjects: list[str]
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of entries in seq order; pass ``next_cursor`` back as ``cursor``."""

    entries: list[AuditEntryOut]
    next_cursor: str | None


class AuditVerifyResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The whole chain checked: ``first_bad_seq`` and ``reason`` say where and how it broke."""

    ok: bool
    entries: int
    first_bad_seq: int | None
    reason: str | None


def routes(app: SegueApp) -> list[Route]:
    """The audit routes of ``app``."""
    endpoints = _AuditEndpoints(app)
    return [
        Route(
            method="GET",
            path="/v1/audit",
            handler=endpoints.list,
            tag="privacy",
            auth="admin",
            response=AuditPage,
            errors=(400, 401),
            summary="Audit entries, by subject, action and time",
            query={
                "subject": "an identifier (type:value) or profile id",
                "action": "e.g. consent.changed, privacy.request, profile.read, key.used",
                "since": "entries at or after this time (RFC 3339 or epoch seconds)",
                "until": "entries before this time (RFC 3339 or epoch seconds)",
                "cursor": "next_cursor of the previous page",
                "limit": "entries, 1–1000 (default 100)",
            },
        ),
        Route(
            method="GET",
            path="/v1/audit/verify",
            handler=endpoints.verify,
            tag="privacy",
            auth="admin",
            response=AuditVerifyResponse,
            errors=(401,),
            summary="Check the audit log's hash chain and sealed head for any edit",
        ),
    ]


def _time(request: Request, name: str) -> float | None:
    raw = (request.query.get(name) or "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be RFC 3339 or epoch seconds", field=name) from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"{name} needs a time zone (e.g. Z)", field=name)
    return parsed.timestamp()


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name) or ""
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidInput(f"{name} must be an integer from {low} to {high}", field=name)
    return int(raw)


def _out(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": iso(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "subjects": entry.subjects,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


class _AuditEndpoints:
    def __init__(self, app: SegueApp) -> None:
        self._app = app

    async def list(self, request: Request) -> Response:
        runtime = self._app.runtime
        subjects: list[str] = []
        subject = (request.query.get("subject") or "").strip()
        if subject:
            subjects.append(subject)
            try:
                identifier = Identifier.parse(normalise_subject(subject))
            except ValueError:
                identifier = None  # a profile id
            if identifier is not None:
                found = await runtime.store.lookup([identifier])
                if identifier in found:
                    subjects.append(found[identifier])
        limit = _int(request, "limit", 100, 1, 1000)
        entries = await runtime.audit.list(
            subjects=subjects,
            action=request.query.get("action") or None,
            since=_time(request, "since"),
            until=_time(request, "until"),
            after=_int(request, "cursor", 0, 0, 2**62),
            limit=limit + 1,
        )
        more = len(entries) > limit
        entries = entries[:limit]
        cursor = str(entries[-1].seq) if more and entries else None
        return json_response({"entries": [_out(e) for e in entries], "next_cursor": cursor})

    async def verify(self, request: Request) -> Response:
        verdict = await self._app.runtime.audit.verify()
        return json_response(verdict)


def _presented_key(request: Request) -> str | None:
    """The key a request presented (Bearer token or HTTP Basic user), if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            return basic_user(header)
        except Unauthorized:
            return value.strip() or None
    return None


def _actor(runtime: Runtime, request: Request) -> str:
    key = _presented_key(request)
    return "admin:" + (runtime.audit.fingerprint(key) if key else "none")


def audit_request(runtime: Runtime, route: Route | None, request: Request, status: int) -> None:
    """After each request: count a rejected key, or note the admin key's use.

    Cheap on the hot paths (collection and decide succeed with a write or publishable key:
    two comparisons). Never raises: auditing must not turn an answer into an error.
    """
    try:
        if status == 401:
            if hasattr(runtime, "audit"):
                path = route.path if route is not None else "unmatched"
                runtime.audit.auth_failed(_presented_key(request), path)
        elif (
            route is not None
            and route.auth == "admin"
            and route.path not in QUIET
            and hasattr(runtime, "audit")
        ):
            runtime.audit.note(
                "key.used",
                actor=_actor(runtime, request),
                details={"method": request.method, "route": route.path, "status": status},
            )
    except Exception:
        _log.exception("audit_hook_failed", path=request.path)


def note_profile_read(runtime: Runtime, request: Request, profile_id: str) -> None:
    """An admin read a profile (or its timeline): who, which, through which route."""
    ref = request.params.get("ref", "")
    route = (
        "/v1/profiles/{ref}/events" if request.path.endswith("/events") else "/v1/profiles/{ref}"
    )
    runtime.audit.note(
        "profile.read",
        actor=_actor(runtime, request),
        subjects=[s for s in (ref, profile_id) if s],
        details={"route": route},
    )
