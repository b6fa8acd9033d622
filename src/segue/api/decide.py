"""``POST /v1/decide``: what should this person see now, in this placement.

Publishable key (browsers and apps) or admin key. ``Sec-GPC: 1`` is honoured on the request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from segue.api.http import Request, Response, Route, decode_json, json_response
from segue.decide.engine import DecideRequest
from segue.errors import InvalidInput

if TYPE_CHECKING:
    from segue.api.app import SegueApp

__all__ = ["DecideItemOut", "DecideResponse", "routes"]

_decoder = msgspec.json.Decoder(DecideRequest)


class DecideItemOut(msgspec.Struct, kw_only=True):
    item_id: str
    score: float
    propensity: float
    content: dict[str, Any]
    reason: str


class ExperimentOut(msgspec.Struct, kw_only=True):
    name: str
    variant: str


class DecideResponse(msgspec.Struct, kw_only=True):
    decision_id: str
    items: list[DecideItemOut]
    personalized: bool
    strategy: str
    explanation: dict[str, Any]
    experiment: ExperimentOut | None


def routes(app: SegueApp) -> list[Route]:
    async def decide(request: Request) -> Response:
        body = await request.body(64 * 1024)
        parsed = decode_json(_decoder, body)
        if not parsed.placement.strip():
            raise InvalidInput("placement must not be empty", field="$.placement")
        if parsed.k is not None and not 1 <= parsed.k <= 100:
            raise InvalidInput("k must be between 1 and 100", field="$.k")
        gpc = request.headers.get("sec-gpc", "").strip() == "1"
        return json_response(await app.runtime.engine.decide(parsed, gpc=gpc))

    return [
        Route(
            method="POST",
            path="/v1/decide",
            handler=decide,
            tag="decisions",
            auth="publishable",
            request=DecideRequest,
            response=DecideResponse,
            errors=(400, 401, 413),
            summary="Personalised (or contextual) items for a placement, explained and logged",
        )
    ]
