"""Features: per-profile aggregates and item models, folded from events by the processor.

Pure and synchronous: no I/O, no wall clock (times are event times in epoch seconds, reads
take ``now``), no randomness. The processor owns persistence; see each module's docstring.
"""

from segue.features.aggregates import (
    DEFAULT_CONFIG,
    CartLine,
    FeatureConfig,
    ItemInfo,
    ItemLookup,
    ProfileFeatures,
    affinities,
    compact_features,
    decode_features,
    encode_features,
    fold_features,
    merge_features,
    relative_affinities,
    session_key,
    window_counts,
)
from segue.features.content import ContentIndex, item_tokens
from segue.features.folder import FeatureFolder
from segue.features.items import (
    ItemModels,
    ItemModelsConfig,
    ItemModelsState,
    ItemStats,
    NeighbourKind,
)
from segue.features.view import (
    FEATURE_NAMES,
    feature_vector,
    features_view,
    rfm_scores,
)

__all__ = [
    "DEFAULT_CONFIG",
    "FEATURE_NAMES",
    "CartLine",
    "ContentIndex",
    "FeatureConfig",
    "FeatureFolder",
    "ItemInfo",
    "ItemLookup",
    "ItemModels",
    "ItemModelsConfig",
    "ItemModelsState",
    "ItemStats",
    "NeighbourKind",
    "ProfileFeatures",
    "affinities",
    "compact_features",
    "decode_features",
    "encode_features",
    "feature_vector",
    "features_view",
    "fold_features",
    "item_tokens",
    "merge_features",
    "relative_affinities",
    "rfm_scores",
    "session_key",
    "window_counts",
]
