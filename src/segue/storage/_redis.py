"""What every Redis adapter opens with: the client, the errors that mean "Redis is away",
and the key prefix a ``?prefix=`` in the URL asks for."""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from segue.errors import MissingDependencyError

__all__ = ["RedisConnection", "connect", "split_prefix"]


class RedisConnection(NamedTuple):
    client: Any
    errors: tuple[type[BaseException], ...]
    prefix: str


def split_prefix(url: str) -> tuple[str, str]:
    """``redis://host/0?prefix=shop1:`` → the URL redis-py takes, and the key prefix that
    keeps installations (or tests) sharing one Redis apart."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = "".join(v for k, v in query if k == "prefix")
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


def connect(url: str, timeout: float) -> RedisConnection:
    """A client with short timeouts: a Redis that is away must cost little, since every
    caller has a way around it."""
    try:
        from redis import asyncio as aioredis
    except ImportError as exc:  # pragma: no cover - the extra is installed in dev
        raise MissingDependencyError("redis", "redis") from exc
    url, prefix = split_prefix(url)
    client = aioredis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=5
    )
    return RedisConnection(client, (OSError, aioredis.RedisError), prefix)
