"""Reading profile features as of a moment: counts, affinities, RFM, the API view, the vector.

Every read takes ``now`` (epoch seconds, UTC) and changes nothing: counts are those of the
windows ending at ``now``, affinities are decayed to ``now``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Final

from segue.features.aggregates import (
    DAY,
    DEFAULT_CONFIG,
    MINUTE,
    FeatureConfig,
    ProfileFeatures,
    affinities,
    window_counts,
)

__all__ = [
    "FEATURE_NAMES",
    "feature_vector",
    "features_view",
    "rfm_scores",
]


def rfm_scores(
    f: ProfileFeatures, now: float, config: FeatureConfig = DEFAULT_CONFIG
) -> tuple[int, int, int]:
    """Recency, frequency and monetary scores, each 1 (low) to 5 (high), on fixed thresholds
    (``FeatureConfig.rfm_*``). A profile that never bought scores (1, 1, 1)."""
    if f.last_purchase is None:
        return 1, 1, 1
    days = max(0.0, now - f.last_purchase) / DAY
    r = 1 + sum(1 for limit in config.rfm_recency_days if days <= limit)
    fr = 1 + sum(1 for limit in config.rfm_frequency if f.orders >= limit)
    m = 1 + sum(1 for limit in config.rfm_monetary if f.revenue >= limit)
    return min(r, 5), min(fr, 5), min(m, 5)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    try:
        moment = datetime.fromtimestamp(epoch, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _days(now: float, then: float | None) -> float | None:
    return None if then is None else round(max(0.0, now - then) / DAY, 3)


def features_view(
    f: ProfileFeatures, now: float, config: FeatureConfig = DEFAULT_CONFIG
) -> dict[str, Any]:
    """The ``features`` object of ``GET /v1/profiles/{ref}``, as of ``now`` (epoch seconds).

    Times are RFC 3339 UTC strings; affinities are decayed to ``now`` and sorted strongest
    first with their share of the total; lists are newest first.
    """
    session: dict[str, Any] | None = None
    if f.session_start is not None:
        session = {
            "id": f.session_id,
            "started_at": _iso(f.session_start),
            "last_activity_at": _iso(f.session_last),
            "active": now - f.session_last <= config.session_timeout,
            "pages": f.session_pages,
            "events": f.session_events,
            "duration_s": round(f.session_last - f.session_start, 3),
        }
    cart = [
        {
            "product_id": pid,
            "quantity": line.quantity,
            "price": line.price,
            "added_at": _iso(line.added_at),
        }
        for pid, line in reversed(f.cart.items())
    ]
    r, fr, m = rfm_scores(f, now, config)
    return {
        "counts": window_counts(f, now),
        "affinities": {
            "category": _ranked(affinities(f, "category", now, config)),
            "brand": _ranked(affinities(f, "brand", now, config)),
        },
        "recency": {
            "first_seen": _iso(f.first_seen),
            "last_seen": _iso(f.last_seen),
            "last_purchase": _iso(f.last_purchase),
            "days_since_last_seen": _days(now, f.last_seen),
            "days_since_last_purchase": _days(now, f.last_purchase),
        },
        "session": session,
        "sessions": f.sessions,
        "time_on_site_s": round(f.time_on_site, 3),
        "cart": {
            "items": cart,
            "quantity": sum(line.quantity for line in f.cart.values()),
            "value": round(_cart_value(f), 2),
        },
        "recently_viewed": list(reversed(f.recent)),
        "purchased": {"count": len(f.purchased), "recent": list(reversed(f.purchased))[:20]},
        "rfm": {
            "recency_days": _days(now, f.last_purchase),
            "frequency": f.orders,
            "monetary": round(f.revenue, 2),
            "first_purchase": _iso(f.first_purchase),
            "r": r,
            "f": fr,
            "m": m,
            "score": f"{r}{fr}{m}",
        },
    }


def _ranked(scores: list[tuple[str, float]]) -> list[dict[str, Any]]:
    total = sum(score for _, score in scores)
    return [
        {"name": name, "score": round(score, 4), "share": round(score / total, 4) if total else 0.0}
        for name, score in scores
    ]


def _cart_value(f: ProfileFeatures) -> float:
    return sum(line.quantity * line.price for line in f.cart.values() if line.price is not None)


#: the names of :func:`feature_vector`, in its order; part of the ranker's contract
FEATURE_NAMES: Final = (
    "views_1h",
    "views_24h",
    "views_30d",
    "product_views_24h",
    "clicks_1h",
    "clicks_24h",
    "clicks_30d",
    "adds_1h",
    "adds_24h",
    "adds_30d",
    "orders_24h",
    "orders_30d",
    "products_purchased_30d",
    "ctr_30d",
    "add_rate_30d",
    "conversion_30d",
    "days_since_last_seen",
    "days_since_last_purchase",
    "has_purchased",
    "orders",
    "log_revenue",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "in_session",
    "session_pages",
    "session_minutes",
    "sessions",
    "log_time_on_site",
    "cart_lines",
    "cart_quantity",
    "log_cart_value",
    "purchased_items",
    "top_category_share",
    "top_brand_share",
    "affinity_strength",
)

#: the value of "days since" when it never happened (and the cap otherwise)
_NEVER_DAYS: Final = 365.0


def feature_vector(
    f: ProfileFeatures, now: float, config: FeatureConfig = DEFAULT_CONFIG
) -> dict[str, float]:
    """Named numeric features for the ranker, as of ``now``; keys are :data:`FEATURE_NAMES`
    in that order.

    Counts are raw; rates are in [0, 1]; "days since" is capped at 365 (and is 365 when it
    never happened); money and durations that span orders of magnitude are ``log1p``.
    """
    counts = window_counts(f, now)
    hour, day, month = counts["1h"], counts["24h"], counts["30d"]
    views = month["views"]
    r, fr, m = rfm_scores(f, now, config)
    active = f.session_start is not None and now - f.session_last <= config.session_timeout
    session_seconds = f.session_last - f.session_start if f.session_start is not None else 0.0
    categories = [score for _, score in affinities(f, "category", now, config)]
    brands = [score for _, score in affinities(f, "brand", now, config)]
    cat_total, brand_total = sum(categories), sum(brands)
    values = (
        hour["views"],
        day["views"],
        views,
        day["product_views"],
        hour["clicks"],
        day["clicks"],
        month["clicks"],
        hour["adds"],
        day["adds"],
        month["adds"],
        day["orders"],
        month["orders"],
        month["products_purchased"],
        min(1.0, month["clicks"] / views) if views else 0.0,
        min(1.0, month["adds"] / views) if views else 0.0,
        min(1.0, month["orders"] / views) if views else 0.0,
        _capped_days(now, f.last_seen),
        _capped_days(now, f.last_purchase),
        1.0 if f.orders else 0.0,
        f.orders,
        math.log1p(max(0.0, f.revenue)),
        r,
        fr,
        m,
        1.0 if active else 0.0,
        f.session_pages if active else 0,
        session_seconds / MINUTE if active else 0.0,
        f.sessions,
        math.log1p(f.time_on_site),
        len(f.cart),
        sum(line.quantity for line in f.cart.values()),
        math.log1p(max(0.0, _cart_value(f))),
        len(f.purchased),
        categories[0] / cat_total if cat_total else 0.0,
        brands[0] / brand_total if brand_total else 0.0,
        math.log1p(cat_total),
    )
    return {name: float(value) for name, value in zip(FEATURE_NAMES, values, strict=True)}


def _capped_days(now: float, then: float | None) -> float:
    if then is None:
        return _NEVER_DAYS
    return min(_NEVER_DAYS, max(0.0, now - then) / DAY)
