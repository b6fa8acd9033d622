"""The SDKs' retries meet segue's idempotent ingestion: retried batches are stored once.

* A fault-injection proxy lets segue answer 200 to a batch and then drops the connection, so
  the SDK believes the upload failed and sends the very same batch again.
* segue is stopped with SIGTERM in the middle of a stream of SDK sends and started again on
  the same port and data folder; the SDK's retries carry everything across the gap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics import Client as SegmentClient

from tests.e2e import audit
from tests.e2e.proxy import FaultProxy, drop_nth_batches
from tests.e2e.sdk_workload import ErrorSink, build_workload, send_all
from tests.e2e.server import WRITE_KEY, SegueServer

pytestmark = pytest.mark.e2e

DROPPED = (2, 5)  # the 2nd and 5th acknowledged batches lose their answer on the way back


def _client(sdk: str, host: str, errors: ErrorSink) -> Any:
    if sdk == "segment":
        return SegmentClient(write_key=WRITE_KEY, host=host, on_error=errors)
    return RudderClient(write_key=WRITE_KEY, host=host, on_error=errors)


@pytest.mark.parametrize("sdk", ["segment", "rudder"])
@pytest.mark.embedded("counts duplicates on one API process's counters")
def test_batch_acknowledged_but_answer_lost_is_retried_and_stored_once(
    server: SegueServer, sdk: str
) -> None:
    before = server.wait_processed()
    errors = ErrorSink()
    workload = build_workload(700, n_users=10, n_visitors=4, seed=31, prefix=f"px{sdk[0]}")
    with FaultProxy(server.port, drop_nth_batches(*DROPPED)) as proxy:
        client = _client(sdk, proxy.url, errors)
        try:
            messages = send_all(client, workload.calls)
            client.flush()
        finally:
            client.join()
        exchanges = [e for e in proxy.snapshot() if e.path.startswith("/v1/batch")]

    assert errors.failures == [], errors.summary()
    dropped = [e for e in exchanges if e.dropped]
    assert len(dropped) == len(DROPPED), [(e.index, e.status, e.dropped) for e in exchanges]
    sent_ids = {str(m["messageId"]) for m in messages}
    resent = 0
    for lost in dropped:
        assert lost.status == 200  # segue acknowledged it ...
        lost_ids = audit.batch_message_ids(lost.headers, lost.body)
        assert set(lost_ids) <= sent_ids
        # ... and the SDK sent exactly that batch again on its next request
        retry = next(e for e in exchanges if e.index > lost.index)
        assert audit.batch_message_ids(retry.headers, retry.body) == lost_ids
        assert retry.status == 200
        assert not retry.dropped
        if sdk == "segment":
            assert retry.headers.get("x-retry-count") == "1", retry.headers
        else:
            assert retry.headers.get("content-encoding") == "gzip"
        resent += len(lost_ids)
    assert resent > 0

    after = server.wait_processed(at_least=before["events_processed"] + len(messages))
    assert after["events_duplicate"] - before["events_duplicate"] == resent
    assert after["events_processed"] - before["events_processed"] == len(messages)
    audit.assert_stored_exactly_once(audit.log_records(server), sent_ids)
    for owner in workload.owners:
        timeline = audit.timeline_ids(server, owner)
        assert len(timeline) == len(set(timeline)), f"{owner}: a retried event was processed twice"
        found = audit.profile(server, owner)
        assert found is not None, owner
        assert found["event_count"] == len(timeline), (owner, found)


class _RetryWatch(logging.Handler):
    """Notices the Segment consumer's own "retry" debug lines (it logs each backoff)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen = threading.Event()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "retry" in str(record.msg).lower():
            self.lines.append(str(record.msg))
            self.seen.set()


@pytest.fixture
def retry_watch() -> Iterator[_RetryWatch]:
    logger = logging.getLogger("segment")
    watch = _RetryWatch()
    level = logger.level
    logger.addHandler(watch)
    logger.setLevel(logging.DEBUG)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(level)


def test_sigterm_restart_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, retry_watch: _RetryWatch
) -> None:
    data = tmp_path / "data"
    srv = SegueServer(data).start()
    port = srv.port
    errors = ErrorSink()
    workload = build_workload(1500, n_users=12, n_visitors=4, seed=41, prefix="rst")
    chunks = [workload.calls[i : i + 25] for i in range(0, len(workload.calls), 25)]
    stopped, restarted = threading.Event(), threading.Event()
    problems: list[str] = []
    sdk = SegmentClient(write_key=WRITE_KEY, host=srv.url, on_error=errors)

    def bounce() -> None:
        try:
            srv.stop()  # SIGTERM while the SDK is uploading: answers may be cut off
            stopped.set()
            # keep segue down until the SDK has failed an upload and gone into backoff
            if not retry_watch.seen.wait(20):
                problems.append("the SDK never retried while segue was down")
            srv.start()  # same port, same data folder
        except Exception as exc:  # reported by the test thread
            problems.append(f"restart failed: {exc!r}")
        finally:
            stopped.set()
            restarted.set()

    messages: list[dict[str, Any]] = []
    bouncer = threading.Thread(target=bounce)
    try:
        for n, chunk in enumerate(chunks):
            if n == 15:
                bouncer.start()
            if n == 40:  # the last third goes out while segue is (still) down
                assert stopped.wait(30), "segue did not stop"
            messages += send_all(sdk, chunk)
            time.sleep(0.03)  # a steady stream, not one burst
        assert restarted.wait(60), "segue did not come back"
        assert problems == [], [*problems, srv.log()[-3000:]]
        sdk.flush()
    finally:
        sdk.join()
        if bouncer.is_alive():
            bouncer.join(30)
    try:
        assert srv.port == port
        assert errors.failures == [], errors.summary()
        assert retry_watch.lines  # the SDK really did retry
        srv.wait_processed()
        sent_ids = [str(m["messageId"]) for m in messages]
        records = audit.log_records(srv)
        audit.assert_stored_exactly_once(records, sent_ids)
        assert len(records) == len(sent_ids)  # nothing else, nothing twice
        in_timelines = 0
        for owner in workload.owners:
            timeline = audit.timeline_ids(srv, owner)
            assert len(timeline) == len(set(timeline)), f"{owner}: duplicate timeline events"
            found = audit.profile(srv, owner)
            assert found is not None, owner
            assert found["event_count"] == len(timeline), (owner, found)
            in_timelines += len(timeline)
        assert in_timelines == len(sent_ids)
    finally:
        srv.stop()
