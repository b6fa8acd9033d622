"""The audit log end to end: admin reads are audited and findable by subject, rejected keys
are counted rather than flooding the log, and an edit of ``audit.db`` is caught both by
``GET /v1/audit/verify`` and by ``segue audit verify``."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from segue.core.model import AuditEntry
from segue.privacy.audit import chain
from segue.storage.sqlite_audit import _row
from tests.e2e.server import ADMIN_KEY, PUBLISHABLE_KEY, SegueServer

pytestmark = pytest.mark.e2e

EMAIL = "Ada.Lovelace@Example.com"


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SegueServer]:
    server = SegueServer(tmp_path_factory.mktemp("segue-audit") / "data").start()
    try:
        with server.writer() as writer:
            response = writer.post(
                "/v1/identify",
                json={"userId": "ada-42", "traits": {"email": EMAIL, "firstName": "Ada"}},
            )
            assert response.status_code == 200, response.text
        server.wait_processed(at_least=1)
        yield server
    finally:
        server.stop()


def entries(admin: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = admin.get("/v1/audit", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    return list(body["entries"])


def wait_for(admin: httpx.Client, timeout: float = 10.0, **params: Any) -> list[dict[str, Any]]:
    """Background audit notes land within milliseconds; poll instead of sleeping."""
    deadline = time.monotonic() + timeout
    while True:
        found = entries(admin, **params)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def cli_verify(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "segue", "audit", "verify", "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
        check=False,
    )


def test_an_admin_profile_read_is_audited_and_found_by_any_of_the_persons_identifiers(audited):
    with audited.admin() as admin:
        profile = admin.get("/v1/profiles/user_id:ada-42")
        assert profile.status_code == 200, profile.text
        profile_id = profile.json()["profile_id"]
        timeline = admin.get("/v1/profiles/user_id:ada-42/events")
        assert timeline.status_code == 200
        reads = wait_for(admin, subject="user_id:ada-42", action="profile.read")
        deadline = time.monotonic() + 10
        while len(reads) < 2 and time.monotonic() < deadline:
            reads = entries(admin, subject="user_id:ada-42", action="profile.read")
        assert {r["details"]["route"] for r in reads} == {
            "/v1/profiles/{ref}",
            "/v1/profiles/{ref}/events",
        }
        read = reads[0]
        assert read["actor"].startswith("admin:")
        assert ADMIN_KEY not in read["actor"]
        assert len(read["subjects"]) == 2
        assert len(read["hash"]) == 64
        # the same entries through another identifier of the person (via the profile id),
        # the email in any case, and the profile id itself
        for subject in (f"email:{EMAIL.upper()}", profile_id):
            again = entries(admin, subject=subject, action="profile.read")
            assert {e["seq"] for e in again} == {r["seq"] for r in reads}
        assert entries(admin, subject="user_id:somebody-else") == []
        # the admin key's use is recorded too, but never the key
        used = wait_for(admin, action="key.used")
        assert any(u["details"]["route"] == "/v1/profiles/{ref}" for u in used)
        raw = admin.get("/v1/audit", params={"limit": 1000}).text
        for personal in (ADMIN_KEY, "ada-42", EMAIL.lower(), "Ada"):
            assert personal not in raw


def test_audit_pages_and_filters_by_time(audited):
    with audited.admin() as admin:
        for _ in range(3):
            assert admin.get("/v1/profiles/user_id:ada-42").status_code == 200
        wait_for(admin, subject="user_id:ada-42")
        first = admin.get("/v1/audit", params={"limit": 2}).json()
        assert len(first["entries"]) == 2
        assert first["next_cursor"] is not None
        second = admin.get("/v1/audit", params={"limit": 2, "cursor": first["next_cursor"]})
        assert second.json()["entries"][0]["seq"] > first["entries"][-1]["seq"]
        assert entries(admin, since="2999-01-01T00:00:00Z") == []
        assert len(entries(admin, until="2999-01-01T00:00:00Z")) > 0
        bad = admin.get("/v1/audit", params={"since": "last tuesday"})
        assert bad.status_code == 400
        assert bad.json()["field"] == "since"
        assert admin.get("/v1/audit", params={"limit": 0}).status_code == 400


def test_rejected_keys_are_counted_not_logged_one_by_one(audited):
    with httpx.Client(base_url=audited.url, timeout=30.0) as anonymous:
        for _ in range(25):
            bad = anonymous.get(
                "/v1/profiles/user_id:ada-42", headers={"Authorization": "Bearer guess-123"}
            )
            assert bad.status_code == 401
        publishable = {"Authorization": f"Bearer {PUBLISHABLE_KEY}"}
        assert anonymous.get("/v1/audit", headers=publishable).status_code == 401
    with audited.admin() as admin:
        # the open window is written at shutdown or after a minute; not yet
        assert entries(admin, action="auth.failed") == []
        assert "guess-123" not in admin.get("/v1/audit", params={"limit": 1000}).text


@pytest.mark.embedded("edits a row of audit.db, the SQLite file")
def test_editing_one_audit_row_is_detected_by_the_api_and_the_cli(audited):
    with audited.admin() as admin:
        assert admin.get("/v1/profiles/user_id:ada-42").status_code == 200
        wait_for(admin, subject="user_id:ada-42")
        intact = admin.get("/v1/audit/verify").json()
        assert intact["ok"] is True
        assert intact["first_bad_seq"] is None
        assert intact["entries"] >= 3
        ok = cli_verify(audited.data)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.startswith("audit log intact:")
        target = entries(admin, subject="user_id:ada-42", action="profile.read")[0]["seq"]

        conn = sqlite3.connect(audited.data / "audit.db")
        with conn:
            conn.execute("UPDATE audit SET actor = 'admin:someone' WHERE seq = ?", (target,))
        conn.close()

        broken = admin.get("/v1/audit/verify").json()
        assert broken["ok"] is False
        assert broken["first_bad_seq"] == target
        assert broken["reason"].startswith("edited")
        assert broken["entries"] == target - 1
        failed = cli_verify(audited.data)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert f"broken at entry {target}: edited" in failed.stdout


@pytest.mark.embedded("reads audit.db, the SQLite file")
def test_rejected_keys_are_written_as_one_counted_entry_at_shutdown(tmp_path):
    data = tmp_path / "data"
    server = SegueServer(data).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as anonymous:
            for _ in range(30):
                bad = anonymous.get("/v1/stats", headers={"Authorization": "Bearer wrong"})
                assert bad.status_code == 401
            assert anonymous.get("/v1/audit").status_code == 401  # no key at all
    finally:
        server.stop()
    conn = sqlite3.connect(data / "audit.db")
    rows = conn.execute(
        "SELECT actor, details FROM audit WHERE action = 'auth.failed' ORDER BY seq"
    ).fetchall()
    conn.close()
    assert len(rows) == 2
    text = " ".join(actor + details for actor, details in rows)
    assert '"count":30' in text
    assert '"count":1' in text
    assert "wrong" not in text
    ok = cli_verify(data)
    assert ok.returncode == 0
    assert "intact" in ok.stdout


def test_cli_without_an_audit_log_says_so(tmp_path):
    missing = cli_verify(tmp_path / "nothing-here")
    assert missing.returncode == 2
    assert "no audit log" in missing.stderr
    assert not (tmp_path / "nothing-here").exists()


def _copy_of(data: Path, to: Path) -> Path:
    """The data folder's audit log and secret, copied consistently while the server runs."""
    to.mkdir()
    shutil.copy(data / "keys.json", to / "keys.json")
    source, copy = sqlite3.connect(data / "audit.db"), sqlite3.connect(to / "audit.db")
    source.backup(copy)
    source.close()
    copy.close()
    return to


