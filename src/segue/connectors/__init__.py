"""Prebuilt connectors: declarative mapping files that turn files and webhooks into events.

A connector reads CSV, JSON or JSON Lines and maps every row to Segment messages with a
mapping file (see :mod:`segue.connectors.mapping` and ``docs/connectors.md``). segue ships
``crm_contacts``, ``shopify_orders``, ``pos_transactions`` and ``segment_jsonl``.
"""

from segue.connectors.connector import Connector, MappedChunk, builtin_connectors, load_connector
from segue.connectors.mapping import Mapping, compile_mapping

__all__ = [
    "Connector",
    "MappedChunk",
    "Mapping",
    "builtin_connectors",
    "compile_mapping",
    "load_connector",
]
