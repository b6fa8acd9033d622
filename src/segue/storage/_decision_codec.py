"""The stored form of decisions and rank events, shared by every decision-store adapter.

JSON: both carry client-sent values (``context``, features) that may hold integers beyond
64 bits, which msgpack cannot carry; one codec keeps every adapter returning the same values.
"""

from __future__ import annotations

import msgspec

from segue.core.model import Decision, RankEvent

__all__ = ["decode_decision", "decode_rank_event", "encode"]

encode = msgspec.json.Encoder().encode
decode_decision = msgspec.json.Decoder(Decision).decode
decode_rank_event = msgspec.json.Decoder(RankEvent).decode
