"""The event log on NATS JetStream: one file-storage stream, subjects partitioned by key.

``SEGUE_LOG=nats://127.0.0.1:4222?stream=SEGUE&partitions=16`` (every query parameter is
optional; see :class:`NatsEventLog`).

Layout
    One stream (``SEGUE``) with file storage holds every record. A record is published on
    ``<prefix>.events.<partition>.<id>`` where ``partition = crc32(key) % partitions`` and
    ``id`` is a 128-bit hash of (source, message_id). Offsets are the stream's sequence
    numbers, so they form one global order while a worker can still consume one partition
    with the filter ``<prefix>.events.<partition>.*``. The partition count is written into the
    stream's description when the stream is created and read back from it afterwards, so
    every process of an installation hashes keys the same way whatever its URL says.

Permanent dedupe without a second write
    JetStream's own ``Nats-Msg-Id`` dedupe only covers a window of minutes, and a KV bucket
    keyed by (source, message_id) in front of the publish needs two writes per event and
    leaves a crash window between them: a claim written but never published would turn the
    client's retry into a "duplicate" and lose an acknowledged event, and telling a dead
    claim from a slow one needs a scan of the stream. Instead the stream enforces the
    uniqueness itself, atomically with the store: it is created with ``max_msgs_per_subject=1``,
    ``discard=new`` and ``discard_new_per_subject=true``, and the message id is part of the
    subject. The server rejects a publish on a subject that already holds a message
    (``err_code`` 10077) without assigning a sequence number, so:

    - the store and the dedupe are one operation: there is nothing to crash between;
    - a publish whose acknowledgement was lost (disconnect, timeout, our crash) is stored or
      not; the client's retry gets either its first store or ``None`` (already stored), never
      a second copy, however much later it comes;
    - an erased record frees its subject, so its (source, message_id) may come again, as
      the port requires.

    The subject includes the partition, so strictly the unique key is (source, message_id,
    partition of key). A retry of a message carries the same identifiers, hence the same key
    and subject; only two *different* messages reusing one message id for two different
    people would both be kept (the SQLite log keeps the first and drops the second).

    Cost: the server indexes every subject, so the dedupe index is an entry per stored
    record in the server's memory (a KV bucket would cost the same, and a second write).
    Retention bounds it; size the NATS servers for the retained log.

Durability
    ``append`` returns once JetStream acknowledged every publish, i.e. the stream stored
    them (with ``replicas`` > 1, once a quorum did). The records survive a kill -9 of segue
    and of nats-server (written to the OS); a power cut of a single R1 server may lose the
    last ``sync_interval`` of writes unless the server runs with ``sync: always`` — run R3 in
    production. A batch is published pipelined (every publish goes out before the first ack
    is awaited) on one connection, so the server stores it in order; when any publish fails
    the call raises :class:`BackendUnavailable` and the caller retries the whole batch,
    which the dedupe makes safe.

Reading
    ``read`` pulls from an ephemeral consumer (ack none, in-memory) created at ``after`` and
    kept while reads continue where the last one stopped (the processor's pattern), so a
    sequential scan costs one pull request per batch. Consumer sequence numbers are checked
    to be contiguous; a gap (a dropped delivery) discards the consumer and re-reads. ``get``
    uses pipelined direct gets (``allow_direct``).

Waiting
    ``wait`` first checks the stream's last sequence; only when nothing is past ``after``
    does it subscribe (plain NATS, no JetStream consumer) to ``<prefix>.events.>`` and sleep
    until a publish is seen or the timeout ends, then re-checks. A caught-up processor thus
    wakes within a network hop of an append from any process, without polling; the
    subscription lives only while someone waits, so a busy log is never delivered twice.

Erasure
    ``delete_msg`` per sequence: JetStream's default delete overwrites the message on disk
    with random bytes (secure erase) before it answers. The stream's last sequence survives
    the removal of the newest records, so offsets are never reused.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import msgspec
import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    StorageType,
    StreamConfig,
)

from segue.core.model import LogRecord, NewRecord
from segue.errors import BackendUnavailable, ConfigError

__all__ = ["NatsEventLog", "parse_nats_url"]

#: JetStream's error for a publish on a subject that already holds its one message
_SUBJECT_FULL = 10077
#: JetStream's error for deleting a sequence that holds no message
_NO_MESSAGE = (10057, 10043)
_DESCRIPTION = "segue event log; partitions="
_log = structlog.get_logger("segue.storage.nats")

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(tuple[str, str, float, str, bytes]).decode


@dataclass(frozen=True)
class NatsLogConfig:
    """What a ``nats://`` URL says: servers, stream, subject prefix, partitions, timeouts."""

    servers: list[str]
    stream: str = "SEGUE"
    prefix: str = ""
    partitions: int = 16
    replicas: int = 1
    timeout: float = 5.0

    @property
    def subjects(self) -> str:
        return f"{self.prefix}.events.>"


