"""What the NATS event log promises beyond the shared contract: dedupe that outlives the
process and a lost acknowledgement, partitioned subjects, a dropped connection survived,
a server that vanishes refused (never acked), waking across processes, erasure on disk, and
a runtime built from the URL. Runs against the real server (tests/backends.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import nats
import pytest

from segue.core.model import NewRecord
from segue.errors import BackendUnavailable, ConfigError
from segue.storage.nats_log import NatsEventLog, parse_nats_url, partition_of
from tests.backends import unavailable
from tests.contracts.conftest import Sync

#: where the local nats-server keeps its streams (the unit started with ``-sd``)
NATS_STORE = Path(os.environ.get("SEGUE_TEST_NATS_STORE", "/var/lib/nats-server/jetstream"))


def rec(message_id: str, key: str = "user_id:1", body: bytes = b"{}", source: str = "web"):
    return NewRecord(source, message_id, 1.0, key, body)


@pytest.fixture
def nats_url(nats_stream) -> str:
    url, stream = nats_stream
    return f"{url}?stream={stream}"


@pytest.fixture
def log(nats_url) -> Iterator[Sync]:
    sync = Sync(NatsEventLog(nats_url))
    yield sync
    sync.close()


def test_url_parameters_and_their_checks():
    cfg = parse_nats_url("nats://a:4222,b:4222?stream=EV&partitions=4&timeout=2")
    assert cfg.servers == ["nats://a:4222", "nats://b:4222"]
    assert (cfg.stream, cfg.prefix, cfg.partitions, cfg.timeout) == ("EV", "ev", 4, 2.0)
    assert parse_nats_url("nats://127.0.0.1:4222").stream == "SEGUE"
    for bad in ("nats://h?partitions=0", "nats://h?stream=a.b", "nats://h?colour=red", "http://h"):
        with pytest.raises(ConfigError):
            parse_nats_url(bad)


def test_dedupe_survives_a_new_adapter_instance(nats_url):
    first = Sync(NatsEventLog(nats_url))
    assert first.append([rec("a"), rec("b")]) == [1, 2]
    first.close()
    again = Sync(NatsEventLog(nats_url))
    try:
        assert again.append([rec("b"), rec("c"), rec("a")]) == [None, 3, None]
        assert again.last_offset() == 3
        assert [r.message_id for r in again.read(0, 10)] == ["a", "b", "c"]
    finally:
        again.close()


def test_a_retry_after_a_lost_acknowledgement_is_not_stored_twice(nats_url, log):
    """The adapter died after publishing and before answering: the record is in the stream
    but the client never got its ack and sends the batch again, long after any Msg-Id window."""
    record = rec("lost-ack", body=b'{"n":1}')
    adapter: NatsEventLog = log.adapter

    async def publish_and_crash() -> None:
        nc = await nats.connect(adapter.config.servers)
        payload = msgspec.msgpack.encode(
            (record.source, record.message_id, record.received_at, record.key, record.body)
        )
        await nc.jetstream().publish(adapter.subject(record), payload)
        await nc.close()

    log.run(publish_and_crash())
    assert log.append([record, rec("next")]) == [None, 2]
    assert [(r.offset, r.message_id, r.body) for r in log.read(0, 10)] == [
        (1, "lost-ack", b'{"n":1}'),
        (2, "next", b"{}"),
    ]


def test_records_land_on_their_key_partition_in_one_global_order(nats_url, log):
    adapter: NatsEventLog = log.adapter
    keys = [f"user_id:{i}" for i in range(40)]
    offsets = log.append([rec(f"m{i}", key=k) for i, k in enumerate(keys)])
    assert offsets == list(range(1, 41))
    wanted = partition_of(keys[7], adapter.partitions)
    mine = [i for i, k in enumerate(keys) if partition_of(k, adapter.partitions) == wanted]
    assert 0 < len(mine) < len(keys)  # 40 keys spread over 16 partitions

    async def one_partition() -> list[int]:
        nc = await nats.connect(adapter.config.servers)
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            f"{adapter.config.prefix}.events.{wanted}.*", stream=adapter.config.stream
        )
        msgs = await sub.fetch(100, timeout=2)
        await nc.close()
        return [m.metadata.sequence.stream for m in msgs]

    assert log.run(one_partition()) == [i + 1 for i in mine]


def test_the_partition_count_of_an_existing_stream_wins(nats_url, log):
    log.append([rec("a")])
    other = Sync(NatsEventLog(nats_url + "&partitions=3"))
    try:
        assert other.adapter.partitions == 16
        assert other.append([rec("a")]) == [None]  # same subject, so still a duplicate
    finally:
        other.close()


def test_reads_follow_gaps_restart_anywhere_and_page_through_a_long_log(log):
    offsets = log.append([rec(f"m{i}", key=f"user_id:{i % 7}") for i in range(2500)])
    assert offsets == list(range(1, 2501))
    assert log.erase(list(range(100, 1100))) == 1000
    seen: list[int] = []
    at = 0
    while page := log.read(at, 400):
        seen.extend(r.offset for r in page)
        at = page[-1].offset
    assert seen == [*range(1, 100), *range(1100, 2501)]
    # random access after the scan, then a scan from the start again
    assert [r.offset for r in log.read(1500, 3)] == [1501, 1502, 1503]
    assert [r.offset for r in log.read(0, 2)] == [1, 2]
    assert [r.offset for r in log.read(98, 3)] == [99, 1100, 1101]
    assert log.read(2500, 10) == []
    assert [r.message_id for r in log.get([2500, 150, 1])] == ["m2499", "m0"]


def test_wait_wakes_on_an_append_from_another_process(nats_url, log):
    other = NatsEventLog(nats_url)

    async def scenario() -> float:
        await other.open()
        try:
            loop = asyncio.get_running_loop()
            waiter = asyncio.ensure_future(log.adapter.wait(0, 10.0))
            await asyncio.sleep(0.2)
            assert not waiter.done()
            started = loop.time()
            await other.append([rec("x")])
            await asyncio.wait_for(waiter, 2.0)
            return loop.time() - started
        finally:
            await other.aclose()

    assert log.run(scenario()) < 0.5
    started = log.loop.time()
    log.wait(1, 0.3)  # nothing past 1: returns at the timeout
    assert log.loop.time() - started >= 0.29


class _Proxy:
    """A TCP relay to the NATS server whose connections the test can cut."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._call(self._start(0))

    def _call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _start(self, port: int) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def _cut(self, listen: bool) -> None:
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self.writers.clear()
        if not listen and self.server is not None:
            self.server.close()
            self.server = None

    def cut(self) -> None:
        """Drop every connection; keep accepting new ones."""
        self._call(self._cut(True))

    def down(self) -> None:
        """Drop every connection and stop listening (the server is gone)."""
        self._call(self._cut(False))

    def up(self) -> None:
        self._call(self._start(self.port))

    def close(self) -> None:
        self.down()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def proxy(nats_stream) -> Iterator[_Proxy]:
    url = nats_stream[0]
    host, port = url.rsplit("/", 1)[-1].split(":")
    relay = _Proxy((host, int(port)))
    yield relay
    relay.close()


