"""AuditService over the real memory adapter: hashing, redaction, background notes, and the
rejected-key counter that keeps a flood of bad requests out of the log."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from segue.core.model import AuditEntry
from segue.privacy.audit import subject_hash
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