def parse_nats_url(url: str) -> NatsLogConfig:
    """Parse ``nats://host:port[,host:port…][?stream=&prefix=&partitions=&replicas=&timeout=]``.

    The prefix defaults to the stream name in lower case, so two streams on one server
    never claim the same subjects.
    """
    scheme, _, rest = url.partition("://")
    hosts, _, query = rest.partition("?")
    hosts = hosts.rstrip("/")
    if scheme not in ("nats", "tls") or not hosts:
        raise ConfigError([f"not a NATS URL: {url!r} (nats://host:port?stream=…)"])
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    unknown = set(params) - {"stream", "prefix", "partitions", "replicas", "timeout"}
    if unknown:
        raise ConfigError([f"unknown NATS log parameters: {', '.join(sorted(unknown))}"])
    stream = params.get("stream", "SEGUE")
    try:
        config = NatsLogConfig(
            servers=[f"{scheme}://{h}" for h in hosts.split(",")],
            stream=stream,
            prefix=params.get("prefix", stream.lower()),
            partitions=int(params.get("partitions", "16")),
            replicas=int(params.get("replicas", "1")),
            timeout=float(params.get("timeout", "5")),
        )
    except ValueError as exc:
        raise ConfigError([f"bad NATS log parameter in {url!r}: {exc}"]) from exc
    problems = []
    if not stream.replace("-", "").replace("_", "").isalnum():
        problems.append(f"stream name {stream!r}: letters, digits, - and _ only")
    if not all(t.replace("-", "").replace("_", "").isalnum() for t in config.prefix.split(".")):
        problems.append(f"subject prefix {config.prefix!r}: dot-separated plain tokens only")
    if not 1 <= config.partitions <= 4096:
        problems.append("partitions must be between 1 and 4096")
    if config.timeout <= 0:
        problems.append("timeout must be positive")
    if problems:
        raise ConfigError(problems)
    return config


def _record(offset: int, data: bytes) -> LogRecord:
    """The record stored at ``offset`` from its published payload."""
    return LogRecord(offset, *_decode(data))


def _record_id(source: str, message_id: str) -> str:
    """The subject token of (source, message_id): 128 bits of BLAKE2b, URL-safe base64."""
    digest = hashlib.blake2b(source.encode() + b"\0" + message_id.encode(), digest_size=16).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def partition_of(key: str, partitions: int) -> int:
    """The partition of a routing key: CRC-32, stable across processes and languages."""
    return zlib.crc32(key.encode()) % partitions


async def _on_error(exc: Exception) -> None:
    _log.warning("nats_error", error=repr(exc))


async def _on_disconnect() -> None:
    _log.info("nats_disconnected")


async def _on_reconnect() -> None:
    _log.info("nats_reconnected")


class _Cursor:
    """An ephemeral pull consumer positioned right after ``position``.

    Deliveries arrive on ``inbox`` through a callback that only appends to ``batch`` (no
    per-message task or timer); ``done`` resolves when the batch is full or the server
    ends it with a status (404 no messages, 408 request over, or an error).
    """

    def __init__(self, name: str, position: int, inbox: str) -> None:
        self.name = name
        self.position = position
        self.delivered = 0
        self.inbox = inbox
        self.sub: Subscription | None = None
        self.want = 0
        self.batch: list[Msg] = []
        self.done: asyncio.Future[str] | None = None

    async def deliver(self, msg: Msg) -> None:
        done = self.done
        if done is None or done.done():
            return  # the tail of an abandoned pull
        if not msg.reply:
            done.set_result((msg.headers or {}).get("Status", "?"))
            return
        self.batch.append(msg)
        if len(self.batch) >= self.want:
            done.set_result("")