def test_the_client_survives_a_dropped_connection(nats_stream, proxy):
    log = Sync(NatsEventLog(f"nats://127.0.0.1:{proxy.port}?stream={nats_stream[1]}&timeout=1"))
    try:
        assert log.append([rec("before")]) == [1]
        assert log.read(0, 10)[0].message_id == "before"
        proxy.cut()
        # the client reconnects by itself; the first append may race the reconnect
        for _ in range(20):
            try:
                assert log.append([rec("after")]) == [2]
                break
            except BackendUnavailable:
                log.run(asyncio.sleep(0.1))
        assert [r.message_id for r in log.read(1, 10)] == ["after"]
        assert [r.message_id for r in log.read(0, 10)] == ["before", "after"]
    finally:
        log.close()


def test_a_vanished_server_is_refused_never_acknowledged(nats_stream, proxy):
    log = Sync(NatsEventLog(f"nats://127.0.0.1:{proxy.port}?stream={nats_stream[1]}&timeout=1"))
    try:
        assert log.append([rec("a")]) == [1]
        proxy.down()
        with pytest.raises(BackendUnavailable):
            log.append([rec("b"), rec("c")])
        proxy.up()
        # the retry of the refused batch: each record stored once, whatever reached the stream
        for _ in range(50):
            try:
                result = log.append([rec("b"), rec("c")])
                break
            except BackendUnavailable:
                log.run(asyncio.sleep(0.1))
        assert [o for o in result if o is not None] == sorted(o for o in result if o is not None)
        assert [r.message_id for r in log.read(0, 10)] == ["a", "b", "c"]
    finally:
        log.close()


def test_unreachable_server_at_open_is_backend_unavailable():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    adapter = NatsEventLog(f"nats://127.0.0.1:{port}?timeout=0.5")
    with pytest.raises(BackendUnavailable):
        asyncio.run(adapter.open())


def test_erasure_leaves_no_byte_in_the_stream_files(nats_stream, log):
    folder = NATS_STORE / "$G" / "streams" / nats_stream[1]
    if not os.access(NATS_STORE, os.R_OK):
        unavailable(f"the NATS store {NATS_STORE} is not readable here (SEGUE_TEST_NATS_STORE)")
    secret = b"ada.nats-secret@example.org"
    offsets = log.append([rec(f"m{i}", body=b'{"email":"%s"}' % secret) for i in range(20)])
    log.append([rec("other", body=b'{"email":"kept@example.org"}')])

    def stored() -> bytes:
        return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())

    for _ in range(100):  # the server writes its block files asynchronously
        if secret in stored() and b"kept@example.org" in stored():
            break
        log.run(asyncio.sleep(0.05))
    assert secret in stored()
    assert log.erase(offsets) == 20
    assert secret not in stored()
    assert b"kept@example.org" in stored()
    assert log.last_offset() == 21


def test_a_runtime_on_a_nats_log_ingests_and_processes(nats_url, tmp_path):
    from segue.runtime import Runtime
    from segue.settings import Settings

    async def scenario() -> tuple[bool, int, int]:
        settings = Settings(data=str(tmp_path), log=nats_url, admin_key="test-admin-key-0123456789")
        runtime = Runtime(settings)
        await runtime.start()
        try:
            body = (
                b'{"batch": [{"type": "identify", "messageId": "m1", "userId": "u1",'
                b' "traits": {"email": "n@example.org"}},'
                b' {"type": "track", "messageId": "m2", "userId": "u1", "event": "Seen"}]}'
            )
            await runtime.ingest.collect("default", runtime.ingest.parse(body, None))
            await runtime.ingest.collect("default", runtime.ingest.parse(body, None))
            head = await runtime.log.last_offset()
            for _ in range(500):
                if runtime.processor.position >= head:
                    break
                await asyncio.sleep(0.01)
            log = getattr(runtime.log, "inner", runtime.log)  # under the sealing wrapper
            return (
                isinstance(log, NatsEventLog),
                head,
                runtime.processor.position,
            )
        finally:
            await runtime.aclose()

    is_nats, head, position = asyncio.run(scenario())
    assert is_nats
    assert head == 2  # the resent batch was de-duplicated
    assert position == 2
