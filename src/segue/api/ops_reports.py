"""Operator reads for the dashboard (admin key).

- ``GET /v1/reports/consent`` → consent rates per purpose, in total and per region, over
  every person in the consent ledger (see :mod:`segue.privacy.consent_rates`);
- ``GET /v1/privacy/requests?limit=`` → the most recent privacy requests, newest first, any
  status: the queue and what it did. No identifiers: a request's ``user`` is never listed;
- ``GET /v1/decisions?profile={type}:{value}&limit=`` → a person's most recent decisions,
  newest first, including those made for profiles later merged into theirs. Explain one
  with ``GET /v1/decisions/{decision_id}``. Recorded in the audit log as a profile read.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec

from segue.api.http import Request, Response, Route, json_response
from segue.api.privacy_requests import PrivacyRequestStatus
from segue.api.profile_view import iso
from segue.core.model import Decision, Identifier, PrivacyRequest
from segue.errors import InvalidInput, NotFound
from segue.privacy.consent_rates import ConsentRates, consent_rates

if TYPE_CHECKING:
    from segue.api.app import SegueApp

__all__ = ["ConsentReport", "DecisionList", "PrivacyRequestList", "routes"]


class ConsentReport(ConsentRates, kw_only=True):
    """Consent rates as of ``computed_at``; ``took_ms`` is what reading the ledger cost."""

    computed_at: str
    took_ms: float


class PrivacyRequestList(msgspec.Struct, kw_only=True):
    """Recent privacy requests, newest first (no ``export``: fetch one request for it)."""

    requests: list[PrivacyRequestStatus]


class DecisionSummary(msgspec.Struct, kw_only=True):
    """One logged decision, without its feature vectors (see ``/v1/decisions/{id}``)."""

    decision_id: str
    created_at: str
    placement: str
    profile_id: str | None
    items: list[str]
    scores: list[float]
    personalized: bool
    reason: str
    strategy: str
    model_version: str
    experiment: str | None
    variant: str | None
    data_categories: list[str]


class DecisionList(msgspec.Struct, kw_only=True):
    """A person's most recent decisions, newest first."""

    profile_id: str
    decisions: list[DecisionSummary]


def routes(app: SegueApp) -> list[Route]:
    """The operator report routes of ``app``."""
    endpoints = _Endpoints(app)
    return [
        Route(
            method="GET",
            path="/v1/reports/consent",
            handler=endpoints.consent,
            tag="privacy",
            auth="admin",
            response=ConsentReport,
            errors=(401,),
            summary="Consent rates per purpose and region over everyone in the consent ledger",
        ),
        Route(
            method="GET",
            path="/v1/privacy/requests",
            handler=endpoints.privacy_requests,
            tag="privacy",
            auth="admin",
            response=PrivacyRequestList,
            errors=(400, 401),
            summary="The most recent privacy requests, any status, newest first",
            query={"limit": "requests, 1–500 (default 50)"},
        ),
        Route(
            method="GET",
            path="/v1/decisions",
            handler=endpoints.decisions,
            tag="decide",
            auth="admin",
            response=DecisionList,
            errors=(400, 401, 404),
            summary="A person's most recent decisions, newest first",
            query={
                "profile": "an identifier of the person, type:value (required)",
                "limit": "decisions, 1–200 (default 20)",
            },
        ),
    ]


def _limit(request: Request, default: int, high: int) -> int:
    raw = (request.query.get("limit") or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        raise InvalidInput(f"limit must be an integer from 1 to {high}", field="limit")
    return int(raw)


def _request_out(held: PrivacyRequest) -> dict[str, Any]:
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
    return out


def _decision_out(decision: Decision) -> dict[str, Any]:
    return {
        "decision_id": decision.decision_id,
        "created_at": iso(decision.created_at),
        "placement": decision.placement,
        "profile_id": decision.profile_id,
        "items": decision.items,
        "scores": [round(s, 6) for s in decision.scores],
        "personalized": decision.personalized,
        "reason": decision.reason,
        "strategy": decision.strategy,
        "model_version": decision.model_version,
        "experiment": decision.experiment,
        "variant": decision.variant,
        "data_categories": decision.data_categories,
    }


class _Endpoints:
    def __init__(self, app: SegueApp) -> None:
        self.app = app

    async def consent(self, request: Request) -> Response:
        runtime = self.app.runtime
        started = time.perf_counter()
        rates = await consent_rates(runtime.consents, runtime.store, runtime.consent.policy)
        body = msgspec.to_builtins(rates)
        body["computed_at"] = iso(runtime.clock.now())
        body["took_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        return json_response(body)

    async def privacy_requests(self, request: Request) -> Response:
        limit = _limit(request, 50, 500)
        held = await self.app.runtime.privacy_store.recent(limit)
        return json_response({"requests": [_request_out(r) for r in held]})

    async def decisions(self, request: Request) -> Response:
        runtime = self.app.runtime
        ref = (request.query.get("profile") or "").strip()
        try:
            identifier = Identifier.parse(ref)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="profile") from None
        limit = _limit(request, 20, 200)
        profile_id = (await runtime.store.lookup([identifier])).get(identifier)
        found_profiles = await runtime.store.profiles([profile_id] if profile_id else [])
        profile = found_profiles.get(profile_id or "")
        if profile_id is None or profile is None:
            raise NotFound(f"no profile for {identifier}")
        found: dict[str, Decision] = {}
        for owner in (profile_id, *profile.merged_from):
            for decision in await runtime.decisions.decisions_for(owner, limit):
                found[decision.decision_id] = decision
        newest = sorted(found.values(), key=lambda d: (d.created_at, d.decision_id), reverse=True)
        key = request.headers.get("authorization", "").partition(" ")[2].strip()
        runtime.audit.note(
            "profile.read",
            actor="admin:" + runtime.audit.fingerprint(key),
            subjects=[str(identifier), profile_id],
            details={"route": "/v1/decisions"},
        )
        return json_response(
            {"profile_id": profile_id, "decisions": [_decision_out(d) for d in newest[:limit]]}
        )
