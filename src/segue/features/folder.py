"""The one call the processor makes per event: profile features and item models together.

``FeatureFolder.fold`` reads the event once (its kind and its products) and updates the
person's :class:`~segue.features.aggregates.ProfileFeatures` and the shared
:class:`~segue.features.items.ItemModels` in the right order: the profile first, so that the
item models see the person's current session and purchase history. Pure and synchronous,
like both halves.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext

from segue.core.events import Event, Track
from segue.features._ecommerce import (
    ADD,
    CLICK,
    NONE,
    ORDER,
    VIEW,
    ItemLookup,
    kind_of,
    product_lines,
)
from segue.features.aggregates import (
    DEFAULT_CONFIG,
    FeatureConfig,
    ProfileFeatures,
    fold_parsed,
    session_key,
)
from segue.features.items import ItemModels

__all__ = ["FeatureFolder"]

_TEACHING = frozenset({VIEW, CLICK, ADD, ORDER})


class FeatureFolder:
    """Folds events into profile features and item models.

    Args:
        models: the item models to update (shared by every profile).
        config: how profile features are computed.
        item_lookup: catalog lookup for the category, brand and price events omit; it must
            be pure for the fold to stay replayable (a snapshot or a cache of the catalog).
        models_lock: held while the item models change (they are shared with readers on
            other threads); the profile's features are the caller's alone.
    """

    def __init__(
        self,
        models: ItemModels,
        config: FeatureConfig = DEFAULT_CONFIG,
        item_lookup: ItemLookup | None = None,
        models_lock: AbstractContextManager[object] | None = None,
    ) -> None:
        self.models = models
        self.config = config
        self.item_lookup = item_lookup
        self.models_lock: AbstractContextManager[object] = models_lock or nullcontext()

    def fold(
        self,
        profile_id: str,
        features: ProfileFeatures,
        event: Event,
        at: float,
        region: str | None = None,
    ) -> None:
        """Fold one event of one profile.

        Args:
            profile_id: the profile the event landed in (keys its sessions).
            features: that profile's features, updated in place.
            event: the event.
            at: its event time, epoch seconds (UTC); a non-finite time is ignored.
            region: coarse region; None reads ``context.location.country``.
        """
        kind = kind_of(event)
        if kind == NONE or not math.isfinite(at):
            return
        lines = (
            product_lines(event.properties, self.item_lookup)
            if VIEW <= kind <= ORDER and isinstance(event, Track)
            else []
        )
        fold_parsed(features, event, kind, lines, at, self.config)
        if kind in _TEACHING:
            key = session_key(profile_id, features)
            with self.models_lock:
                self.models.apply_parsed(event, kind, lines, at, key, region, features.purchased)
