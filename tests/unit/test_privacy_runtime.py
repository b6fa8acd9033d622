"""Privacy machinery inside a real in-process runtime (memory backends, a clock we move):
the sealed event log, and the retention job removing expired events and timeline rows."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec

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
