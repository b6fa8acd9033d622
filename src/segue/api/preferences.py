"""The preference centre: a person's stated interests, channels and exclusions.

- ``PUT /v1/preferences`` (publishable or admin key: the preference page posts from the
  browser) ``{"user": {"user_id" | "anonymous_id": …}, "interests": [...], "channels":
  {...}, "exclusions": {"items", "categories", "brands"}}`` → ``{"message_id", "preferences"}``.
  The statement is logged as an identify event of the source ``preference_center`` (trait
  ``preferences``), so it has lineage and goes wherever the person's data goes, erasure
  included; decide uses it as soon as the processor has folded it (milliseconds).
- ``GET /v1/preferences/{type}:{value}`` (admin key) → the preferences with their lineage.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from segue.api.http import Request, Response, Route, decode_json, json_response
from segue.errors import InvalidInput, NotFound
from segue.privacy.preferences import (
    PREFERENCE_SOURCE,
    PREFERENCES_TRAIT,
    Exclusions,
    Names,
    Preferences,
    parse_preferences,
)

if TYPE_CHECKING:
    from segue.api.app import SegueApp

__all__ = ["PreferencesIn", "PreferencesOut", "routes"]

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class PreferencesIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    user: Annotated[dict[str, Id], msgspec.Meta(min_length=1, max_length=10)]
    interests: Names = []
    channels: dict[str, bool] = {}
    exclusions: Exclusions = Exclusions()


class PreferencesOut(msgspec.Struct, kw_only=True):
    message_id: str | None = None
    profile_id: str | None = None
    preferences: dict[str, Any]
    lineage: dict[str, Any] | None = None


_decoder = msgspec.json.Decoder(PreferencesIn)


def routes(app: SegueApp) -> list[Route]:
    async def put_preferences(request: Request) -> Response:
        body = decode_json(_decoder, await request.body(64 * 1024))
        user_id = body.user.get("user_id")
        anonymous_id = body.user.get("anonymous_id")
        if not user_id and not anonymous_id:
            raise InvalidInput(
                "preferences need the person's user_id or anonymous_id", field="$.user"
            )
        prefs = Preferences(
            interests=list(dict.fromkeys(body.interests)),
            channels=body.channels,
            exclusions=body.exclusions,
        )
        document = msgspec.to_builtins(prefs)
        message_id = f"pref-{uuid.uuid4().hex}"
        message: dict[str, Any] = {
            "type": "identify",
            "messageId": message_id,
            "traits": {PREFERENCES_TRAIT: document},
        }
        if user_id:
            message["userId"] = user_id
        if anonymous_id:
            message["anonymousId"] = anonymous_id
        result = await app.runtime.ingest.collect_rows(PREFERENCE_SOURCE, [(1, [message])], [])
        if result.rejected:
            first = result.rejected[0]
            raise InvalidInput(first.message, field=first.field or "$")
        return json_response({"message_id": message_id, "preferences": document})

    async def get_preferences(request: Request) -> Response:
        profile_id = await app.resolve_profile(request)
        profile = (await app.runtime.store.profiles([profile_id])).get(profile_id)
        if profile is None:
            raise NotFound(f"no profile for {request.params['ref']}")
        trait = profile.traits.get(PREFERENCES_TRAIT)
        if trait is None or trait.source != PREFERENCE_SOURCE:
            return json_response(
                {"profile_id": profile.profile_id, "preferences": {}, "lineage": None}
            )
        prefs = parse_preferences(trait.value)
        return json_response(
            {
                "profile_id": profile.profile_id,
                "preferences": msgspec.to_builtins(prefs) if prefs else {},
                "lineage": {
                    "source": trait.source,
                    "message_id": trait.message_id,
                    "at": trait.at,
                    "legal_basis": trait.legal_basis,
                },
            }
        )

    return [
        Route(
            method="PUT",
            path="/v1/preferences",
            handler=put_preferences,
            request=PreferencesIn,
            response=PreferencesOut,
            errors=(400, 401, 413),
            summary="Record what a person told the preference centre",
            tag="privacy",
            auth="publishable",
        ),
        Route(
            method="GET",
            path="/v1/preferences/{ref}",
            handler=get_preferences,
            response=PreferencesOut,
            errors=(400, 401, 404),
            summary="A person's stated preferences with their lineage",
            tag="privacy",
            auth="admin",
        ),
    ]
