"""End to end through HTTP: profiles, timeline paging, stats, metrics, OpenAPI, docs, keys."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.server import ADMIN_KEY, WRITE_KEY, SegueServer

pytestmark = pytest.mark.e2e


def test_story_anonymous_browse_then_identify_yields_one_profile_with_timeline(server):
    anon, user = f"anon-{uuid.uuid4()}", f"user-{uuid.uuid4()}"
    with server.writer() as w:
        batch = [
            {"type": "page", "anonymousId": anon, "name": "Home"},
            {
                "type": "track",
                "anonymousId": anon,
                "event": "Product Viewed",
                "properties": {"product_id": "sku-1", "price": 9.5},
            },
            {
                "type": "identify",
                "anonymousId": anon,
                "userId": user,
                "traits": {"email": "ann@example.com", "firstName": "Ann"},
            },
        ] + [
            {
                "type": "track",
                "userId": user,
                "event": "Product Added",
                "properties": {"product_id": f"sku-{i}"},
            }
            for i in range(7)
        ]
        body = gzip.compress(json.dumps({"batch": batch}).encode())
        r = w.post("/v1/batch", content=body, headers={"Content-Encoding": "gzip"})
        assert (r.status_code, r.json()) == (200, {"success": True})
    server.wait_processed()
    with server.admin() as a:
        by_anon = a.get(f"/v1/profiles/anonymous_id:{anon}").json()
        by_user = a.get(f"/v1/profiles/user_id:{user}").json()
        assert by_anon == by_user
        assert by_user["event_count"] == 10
        assert {"type": "user_id", "value": user} in by_user["identities"]
        assert by_user["traits"]["email"] == "ann@example.com"
        assert by_user["lineage"]["email"]["source"] == "default"
        seen, cursor = [], None
        while True:
            params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
            page = a.get(f"/v1/profiles/user_id:{user}/events", params=params).json()
            seen += page["events"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [e["type"] for e in seen[:3]] == ["page", "track", "identify"]
        assert len(seen) == 10
        assert len({e["messageId"] for e in seen}) == 10
        assert a.get("/v1/profiles/user_id:nobody-here").status_code == 404
        bad = a.get("/v1/profiles/nocolon")
        assert bad.status_code == 400
        assert bad.json()["field"] == "ref"
        assert (
            a.get(f"/v1/profiles/user_id:{user}/events", params={"limit": 0}).json()["field"]
            == "limit"
        )


def test_admin_reads_need_the_admin_key(server):
    with server.writer() as w:
        assert w.get("/v1/stats").status_code == 401
    r = httpx.get(server.url + "/v1/stats", headers={"Authorization": "Bearer " + WRITE_KEY})
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"


def test_operations_endpoints(server):
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    spec = httpx.get(server.url + "/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert "/v1/batch" in spec["paths"]
    assert "BatchRequest" in spec["components"]["schemas"]
    docs = httpx.get(server.url + "/docs")
    assert "swagger-ui-bundle.js" in docs.text
    assert httpx.get(server.url + "/docs/swagger-ui-bundle.js").status_code == 200
    with server.writer() as w:
        w.post("/v1/track", json={"userId": "m", "event": "Metric Check"})
    metrics = httpx.get(server.url + "/metrics").text
    assert 'segue_http_request_duration_seconds_count{method="POST",route="/v1/track"' in metrics
    assert "segue_events_total" in metrics
    assert "segue_processor_lag_events" in metrics


def planned_source(tmp_path, mode: str, order_completed: str):
    """A ``segue.yaml`` with one source ``web`` (key ``web-key``) whose tracking plan, in
    ``mode``, plans ``Order Completed`` with the schema lines given (YAML, indented)."""
    config = tmp_path / "segue.yaml"
    config.write_text(
        "sources:\n"
        "  - name: web\n"
        "    write_key: web-key\n"
        "    tracking_plan:\n"
        f"      mode: {mode}\n"
        "      events:\n"
        "        Order Completed:\n"
        "          type: object\n" + order_completed
    )
    return config


def test_tracking_plan_from_config_quarantines_and_replay_fixes(tmp_path):
    config = planned_source(
        tmp_path,
        "quarantine",
        "          properties: {order_id: {type: string}, revenue: {type: number}}\n"
        "          required: [order_id]\n",
    )
    with SegueServer(tmp_path / "data", args=["--config", str(config)]) as srv:
        with httpx.Client(base_url=srv.url, auth=("web-key", "")) as web:
            r = web.post(
                "/v1/batch",
                json={
                    "batch": [
                        {
                            "type": "track",
                            "userId": "1",
                            "event": "Order Completed",
                            "properties": {"order_id": "o1", "revenue": 10},
                        },
                        {
                            "type": "track",
                            "userId": "1",
                            "event": "Order Completed",
                            "properties": {"revenue": "ten"},
                        },
                        {"type": "track", "userId": "1", "event": "Unplanned Thing"},
                    ]
                },
            )
        assert r.status_code == 200
        rejected = {x["index"]: x for x in r.json()["rejected"]}
        assert rejected[1]["code"] == "plan_violation"
        assert rejected[2]["code"] == "unplanned_event"
        # the default source has no plan
        with srv.writer() as w:
            assert w.post("/v1/track", json={"userId": "1", "event": "Anything"}).status_code == 200
        with srv.admin() as a:
            entries = a.get("/v1/admin/quarantine", params={"source": "web"}).json()["entries"]
            assert len(entries) == 2
            violation = next(e for e in entries if e["reason"].startswith("plan_violation"))
            fixed = dict(violation["message"], properties={"order_id": "o2", "revenue": 10.0})
            replay = a.post(
                f"/v1/admin/quarantine/{violation['id']}/replay", json={"message": fixed}
            )
            assert replay.status_code == 200, replay.text
            assert replay.json()["replayed"] is True
            still_bad = next(e for e in entries if e["id"] != violation["id"])
            again = a.post(f"/v1/admin/quarantine/{still_bad['id']}/replay")
            assert again.status_code == 400
            assert again.json()["code"] == "unplanned_event"
            assert a.get("/v1/stats").json()["quarantined"] == 1
            assert a.post("/v1/admin/quarantine/99999/replay").status_code == 404
        srv.wait_processed()
        with srv.admin() as a:
            events = a.get("/v1/profiles/user_id:1/events").json()["events"]
            assert sorted(e.get("properties", {}).get("order_id", "-") for e in events) == [
                "-",
                "o1",
                "o2",
            ]


def test_a_drop_properties_plan_stores_the_message_without_the_undeclared_property(tmp_path):
    # ingest stores the JSON it validated; a plan that changes the message must not let
    # the text from before the change through
    config = planned_source(
        tmp_path, "drop_properties", "          properties: {order_id: {type: string}}\n"
    )
    with SegueServer(tmp_path / "data", args=["--config", str(config)]) as srv:
        with httpx.Client(base_url=srv.url, auth=("web-key", "")) as web:
            message = {
                "type": "track",
                "userId": "1",
                "event": "Order Completed",
                "properties": {"order_id": "o1", "secret_note": "keep-me-out"},
            }
            r = web.post("/v1/batch", json={"batch": [message, {**message, "event": "Other"}]})
        assert r.status_code == 200, r.text
        assert "rejected" not in r.json()
        with srv.admin() as a:
            log = a.get("/v1/admin/log", params={"limit": 10}).json()
        stored = {m["event"]: m["properties"] for m in (e["message"] for e in log["records"])}
        assert stored == {
            "Order Completed": {"order_id": "o1"},
            "Other": {"order_id": "o1", "secret_note": "keep-me-out"},  # not in the plan
        }


def test_keys_are_generated_once_stored_and_printed_once(tmp_path):
    data = tmp_path / "data"
    env = {"SEGUE_ADMIN_KEY": "", "SEGUE_WRITE_KEY": "", "SEGUE_PUBLISHABLE_KEY": ""}
    srv = SegueServer(data, env=env)
    # the harness sets the keys; blank them so segue must generate its own
    srv.start()
    srv.stop()
    keys = json.loads((data / "keys.json").read_text())
    assert (data / "keys.json").stat().st_mode & 0o777 == 0o600
    first_log = srv.log()
    assert keys["admin"] in first_log
    srv2 = SegueServer(data, env=env, port=srv.port)
    srv2.log_path = tmp_path / "second.log"
    srv2.start()
    try:
        assert keys["admin"] not in srv2.log()
        r = httpx.get(srv2.url + "/v1/stats", headers={"Authorization": f"Bearer {keys['admin']}"})
        assert r.status_code == 200
        assert ADMIN_KEY not in json.dumps(keys)
    finally:
        srv2.stop()


def test_identifier_with_a_slash_and_colon_can_be_looked_up(server):
    with server.writer() as w:
        assert w.post("/v1/track", json={"userId": "a/b:c", "event": "Slash"}).status_code == 200
    server.wait_processed()
    with server.admin() as a:
        r = a.get("/v1/profiles/user_id:a%2Fb:c")
        assert r.status_code == 200, r.text
        assert {"type": "user_id", "value": "a/b:c"} in r.json()["identities"]


def test_rotated_write_key_replaces_the_stored_one(tmp_path):
    data = tmp_path / "data"
    for key in ("first-key-0123", "second-key-0123"):
        srv = SegueServer(data, env={"SEGUE_WRITE_KEY": key})
        srv.start()
        srv.stop()
    assert json.loads((data / "keys.json").read_text())["write"]["default"] == "second-key-0123"
    with SegueServer(data, env={"SEGUE_WRITE_KEY": ""}) as srv:
        ok = httpx.post(
            srv.url + "/v1/track", auth=("second-key-0123", ""), json={"userId": "1", "event": "A"}
        )
        old = httpx.post(
            srv.url + "/v1/track", auth=("first-key-0123", ""), json={"userId": "1", "event": "A"}
        )
        assert (ok.status_code, old.status_code) == (200, 401)


def test_cors_lets_browser_sdks_collect_and_decide(server):
    preflight = httpx.options(
        server.url + "/v1/batch",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    with server.writer() as w:
        r = w.post(
            "/v1/track",
            json={"userId": "cors", "event": "A"},
            headers={"Origin": "https://shop.example"},
        )
    assert r.headers["access-control-allow-origin"] == "*"


def test_event_time_is_clamped_to_the_receive_time_as_documented(server):
    """docs/api.md: a time more than a day after receivedAt, or before 1970, is a broken
    device clock and receivedAt is used; a time less than a day ahead is kept."""
    ahead = (datetime.now(UTC) + timedelta(hours=12)).isoformat(timespec="milliseconds")
    cases = {
        "far_future": ({"timestamp": "2999-01-01T00:00:00Z"}, None),
        "two_days_ahead": (
            {"timestamp": (datetime.now(UTC) + timedelta(days=2)).isoformat()},
            None,
        ),
        "before_1970": ({"timestamp": "1969-07-20T20:17:00Z"}, None),
        "skew_out_of_range": (
            {"originalTimestamp": "9999-01-01T00:00:00Z", "sentAt": "0001-01-01T00:00:00Z"},
            None,
        ),
        "half_a_day_ahead": ({"timestamp": ahead}, ahead.replace("+00:00", "Z")),
        "naive_is_utc": ({"timestamp": "2024-01-02T03:04:05"}, "2024-01-02T03:04:05.000Z"),
    }
    users = {name: f"clock-{name}-{uuid.uuid4().hex[:6]}" for name in cases}
    with server.writer() as w:
        for name, (times, _) in cases.items():
            r = w.post("/v1/track", json={"userId": users[name], "event": "Clock", **times})
            assert r.status_code == 200, r.text
    server.wait_processed()
    with server.admin() as a:
        for name, (times, expected) in cases.items():
            profile = a.get(f"/v1/profiles/user_id:{users[name]}").json()
            [event] = a.get(f"/v1/profiles/user_id:{users[name]}/events").json()["events"]
            assert {k: event[k] for k in times} == times, "the stored message keeps its times"
            want = expected or event["receivedAt"]
            assert (profile["first_seen"], profile["last_seen"]) == (want, want), name
