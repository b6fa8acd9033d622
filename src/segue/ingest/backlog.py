"""The bound on what collection has handed to the event log and not yet got back.

Every append of the collection pipeline waits for the log to make its records durable:
SQLite's group commit queues concurrent appends behind the running transaction, NATS keeps
the publishes whose acknowledgements have not arrived. When the log cannot keep up (a slow
disk, a NATS server that is down or far away) that queue would grow with every request, and
so would every request's wait, until clients time out and retry into it. Instead:

- ``log_backlog``: at most this many records are in the pipeline at once; a request that
  would go over is refused (``log_backlog``);
- ``log_stall_s``: while the oldest request in the pipeline has waited this long, the log is
  stalled and new requests are refused at once (``log_stalled``) instead of joining the
  wait; once the stuck appends end (acknowledged, or failed by the adapter's own timeout),
  the next request goes through again and probes the log.

A request is always admitted when the pipeline is empty, so one large request cannot be
starved and a recovered log is found by the very next request. Refusing happens before
anything is written (the consent step included), so the client's retry is the whole story:
nothing was acknowledged, nothing is half stored.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

from segue.core.ports import Clock
from segue.errors import Overloaded

__all__ = ["LogBacklog"]


class LogBacklog:
    """Counts records between the start of a collection request's write and its end.

    Args:
        clock: the wall clock (epoch seconds); only differences are used.
        max_records: the most records in the pipeline at once.
        stall_s: seconds after which the oldest pending write means the log is stalled.
        retry_after: the ``Retry-After`` of a refusal, in whole seconds.
    """

    def __init__(self, clock: Clock, max_records: int, stall_s: float, retry_after: int) -> None:
        self._clock = clock
        self.max_records = max_records
        self.stall_s = stall_s
        self.retry_after = retry_after
        self.records = 0
        #: start time of each pending write, oldest first (dicts keep insertion order)
        self._pending: dict[int, float] = {}
        self._tokens = itertools.count()

    @contextmanager
    def admit(self, records: int) -> Iterator[None]:
        """Hold ``records`` places in the pipeline while the block runs.

        Raises:
            Overloaded: the pipeline is full (``log_backlog``) or stalled (``log_stalled``).
        """
        now = self._clock.now()
        if self._pending:
            waited = now - next(iter(self._pending.values()))
            if waited >= self.stall_s:
                raise Overloaded(
                    f"overloaded: the event log has not acknowledged a write for {waited:.1f} s",
                    reason="log_stalled",
                    retry_after=self.retry_after,
                )
            if self.records + records > self.max_records:
                raise Overloaded(
                    f"overloaded: {self.records} records are waiting for the event log",
                    reason="log_backlog",
                    retry_after=self.retry_after,
                )
        token = next(self._tokens)
        self._pending[token] = now
        self.records += records
        try:
            yield
        finally:
            del self._pending[token]
            self.records -= records
