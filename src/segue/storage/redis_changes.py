"""The change feed of a cluster: Redis pub/sub on one channel.

Pub/sub keeps nothing: a note exists only on the wire, so notes that name people never
land on a disk. What a process misses while its connection is down it cannot get back;
it reports the outage (``live`` false, and a ``flush`` note) so the caller drops its
caches and reads through until the feed is back.

Two ways an outage can hide, and what closes them:

- a connection that is silently dead (a partition without a reset): the subscription is
  pinged every second and counted down when nothing, not even the pong, came back for
  three; so a process stops trusting its caches within ~3 s of losing the feed;
- only the *publisher* lost Redis, while the others still hear the channel and trust their
  caches: the notes it could not send are gone, so once it is back it publishes a ``flush``
  note, and every process drops what it cached while the note was missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import structlog

from segue.core.changes import Change, encode_change
from segue.storage._redis import connect, split_prefix

__all__ = ["RedisChangeFeed", "split_prefix"]

_log = structlog.get_logger("segue.changes")
_FLUSH = encode_change(Change(origin="", flush=True))
#: seconds between attempts to reconnect a broken subscription
_RETRY_S = 0.5
#: the longest a confirmed publish waits for the others
_CONFIRM_S = 0.5
#: key prefix of a note's count of processes that applied it
_ACK = "segue:applied:"
#: seconds between pings of the subscription, and of silence that counts as an outage
_PING_S = 1.0
_SILENCE_S = 3.0


class RedisChangeFeed:
    """Notes published on ``channel``; every process subscribes."""

    def __init__(self, url: str) -> None:
        self._redis, self._errors, prefix = connect(url, timeout=1.0)
        self._channel = prefix + "segue:changes"
        self._acks = prefix + _ACK
        self._pubsub: Any = None
        #: ids of the notes received and not yet reported applied
        self._received: list[bytes] = []
        #: whether notes are getting through (false: the caller must not trust its caches)
        self.live = False
        #: a note of ours was lost: the others must flush once we are back
        self._unsent = False
        self._pinged = self._heard = 0.0

    async def open(self, origin: str) -> None:
        await self._subscribe()

    async def _subscribe(self) -> bool:
        try:
            if self._pubsub is not None:
                await self._pubsub.aclose()
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            await self._pubsub.subscribe(self._channel)
        except self._errors as exc:
            self._pubsub = None
            if self.live:
                _log.warning("change_feed_down", error=repr(exc))
            self.live = False
            return False
        if not self.live:
            _log.info("change_feed_up")
        self.live = True
        self._pinged = self._heard = asyncio.get_running_loop().time()
        if self._unsent:
            try:
                await self._redis.publish(self._channel, uuid.uuid4().bytes + _FLUSH)
                self._unsent = False
            except self._errors as exc:
                _log.warning("change_feed_publish_failed", error=repr(exc))
                self.live = False
                return False
        return True

    async def publish(self, note: bytes, *, confirm: bool = False) -> None:
        note_id = uuid.uuid4().bytes
        try:
            # PUBLISH answers how many subscribers got it: this process is one of them
            receivers = int(await self._redis.publish(self._channel, note_id + note))
            if confirm and receivers > 1:
                await self._confirm(note_id, receivers - 1)
        except self._errors as exc:
            # the others cannot hear it; they notice the same outage and read through
            _log.warning("change_feed_publish_failed", error=repr(exc))
            self.live = False
            self._unsent = True

    async def _confirm(self, note_id: bytes, others: int) -> None:
        """Until ``others`` processes have applied the note (or the wait is over)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CONFIRM_S
        key = self._acks + note_id.hex()
        while True:
            done = int(await self._redis.get(key) or 0)
            if done >= others:
                return
            if loop.time() >= deadline:
                _log.warning("change_not_confirmed", processes=others - done)
                return
            await asyncio.sleep(0.001)

    async def applied(self) -> None:
        received, self._received = self._received, []
        if not received:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for note_id in received:
                    key = self._acks + note_id.hex()
                    pipe.incr(key)
                    pipe.expire(key, 10)
                await pipe.execute()
        except self._errors as exc:
            _log.warning("change_feed_ack_failed", error=repr(exc))

    async def receive(self, timeout: float) -> list[bytes]:
        if self._pubsub is None or not self.live:
            if not await self._subscribe():
                await asyncio.sleep(min(timeout, _RETRY_S))
                return []
            return [_FLUSH]  # back after an outage: what was missed is unknown
        loop = asyncio.get_running_loop()
        try:
            if loop.time() - self._pinged >= _PING_S:
                self._pinged = loop.time()
                await self._pubsub.ping()
            message = await self._pubsub.get_message(timeout=min(timeout, _PING_S))
            notes: list[bytes] = []
            while message is not None:
                self._heard = loop.time()
                if message.get("type") == "message":
                    data = bytes(message["data"])
                    self._received.append(data[:16])
                    notes.append(data[16:])
                if len(notes) >= 1000:
                    break
                message = await self._pubsub.get_message(timeout=0)
            if loop.time() - self._heard > _SILENCE_S:
                raise ConnectionError(f"no answer to pings for {_SILENCE_S} s")
            return notes
        except self._errors as exc:  # OSError covers the silence above
            _log.warning("change_feed_down", error=repr(exc))
            self.live = False
            return [_FLUSH]

    async def erase(self) -> int:
        """Pub/sub keeps no note: nothing to drop."""
        return 0

    async def aclose(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(*self._errors):
                await self._pubsub.aclose()
        with contextlib.suppress(*self._errors):
            await self._redis.aclose()