@pytest.mark.embedded("edits a copy of audit.db, the SQLite file")
def test_an_entry_appended_after_the_sealed_head_is_caught_by_the_cli(tmp_path):
    """The audit's reproduction: an entry chained after the last one with a correct SHA-256
    link (no secret needed) in a copy of the data folder; then every row and the head
    deleted."""
    server = SegueServer(tmp_path / "data").start()
    try:
        with server.admin() as admin:
            for _ in range(3):
                assert admin.get("/v1/audit").status_code == 200
            wait_for(admin, action="key.used")
        copy = _copy_of(server.data, tmp_path / "copy")
        original = cli_verify(server.data)
        assert original.returncode == 0, original.stdout + original.stderr
    finally:
        server.stop()
    conn = sqlite3.connect(copy / "audit.db")
    with conn:
        head = conn.execute("SELECT seq FROM audit_head").fetchone()[0]
        (last,) = [e for e in _entries(conn) if e.seq == head]
        draft = AuditEntry(at=last.at + 1, actor="admin:forged", action="key.used")
        (forged,) = chain(last.seq, last.hash, [draft])
        conn.execute(f"INSERT INTO audit VALUES ({', '.join('?' * 7)})", _row(forged))
    conn.close()
    forged_copy = cli_verify(copy)
    assert forged_copy.returncode == 1, forged_copy.stdout + forged_copy.stderr
    assert forged_copy.stdout.startswith(
        f"audit log broken at entry {head + 1}: unsealed: entry {head + 1} comes after the "
        f"sealed head (entry {head})"
    )

    conn = sqlite3.connect(copy / "audit.db")
    with conn:
        for table in ("audit_subjects", "audit", "audit_head"):
            conn.execute(f"DELETE FROM {table}")
    conn.close()
    emptied = cli_verify(copy)
    assert emptied.returncode == 1, emptied.stdout + emptied.stderr
    assert emptied.stdout == (
        "audit log broken at entry 1: head missing: an empty log has no sealed head\n"
    )


def _entries(conn: sqlite3.Connection) -> list[AuditEntry]:
    rows = conn.execute("SELECT seq, at, actor, action, details, prev_hash, hash FROM audit")
    subjects: dict[int, list[str]] = {}
    for subject, seq in conn.execute("SELECT subject, seq FROM audit_subjects ORDER BY pos"):
        subjects.setdefault(seq, []).append(subject)
    return [
        AuditEntry(
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            subjects=subjects.get(seq, []),
            details=json.loads(details),
            prev_hash=prev_hash,
            hash=hash_,
        )
        for seq, at, actor, action, details, prev_hash, hash_ in rows
    ]
