"""``GET /v1/decisions/{decision_id}``: why a decision showed what it showed (GDPR Art. 22).

Admin key. Each item's score is split into the contribution of every feature (weight ×
value, with the weights the ranker used at that moment, so the explanation stays true after
the model has learned more), with its top factors; the decision says whether it was
personalised and why, with which model version and which categories of data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from segue.api.http import Request, Response, Route, json_response
from segue.decide.ranking import FEATURES
from segue.errors import NotFound

if TYPE_CHECKING:
    from segue.api.app import SegueApp

__all__ = ["DecisionExplanation", "routes"]


class ItemExplanation(msgspec.Struct, kw_only=True):
    item_id: str
    position: int
    score: float
    propensity: float
    contributions: dict[str, float]
    top_factors: list[str]


class DecisionExplanation(msgspec.Struct, kw_only=True):
    decision_id: str
    created_at: float
    placement: str
    profile_id: str | None
    personalized: bool
    reason: str
    strategy: str
    model_version: str
    data_categories: list[str]
    features_used: list[str]
    experiment: str | None
    variant: str | None
    context: dict[str, Any]
    items: list[ItemExplanation]


def routes(app: SegueApp) -> list[Route]:
    async def explain(request: Request) -> Response:
        decision_id = request.params["decision_id"]
        engine = app.runtime.engine
        decision = engine.recent.get(decision_id) or await app.runtime.decisions.get_decision(
            decision_id
        )
        if decision is None:
            raise NotFound(f"no decision {decision_id}")
        ctx = dict(decision.context)
        rows: list[list[float]] = ctx.pop("x", []) or []
        weights: list[float] = ctx.pop("w", []) or []
        items = []
        for position, item_id in enumerate(decision.items):
            x = rows[position] if position < len(rows) else []
            parts = {
                name: round(w * v, 5)
                for name, w, v in zip(FEATURES, weights, x, strict=False)
                if w * v != 0.0
            }
            items.append(
                {
                    "item_id": item_id,
                    "position": position + 1,
                    "score": decision.scores[position] if position < len(decision.scores) else 0,
                    "propensity": (
                        decision.propensities[position]
                        if position < len(decision.propensities)
                        else 1.0
                    ),
                    "contributions": parts,
                    "top_factors": [
                        n for n, v in sorted(parts.items(), key=lambda kv: -kv[1]) if v > 0
                    ][:3],
                }
            )
        return json_response(
            {
                "decision_id": decision.decision_id,
                "created_at": decision.created_at,
                "placement": decision.placement,
                "profile_id": decision.profile_id,
                "personalized": decision.personalized,
                "reason": decision.reason,
                "strategy": decision.strategy,
                "model_version": decision.model_version,
                "data_categories": decision.data_categories,
                "features_used": decision.features_used,
                "experiment": decision.experiment,
                "variant": decision.variant,
                "context": ctx,
                "items": items,
            }
        )

    return [
        Route(
            method="GET",
            path="/v1/decisions/{decision_id}",
            handler=explain,
            response=DecisionExplanation,
            errors=(401, 404),
            summary="Explain a decision: per item, each feature's share of the score",
            tag="decide",
            auth="admin",
        )
    ]
