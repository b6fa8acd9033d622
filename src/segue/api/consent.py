"""Consent endpoints.

- ``PUT /v1/consent`` (publishable or admin key: consent managers post from the browser)
  ``{"user": {...}, "purposes"?: {...}, "region"?, "tcf"?, "usp"?, "gpc"?,
  "objects_to_automated_decisions"?}`` and the ``Sec-GPC: 1`` header → the person's consent
  as it now stands. The change is in the ledger and every cache before the response leaves.
- ``GET /v1/consent/{type}:{value}`` (admin key): the current consent, what each purpose
  is allowed now and why, and the ledger with the proof of every signal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from segue.api.http import Request, Response, Route, decode_json, json_response
from segue.core.model import ConsentRecord, Identifier, Profile
from segue.errors import InvalidInput
from segue.identity.identifiers import IdentityRules
from segue.privacy.policy import PURPOSES, ConsentState, Decision, RequestSignals
from segue.privacy.signals import Signal, categories, combine, from_strings
from segue.privacy.suppression import normalise_identifier

if TYPE_CHECKING:
    from segue.api.app import SegueApp

__all__ = ["ConsentIn", "ConsentOut", "routes"]

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]


class ConsentIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One consent signal for the person the identifiers name."""

    user: Annotated[dict[str, Text], msgspec.Meta(min_length=1, max_length=20)]
    purposes: dict[str, bool] = {}
    region: Annotated[str, msgspec.Meta(min_length=2, max_length=10)] | None = None
    tcf: Text | None = None
    usp: Text | None = None
    gpc: bool | None = None
    objects_to_automated_decisions: bool | None = None


class PurposeOut(msgspec.Struct, kw_only=True):
    allowed: bool
    reason: str
    recorded: bool | None
    at: float | None
    source: str | None


class ConsentOut(msgspec.Struct, kw_only=True):
    """A person's consent now: per purpose, what is allowed and why."""

    subjects: list[str]
    profile_id: str | None
    region: str | None
    regime: str
    gpc: bool
    objects_to_automated_decisions: bool
    updated_at: float | None
    purposes: dict[str, PurposeOut]
    history: list[dict[str, Any]] | None = None


_decoder = msgspec.json.Decoder(ConsentIn)


def routes(app: SegueApp) -> list[Route]:
    async def put_consent(request: Request) -> Response:
        body = decode_json(_decoder, await request.body(64 * 1024))
        service = app.runtime.consent
        asked = _subjects(body.user, app.runtime.processor.folder.rules)
        unknown = sorted(set(body.purposes) - set(PURPOSES))
        if unknown:
            # category names of consent managers are mapped; anything else is an error here
            mapped = categories(dict.fromkeys(unknown, True))
            if len(mapped) != len(unknown):
                raise InvalidInput(
                    f"unknown purpose {unknown[0]!r}; known: {', '.join(PURPOSES)}",
                    field=f"$.purposes.{unknown[0]}",
                )
        strings, proof = from_strings(body.tcf, body.usp, service.vendor_id)
        header_gpc = request.headers.get("sec-gpc", "").strip() == "1"
        signal = Signal(
            purposes=combine(categories(body.purposes), strings),
            region=body.region.upper() if body.region else None,
            gpc=True if header_gpc or body.gpc else body.gpc,
            objects_to_automated=body.objects_to_automated_decisions,
            proof={**proof, "request": msgspec.json.decode(msgspec.json.encode(body))},
        )
        if signal.empty:
            raise InvalidInput(
                "say something: purposes, region, tcf, usp, gpc or objects_to_automated_decisions",
                field="$.purposes",
            )
        # under every identifier the person has now, not only those named: collection
        # screens an event by its own user and anonymous ids, and a refusal given under
        # the email must hold for the events sent under the user id
        user = dict(s.split(":", 1) for s in asked)
        _, linked = await app.runtime.decisioning.find_profile(user)
        subjects = list(dict.fromkeys((*asked, *linked)))
        await service.record(subjects, signal, source="api", actor=_actor(request))
        return json_response(await _view(app, asked, history=False))

    async def get_consent(request: Request) -> Response:
        try:
            identifier = Identifier.parse(request.params["ref"])
        except ValueError as exc:
            raise InvalidInput(str(exc), field="ref") from None
        rules = app.runtime.processor.folder.rules
        normal = normalise_identifier(identifier.type, identifier.value, rules)
        if normal is None:
            raise InvalidInput(f"not a usable {identifier.type}: {identifier.value!r}", field="ref")
        return json_response(await _view(app, [str(normal)], history=True))

    return [
        Route(
            method="PUT",
            path="/v1/consent",
            handler=put_consent,
            request=ConsentIn,
            response=ConsentOut,
            errors=(400, 401, 413),
            summary="Record a consent signal (purposes, region, TCF, US Privacy, GPC)",
            tag="privacy",
            auth="publishable",
        ),
        Route(
            method="GET",
            path="/v1/consent/{ref}",
            handler=get_consent,
            response=ConsentOut,
            errors=(400, 401),
            summary="A person's consent now, per purpose with the reason, and its ledger",
            tag="privacy",
            auth="admin",
        ),
    ]