class NatsEventLog:
    """The event log on a NATS JetStream stream (see the module docstring for the design).

    Args:
        url: ``nats://host:port`` with optional ``stream`` (default ``SEGUE``), ``prefix``
            (subject prefix, default the stream name in lower case), ``partitions`` (default
            16; only used when the stream is created), ``replicas`` (default 1) and
            ``timeout`` (seconds per server round trip, default 5).
    """

    def __init__(self, url: str) -> None:
        self.config = parse_nats_url(url)
        self.partitions = self.config.partitions
        self._nc: Client | None = None
        self._head = 0
        self._waiters: set[asyncio.Event] = set()
        self._acks: dict[str, asyncio.Future[Msg]] = {}
        self._ack_prefix = ""
        self._tokens = itertools.count()
        self._ack_sub: Subscription | None = None
        self._cursor: _Cursor | None = None
        self._read_lock = asyncio.Lock()

    # -- connection -------------------------------------------------------------------------

    @property
    def _client(self) -> Client:
        if self._nc is None:
            raise BackendUnavailable("the NATS event log is not open")
        return self._nc

    async def open(self) -> None:
        if self._nc is not None:
            return
        cfg = self.config
        try:
            nc = await nats.connect(
                servers=cfg.servers,
                name="segue-event-log",
                connect_timeout=cfg.timeout,
                # a few tries at start, so a missing server is reported instead of awaited
                max_reconnect_attempts=2,
                reconnect_time_wait=0.25,
                allow_reconnect=True,
                error_cb=_on_error,
                disconnected_cb=_on_disconnect,
                reconnected_cb=_on_reconnect,
            )
        except (OSError, nats.errors.Error, TimeoutError) as exc:
            raise BackendUnavailable(f"NATS at {', '.join(cfg.servers)}: {exc}") from exc
        # once connected, reconnect forever: a NATS restart must not need a segue restart;
        # while disconnected, appends time out and raise BackendUnavailable
        nc.options["max_reconnect_attempts"] = -1
        self._nc = nc
        try:
            await self._ensure_stream()
            self._ack_prefix = nc.new_inbox()
            self._ack_sub = await nc.subscribe(self._ack_prefix + ".*", cb=self._on_ack)
        except BaseException:
            await nc.close()
            self._nc = None
            raise
        await self.last_offset()

    async def _ensure_stream(self) -> None:
        """Create the stream, or adopt an existing one and its partition count."""
        cfg = self.config
        js = self._client.jetstream(timeout=cfg.timeout)
        wanted = StreamConfig(
            name=cfg.stream,
            description=f"{_DESCRIPTION}{cfg.partitions}",
            subjects=[cfg.subjects],
            storage=StorageType.FILE,
            num_replicas=cfg.replicas,
            discard=DiscardPolicy.NEW,
            discard_new_per_subject=True,
            max_msgs_per_subject=1,
            allow_direct=True,
        )
        try:
            try:
                info = await js.stream_info(cfg.stream)
            except nats.js.errors.NotFoundError:
                # concurrent creators with the same config both succeed
                info = await js.add_stream(wanted)
        except (nats.errors.Error, TimeoutError) as exc:
            raise BackendUnavailable(f"NATS stream {cfg.stream}: {exc}") from exc
        got = info.config
        problems = []
        if cfg.subjects not in (got.subjects or []):
            problems.append(f"stream {cfg.stream} does not hold subjects {cfg.subjects}")
        if got.max_msgs_per_subject != 1 or not got.discard_new_per_subject:
            problems.append(
                f"stream {cfg.stream} lacks max_msgs_per_subject=1 with discard new per "
                "subject: it cannot de-duplicate; use a stream segue created"
            )
        if not got.allow_direct:
            problems.append(f"stream {cfg.stream} does not allow direct gets")
        if got.storage != StorageType.FILE:
            problems.append(f"stream {cfg.stream} is not on file storage")
        description = got.description or ""
        if description.startswith(_DESCRIPTION):
            self.partitions = int(description[len(_DESCRIPTION) :])
        if problems:
            raise ConfigError(problems)

    async def aclose(self) -> None:
        nc, self._nc = self._nc, None
        if nc is None:
            return
        cursor, self._cursor = self._cursor, None
        with contextlib.suppress(Exception):
            if cursor is not None:
                await self._drop(nc, cursor)
            await nc.drain()
        if not nc.is_closed:
            await nc.close()
        for future in self._acks.values():
            if not future.done():
                future.cancel()
        self._acks.clear()

    async def _api(self, subject: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One JetStream API request; transport failures become BackendUnavailable."""
        try:
            msg = await self._client.request(
                subject, json.dumps(payload).encode(), timeout=self.config.timeout
            )
        except (nats.errors.Error, TimeoutError) as exc:
            raise BackendUnavailable(f"NATS {subject}: {exc!r}") from exc
        reply: dict[str, Any] = json.loads(msg.data)
        return reply

    # -- append -----------------------------------------------------------------------------

    async def _on_ack(self, msg: Msg) -> None:
        future = self._acks.pop(msg.subject[len(self._ack_prefix) + 1 :], None)
        if future is not None and not future.done():
            future.set_result(msg)

    def subject(self, record: NewRecord) -> str:
        """The subject a record is published on (partition, then its dedupe id)."""
        partition = partition_of(record.key, self.partitions)
        token = _record_id(record.source, record.message_id)
        return f"{self.config.prefix}.events.{partition}.{token}"

    async def append(self, records: Sequence[NewRecord]) -> list[int | None]:
        if not records:
            return []
        nc = self._client
        loop = asyncio.get_running_loop()
        headers = {"Nats-Expected-Stream": self.config.stream}
        futures: list[asyncio.Future[Msg]] = []
        try:
            # every publish goes out before any ack is awaited: one connection keeps them
            # in order, and the server acks them as it stores them
            for record in records:
                token = str(next(self._tokens))
                future: asyncio.Future[Msg] = loop.create_future()
                self._acks[token] = future
                futures.append(future)
                payload = _encode(
                    (record.source, record.message_id, record.received_at, record.key, record.body)
                )
                await nc.publish(
                    self.subject(record),
                    payload,
                    reply=f"{self._ack_prefix}.{token}",
                    headers=headers,
                )
            _, pending = await asyncio.wait(futures, timeout=self.config.timeout)
        except (nats.errors.Error, OSError) as exc:
            self._forget(futures)
            raise BackendUnavailable(f"NATS publish: {exc!r}") from exc
        if pending:
            self._forget(futures)
            raise BackendUnavailable(
                f"NATS did not acknowledge {len(pending)} of {len(records)} records "
                f"within {self.config.timeout} s"
            )
        offsets: list[int | None] = []
        for future in futures:
            ack = future.result()
            reply = json.loads(ack.data) if ack.data else {}
            error = reply.get("error")
            if error is None and "seq" in reply:
                offsets.append(int(reply["seq"]))
            elif error is not None and error.get("err_code") == _SUBJECT_FULL:
                offsets.append(None)
            else:
                status = (ack.headers or {}).get("Status", "")
                raise BackendUnavailable(f"NATS refused a record: {error or status or reply}")
        top = max((o for o in offsets if o is not None), default=0)
        self._advance(top)
        return offsets

    def _forget(self, futures: list[asyncio.Future[Msg]]) -> None:
        for future in futures:
            future.cancel()
        for token in [t for t, f in self._acks.items() if f.done()]:
            del self._acks[token]

    def _advance(self, head: int) -> None:
        if head > self._head:
            self._head = head
            for waiter in self._waiters:
                waiter.set()

    # -- read -------------------------------------------------------------------------------

    async def read(self, after: int, limit: int) -> list[LogRecord]:
        if limit <= 0:
            return []
        async with self._read_lock:
            for _attempt in range(3):
                cursor = self._cursor
                if cursor is None or cursor.position != after:
                    cursor = await self._open_cursor(after)
                try:
                    records = await self._pull(cursor, limit)
                except BackendUnavailable:
                    await self._discard(cursor)
                    raise
                if records is not None:
                    if records:
                        cursor.position = records[-1].offset
                    return records
                # a gap or a vanished consumer: start over from ``after``
                await self._discard(cursor)
            raise BackendUnavailable("NATS delivered an incomplete batch three times")

    async def _open_cursor(self, after: int) -> _Cursor:
        nc = self._client
        if self._cursor is not None:
            await self._discard(self._cursor)
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            filter_subject=self.config.subjects,
            inactive_threshold=120.0,
            mem_storage=True,
            num_replicas=1,
        )
        if after > 0:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = after + 1
        else:
            config.deliver_policy = DeliverPolicy.ALL
        reply = await self._api(
            f"$JS.API.CONSUMER.CREATE.{self.config.stream}",
            {"stream_name": self.config.stream, "config": config.as_dict()},
        )
        if "error" in reply:
            raise BackendUnavailable(f"NATS consumer: {reply['error']}")
        cursor = _Cursor(reply["name"], after, nc.new_inbox())
        cursor.sub = await nc.subscribe(cursor.inbox, cb=cursor.deliver)
        self._cursor = cursor
        return cursor

    async def _discard(self, cursor: _Cursor) -> None:
        """Stop using ``cursor`` and delete its consumer, if the server still answers."""
        self._cursor = None
        with contextlib.suppress(Exception):
            await self._drop(self._client, cursor)

    async def _drop(self, nc: Client, cursor: _Cursor) -> None:
        if cursor.sub is not None:
            await cursor.sub.unsubscribe()
        await nc.request(
            f"$JS.API.CONSUMER.DELETE.{self.config.stream}.{cursor.name}",
            b"",
            timeout=self.config.timeout,
        )

    async def _pull(self, cursor: _Cursor, limit: int) -> list[LogRecord] | None:
        """Pull up to ``limit`` available records; None when the batch must be re-read."""
        nc = self._client
        request = json.dumps({"batch": limit, "no_wait": True}).encode()
        cursor.want, cursor.batch = limit, []
        cursor.done = asyncio.get_running_loop().create_future()
        try:
            await nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{self.config.stream}.{cursor.name}",
                request,
                reply=cursor.inbox,
            )
            status = await asyncio.wait_for(cursor.done, self.config.timeout)
        except (nats.errors.Error, TimeoutError) as exc:
            raise BackendUnavailable(f"NATS read: {exc!r}") from exc
        if status not in ("", "404", "408"):
            return None  # 409 consumer deleted, 503 no responders …: start over
        records: list[LogRecord] = []
        for msg in cursor.batch:
            # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>
            # or, from servers with domains, $JS.ACK.<domain>.<account>.<stream>.… .<random>
            tokens = msg.reply.split(".")
            base = 4 if len(tokens) == 9 else 6
            sequence, delivered = int(tokens[base + 1]), int(tokens[base + 2])
            if delivered != cursor.delivered + 1:
                return None  # a delivery went missing: never skip a record silently
            cursor.delivered = delivered
            records.append(_record(sequence, msg.data))
        return records

    async def get(self, offsets: Sequence[int]) -> list[LogRecord]:
        wanted = [o for o in offsets if o > 0]
        if not wanted:
            return []
        nc = self._client
        subject = f"$JS.API.DIRECT.GET.{self.config.stream}"
        by_offset: dict[int, LogRecord] = {}
        unique = list(dict.fromkeys(wanted))
        for start in range(0, len(unique), 1000):
            chunk = unique[start : start + 1000]
            try:
                replies = await asyncio.gather(
                    *(
                        nc.request(subject, b'{"seq":%d}' % o, timeout=self.config.timeout)
                        for o in chunk
                    )
                )
            except (nats.errors.Error, TimeoutError) as exc:
                raise BackendUnavailable(f"NATS get: {exc!r}") from exc
            for offset, msg in zip(chunk, replies, strict=True):
                if msg.data and (msg.headers or {}).get("Nats-Sequence") == str(offset):
                    by_offset[offset] = _record(offset, msg.data)
        return [by_offset[o] for o in wanted if o in by_offset]

    async def last_offset(self) -> int:
        reply = await self._api(f"$JS.API.STREAM.INFO.{self.config.stream}", {})
        if "error" in reply:
            raise BackendUnavailable(f"NATS stream info: {reply['error']}")
        self._advance(int(reply["state"]["last_seq"]))
        return self._head

    async def wait(self, after: int, timeout: float) -> None:
        if self._head > after:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        woken = asyncio.Event()

        async def wake(_msg: Msg) -> None:
            woken.set()

        # subscribe before checking, so a publish between the check and the sleep still wakes
        sub = await self._client.subscribe(self.config.subjects, cb=wake)
        try:
            await self._client.flush(timeout=max(1, round(self.config.timeout)))
            self._waiters.add(woken)  # appends of this process wake it without a hop
            while True:
                woken.clear()  # before the check: a publish seen after it wakes the sleep
                if await self.last_offset() > after:
                    return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), remaining)
        except nats.errors.Error as exc:
            raise BackendUnavailable(f"NATS wait: {exc!r}") from exc
        finally:
            self._waiters.discard(woken)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    # -- erase ------------------------------------------------------------------------------

    async def erase(self, offsets: Sequence[int]) -> int:
        wanted = sorted({o for o in offsets if o > 0})
        subject = f"$JS.API.STREAM.MSG.DELETE.{self.config.stream}"
        removed = 0
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            # no "no_erase": the server overwrites the message on disk before answering
            replies = await asyncio.gather(*(self._api(subject, {"seq": o}) for o in chunk))
            for reply in replies:
                error = reply.get("error")
                if error is None and reply.get("success"):
                    removed += 1
                elif error is not None and error.get("err_code") not in _NO_MESSAGE:
                    raise BackendUnavailable(f"NATS delete: {error}")
        return removed
