"""The real ``rudder-sdk-python`` SDK, unchanged, pointed at segue as its data plane.

What the SDK does on the wire (rudderstack/analytics/request.py, consumer.py, client.py 2.1.9):
* ``POST {dataPlaneUrl}/v1/batch`` with ``{"batch": [...], "sentAt"}``, the write key only as
  HTTP Basic ``writeKey:`` (never in the body);
* gzip by default (``Content-Encoding: gzip``);
* ``identify`` puts the traits in ``context.traits`` and *not* at the top level; every message
  carries ``"channel": "server"`` and ``"integrations": {"All": true}`` by default;
* success is exactly 200; retries network errors, 429 and 5xx with exponential backoff and
  full jitter (``backoff.expo``); other 4xx go straight to ``on_error``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import rudderstack.analytics as rudder_analytics
from rudderstack.analytics.client import Client
from rudderstack.analytics.request import APIError

from tests.e2e import audit
from tests.e2e.sdk_workload import (
    ErrorSink,
    assert_workload_delivered,
    build_workload,
    send_all,
)
from tests.e2e.server import WRITE_KEY, SegueServer

pytestmark = pytest.mark.e2e

TOTAL = 3000


@pytest.fixture
def errors() -> ErrorSink:
    return ErrorSink()


@pytest.fixture
def client(server: SegueServer, errors: ErrorSink) -> Iterator[Client]:
    """An asynchronous RudderStack client with the SDK's defaults (gzip on, batches of 100)."""
    sdk = Client(write_key=WRITE_KEY, host=server.url, on_error=errors)
    try:
        yield sdk
    finally:
        sdk.join()


def test_thousands_of_mixed_gzipped_events_are_stored_exactly_once(
    server: SegueServer, client: Client, errors: ErrorSink
) -> None:
    assert client.gzip is True  # the SDK default this test relies on
    before = server.wait_processed()
    workload = build_workload(TOTAL, seed=21, prefix="rs")
    assert len(workload.calls) == TOTAL

    messages = send_all(client, workload.calls)
    client.flush()

    assert errors.failures == [], errors.summary()
    after = server.wait_processed(at_least=before["events_processed"] + TOTAL)
    assert after["events_received"] - before["events_received"] == TOTAL
    assert after["events_processed"] - before["events_processed"] == TOTAL
    assert after["events_duplicate"] - before["events_duplicate"] == 0
    assert after["events_rejected"] - before["events_rejected"] == 0
    # the Rudder shape really was sent: identify traits only in context.traits
    identifies = [m for m in messages if m["type"] == "identify"]
    assert identifies
    assert all("traits" not in m and m["context"]["traits"] for m in identifies)
    assert all(m["channel"] == "server" for m in messages)
    # stored unchanged, and identify traits from context.traits land on the profiles
    assert_workload_delivered(server, workload, messages)


def test_module_level_api_with_data_plane_url(
    server: SegueServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented usage: ``write_key`` and ``dataPlaneUrl`` set on the module."""
    failures = ErrorSink()
    monkeypatch.setattr(rudder_analytics, "write_key", WRITE_KEY)
    monkeypatch.setattr(rudder_analytics, "dataPlaneUrl", server.url, raising=False)
    monkeypatch.setattr(rudder_analytics, "on_error", failures)
    monkeypatch.setattr(rudder_analytics, "default_client", None)
    run = uuid.uuid4().hex[:8]
    user = f"rsmod-{run}"
    ids = [f"rsmod-{run}-{i}" for i in range(5)]
    try:
        rudder_analytics.identify(
            user,
            {"email": f"{run}@example.com", "plan": "pro"},
            anonymous_id=f"anon-{run}",
            message_id=ids[0],
        )
        rudder_analytics.track(
            user,
            "Order Completed",
            {
                "order_id": run,
                "total": 30.5,
                "products": [
                    {"product_id": "p1", "price": 10.5, "quantity": 1},
                    {"product_id": "p2", "price": 10.0, "quantity": 2},
                ],
            },
            message_id=ids[1],
        )
        rudder_analytics.page(user, "Docs", "Install", {"path": "/install"}, message_id=ids[2])
        rudder_analytics.screen(user, "App", "Home", message_id=ids[3])
        rudder_analytics.group(user, "acct-1", {"name": "ACME"}, message_id=ids[4])
        rudder_analytics.flush()
    finally:
        if rudder_analytics.default_client is not None:
            rudder_analytics.default_client.join()
    assert rudder_analytics.default_client is not None
    assert rudder_analytics.default_client.host == server.url
    assert failures.failures == [], failures.summary()

    server.wait_processed()
    audit.assert_stored_exactly_once(audit.log_records(server), ids)
    assert audit.timeline_ids(server, f"user_id:{user}") == ids
    found = audit.profile(server, f"anonymous_id:anon-{run}")
    assert found is not None
    assert found["event_count"] == len(ids)
    assert found["traits"]["email"] == f"{run}@example.com"
    assert found["traits"]["plan"] == "pro"
    assert found["lineage"]["plan"]["message_id"] == ids[0]


def test_wrong_write_key_is_reported_not_stored(server: SegueServer) -> None:
    sync = Client(write_key="not-a-key", host=server.url, sync_mode=True)
    with pytest.raises(APIError) as caught:
        sync.track(user_id="intruder", event="Sneaked In")
    assert caught.value.status == 401
    assert caught.value.code == "unauthorized"

    failures = ErrorSink()
    sdk = Client(write_key="not-a-key", host=server.url, on_error=failures, max_retries=2)
    try:
        _, message = sdk.track(user_id="intruder", event="Sneaked In Again")
        sdk.flush()
    finally:
        sdk.join()
    assert len(failures.failures) == 1, failures.summary()
    error, batch = failures.failures[0]
    assert isinstance(error, APIError)
    assert error.status == 401
    assert [m["messageId"] for m in batch] == [message["messageId"]]
    assert audit.id_counts(audit.log_records(server))[message["messageId"]] == 0
