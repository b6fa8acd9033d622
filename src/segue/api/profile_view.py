"""How a profile looks over HTTP: golden traits, lineage, alternates, merge history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from segue.core.model import Identifier, Profile

__all__ = ["iso", "profile_body"]


def iso(epoch: float) -> str:
    """Epoch seconds as RFC 3339 UTC with milliseconds."""
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _ids(identifiers: list[Identifier]) -> list[str]:
    return [str(i) for i in identifiers]


def profile_body(
    profile: Profile,
    possible_matches: list[dict[str, Any]] | None = None,
    features: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of ``GET /v1/profiles/{ref}``."""
    return {
        "profile_id": profile.profile_id,
        "identities": [{"type": i.type, "value": i.value} for i in sorted(profile.identities)],
        "traits": {k: v.value for k, v in profile.traits.items()},
        "lineage": {
            k: {
                "source": v.source,
                "message_id": v.message_id,
                "timestamp": iso(v.at),
                "legal_basis": v.legal_basis,
                "rule": v.rule,
            }
            for k, v in profile.traits.items()
        },
        "alternates": {
            name: [
                {
                    "value": o.value,
                    "source": o.source,
                    "sources": o.sources,
                    "message_id": o.message_id,
                    "first_seen": iso(o.first_at),
                    "last_seen": iso(o.at),
                    "count": o.count,
                    "legal_basis": o.legal_basis,
                }
                for o in observations
                if o.value != profile.traits[name].value
            ]
            for name, observations in profile.alternates.items()
            if len(observations) > 1
        },
        "features": features or {},
        "segments": [],
        "consent": {},
        "created_at": iso(profile.created_at),
        "updated_at": iso(profile.updated_at),
        "first_seen": iso(profile.first_seen),
        "last_seen": iso(profile.last_seen),
        "event_count": profile.event_count,
        "merged_from": profile.merged_from,
        "merges": [
            {
                "at": iso(m.at),
                "profile_id": m.profile_id,
                "identifiers": _ids(m.identifiers),
                "reason": m.reason,
                "via": _ids(m.via),
                "message_id": m.message_id,
                "score": m.score,
                "explanation": (
                    [
                        {"field": f, "level": lvl, "weight": round(w, 3)}
                        for f, lvl, w in m.explanation
                    ]
                    if m.explanation
                    else None
                ),
            }
            for m in profile.merges
        ],
        "possible_matches": possible_matches or [],
    }
