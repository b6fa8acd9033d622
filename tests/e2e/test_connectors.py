"""Connectors end to end: ``segue import`` against a live server, and signed webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ADMIN_KEY, SegueServer

pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parents[1] / "data" / "connectors"
SECRET = "shpss_test_secret"
CONFIG = f"""
sources:
  - name: crm
    write_key: crm-key
    connector: crm_contacts
  - name: shop
    write_key: shop-key
    connector: shopify_orders
    connector_options: {{user_id_from_customer: true}}
    webhook_secret: {SECRET}
  - name: pos
    write_key: pos-key
    connector: pos_transactions
  - name: files
    write_key: files-key
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SegueServer]:
    root = tmp_path_factory.mktemp("connectors")
    config = root / "segue.yaml"
    config.write_text(CONFIG)
    srv = SegueServer(root / "data", args=["--config", str(config)]).start()
    try:
        yield srv
    finally:
        srv.stop()


def segue_import(server: SegueServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "segue", "import", *args, "--url", server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def log_of(server: SegueServer, source: str) -> list[dict]:
    with server.admin() as admin:
        records = admin.get("/v1/admin/log", params={"limit": 5000}).json()["records"]
    return [r for r in records if r["source"] == source]


def quarantine_of(server: SegueServer, source: str) -> list[dict]:
    with server.admin() as admin:
        return admin.get("/v1/admin/quarantine", params={"source": source}).json()["entries"]


def signed(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_cli_import_reports_rows_quarantines_bad_lines_and_is_idempotent(live):
    csv_file = str(DATA / "crm_contacts.csv")
    first = segue_import(live, "crm", csv_file, "--key", ADMIN_KEY, "--chunk-rows", "2")
    assert first.returncode == 1, first.stderr
    out = first.stdout
    assert "rows        6" in out
    assert "stored      3" in out
    assert "rejected    3 (lines 5, 6, 7)" in out
    assert "line 5: invalid_input: email: not an email address" in out
    assert "(field $.email)" in out
    assert "crm_contacts.csv" in first.stderr  # the progress bar

    records = log_of(live, "crm")
    assert sorted(r["message"]["anonymousId"] for r in records) == [
        "crm:C-1001",
        "crm:C-1002",
        "crm:C-1006",
    ]
    ann = next(r["message"] for r in records if r["message"]["anonymousId"] == "crm:C-1001")
    assert ann["traits"]["email"] == "ann.lee@example.com"
    assert ann["context"]["externalIds"][0]["type"] == "crm_id"

    entries = quarantine_of(live, "crm")
    assert [e["reason"].split(":")[0] for e in entries] == ["line 5", "line 6", "line 7"]
    assert [e["field"] for e in entries] == ["$.email", "$.contact_id", "$.birthday"]
    assert entries[0]["message"]["email"] == "not-an-email"

    again = segue_import(live, "crm", csv_file, "--key", ADMIN_KEY, "--quiet")
    assert again.returncode == 1
    assert "stored      0" in again.stdout
    assert "duplicates  3" in again.stdout
    assert len(log_of(live, "crm")) == 3

    live.wait_processed()
    with live.admin() as admin:
        profile = admin.get("/v1/profiles/anonymous_id:crm:C-1001")
        by_crm_id = admin.get("/v1/profiles/crm_id:C-1001")
    assert profile.status_code == 200
    assert profile.json()["traits"]["email"] == "ann.lee@example.com"
    assert by_crm_id.json()["profile_id"] == profile.json()["profile_id"]


def test_cli_import_with_the_sources_write_key_and_a_clean_file_exits_zero(live, tmp_path):
    rows = (DATA / "pos_transactions.csv").read_text().splitlines()
    clean = tmp_path / "till.csv"
    clean.write_text("\n".join(rows[:3]) + "\n")
    result = segue_import(live, "pos", str(clean), "--write-key", "pos-key", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stored      4" in result.stdout
    orders = [r["message"] for r in log_of(live, "pos") if r["message"]["type"] == "track"]
    assert sorted(o["properties"]["order_id"] for o in orders) == ["T-1", "T-2"]
    live.wait_processed()
    with live.admin() as admin:
        member = admin.get("/v1/profiles/loyalty_id:L-77").json()
    assert member["traits"]["loyalty_id"] == "L-77"
    assert member["event_count"] == 2
    refused = segue_import(live, "crm", str(clean), "--write-key", "pos-key", "--quiet")
    assert refused.returncode == 2
    assert "unauthorized" in refused.stderr


def test_cli_import_jsonl_and_json_array(live):
    result = segue_import(
        live,
        "files",
        str(DATA / "events.jsonl"),
        "--connector",
        "segment_jsonl",
        "--key",
        ADMIN_KEY,
        "--quiet",
    )
    assert result.returncode == 1
    assert "rejected    3 (lines 5, 6, 7)" in result.stdout
    assert {r["message"]["messageId"] for r in log_of(live, "files")} >= {"seg-1", "seg-7"}
    contacts = segue_import(
        live,
        "crm",
        str(DATA / "crm_contacts.json"),
        "--key",
        ADMIN_KEY,
        "--chunk-rows",
        "1",
        "--quiet",
    )
    assert contacts.returncode == 1
    assert "rejected    2 (lines 3, 4)" in contacts.stdout


def test_import_endpoint_auth_and_errors(live):
    url = live.url + "/v1/sources/{}/import"
    body = (DATA / "crm_contacts.csv").read_bytes()
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert httpx.post(url.format("crm"), content=body).status_code == 401
    wrong = httpx.post(url.format("crm"), content=body, auth=("pos-key", ""))
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "unauthorized"
    assert httpx.post(url.format("nope"), content=body, headers=admin).status_code == 404
    unknown = httpx.post(url.format("files"), content=body, headers=admin)
    assert (unknown.status_code, unknown.json()["field"]) == (400, "connector")
    bad = httpx.post(url.format("files"), content=body, headers=admin, params={"connector": "../x"})
    assert (bad.status_code, bad.json()["code"]) == (400, "unknown_connector")
    chunk = httpx.post(
        url.format("crm"), content=body, auth=("crm-key", ""), params={"first_line": 10}
    )
    assert chunk.status_code == 200
    report = chunk.json()
    assert (report["rows"], report["stored"]) == (6, 0)
    assert [r["line"] for r in report["rejected"]] == [13, 14, 15]


def test_signed_webhook(live):
    order = (DATA / "shopify_order.json").read_bytes()
    hook = live.url + "/v1/sources/shop/webhook"
    ok = httpx.post(
        hook, content=order, auth=("shop-key", ""), headers={"X-Shopify-Hmac-Sha256": signed(order)}
    )
    assert (ok.status_code, ok.json()) == (200, {"success": True})
    messages = [r["message"] for r in log_of(live, "shop")]
    assert [m["type"] for m in messages] == ["identify", "track"]
    assert {m["userId"] for m in messages} == {"115310627314723954"}
    assert messages[1]["properties"]["products"][0]["sku"] == "IPOD2008PINK"

    redelivered = httpx.post(
        hook,
        content=order,
        params={"key": "shop-key"},
        headers={"X-Shopify-Hmac-Sha256": signed(order)},
    )
    assert redelivered.status_code == 200
    assert len(log_of(live, "shop")) == 2

    forged = httpx.post(
        hook,
        content=order,
        auth=("shop-key", ""),
        headers={"X-Shopify-Hmac-Sha256": signed(order, "not-the-secret")},
    )
    assert forged.status_code == 401
    assert forged.json()["code"] == "unauthorized"
    unsigned = httpx.post(hook, content=order, auth=("shop-key", ""))
    assert unsigned.status_code == 401
    tampered = order.replace(b"418.85", b"0.01")
    assert (
        httpx.post(
            hook,
            content=tampered,
            auth=("shop-key", ""),
            headers={"X-Shopify-Hmac-Sha256": signed(order)},
        ).status_code
        == 401
    )
    wrong_key = httpx.post(
        hook, content=order, auth=("crm-key", ""), headers={"X-Shopify-Hmac-Sha256": signed(order)}
    )
    assert wrong_key.status_code == 401
    assert httpx.post(hook, content=order, params={"key": "nope"}).status_code == 401
    assert len(log_of(live, "shop")) == 2

    no_connector = httpx.post(
        live.url + "/v1/sources/files/webhook", content=order, auth=("files-key", "")
    )
    assert no_connector.status_code == 404

    broken = b'{"id": 5, "line_items": [{"product_id": 1, "price": "free"}], "total_price": "1"}'
    rejected = httpx.post(
        hook,
        content=broken,
        auth=("shop-key", ""),
        headers={"X-Shopify-Hmac-Sha256": signed(broken)},
    )
    assert rejected.status_code == 400
    problem = rejected.json()
    assert (problem["code"], problem["field"]) == ("invalid_input", "$.line_items[0].price")
    assert problem["rejected"][0]["line"] == 1
    entries = quarantine_of(live, "shop")
    assert entries[-1]["reason"].startswith("line 1: invalid_input:")
    assert entries[-1]["message"]["id"] == 5


@pytest.mark.embedded("expects one process to exit with the error; a supervisor restarts it")
def test_serve_refuses_a_config_with_a_broken_connector(tmp_path):
    mapping = tmp_path / "till.yaml"
    mapping.write_text("name: till\ninput: {formats: [xml]}\nmessages: [{type: track}]\n")
    config = tmp_path / "segue.yaml"
    config.write_text(
        "sources:\n"
        "  - {name: a, connector: no_such_connector}\n"
        f"  - {{name: b, connector: {mapping}}}\n"
    )
    server = SegueServer(tmp_path / "data", args=["--config", str(config)])
    with pytest.raises(RuntimeError, match="exited with 2") as caught:
        server.start(timeout=20)
    text = str(caught.value)
    assert "source 'a': no connector 'no_such_connector'" in text
    assert "unknown format 'xml'" in text
    assert "a track needs an event" in text


def test_openapi_lists_the_connector_routes(live):
    paths = httpx.get(live.url + "/openapi.json").json()["paths"]
    assert "/v1/sources/{source}/import" in paths
    assert "/v1/sources/{source}/webhook" in paths