def _subjects(user: dict[str, str], rules: IdentityRules) -> list[str]:
    """The ledger's subjects for a request's ``user``: each identifier as the processor
    links it (an email lower-cased, a phone in E.164), or a choice recorded under
    ``Ann@Example.com`` would hold for nobody, and outlive the person's erasure."""
    out = []
    for kind, value in user.items():
        if not kind.strip() or not value.strip():
            raise InvalidInput("identifier type and value must not be empty", field="$.user")
        identifier = normalise_identifier(kind, value, rules)
        if identifier is None:
            raise InvalidInput(f"not a usable {kind.strip()}: {value!r}", field=f"$.user.{kind}")
        out.append(str(identifier))
    return out


def _actor(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return "bearer" if auth.lower().startswith("bearer ") else "api"


def _standing(app: SegueApp, state: ConsentState) -> dict[str, Any]:
    """What a consent state says without a request: region, regime, flags."""
    region, regime = app.runtime.consent.policy.regime(state.region)
    return {
        "region": region,
        "regime": regime,
        "gpc": state.gpc,
        "objects_to_automated_decisions": state.objects_to_automated,
        "updated_at": state.updated_at,
    }


def _verdicts(app: SegueApp, state: ConsentState) -> dict[str, Decision]:
    none = RequestSignals()
    return {p: app.runtime.consent.evaluate(p, state, none) for p in PURPOSES}


async def _view(app: SegueApp, asked: list[str], *, history: bool) -> dict[str, Any]:
    runtime = app.runtime
    user = dict(s.split(":", 1) for s in asked)
    profile_id, subjects = await runtime.decisioning.find_profile(user)
    subjects = subjects or asked
    state: ConsentState = await runtime.consent.state(subjects)
    purposes: dict[str, dict[str, Any]] = {}
    for purpose, verdict in _verdicts(app, state).items():
        recorded = state.purposes.get(purpose)
        purposes[purpose] = {
            "allowed": verdict.allowed,
            "reason": verdict.reason,
            "recorded": recorded.granted if recorded else None,
            "at": recorded.at if recorded else None,
            "source": recorded.source if recorded else None,
        }
    out: dict[str, Any] = {
        "subjects": subjects,
        "profile_id": profile_id,
        **_standing(app, state),
        "purposes": purposes,
    }
    if history:
        records: list[ConsentRecord] = await runtime.consent.history(subjects)
        out["history"] = [msgspec.to_builtins(r) for r in records]
    return out


async def summary(app: SegueApp, profile: Profile) -> dict[str, Any]:
    """The ``consent`` object of the profile API: per purpose, allowed now and why."""
    state = await app.runtime.consent.state([str(i) for i in profile.identities])
    out = _standing(app, state)
    for purpose, verdict in _verdicts(app, state).items():
        out[purpose] = {"allowed": verdict.allowed, "reason": verdict.reason}
    return out
