"""Privacy machinery inside a real in-process runtime (memory backends, a clock we move):
the sealed event log, and the retention job removing expired events and timeline rows."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec

from segue.core.changes import Change
from segue.core.model import Identifier, NewRecord
from segue.privacy.shredding import SealedEventLog
from segue.runtime import Runtime, SystemClock
from segue.settings import PrivacySettings, Settings
from segue.storage.memory import MemoryEventLog
from segue.storage.memory_keys import MemoryKeyStore


class MovableClock(SystemClock):
    def __init__(self) -> None:
        self.at = time.time()

    def now(self) -> float:
        return self.at


def test_sealed_log_stores_ciphertext_reads_plaintext_and_forgets_with_the_key():
    async def scenario() -> None:
        inner = MemoryEventLog()
        log = SealedEventLog(inner, MemoryKeyStore(), b"secret", ["email"])
        await log.open()
        body = b'{"type":"identify","messageId":"m1","userId":"u1","traits":{"email":"s@x.org"}}'
        (offset,) = await log.append([NewRecord("web", "m1", 1.0, "user_id:u1", body)])
        assert offset is not None
        (stored,) = await inner.read(0, 10)
        assert b"s@x.org" not in stored.body
        (opened,) = await log.read(0, 10)
        assert msgspec.json.decode(opened.body) == msgspec.json.decode(body)
        assert await log.destroy_keys(["user_id:u1"]) == 1
        (shredded,) = await log.get([offset])
        assert msgspec.json.decode(shredded.body) == {
            "type": "identify",
            "messageId": "m1",
            "userId": "u1",
        }

    asyncio.run(scenario())


def test_retention_removes_expired_events_and_their_timeline_rows(tmp_path: Path):
    async def scenario() -> None:
        clock = MovableClock()
        settings = Settings(
            data=str(tmp_path),
            store="memory",
            log="memory",
            admin_key="test-admin-key-0123456789",
            privacy=PrivacySettings(retention_days={"analytics": 30}),
        )
        runtime = Runtime(settings, clock)
        await runtime.start()
        try:

            async def send(*messages: dict[str, object]) -> None:
                body = msgspec.json.encode({"batch": list(messages)})
                await runtime.ingest.collect("default", runtime.ingest.parse(body, None))
                while (await runtime.processor.lag())[0] > 0:
                    await asyncio.sleep(0.01)

            await send(
                {"type": "identify", "messageId": "i1", "userId": "u1", "traits": {"plan": "a"}},
                {"type": "track", "messageId": "t1", "userId": "u1", "event": "Old"},
            )
            clock.at += 31 * 86400
            await send({"type": "track", "messageId": "t2", "userId": "u1", "event": "New"})
            removed = await runtime.privacy_requests.enforce_retention()
            assert removed == {"events": 1, "timeline": 1}
            pid = (await runtime.store.lookup([Identifier("user_id", "u1")]))[
                Identifier("user_id", "u1")
            ]
            offsets = await runtime.store.timeline(pid, 0, 10)
            kept = [r.message_id for r in await runtime.log.get(offsets)]
            assert kept == ["i1", "t2"]  # identify: no listed purpose uses it, so it stays
            assert await runtime.privacy_requests.enforce_retention() == {
                "events": 0,
                "timeline": 0,
            }
        finally:
            await runtime.aclose()

    asyncio.run(scenario())


def test_a_record_read_again_is_not_decrypted_again_unless_it_or_its_key_changed(monkeypatch):
    """The processor and the reports consumer of a process read each record moments
    apart: the second read takes the opened record, the same bytes; an erased record or
    a destroyed key is never served from that memo."""
    import segue.privacy.shredding as shredding

    decrypted: list[int] = []
    real_open = shredding.open_split

    def counting(body, pos, envelope, aead):  # type: ignore[no-untyped-def]
        decrypted.append(1)
        return real_open(body, pos, envelope, aead)

    monkeypatch.setattr(shredding, "open_split", counting)

    async def scenario() -> None:
        inner = MemoryEventLog()
        log = SealedEventLog(inner, MemoryKeyStore(), b"secret", ["email"], opened_size=3)
        await log.open()
        records = [
            NewRecord(
                "web",
                f"m{n}",
                1.0,
                f"user_id:u{n % 2}",
                b'{"type":"identify","userId":"u%d","traits":{"email":"%d@x.org"}}' % (n % 2, n),
            )
            for n in range(4)
        ]
        await log.append(records)
        first = await log.read(0, 10)
        assert len(decrypted) == 4
        again = await log.read(0, 10)
        assert [r.body for r in again] == [r.body for r in first]
        assert len(decrypted) == 5  # the memo holds the last 3: only offset 1 again
        assert b"1@x.org" in again[1].body
        await log.erase([4])
        assert [r.offset for r in await log.read(0, 10)] == [1, 2, 3]
        assert len(decrypted) == 6  # 2 had made way for 1 on the read before
        assert await log.destroy_keys(["user_id:u1"]) == 1
        shredded = await log.read(0, 10)
        assert b"@x.org" not in shredded[1].body  # u1's record: nothing to open it with
        assert b"2@x.org" in shredded[2].body  # u0's: opened again with its key

    asyncio.run(scenario())


def test_a_key_read_while_it_is_destroyed_is_not_kept():
    """A read that fetched a person's key just before an erasure destroyed it must not
    put the key back in the process's cache (nor its opened records in the memo): the
    erasure has to hold for every later read of the process."""

    class SlowKeys(MemoryKeyStore):
        def __init__(self) -> None:
            super().__init__()
            self.fetched = asyncio.Event()
            self.go_on = asyncio.Event()
            self.pause = False

        async def get(self, key_ids):  # type: ignore[no-untyped-def]
            found = await super().get(key_ids)
            if self.pause:
                self.pause = False
                self.fetched.set()
                await self.go_on.wait()  # the erasure runs here
            return found

    async def scenario() -> None:
        keys = SlowKeys()
        log = SealedEventLog(MemoryEventLog(), keys, b"secret", ["email"])
        await log.open()
        body = b'{"type":"identify","userId":"u1","traits":{"email":"s@x.org"}}'
        await log.append([NewRecord("web", "m1", 1.0, "user_id:u1", body)])
        log.forget_cached()  # a fresh process: the key must be fetched
        keys.pause = True
        reading = asyncio.create_task(log.read(0, 10))
        await keys.fetched.wait()
        assert await log.destroy_keys(["user_id:u1"]) == 1
        keys.go_on.set()
        (during,) = await reading
        assert b"s@x.org" not in during.body  # the key was gone before the read ended
        (after,) = await log.read(0, 10)
        assert b"s@x.org" not in after.body

    asyncio.run(scenario())


def test_keys_another_process_destroyed_are_not_used_here(tmp_path: Path):
    """An erasure in another process destroys the person's keys in the shared key store;
    its change note makes this process drop the keys and opened records it cached."""

    async def scenario() -> None:
        settings = Settings(
            data=str(tmp_path), store="memory", log="memory", admin_key="test-admin-key-0123456789"
        )
        runtime = Runtime(settings, SystemClock())
        await runtime.start()
        try:
            message = {"type": "identify", "messageId": "i1", "userId": "u1"}
            message["traits"] = {"email": "s@x.org"}
            body = msgspec.json.encode({"batch": [message]})
            await runtime.ingest.collect("default", runtime.ingest.parse(body, None))
            log = runtime.log
            assert isinstance(log, SealedEventLog)
            assert b"s@x.org" in (await log.read(0, 10))[0].body
            # the other process's erasure: the shared store loses the key ...
            assert await log.keys.destroy([log.key_id("user_id:u1")]) == 1
            assert b"s@x.org" in (await log.read(0, 10))[0].body  # cached here: the control
            # ... and its note arrives
            await runtime.decisioning.apply(Change(origin="elsewhere", keys_destroyed=True))
            assert b"s@x.org" not in (await log.read(0, 10))[0].body
        finally:
            await runtime.aclose()

    asyncio.run(scenario())
