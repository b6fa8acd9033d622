"""Rank/Reward endpoints (Azure Personalizer semantics) for arbitrary actions with features.

- ``POST /v1/rank`` ``{"event_id"?, "context_features": [...], "actions": [{"id",
  "features": [...]}], "excluded_actions"?: [...], "defer_activation"?: bool}`` →
  ``{"event_id", "ranking": [{"id", "probability"}], "reward_action_id"}``;
- ``POST /v1/rank/{event_id}/reward`` ``{"value": float}``;
- ``POST /v1/rank/{event_id}/activate``;
- ``GET /v1/rank/{event_id}``: the event with its reward and whether it was learned.

Publishable or admin key (Bearer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from segue.api.http import Request, Response, Route, json_response
from segue.core.model import RankEvent
from segue.errors import InvalidInput

if TYPE_CHECKING:
    from segue.api.app import SegueApp

__all__ = [
    "ActionIn",
    "RankEventResponse",
    "RankRequest",
    "RankResponse",
    "RankedAction",
    "RewardRequest",
    "routes",
]

_BODY_LIMIT = 256 * 1024
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
FeatureList = Annotated[list[dict[str, Any]], msgspec.Meta(max_length=256)]


class ActionIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An action to rank: its id and its features (a list of feature objects)."""

    id: Id
    features: FeatureList = []


class RankRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/rank``: a context, the actions, the ones to exclude."""

    actions: Annotated[list[ActionIn], msgspec.Meta(min_length=1, max_length=100)]
    context_features: FeatureList = []
    event_id: Id | None = None
    excluded_actions: list[Id] = []
    defer_activation: bool = False


class RankedAction(msgspec.Struct, frozen=True, kw_only=True):
    """One action of a ranking with the probability the policy chose it with."""

    id: str
    probability: float


class RankResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The ranking, best first; ``reward_action_id`` is the action to show (and reward)."""

    event_id: str
    ranking: list[RankedAction]
    reward_action_id: str | None


class RewardRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/rank/{event_id}/reward``: any finite number, clamped to the bounds."""

    value: float


class RankEventResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A rank event's state: ``reward`` is the one learned (or waiting to be)."""

    event_id: str
    created_at: float
    ranking: list[RankedAction]
    reward_action_id: str | None
    activated: bool
    reward: float | None
    rewarded_at: float | None
    learned: bool


_rank_decoder = msgspec.json.Decoder(RankRequest)
_reward_decoder = msgspec.json.Decoder(RewardRequest)


def routes(app: SegueApp) -> list[Route]:
    """The Rank/Reward routes of ``app``."""
    endpoints = _RankEndpoints(app)
    common: dict[str, Any] = {"tag": "rank", "auth": "publishable"}
    return [
        Route(
            method="POST",
            path="/v1/rank",
            handler=endpoints.rank,
            request=RankRequest,
            response=RankResponse,
            errors=(400, 401, 409, 413),
            summary="Rank actions for a context; the first is the one to show and reward",
            **common,
        ),
        Route(
            method="POST",
            path="/v1/rank/{event_id}/reward",
            handler=endpoints.reward,
            request=RewardRequest,
            response=RankEventResponse,
            errors=(400, 401, 404, 409),
            summary="The reward of a rank event (the latest wins until it is learned)",
            **common,
        ),
        Route(
            method="POST",
            path="/v1/rank/{event_id}/activate",
            handler=endpoints.activate,
            response=RankEventResponse,
            errors=(401, 404, 409),
            summary="Activate a rank event made with defer_activation, so it learns",
            **common,
        ),
        Route(
            method="GET",
            path="/v1/rank/{event_id}",
            handler=endpoints.get,
            response=RankEventResponse,
            errors=(401, 404),
            summary="A rank event: its ranking, reward and whether it was learned",
            **common,
        ),
    ]


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        text, _, path = str(exc).partition(" - at `")
        raise InvalidInput(text, field=path.rstrip("`") or "$", code="invalid_request") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}", code="invalid_json") from None


def _event_out(event: RankEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "created_at": event.created_at,
        "ranking": _ranking(event),
        "reward_action_id": event.reward_action_id,
        "activated": event.activated,
        "reward": event.reward,
        "rewarded_at": event.rewarded_at,
        "learned": event.learned,
    }


def _ranking(event: RankEvent) -> list[dict[str, Any]]:
    return [
        {"id": action_id, "probability": p}
        for action_id, p in zip(event.ranking, event.probabilities, strict=True)
    ]


class _RankEndpoints:
    def __init__(self, app: SegueApp) -> None:
        self._app = app

    async def rank(self, request: Request) -> Response:
        parsed: RankRequest = _decode(_rank_decoder, await request.body(_BODY_LIMIT))
        event = await self._app.runtime.rank.rank(
            [(a.id, a.features) for a in parsed.actions],
            parsed.context_features,
            event_id=parsed.event_id,
            excluded=parsed.excluded_actions,
            defer_activation=parsed.defer_activation,
        )
        return json_response(
            {
                "event_id": event.event_id,
                "ranking": _ranking(event),
                "reward_action_id": event.reward_action_id,
            }
        )

    async def reward(self, request: Request) -> Response:
        parsed: RewardRequest = _decode(_reward_decoder, await request.body(4096))
        event = await self._app.runtime.rank.reward(request.params["event_id"], parsed.value)
        return json_response(_event_out(event))

    async def activate(self, request: Request) -> Response:
        event = await self._app.runtime.rank.activate(request.params["event_id"])
        return json_response(_event_out(event))

    async def get(self, request: Request) -> Response:
        event = await self._app.runtime.rank.get(request.params["event_id"])
        return json_response(_event_out(event))
