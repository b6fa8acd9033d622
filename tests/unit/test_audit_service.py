"""AuditService over the real memory adapter: hashing, redaction, background notes, and the
rejected-key counter that keeps a flood of bad requests out of the log."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from segue.core.model import AuditEntry
from segue.privacy.audit import chain, subject_hash
from segue.privacy.audit_service import AuditService
from segue.storage.memory_audit import MemoryAuditLog
from segue.storage.sqlite_audit import SqliteAuditLog

KEY = b"service-secret"


class FrozenClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.t = now

    def now(self) -> float:
        return self.t


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def started(loop, clock: FrozenClock, log=None, **kw) -> AuditService:
    service = AuditService(log or MemoryAuditLog(KEY), KEY, clock, **kw)
    loop.run_until_complete(service.open())
    return service


def all_entries(loop, service: AuditService) -> list[AuditEntry]:
    return loop.run_until_complete(service.log.scan(0, 10_000))


def test_record_hashes_subjects_redacts_them_from_details_and_is_stored_at_once(loop):
    clock = FrozenClock()
    service = started(loop, clock)
    entry = loop.run_until_complete(
        service.record(
            "consent.changed",
            actor="api",
            subjects=["email:Ann@Example.com", "user_id:42", "p_0123"],
            details={"purposes": {"personalization": False}, "echo": "ann@example.com"},
        )
    )
    assert entry.seq == 1
    assert entry.at == clock.t
    assert sorted(entry.subjects) == sorted(
        subject_hash(KEY, s) for s in ("email:ann@example.com", "user_id:42", "p_0123")
    )
    assert entry.details == {"purposes": {"personalization": False}, "echo": "[subject]"}
    assert all_entries(loop, service) == [entry]  # durable before record returned
    found = loop.run_until_complete(service.list(subjects=["email:ANN@example.com"]))
    assert found == [entry]
    assert loop.run_until_complete(service.list(subjects=["user_id:43"])) == []
    with pytest.raises(TypeError):
        loop.run_until_complete(service.record("x", actor="api", subjects="user_id:42"))
    loop.run_until_complete(service.aclose())


def test_notes_are_written_in_the_background_and_flushed_on_close(loop):
    service = started(loop, FrozenClock())

    async def burst() -> int:
        for i in range(20):
            service.note("profile.read", actor="admin:x", subjects=[f"user_id:{i}"])
        before = len(await service.log.scan(0, 100))
        await service.flush()
        return before

    before = loop.run_until_complete(burst())
    assert before < 20  # nothing waited for them …
    entries = all_entries(loop, service)
    assert len(entries) == 20  # … and none was lost
    assert loop.run_until_complete(service.verify()).ok
    loop.run_until_complete(service.aclose())


def test_a_flood_of_rejected_keys_becomes_one_counted_entry_per_fingerprint(loop):
    clock = FrozenClock()
    service = started(loop, clock, failure_window_s=60.0)

    async def flood() -> None:
        for i in range(1000):
            clock.t += 0.01
            service.auth_failed("guessed-key", "/v1/audit" if i % 2 else "/v1/stats")
        service.auth_failed(None, "/v1/audit")
        await asyncio.sleep(0)

    loop.run_until_complete(flood())
    assert all_entries(loop, service) == []  # the window is still open
    clock.t += 60.0

    async def next_window() -> None:
        service.auth_failed("guessed-key", "/v1/audit")  # closes the window, opens the next
        await service.flush()

    loop.run_until_complete(next_window())
    entries = all_entries(loop, service)
    assert [e.action for e in entries] == ["auth.failed"] * 3
    by_key = {e.details["key"]: e.details for e in entries}
    guessed = service.fingerprint("guessed-key")
    assert by_key["none"]["count"] == 1
    windows = [e.details for e in entries if e.details["key"] == guessed]
    assert [w["count"] for w in windows] == [1000, 1]
    assert windows[0]["routes"] == ["/v1/audit", "/v1/stats"]
    assert windows[0]["last_at"] - windows[0]["first_at"] == pytest.approx(9.99)
    assert all("guessed-key" not in str(e) for e in entries)
    loop.run_until_complete(service.aclose())


def test_random_keys_cannot_flood_the_log_either(loop):
    service = started(loop, FrozenClock())

    async def flood() -> None:
        for i in range(5000):
            service.auth_failed(f"random-{i}", "/v1/audit")
        await service.flush()

    loop.run_until_complete(flood())
    entries = all_entries(loop, service)
    assert len(entries) == 101  # 100 fingerprints, then one shared entry for the rest
    other = [e for e in entries if e.details["key"] == "other"]
    assert other[0].details["count"] == 4900
    loop.run_until_complete(service.aclose())


def test_verify_reads_the_log_in_pages_and_checks_the_sealed_head(loop, tmp_path):
    clock = FrozenClock()
    service = started(loop, clock, SqliteAuditLog(tmp_path, KEY))

    async def fill() -> None:
        await asyncio.gather(*(service.record("key.used", actor=f"a{i}") for i in range(2500)))

    loop.run_until_complete(fill())
    verdict = loop.run_until_complete(service.verify())
    assert verdict.ok
    assert verdict.entries == 2500
    wrong_key = AuditService(service.log, b"not the secret", clock)
    verdict = loop.run_until_complete(wrong_key.verify())
    assert not verdict.ok
    assert verdict.reason is not None
    assert "head edited" in verdict.reason
    loop.run_until_complete(service.aclose())


class AppendsDuring:
    """The memory log, with another writer appending just after chosen scan or head calls:
    the interleavings an online verification meets."""

    def __init__(self, *, after_scans: tuple[int, ...] = (), after_heads: tuple[int, ...] = ()):
        self.log = MemoryAuditLog(KEY)
        self.after_scans, self.after_heads = after_scans, after_heads
        self.scans = self.heads = 0

    async def _another_writer(self) -> None:
        await self.log.append([AuditEntry(at=1.0, actor="other", action="key.used")])

    async def scan(self, after: int, limit: int) -> list[AuditEntry]:
        page = await self.log.scan(after, limit)
        self.scans += 1
        if self.scans in self.after_scans:
            await self._another_writer()
        return page

    async def head(self) -> Any:
        head = await self.log.head()
        self.heads += 1
        if self.heads in self.after_heads:
            await self._another_writer()
        return head

    def __getattr__(self, name: str) -> Any:
        return getattr(self.log, name)


@pytest.mark.parametrize(
    ("after_scans", "after_heads"),
    [((), (1,)), ((1,), ()), ((2,), ()), ((1, 2, 3), (1, 2)), ((), (1, 2, 3))],
)
def test_online_verification_accepts_what_segue_appends_while_it_runs(
    loop, after_scans, after_heads
):
    log = AppendsDuring(after_scans=after_scans, after_heads=after_heads)
    service = started(loop, FrozenClock(), log)

    async def scenario() -> Any:
        for i in range(3):
            await service.record("key.used", actor=f"a{i}")
        return await service.verify()

    verdict = loop.run_until_complete(scenario())
    assert verdict.ok, verdict
    assert verdict.entries >= 3
    loop.run_until_complete(service.aclose())


def test_online_verification_rejects_an_entry_chained_after_the_sealed_head(loop):
    """Someone without the secret can still compute a SHA-256 link: an entry past the head
    that the log itself reports after the scan was not written by segue."""
    memory = MemoryAuditLog(KEY)
    service = started(loop, FrozenClock(), memory)

    async def scenario() -> Any:
        for i in range(3):
            await service.record("key.used", actor=f"a{i}")
        last = (await memory.scan(0, 10))[-1]
        (forged,) = chain(last.seq, last.hash, [AuditEntry(at=2.0, actor="eve", action="x")])
        memory._entries.append(msgspec.json.encode(forged))  # behind the adapter's back
        return await service.verify()

    verdict = loop.run_until_complete(scenario())
    assert (verdict.ok, verdict.first_bad_seq, verdict.entries) == (False, 4, 3)
    assert verdict.reason is not None
    assert verdict.reason.startswith("unsealed: entry 4 comes after the sealed head (entry 3)")
    loop.run_until_complete(service.aclose())


def test_an_emptied_log_without_its_head_is_not_intact(loop):
    memory = MemoryAuditLog(KEY)
    service = started(loop, FrozenClock(), memory)
    assert loop.run_until_complete(service.verify()).ok  # new: sealed when created
    loop.run_until_complete(service.record("key.used", actor="a"))
    memory._entries.clear()  # everything deleted, head included
    memory._head = None
    verdict = loop.run_until_complete(service.verify())
    assert (verdict.ok, verdict.first_bad_seq) == (False, 1)
    assert verdict.reason is not None
    assert verdict.reason.startswith("head missing")
    loop.run_until_complete(service.aclose())
