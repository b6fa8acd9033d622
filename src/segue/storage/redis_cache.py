"""The second cache layer: what one API process read from the state store, the others
find in Redis instead of reading it again.

Entries are short-lived copies of state (a person's decide signals, a profile's facts, an
identifier's profile id). They are dropped by whoever changes that state — the worker
after a commit, an erasure — before the change note goes out. The classic race is a
reader that loaded the old state just before the change and stores it just after the
drop. Every key therefore has a generation counter: a reader notes the generation before
loading, and its copy is stored only if the generation has not moved (one Lua script, so
the check and the write are atomic).

Keys are identifiers and profile ids (``id:email:…``), and Redis shows key names to anyone
who can scan it, keeps generations for an hour, and an erasure's own invalidation writes
them. So no key is ever stored under its name: only under a keyed hash of it (HMAC with
the installation secret), which every process of the installation computes alike and
nobody without the secret can test a guessed email against.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

import structlog

from segue.storage._redis import connect

__all__ = ["RedisSharedCache"]

_log = structlog.get_logger("segue.cache")
#: the value of key ARGV[2] in the current epoch, its generation, and the epoch
_GET = """
local epoch = redis.call('GET', KEYS[1]) or '0'
local value = redis.call('GET', ARGV[1] .. epoch .. ':' .. ARGV[2])
local gen = redis.call('GET', ARGV[3] .. ARGV[2]) or '0'
return {value or false, gen, epoch}
"""
#: store ARGV[2] under key ARGV[1] for ARGV[5] seconds if neither the epoch (ARGV[4]) nor
#: the key's generation (ARGV[3]) moved since they were read
_PUT_IF_CURRENT = """
local epoch = redis.call('GET', KEYS[1]) or '0'
local gen = redis.call('GET', KEYS[2]) or '0'
if epoch == ARGV[4] and gen == ARGV[3] then
  redis.call('SET', ARGV[6] .. epoch .. ':' .. ARGV[1], ARGV[2], 'EX', tonumber(ARGV[5]))
  return 1
end
return 0
"""


class RedisSharedCache:
    """Values under ``<prefix>c<epoch>:<name>``, generations under ``<prefix>g:<name>``,
    where ``name`` is the keyed hash of the key (see the module docstring).

    The epoch moves (``reset``) when a process comes back from an outage: invalidations
    it could not send may have left stale copies, and a new epoch makes them all
    unreachable at once. Redis being down is a miss (or a no-op) for every method: the
    caller then reads the state store, which is always right.

    Args:
        url: ``redis://…``, with ``?prefix=`` to share one Redis between installations.
        secret: the installation secret the key names are hashed with.
        ttl: seconds a value is kept.
    """

    def __init__(self, url: str, secret: bytes, ttl: float = 30.0) -> None:
        if not secret:
            raise ValueError("the shared cache needs the installation secret to name keys")
        self._redis, self._errors, prefix = connect(url, timeout=0.5)
        self._secret = secret
        self._epoch = prefix + "epoch"
        self._values = prefix + "c"
        self._generations = prefix + "g:"
        self.ttl = max(1, round(ttl))
        self._get = self._redis.register_script(_GET)
        self._put = self._redis.register_script(_PUT_IF_CURRENT)
        self.hits = 0
        self.misses = 0
        self.errors = 0

    def _name(self, key: str) -> str:
        """What ``key`` is stored as: 128 bits of HMAC-SHA256 under the secret, as hex."""
        message = b"segue-shared-cache\x00" + key.encode("utf-8")
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    async def get(self, key: str) -> tuple[bytes | None, bytes]:
        """The cached bytes (None: a miss) and a token for ``put``, in one round trip."""
        try:
            value, generation, epoch = await self._get(
                keys=[self._epoch], args=[self._values, self._name(key), self._generations]
            )
        except self._errors as exc:
            self._failed(exc)
            return None, b""
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value, bytes(generation) + b"/" + bytes(epoch)

    async def put(self, key: str, value: bytes, token: bytes) -> None:
        """Keep ``value`` unless the key was invalidated (or the epoch moved) since
        ``token`` was read."""
        if not token:  # the read failed: nothing is known about the key
            return
        generation, _, epoch = token.partition(b"/")
        name = self._name(key)
        try:
            await self._put(
                keys=[self._epoch, self._generations + name],
                args=[name, value, generation, epoch, self.ttl, self._values],
            )
        except self._errors as exc:
            self._failed(exc)

    async def invalidate(self, keys: Iterable[str]) -> bool:
        """Drop the keys' values and move their generations (loads in flight are void);
        False when Redis could not be told (the caller resets once it is back)."""
        wanted = list(dict.fromkeys(self._name(key) for key in keys))
        if not wanted:
            return True
        try:
            epoch = (await self._redis.get(self._epoch) or b"0").decode()
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in wanted:
                    pipe.incr(self._generations + key)
                    pipe.expire(self._generations + key, 3600)
                pipe.delete(*[f"{self._values}{epoch}:{key}" for key in wanted])
                await pipe.execute()
        except self._errors as exc:
            self._failed(exc)
            return False
        return True

    async def reset(self) -> None:
        """Make every stored copy unreachable (a new epoch); the old ones expire."""
        try:
            await self._redis.incr(self._epoch)
        except self._errors as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        if self.errors % 1000 == 1:
            _log.warning("shared_cache_unavailable", error=repr(exc))

    async def aclose(self) -> None:
        try:
            await self._redis.aclose()
        except self._errors:
            return
