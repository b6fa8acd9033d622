"""Every malformed input the collection API can get, against a live ``segue serve``.

The tables below send each bad request to a real server and assert the exact 4xx status,
that the answer is JSON with a string ``code`` and ``message``, and — where one field is at
fault — the JSON path in ``field``. Partial batches must keep the good messages (event log)
and keep the bad ones aside (quarantine), and a corrected quarantined message can be
replayed. Lenient forms real SDKs send (null or numeric ids, nanosecond timestamps, offsets)
are accepted; hostile but well-formed bodies get a clean 4xx, never a 5xx; values that pass
validation must not wedge the processor or break the profile read. The last test proves that
none of this crashed or wedged the shared server.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import re
import time
import uuid
import weakref
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.server import ADMIN_KEY, CLUSTER, PUBLISHABLE_KEY, WRITE_KEY, SegueServer

pytestmark = pytest.mark.e2e

SINGLE = {
    "/v1/track": "track",
    "/v1/identify": "identify",
    "/v1/page": "page",
    "/v1/screen": "screen",
    "/v1/group": "group",
    "/v1/alias": "alias",
}
BATCH = ("/v1/batch", "/v1/import")
#: the short paths analytics.js (analytics-next) and the mobile SDKs post to
SHORT = {f"/v1/{name[0]}": f"/v1/{name}" for name in ("batch", *SINGLE.values())}
ENDPOINTS = (*BATCH, *SINGLE)
KINDS = tuple(SINGLE.values())
JSON = {"Content-Type": "application/json"}
KB = 1024


# --- helpers --------------------------------------------------------------------------------


DROP: Any = object()  # a field override that removes the field


def mid() -> str:
    return f"mal-{uuid.uuid4()}"


def message(kind: str, **fields: Any) -> dict[str, Any]:
    """A valid Segment message of ``kind`` (without ``type``); ``fields`` override or add.

    A field set to ``DROP`` is removed.
    """
    msg: dict[str, Any] = {"messageId": mid(), "userId": f"user-{uuid.uuid4().hex[:12]}"}
    if kind == "track":
        msg.update(event="Clicked", properties={"button": "buy"})
    elif kind == "identify":
        msg.update(traits={"plan": "pro"})
    elif kind in ("page", "screen"):
        msg.update(name="Home", properties={"path": "/"})
    elif kind == "group":
        msg.update(groupId="group-1", traits={"size": 3})
    elif kind == "alias":
        msg.update(previousId="anon-previous")
    msg.update(fields)
    return {k: v for k, v in msg.items() if v is not DROP}


def typed(kind: str, **fields: Any) -> dict[str, Any]:
    """Like :func:`message` but with ``type`` set, as batch members need."""
    return {"type": kind, **message(kind, **fields)}


def body_for(endpoint: str, kind: str = "track", **fields: Any) -> dict[str, Any]:
    """A valid request body for ``endpoint`` carrying one message."""
    if endpoint in BATCH:
        return {"batch": [typed(kind, **fields)]}
    return message(SINGLE[endpoint], **fields)


def basic(key: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{key}:{password}".encode()).decode()


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def assert_error(
    response: httpx.Response, status: int, code: str | None = None, field: str | None = None
) -> dict[str, Any]:
    """The response is exactly ``status`` with a JSON error body (string code and message)."""
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path}: expected {status}, "
        f"got {response.status_code}: {response.text[:500]}"
    )
    assert response.headers.get("content-type", "").startswith("application/json"), (
        response.headers.get("content-type"),
        response.text[:200],
    )
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("code"), str), body
    assert body["code"], body
    assert isinstance(body.get("message"), str), body
    assert body["message"], body
    if code is not None:
        assert body["code"] == code, body
    if status == 401:
        assert "www-authenticate" in response.headers, "every 401 carries WWW-Authenticate"
    if field is not None:
        assert body.get("field") == field, body
    return dict(body)


def assert_4xx_or_ok(response: httpx.Response) -> None:
    """Never a server error: 200, or any 4xx with a JSON error body."""
    if response.status_code == 200:
        return
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    assert_error(response, response.status_code)


def same_path(got: str | None, want: str, index: int = 0) -> bool:
    """A batch member's field may be given relative to the message or to the request."""
    return got in {want, f"$.batch[{index}]{want[1:]}"}


class _LogCache:
    """The event log as read so far: it is append-only, so only new records are fetched."""

    def __init__(self) -> None:
        self.by_offset: dict[int, dict[str, Any]] = {}


_LOGS: weakref.WeakKeyDictionary[httpx.Client, _LogCache] = weakref.WeakKeyDictionary()


def log_records(admin: httpx.Client) -> list[dict[str, Any]]:
    """Every record of the event log, oldest first, reading pages via ``after``/``next``."""
    cache = _LOGS.setdefault(admin, _LogCache())
    for _ in range(10_000):
        params: dict[str, Any] = {"limit": 1000}
        if cache.by_offset:
            params["after"] = max(cache.by_offset)
        response = admin.get("/v1/admin/log", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        fresh = [r for r in page["records"] if r["offset"] not in cache.by_offset]
        for record in fresh:
            assert isinstance(record["offset"], int), record
            cache.by_offset[record["offset"]] = record
        if page["next"] is None or not fresh:
            break
    return [cache.by_offset[o] for o in sorted(cache.by_offset)]


def stored(admin: httpx.Client, message_id: str) -> list[dict[str, Any]]:
    """Log records carrying ``message_id``."""
    return [r for r in log_records(admin) if r["message_id"] == message_id]


def quarantine(admin: httpx.Client) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    after: int | None = None
    for _ in range(1000):
        params: dict[str, Any] = {"limit": 1000}
        if after is not None:
            params["after"] = after
        response = admin.get("/v1/admin/quarantine", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        entries.extend(page["entries"])
        if page["next"] is None or not page["entries"] or page["next"] == after:
            break
        after = page["next"]
    return entries


def quarantined(admin: httpx.Client, message_id: str) -> list[dict[str, Any]]:
    """Quarantine entries whose message carries ``message_id``."""
    found = []
    for entry in quarantine(admin):
        msg = entry["message"]
        if isinstance(msg, str):
            try:
                msg = json.loads(msg)
            except ValueError:
                continue
        if isinstance(msg, dict) and msg.get("messageId") == message_id:
            found.append(entry)
    return found


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def writer(server: SegueServer) -> Iterator[httpx.Client]:
    with server.writer() as client:
        yield client


@pytest.fixture(scope="module")
def admin(server: SegueServer) -> Iterator[httpx.Client]:
    with server.admin() as client:
        yield client


@pytest.fixture(scope="module")
def anon(server: SegueServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        yield client


# --- baseline: the valid forms the tables below break ---------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_valid_request_is_exactly_success(writer: httpx.Client, endpoint: str) -> None:
    response = writer.post(endpoint, json=body_for(endpoint))
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}


@pytest.mark.parametrize(("short", "path"), SHORT.items())
def test_short_paths_are_handled_as_their_long_forms(
    server: SegueServer, anon: httpx.Client, admin: httpx.Client, short: str, path: str
) -> None:
    kind = SINGLE.get(path, "identify")
    auth = {"Authorization": basic(WRITE_KEY)}
    body = body_for(path, kind)
    response = anon.post(short, json=body, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    message_id = body["batch"][0]["messageId"] if path in BATCH else body["messageId"]
    [record] = stored(admin, message_id)
    assert record["message"]["type"] == kind

    # the same answers as the long path, refusals included
    bad = body_for(path, kind, userId=["not", "a", "string"])
    for request in (
        {"json": bad, "headers": auth},  # a broken message (a batch adds `rejected`)
        {"json": body_for(path, kind)},  # no key
        {"json": body_for(path, kind), "headers": {"Authorization": basic("wrong")}},
        {"content": b"{", "headers": auth},  # not JSON
    ):
        answers = [anon.post(p, **request) for p in (path, short)]
        assert answers[0].status_code == answers[1].status_code != 200, answers[1].text
        assert answers[0].json() == answers[1].json()
    assert_error(anon.get(short, headers=auth), 405, "method_not_allowed")

    operation = httpx.get(server.url + "/openapi.json").json()["paths"][short]["post"]
    assert operation["security"] == [{"writeKey": []}]
    assert path in operation["summary"]


# --- bodies that are not JSON, or not a JSON object -----------------------------------------

INVALID_JSON = {
    "empty": b"",
    "truncated": b'{"userId": "u", ',
    "prose": b"hello world",
    "trailing_comma": b'{"userId": "u",}',
    "single_quotes": b"{'userId': 'u'}",
    "nan": b'{"userId": "u", "event": "e", "properties": {"x": NaN}, "batch": [NaN]}',
    "invalid_utf8": b'{"userId": "\xff\xfe", "event": "e", "batch": []}',
    "invalid_utf8_in_member": (
        b'{"userId": "\xff", "event": "e", "batch": [{"type": "track", "userId": "\xff", '
        b'"event": "e"}]}'
    ),
    "two_documents": b'{"userId": "u"} {"userId": "v"}',
    "unterminated_string": b'{"userId": "u',
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("body", INVALID_JSON.values(), ids=INVALID_JSON.keys())
def test_invalid_json_is_400_invalid_json(writer: httpx.Client, endpoint: str, body: bytes) -> None:
    assert_error(writer.post(endpoint, content=body, headers=JSON), 400, "invalid_json")


NOT_AN_OBJECT = {
    "array": b"[]",
    "array_of_messages": b'[{"type": "track", "userId": "u", "event": "e"}]',
    "string": b'"track"',
    "number": b"42",
    "null": b"null",
    "true": b"true",
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("body", NOT_AN_OBJECT.values(), ids=NOT_AN_OBJECT.keys())
def test_body_not_an_object_is_400(writer: httpx.Client, endpoint: str, body: bytes) -> None:
    response = writer.post(endpoint, content=body, headers=JSON)
    assert_error(response, 400, "invalid_request", field="$")


BATCH_NOT_A_LIST = {
    "object": {"batch": {"type": "track"}},
    "string": {"batch": "[]"},
    "number": {"batch": 1},
    "null": {"batch": None},
    "true": {"batch": True},
    "missing": {"context": {}},
    "empty_object": {},
}


@pytest.mark.parametrize("endpoint", BATCH)
@pytest.mark.parametrize("body", BATCH_NOT_A_LIST.values(), ids=BATCH_NOT_A_LIST.keys())
def test_batch_not_a_list_is_400_at_batch(
    writer: httpx.Client, endpoint: str, body: dict[str, Any]
) -> None:
    # docs/api.md: `batch` not a list is `$.batch`, and so is no `batch` at all
    assert_error(writer.post(endpoint, json=body), 400, "invalid_request", field="$.batch")


@pytest.mark.parametrize("endpoint", BATCH)
def test_empty_batch_is_exactly_success(writer: httpx.Client, endpoint: str) -> None:
    response = writer.post(endpoint, json={"batch": []})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}


# --- wrong types: 400 invalid_event with the JSON path of the field -------------------------

COMMON_WRONG_TYPES: list[tuple[str, Any]] = [
    ("userId", ["user-1"]),
    ("userId", True),
    ("userId", {"id": "user-1"}),
    ("anonymousId", ["anon"]),
    ("anonymousId", False),
    ("timestamp", "yesterday"),
    ("timestamp", "2024-13-45T00:00:00Z"),
    ("timestamp", "2024-01-02 noon"),
    ("timestamp", 1700000000),
    ("originalTimestamp", "not a date"),
    ("sentAt", "2024-01-02T25:00:00Z"),
    ("context", "mobile"),
    ("context", [1, 2]),
    ("integrations", ["All"]),
    ("messageId", {"id": 1}),
    ("messageId", ["m"]),
    ("messageId", "m" * 257),
]
SPECIFIC_WRONG_TYPES: list[tuple[str, str, Any]] = [
    ("track", "event", 5),
    ("track", "event", ["Clicked"]),
    ("track", "event", {"name": "Clicked"}),
    ("track", "properties", "cheap"),
    ("track", "properties", [1, 2]),
    ("identify", "traits", "vip"),
    ("identify", "traits", [["plan", "pro"]]),
    ("page", "properties", "x"),
    ("page", "name", 5),
    ("screen", "properties", 1.5),
    ("screen", "category", ["a"]),
    ("group", "groupId", ["g"]),
    ("group", "groupId", {"id": "g"}),
    ("group", "traits", "big"),
    ("alias", "previousId", {"id": "p"}),
    ("alias", "previousId", True),
]
WRONG_TYPES = [
    *((kind, name, value) for kind in KINDS for name, value in COMMON_WRONG_TYPES),
    *SPECIFIC_WRONG_TYPES,
]
WRONG_TYPE_IDS = [f"{kind}-{name}-{json.dumps(value)[:24]}" for kind, name, value in WRONG_TYPES]


@pytest.mark.parametrize(("kind", "name", "value"), WRONG_TYPES, ids=WRONG_TYPE_IDS)
def test_wrong_type_single_is_400_with_path(
    writer: httpx.Client, kind: str, name: str, value: Any
) -> None:
    endpoint = next(e for e, k in SINGLE.items() if k == kind)
    response = writer.post(endpoint, json=message(kind, **{name: value}))
    assert_error(response, 400, "invalid_event", field=f"$.{name}")


@pytest.mark.parametrize(("kind", "name", "value"), WRONG_TYPES, ids=WRONG_TYPE_IDS)
def test_wrong_type_in_batch_is_rejected_with_path(
    writer: httpx.Client, kind: str, name: str, value: Any
) -> None:
    response = writer.post("/v1/batch", json={"batch": [typed(kind, **{name: value})]})
    error = assert_error(response, 400, "invalid_event")
    assert same_path(error.get("field"), f"$.{name}"), error
    [rejected] = error["rejected"]
    assert rejected["index"] == 0
    assert isinstance(rejected["code"], str)
    assert isinstance(rejected["message"], str)
    assert same_path(rejected["field"], f"$.{name}"), rejected


# --- missing ids and required fields --------------------------------------------------------

ID_PATHS = ("$.userId", "$.anonymousId")
MISSING: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    *((kind, {"userId": DROP}, ID_PATHS) for kind in KINDS if kind != "alias"),
    *((kind, {"userId": None, "anonymousId": None}, ID_PATHS) for kind in KINDS),
    *((kind, {"userId": "", "anonymousId": ""}, ID_PATHS) for kind in KINDS),
    *((kind, {"userId": "   "}, ID_PATHS) for kind in KINDS),
    ("track", {"event": DROP}, ("$.event",)),
    ("track", {"event": ""}, ("$.event",)),
    ("track", {"event": None}, ("$.event",)),
    ("alias", {"previousId": DROP}, ("$.previousId",)),
    ("alias", {"previousId": ""}, ("$.previousId",)),
    ("alias", {"previousId": None}, ("$.previousId",)),
    ("alias", {"userId": DROP, "anonymousId": "anon-1"}, ("$.userId",)),
    ("group", {"groupId": DROP}, ("$.groupId",)),
    ("group", {"groupId": ""}, ("$.groupId",)),
]
MISSING_IDS = [
    f"{kind}-" + "-".join(f"{k}={'DROP' if v is DROP else json.dumps(v)}" for k, v in over.items())
    for kind, over, _ in MISSING
]


@pytest.mark.parametrize(("kind", "over", "paths"), MISSING, ids=MISSING_IDS)
def test_missing_required_single_is_400(
    writer: httpx.Client, kind: str, over: dict[str, Any], paths: tuple[str, ...]
) -> None:
    endpoint = next(e for e, k in SINGLE.items() if k == kind)
    error = assert_error(writer.post(endpoint, json=message(kind, **over)), 400, "invalid_event")
    assert error.get("field") in paths, error


@pytest.mark.parametrize(("kind", "over", "paths"), MISSING, ids=MISSING_IDS)
def test_missing_required_in_batch_is_rejected(
    writer: httpx.Client, kind: str, over: dict[str, Any], paths: tuple[str, ...]
) -> None:
    response = writer.post("/v1/import", json={"batch": [typed(kind, **over)]})
    error = assert_error(response, 400, "invalid_event")
    [rejected] = error["rejected"]
    assert rejected["index"] == 0
    assert any(same_path(rejected["field"], p) for p in paths), rejected


BAD_MEMBERS: dict[str, Any] = {
    "unknown_type": {"type": "purchase", "userId": "u", "event": "e"},
    "missing_type": {"userId": "u", "event": "e"},
    "type_number": {"type": 5, "userId": "u", "event": "e"},
    "type_case": {"type": "Track", "userId": "u", "event": "e"},
    "type_null": {"type": None, "userId": "u", "event": "e"},
}


@pytest.mark.parametrize("member", BAD_MEMBERS.values(), ids=BAD_MEMBERS.keys())
def test_unknown_type_in_batch_is_rejected_at_type(
    writer: httpx.Client, member: dict[str, Any]
) -> None:
    error = assert_error(writer.post("/v1/batch", json={"batch": [member]}), 400, "invalid_event")
    [rejected] = error["rejected"]
    assert rejected["index"] == 0
    assert same_path(rejected["field"], "$.type"), rejected


def test_batch_members_that_are_not_objects_are_rejected_by_index(writer: httpx.Client) -> None:
    members = [1, "track", None, [], True]
    error = assert_error(writer.post("/v1/batch", json={"batch": members}), 400, "invalid_event")
    assert [r["index"] for r in error["rejected"]] == list(range(len(members)))
    for rejected in error["rejected"]:
        assert isinstance(rejected["code"], str)
        assert isinstance(rejected["message"], str)


# --- size limits ----------------------------------------------------------------------------


def padded(kind: str, size: int) -> dict[str, Any]:
    """A valid message of ``kind`` whose JSON is about ``size`` bytes (padding in context)."""
    return message(kind, context={"padding": "x" * size})


@pytest.mark.parametrize("endpoint", SINGLE)
def test_single_message_over_32kb_is_413(writer: httpx.Client, endpoint: str) -> None:
    response = writer.post(endpoint, json=padded(SINGLE[endpoint], 40 * KB))
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize("endpoint", SINGLE)
def test_single_message_just_under_32kb_is_accepted(writer: httpx.Client, endpoint: str) -> None:
    response = writer.post(endpoint, json=padded(SINGLE[endpoint], 30 * KB))
    assert response.status_code == 200, response.text


def test_oversize_member_of_batch_is_rejected_by_index(
    writer: httpx.Client, admin: httpx.Client
) -> None:
    big = {"type": "track", **padded("track", 40 * KB)}
    small = typed("track")
    response = writer.post("/v1/batch", json={"batch": [small, big]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    [rejected] = body["rejected"]
    assert rejected["index"] == 1
    assert rejected["code"] == "payload_too_large"
    assert len(stored(admin, small["messageId"])) == 1
    assert stored(admin, big["messageId"]) == []


@pytest.mark.parametrize("name", ["context", "integrations"])
def test_batch_level_fields_count_toward_each_message_limit(
    writer: httpx.Client, admin: httpx.Client, name: str
) -> None:
    """The batch's context is copied into every message: 20 small messages under a 40 KB
    batch context are 20 messages of 40 KB each, each over the limit."""
    members = [typed("track") for _ in range(20)]
    response = writer.post("/v1/batch", json={name: {"pad": "a" * 40 * KB}, "batch": members})
    error = assert_error(response, 413, "payload_too_large")
    assert [r["index"] for r in error["rejected"]] == list(range(20))
    assert {r["code"] for r in error["rejected"]} == {"payload_too_large"}
    for member in members:
        assert stored(admin, member["messageId"]) == []
        [entry] = quarantined(admin, member["messageId"])
        assert entry["reason"].startswith("payload_too_large: "), entry


def test_batch_context_and_a_member_over_the_limit_together(
    writer: httpx.Client, admin: httpx.Client
) -> None:
    small = typed("track")
    big = {"type": "track", **padded("track", 15 * KB)}  # 15 KB of its own + 20 KB merged
    own_pad = typed("track", context={"pad": "mine"})  # its own key wins: 20 KB never merged
    body = {"context": {"pad": "b" * 20 * KB, "locale": "de-DE"}, "batch": [small, big, own_pad]}
    response = writer.post("/v1/batch", json=body)
    assert response.status_code == 200, response.text
    [rejected] = response.json()["rejected"]
    assert (rejected["index"], rejected["code"]) == (1, "payload_too_large")
    assert stored(admin, big["messageId"]) == []
    assert len(quarantined(admin, big["messageId"])) == 1
    [record] = stored(admin, small["messageId"])
    assert len(record["message"]["context"]["pad"]) == 20 * KB
    [record] = stored(admin, own_pad["messageId"])
    assert record["message"]["context"] == {"pad": "mine", "locale": "de-DE"}


def test_a_batch_context_under_every_limit_can_fill_a_whole_request(
    writer: httpx.Client, admin: httpx.Client
) -> None:
    """A request of 2,000 tiny messages under a 200 KB context: none is stored, each is
    refused (a regression stored 2,000 copies of the context and the server grew by GBs)."""
    members = [{"type": "track", "userId": "u", "event": "e"} for _ in range(2000)]
    body = {"context": {"pad": "c" * 200 * KB}, "batch": members}
    assert len(dumps(body)) < 500 * KB
    before = max((r["offset"] for r in log_records(admin)), default=0)
    error = assert_error(writer.post("/v1/batch", json=body), 413, "payload_too_large")
    assert len(error["rejected"]) == 2000
    assert [r for r in log_records(admin) if r["offset"] > before] == []


@pytest.mark.parametrize("name", ["context", "integrations"])
def test_batch_level_fields_count_toward_each_message_depth_limit(
    writer: httpx.Client, admin: httpx.Client, name: str
) -> None:
    deep: Any = 1
    for _ in range(40):
        deep = {"a": deep}
    member = typed("track")
    response = writer.post("/v1/batch", json={name: {"deep": deep}, "batch": [member]})
    error = assert_error(response, 400, "invalid_event", field=f"$.{name}")
    assert error["rejected"][0]["field"] == f"$.{name}"
    assert stored(admin, member["messageId"]) == []
    assert len(quarantined(admin, member["messageId"])) == 1


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_request_over_500kb_is_413(writer: httpx.Client, endpoint: str) -> None:
    if endpoint in BATCH:
        body: dict[str, Any] = {"batch": [{"type": "track", **padded("track", 30 * KB)}] * 20}
    else:
        body = padded(SINGLE[endpoint], 600 * KB)
    assert len(dumps(body)) > 500 * KB
    assert_error(writer.post(endpoint, json=body), 413, "payload_too_large")


def test_batch_just_under_500kb_is_accepted(writer: httpx.Client) -> None:
    batch = [{"type": "track", **padded("track", 30 * KB)} for _ in range(15)]
    assert 400 * KB < len(dumps({"batch": batch})) < 490 * KB
    response = writer.post("/v1/batch", json={"batch": batch})
    assert response.status_code == 200, response.text
    assert "rejected" not in response.json() or not response.json()["rejected"]


def test_chunked_request_over_500kb_is_413(writer: httpx.Client) -> None:
    """No Content-Length: the limit must hold while reading the stream, not only by header."""
    data = dumps({"batch": [{"type": "track", **padded("track", 30 * KB)}] * 40})

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 16 * KB):
            yield data[start : start + 16 * KB]

    response = writer.post("/v1/batch", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")


# --- gzip ---------------------------------------------------------------------------------

GZ = {**JSON, "Content-Encoding": "gzip"}


def test_gzip_body_is_accepted(writer: httpx.Client, admin: httpx.Client) -> None:
    member = typed("identify")
    response = writer.post(
        "/v1/batch", content=gzip.compress(dumps({"batch": [member]})), headers=GZ
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    assert len(stored(admin, member["messageId"])) == 1


BAD_GZIP = {
    "garbage": b"this is not gzip at all",
    "plain_json": b'{"batch": []}',
    "truncated": gzip.compress(b'{"batch": []}' * 50)[:20],
    "bad_crc": gzip.compress(b'{"batch": []}')[:-8] + b"\x00" * 8,
    "header_only": b"\x1f\x8b",
}


@pytest.mark.parametrize("endpoint", ["/v1/batch", "/v1/track"])
@pytest.mark.parametrize("body", BAD_GZIP.values(), ids=BAD_GZIP.keys())
def test_bad_gzip_is_400_invalid_gzip(writer: httpx.Client, endpoint: str, body: bytes) -> None:
    assert_error(writer.post(endpoint, content=body, headers=GZ), 400, "invalid_gzip")


def test_multi_member_gzip_body_is_inflated_whole(
    writer: httpx.Client, admin: httpx.Client
) -> None:
    """RFC 1952 allows a gzip file of several members; zcat and gzip.decompress read them all."""
    member = typed("track")
    data = dumps({"batch": [member]})
    half = len(data) // 2
    body = gzip.compress(data[:half]) + gzip.compress(data[half:])
    assert gzip.decompress(body) == data
    response = writer.post("/v1/batch", content=body, headers=GZ)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    assert len(stored(admin, member["messageId"])) == 1


TRAILING = {
    "garbage": b"garbage",
    "zero_padding": b"\x00" * 8,
    "half_a_magic": b"\x1f",
    "zlib_stream": zlib.compress(b"{}"),
}


@pytest.mark.parametrize("endpoint", ["/v1/batch", "/v1/track"])
@pytest.mark.parametrize("tail", TRAILING.values(), ids=TRAILING.keys())
def test_bytes_after_the_gzip_body_are_400_invalid_gzip(
    writer: httpx.Client, admin: httpx.Client, endpoint: str, tail: bytes
) -> None:
    payload = body_for(endpoint)
    response = writer.post(endpoint, content=gzip.compress(dumps(payload)) + tail, headers=GZ)
    assert_error(response, 400, "invalid_gzip")
    message_id = payload["batch"][0]["messageId"] if endpoint in BATCH else payload["messageId"]
    assert stored(admin, message_id) == []


def test_bytes_after_a_deflate_body_are_400_invalid_gzip(writer: httpx.Client) -> None:
    body = zlib.compress(dumps({"batch": [typed("track")]})) + b"trailing"
    response = writer.post("/v1/batch", content=body, headers={"Content-Encoding": "deflate"})
    assert_error(response, 400, "invalid_gzip")


def test_gzip_members_that_inflate_past_the_limit_together_are_413(writer: httpx.Client) -> None:
    """Each member alone is under the request limit; the body they make is not."""
    part = gzip.compress(b" " * (200 * KB), compresslevel=9)
    body = gzip.compress(b'{"batch": [') + part * 3 + gzip.compress(b"]}")
    assert len(body) < 10 * KB
    assert_error(writer.post("/v1/batch", content=body, headers=GZ), 413, "payload_too_large")


def test_gzip_of_invalid_json_is_400_invalid_json(writer: httpx.Client) -> None:
    response = writer.post("/v1/batch", content=gzip.compress(b'{"batch": ['), headers=GZ)
    assert_error(response, 400, "invalid_json")


@functools.cache
def gzip_bomb() -> bytes:
    """About 64 KB of gzip that inflates to 64 MB of valid JSON."""
    inflated = b'{"userId": "u", "event": "e", "batch": [], "properties": {"p": "'
    inflated += b"a" * (64 * 1024 * 1024) + b'"}}'
    return gzip.compress(inflated, compresslevel=9)


@pytest.mark.parametrize("endpoint", ["/v1/batch", "/v1/track"])
def test_gzip_bomb_is_413(writer: httpx.Client, endpoint: str) -> None:
    bomb = gzip_bomb()
    assert len(bomb) < 100 * KB
    assert_error(writer.post(endpoint, content=bomb, headers=GZ), 413, "payload_too_large")


@pytest.mark.parametrize("encoding", ["br", "x-unknown", "compress", "gzip, br"])
def test_unknown_content_encoding_is_415(writer: httpx.Client, encoding: str) -> None:
    headers = {**JSON, "Content-Encoding": encoding}
    response = writer.post("/v1/batch", content=b"\x00\x01garbage\xff", headers=headers)
    assert_error(response, 415, "unsupported_encoding")


def test_bad_deflate_is_400_invalid_gzip(writer: httpx.Client) -> None:
    headers = {**JSON, "Content-Encoding": "deflate"}
    response = writer.post("/v1/batch", content=b"\x00\x01garbage\xff", headers=headers)
    assert_error(response, 400, "invalid_gzip")


@pytest.mark.parametrize("encoding", ["deflate", "x-gzip", "GZIP", "identity"])
def test_supported_content_encodings_are_accepted(
    writer: httpx.Client, admin: httpx.Client, encoding: str
) -> None:
    member = typed("track")
    data = dumps({"batch": [member]})
    if encoding == "deflate":
        data = zlib.compress(data)
    elif encoding != "identity":
        data = gzip.compress(data)
    response = writer.post("/v1/batch", content=data, headers={"Content-Encoding": encoding})
    assert response.status_code == 200, response.text
    assert len(stored(admin, member["messageId"])) == 1


# --- authentication on the collection API ---------------------------------------------------

BAD_AUTH = {
    "missing": None,
    "basic_bad_base64": "Basic %%%not-base64%%%",
    "basic_word_only": "Basic",
    "basic_wrong_key": basic("wrong-write-key"),
    "basic_empty_user": basic(""),
    "basic_admin_key": basic(ADMIN_KEY),
    "basic_non_utf8": "Basic " + base64.b64encode(b"\xff\xfe:").decode(),
    "bearer_write_key": f"Bearer {WRITE_KEY}",
    "bearer_admin_key": f"Bearer {ADMIN_KEY}",
    "raw_write_key": WRITE_KEY,
    "other_scheme": f"Token {WRITE_KEY}",
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("auth", BAD_AUTH.values(), ids=BAD_AUTH.keys())
def test_bad_collection_auth_is_401(anon: httpx.Client, endpoint: str, auth: str | None) -> None:
    headers = {} if auth is None else {"Authorization": auth}
    response = anon.post(endpoint, json=body_for(endpoint), headers=headers)
    assert_error(response, 401, "unauthorized")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_write_key_in_body_is_accepted(
    anon: httpx.Client, admin: httpx.Client, endpoint: str
) -> None:
    body = body_for(endpoint)
    body["writeKey"] = WRITE_KEY
    response = anon.post(endpoint, json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    message_id = body["batch"][0]["messageId"] if endpoint in BATCH else body["messageId"]
    [record] = stored(admin, message_id)
    assert "writeKey" not in record["message"], "the write key must not be stored with the event"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "key", ["wrong-key", "", None, 12345], ids=["wrong", "empty", "null", "int"]
)
def test_bad_write_key_in_body_is_rejected(anon: httpx.Client, endpoint: str, key: Any) -> None:
    body = body_for(endpoint)
    body["writeKey"] = key
    assert_error(anon.post(endpoint, json=body), 401, "unauthorized")


BAD_BODY_WITH_KEY = {
    "batch_a_string": ({"batch": "x"}, "$.batch"),
    "batch_missing": ({}, "$.batch"),
    "context_a_number": ({"batch": [], "context": 5}, "$.context"),
}


@pytest.mark.parametrize("endpoint", BATCH)
@pytest.mark.parametrize(
    ("body", "field"), BAD_BODY_WITH_KEY.values(), ids=BAD_BODY_WITH_KEY.keys()
)
def test_valid_body_key_with_a_bad_body_gets_the_400(
    anon: httpx.Client, endpoint: str, body: dict[str, Any], field: str
) -> None:
    """The key in the body authenticates the sender, who then learns what is wrong."""
    response = anon.post(endpoint, json={"writeKey": WRITE_KEY, **body})
    assert_error(response, 400, "invalid_request", field=field)
    for key in ("not-a-key", 5, None):
        response = anon.post(endpoint, json={"writeKey": key, **body})
        assert_error(response, 401, "unauthorized")


@pytest.mark.parametrize("endpoint", ["/v1/batch", "/v1/track"])
@pytest.mark.parametrize(
    "key",
    [5, None, {"key": WRITE_KEY}, [WRITE_KEY], True, "not-a-key"],
    ids=["int", "null", "object", "list", "bool", "unknown"],
)
def test_body_write_key_of_any_kind_is_ignored_under_a_basic_header(
    anon: httpx.Client, admin: httpx.Client, endpoint: str, key: Any
) -> None:
    body = body_for(endpoint)
    body["writeKey"] = key
    response = anon.post(endpoint, json=body, headers={"Authorization": basic(WRITE_KEY)})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    message_id = body["batch"][0]["messageId"] if endpoint in BATCH else body["messageId"]
    [record] = stored(admin, message_id)
    assert "writeKey" not in record["message"]


@pytest.mark.parametrize("endpoint", ["/v1/batch", "/v1/track"])
@pytest.mark.parametrize(
    "header", [basic(""), basic("", "password"), "Basic"], ids=["empty", "password", "bare"]
)
def test_empty_basic_user_is_refused_even_with_a_body_key(
    anon: httpx.Client, admin: httpx.Client, endpoint: str, header: str
) -> None:
    """docs/api.md: a Basic header is the credential whenever it is present."""
    body = body_for(endpoint)
    body["writeKey"] = WRITE_KEY
    response = anon.post(endpoint, json=body, headers={"Authorization": header})
    assert_error(response, 401, "unauthorized")
    message_id = body["batch"][0]["messageId"] if endpoint in BATCH else body["messageId"]
    assert stored(admin, message_id) == []


def test_basic_header_wins_over_body_write_key(anon: httpx.Client, admin: httpx.Client) -> None:
    msg = message("track", writeKey="not-a-key")
    response = anon.post("/v1/track", json=msg, headers={"Authorization": basic(WRITE_KEY)})
    assert response.status_code == 200, response.text
    assert len(stored(admin, msg["messageId"])) == 1
    msg = message("track", writeKey=WRITE_KEY)
    response = anon.post("/v1/track", json=msg, headers={"Authorization": basic("not-a-key")})
    assert_error(response, 401, "unauthorized")
    assert stored(admin, msg["messageId"]) == []


def test_bearer_counts_as_no_header_so_body_key_is_used(
    anon: httpx.Client, admin: httpx.Client
) -> None:
    msg = message("track", writeKey=WRITE_KEY)
    response = anon.post("/v1/track", json=msg, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert response.status_code == 200, response.text
    assert len(stored(admin, msg["messageId"])) == 1


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_unparseable_body_without_key_is_401(anon: httpx.Client, endpoint: str) -> None:
    response = anon.post(endpoint, content=b'{"writeKey": "' + WRITE_KEY.encode(), headers=JSON)
    assert_error(response, 401, "unauthorized")


# --- methods and paths ----------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD"])
def test_wrong_method_on_collection_is_405(
    writer: httpx.Client, endpoint: str, method: str
) -> None:
    response = writer.request(method, endpoint, json=body_for(endpoint))
    if method == "HEAD":
        assert response.status_code == 405, response.status_code  # no body on HEAD
    else:
        assert_error(response, 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/stats"),
        ("DELETE", "/v1/admin/log"),
        ("PUT", "/v1/admin/quarantine"),
        ("GET", "/v1/admin/quarantine/1/replay"),
    ],
)
def test_wrong_method_on_admin_is_405(admin: httpx.Client, method: str, path: str) -> None:
    assert_error(admin.request(method, path), 405, "method_not_allowed")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/v1/stats"])
def test_head_is_answered_on_get_endpoints(admin: httpx.Client, path: str) -> None:
    response = admin.head(path)
    assert response.status_code == 200, response.status_code


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/nope"),
        ("POST", "/v2/batch"),
        ("POST", "/v1/batch/extra"),
        ("POST", "/v1/tracks"),
        ("GET", "/nope"),
        ("GET", "/v1"),
        ("GET", "/v1/admin/nope"),
        ("POST", "/v1/admin/quarantine/999999999/replay"),
    ],
)
def test_unknown_path_is_404(writer: httpx.Client, method: str, path: str) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"} if "/admin/" in path else {}
    assert_error(writer.request(method, path, json={}, headers=headers), 404, "not_found")


def test_unknown_profile_is_404(admin: httpx.Client) -> None:
    assert_error(admin.get("/v1/profiles/user_id:nobody-ever-sent-this"), 404, "not_found")
    assert_error(admin.get("/v1/profiles/user_id:nobody-ever-sent-this/events"), 404, "not_found")


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/profiles/no-colon", "ref"),
        ("/v1/profiles/:empty-type", "ref"),
        ("/v1/profiles/user_id:", "ref"),
        ("/v1/profiles/no-colon/events", "ref"),
        ("/v1/admin/log?after=abc", "after"),
        ("/v1/admin/log?after=-1", "after"),
        ("/v1/admin/log?limit=-1", "limit"),
        ("/v1/admin/log?limit=0", "limit"),
        ("/v1/admin/log?limit=5001", "limit"),
        ("/v1/admin/log?limit=abc", "limit"),
        ("/v1/admin/log?limit=1e3", "limit"),
        ("/v1/admin/log?after=99999999999999999999999999", "after"),
        ("/v1/admin/quarantine?after=x", "after"),
        ("/v1/admin/quarantine?limit=1001", "limit"),
    ],
)
def test_bad_admin_parameters_are_400_invalid_input(
    admin: httpx.Client, path: str, field: str
) -> None:
    assert_error(admin.get(path), 400, "invalid_input", field=field)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/profiles/user_id:42/events?limit=zero",
        "/v1/profiles/user_id:42/events?cursor=%00%ff",
        "/v1/profiles/user_id:%00",
        "/v1/profiles/user_id:a%2Fb",
        "/v1/profiles/" + "x" * 5000 + ":y",
        "/v1/admin/quarantine?source=%00%ff",
    ],
)
def test_odd_admin_parameters_are_a_clean_answer(admin: httpx.Client, path: str) -> None:
    assert_4xx_or_ok(admin.get(path))


def test_replay_of_non_numeric_id_is_400_invalid_input(admin: httpx.Client) -> None:
    assert_error(admin.post("/v1/admin/quarantine/abc/replay"), 400, "invalid_input")


# --- admin endpoints without the admin key --------------------------------------------------

ADMIN_ROUTES = [
    ("GET", "/v1/stats"),
    ("GET", "/v1/admin/log"),
    ("GET", "/v1/admin/quarantine"),
    ("POST", "/v1/admin/quarantine/1/replay"),
    ("GET", "/v1/profiles/user_id:user-1"),
    ("GET", "/v1/profiles/user_id:user-1/events"),
]
NOT_ADMIN = {
    "missing": None,
    "bearer_wrong": "Bearer not-the-admin-key",
    "bearer_word_only": "Bearer",
    "bearer_prefix": f"Bearer {ADMIN_KEY[:-1]}",
    "bearer_suffix": f"Bearer {ADMIN_KEY}x",
    "lowercase_scheme_wrong": "bearer nope",
    "basic_admin_key": basic(ADMIN_KEY),
    "raw_admin_key": ADMIN_KEY,
}


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
@pytest.mark.parametrize("auth", NOT_ADMIN.values(), ids=NOT_ADMIN.keys())
def test_admin_without_admin_key_is_401(
    anon: httpx.Client, method: str, path: str, auth: str | None
) -> None:
    headers = {} if auth is None else {"Authorization": auth}
    assert_error(anon.request(method, path, headers=headers), 401, "unauthorized")


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
@pytest.mark.parametrize("auth", [basic(WRITE_KEY), f"Bearer {WRITE_KEY}"], ids=["basic", "bearer"])
def test_admin_with_write_key_is_refused(
    anon: httpx.Client, method: str, path: str, auth: str
) -> None:
    # a valid key without the right: 401, or 403 (``Forbidden`` in segue.errors)
    response = anon.request(method, path, headers={"Authorization": auth})
    assert response.status_code in (401, 403), response.text
    assert_error(response, response.status_code)


# --- partial batches, quarantine and replay -------------------------------------------------


def test_partial_batch_keeps_good_and_quarantines_bad(
    writer: httpx.Client, admin: httpx.Client
) -> None:
    good_a = typed("track")
    bad_type = typed("track", userId=["not", "a", "string"])
    good_b = typed("identify", traits={"email": "a@example.com"})
    bad_event = typed("track", event="")
    bad_kind = {"type": "purchase", "messageId": mid(), "userId": "u"}
    batch = [good_a, bad_type, good_b, bad_event, bad_kind]
    response = writer.post("/v1/batch", json={"batch": batch})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    rejected = {r["index"]: r for r in body["rejected"]}
    assert sorted(rejected) == [1, 3, 4]
    for entry in rejected.values():
        assert isinstance(entry["code"], str)
        assert entry["code"]
        assert isinstance(entry["message"], str)
        assert entry["message"]
    assert same_path(rejected[1]["field"], "$.userId", 1), rejected[1]
    assert same_path(rejected[3]["field"], "$.event", 3), rejected[3]
    assert same_path(rejected[4]["field"], "$.type", 4), rejected[4]

    for good in (good_a, good_b):
        [record] = stored(admin, good["messageId"])
        assert record["source"] == "default"
        assert record["message"]["messageId"] == good["messageId"]
        assert record["message"]["type"] == good["type"]
        assert isinstance(record["offset"], int)
    for index, bad in ((1, bad_type), (3, bad_event), (4, bad_kind)):
        assert stored(admin, bad["messageId"]) == [], f"rejected message {index} was stored"
        [entry] = quarantined(admin, bad["messageId"])
        assert entry["source"] == "default"
        assert isinstance(entry["reason"], str)
        assert entry["reason"]
        assert (
            rejected[index]["message"] in entry["reason"]
            or rejected[index]["code"] in (entry["reason"])
        ), (entry, rejected[index])
        assert isinstance(entry["id"], int | str)


def test_replay_of_corrected_quarantined_message_stores_it(
    writer: httpx.Client, admin: httpx.Client
) -> None:
    bad = typed("track", userId={"nested": "oops"})
    keep_company = typed("page")
    response = writer.post("/v1/batch", json={"batch": [keep_company, bad]})
    assert response.status_code == 200, response.text
    [entry] = quarantined(admin, bad["messageId"])

    # replaying it unchanged fails again with the reason, and it stays quarantined
    again = admin.post(f"/v1/admin/quarantine/{entry['id']}/replay")
    error = assert_error(again, 400)
    assert error.get("field") == "$.userId", error
    assert len(quarantined(admin, bad["messageId"])) == 1

    # a corrected body that is still wrong is refused the same way
    still_bad = {**bad, "userId": None, "anonymousId": None}
    again = admin.post(f"/v1/admin/quarantine/{entry['id']}/replay", json={"message": still_bad})
    assert_error(again, 400)
    assert stored(admin, bad["messageId"]) == []

    fixed = {**bad, "userId": "user-fixed"}
    replay = admin.post(f"/v1/admin/quarantine/{entry['id']}/replay", json={"message": fixed})
    assert replay.status_code == 200, replay.text
    result = replay.json()
    assert result["replayed"] is True
    assert isinstance(result["offset"], int)
    [record] = stored(admin, bad["messageId"])
    assert record["offset"] == result["offset"]
    assert record["message"]["userId"] == "user-fixed"
    assert record["source"] == "default"
    assert quarantined(admin, bad["messageId"]) == [], "a replayed entry must leave the quarantine"

    # replaying the same entry twice is a clean 4xx, never a second copy
    twice = admin.post(f"/v1/admin/quarantine/{entry['id']}/replay", json={"message": fixed})
    assert 400 <= twice.status_code < 500, twice.text
    assert_error(twice, twice.status_code)
    assert len(stored(admin, bad["messageId"])) == 1


def test_replay_of_message_quarantined_from_single_endpoint(
    writer: httpx.Client, admin: httpx.Client
) -> None:
    """A /v1/track body has no ``type``; per docs/api.md the replayed message must carry it."""
    bad = message("track", timestamp="the day after tomorrow")
    assert_error(writer.post("/v1/track", json=bad), 400, "invalid_event", field="$.timestamp")
    [entry] = quarantined(admin, bad["messageId"])
    url = f"/v1/admin/quarantine/{entry['id']}/replay"
    fixed = {**bad, "timestamp": "2024-05-06T07:08:09Z"}
    assert_error(admin.post(url, json={"message": fixed}), 400, "invalid_event", field="$.type")
    assert len(quarantined(admin, bad["messageId"])) == 1
    replay = admin.post(url, json={"message": {**fixed, "type": "track"}})
    assert replay.status_code == 200, replay.text
    [record] = stored(admin, bad["messageId"])
    assert record["message"]["type"] == "track"
    assert record["message"]["event"] == "Clicked"


def test_replay_goes_through_the_consent_screen(
    writer: httpx.Client, admin: httpx.Client, anon: httpx.Client
) -> None:
    """A replayed message is screened as a collected one: without analytics consent it is
    stored unattached, without traits, with its IP address hashed."""
    user = f"refuser-{uuid.uuid4().hex[:8]}"
    consent = anon.put(
        "/v1/consent",
        json={"user": {"user_id": user}, "purposes": {"analytics": False}},
        headers={"Authorization": f"Bearer {PUBLISHABLE_KEY}"},
    )
    assert consent.status_code == 200, consent.text
    secret = {"traits": {"email": f"{user}@example.com"}, "context": {"ip": "198.51.100.23"}}
    collected = typed("identify", userId=user, **secret)
    bad = typed("identify", userId=user, timestamp="soon", **secret)
    response = writer.post("/v1/batch", json={"batch": [collected, bad]})
    assert response.json()["rejected"][0]["index"] == 1, response.text
    [entry] = quarantined(admin, bad["messageId"])
    replay = admin.post(
        f"/v1/admin/quarantine/{entry['id']}/replay",
        json={"message": {**bad, "timestamp": "2024-05-06T07:08:09Z"}},
    )
    assert replay.status_code == 200, replay.text
    [as_collected] = stored(admin, collected["messageId"])
    [as_replayed] = stored(admin, bad["messageId"])
    for record in (as_collected, as_replayed):
        message = record["message"]
        assert "traits" not in message, message
        assert message["context"]["ip"].startswith("hmac:"), message
        assert message["context"]["segue"]["attach"] is False, message
    result = replay.json()
    assert (result["replayed"], result["offset"], result["suppressed"]) == (
        True,
        as_replayed["offset"],
        False,
    )


def test_replay_naming_an_erased_person_is_dropped(
    server: SegueServer, writer: httpx.Client, admin: httpx.Client
) -> None:
    """As at collection: the message of an erased person never reaches the event log."""
    user = f"erased-{uuid.uuid4().hex[:8]}"
    assert writer.post("/v1/track", json=message("track", userId=user)).status_code == 200
    server.wait_processed()
    created = admin.post(
        "/v1/privacy/requests", json={"type": "erasure", "user": {"user_id": user}}
    )
    assert created.status_code == 202, created.text
    for _ in range(600):
        status = admin.get(f"/v1/privacy/requests/{created.json()['request_id']}").json()
        if status["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert status["status"] == "done", status

    bad = typed("track", userId={"nested": "oops"})  # names nobody: not erased with the person
    writer.post("/v1/batch", json={"batch": [typed("track"), bad]}).raise_for_status()
    [entry] = quarantined(admin, bad["messageId"])
    before = server.stats()["events_suppressed"]
    replay = admin.post(
        f"/v1/admin/quarantine/{entry['id']}/replay", json={"message": {**bad, "userId": user}}
    )
    assert replay.status_code == 200, replay.text
    assert replay.json() == {"replayed": True, "offset": None, "suppressed": True}
    assert stored(admin, bad["messageId"]) == []
    assert quarantined(admin, bad["messageId"]) == []
    # counted by the process that answered (on a cluster, /v1/stats may come from another)
    assert CLUSTER or server.stats()["events_suppressed"] == before + 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{", "invalid_json"),
        (b"\xff", "invalid_json"),
        (b"[]", "invalid_request"),
        (b'{"message": "text"}', "invalid_request"),
        (b'{"message": [1]}', "invalid_request"),
        (b'{"message": 5}', "invalid_request"),
    ],
    ids=["invalid_json", "not_utf8", "array", "message_string", "message_list", "message_number"],
)
def test_replay_with_malformed_body_is_400(
    writer: httpx.Client, admin: httpx.Client, body: bytes, code: str
) -> None:
    bad = typed("track", event=7)
    writer.post("/v1/batch", json={"batch": [typed("track"), bad]}).raise_for_status()
    [entry] = quarantined(admin, bad["messageId"])
    response = admin.post(f"/v1/admin/quarantine/{entry['id']}/replay", content=body, headers=JSON)
    assert_error(response, 400, code)
    assert len(quarantined(admin, bad["messageId"])) == 1


def test_write_key_is_not_kept_in_the_quarantine(anon: httpx.Client, admin: httpx.Client) -> None:
    bad = message("track", event=["list"], writeKey=WRITE_KEY)
    assert_error(anon.post("/v1/track", json=bad), 400, "invalid_event", field="$.event")
    [entry] = quarantined(admin, bad["messageId"])
    assert WRITE_KEY not in json.dumps(entry), "the write key is a secret; do not persist it"


def test_single_rejection_is_quarantined_too(writer: httpx.Client, admin: httpx.Client) -> None:
    bad = message("identify", traits="not an object")
    assert_error(writer.post("/v1/identify", json=bad), 400, "invalid_event", field="$.traits")
    [entry] = quarantined(admin, bad["messageId"])
    assert entry["field"] == "$.traits"


# --- lenient forms that must be accepted ----------------------------------------------------

NUMERIC_ID = object()

ACCEPTED: dict[str, dict[str, Any]] = {
    "user_id_null_anonymous_set": {"userId": None, "anonymousId": "anon-1"},
    "anonymous_null_user_set": {"userId": "user-1", "anonymousId": None},
    "anonymous_only": {"userId": DROP, "anonymousId": "anon-2"},
    "numeric_user_id": {"userId": 42},
    "numeric_anonymous_id": {"userId": DROP, "anonymousId": 7},
    "float_user_id": {"userId": 42.0},
    "zero_user_id": {"userId": 0},
    "unicode_user_id": {"userId": "ユーザー🙂"},
    "ts_seconds": {"timestamp": "2024-01-02T03:04:05Z"},
    "ts_millis": {"timestamp": "2024-01-02T03:04:05.123Z"},
    "ts_micros": {"timestamp": "2024-01-02T03:04:05.123456Z"},
    "ts_nanos": {"timestamp": "2024-01-02T03:04:05.123456789Z"},
    "ts_plus_0530": {"timestamp": "2024-01-02T08:34:05+05:30"},
    "ts_millis_plus_0530": {"timestamp": "2024-01-02T08:34:05.123+05:30"},
    "ts_nanos_minus_0800": {"timestamp": "2024-01-01T19:04:05.123456789-08:00"},
    "ts_zero_offset": {"timestamp": "2024-01-02T03:04:05+00:00"},
    "original_and_sent_at": {
        "timestamp": DROP,
        "originalTimestamp": "2024-01-02T03:04:05.123456+05:30",
        "sentAt": "2024-01-02T03:04:06.999999999Z",
    },
    "null_timestamp": {"timestamp": None},
    "empty_properties": {"properties": {}},
    "no_message_id": {"messageId": DROP},
    "numeric_message_id": {"messageId": NUMERIC_ID},  # a fresh number for each test
    "unknown_top_level_field": {"somethingNew": {"a": [1, 2]}},
    "deep_property": {"properties": {"a": {"b": {"c": {"d": {"e": [[[[1]]]]}}}}}},
}


@pytest.mark.parametrize("over", ACCEPTED.values(), ids=ACCEPTED.keys())
@pytest.mark.parametrize("endpoint", ["/v1/track", "/v1/batch"])
def test_lenient_forms_are_accepted_and_stored(
    writer: httpx.Client, admin: httpx.Client, endpoint: str, over: dict[str, Any]
) -> None:
    if over.get("messageId") is NUMERIC_ID:
        over = {**over, "messageId": uuid.uuid4().int % 10**15}
    msg = message("track", **over)
    body: dict[str, Any] = {"batch": [{"type": "track", **msg}]} if endpoint in BATCH else msg
    response = writer.post(endpoint, json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    if "messageId" in msg:
        [record] = stored(admin, str(msg["messageId"]))
        assert record["message"]["type"] == "track"


# Valid JSON whose acceptance the contract leaves open: 200 or a clean 4xx, and when stored,
# the processor must digest it (checked at the end by ``wait_processed``).
EDGY: dict[str, dict[str, Any]] = {
    "big_int_user_id": {"userId": 123456789012345678901234567890},
    "big_int_property": {"properties": {"n": 123456789012345678901234567890}},
    "negative_big_int_trait": {"properties": {"n": -(10**40)}},
    "huge_float_property": {"properties": {"x": 1.7976931348623157e308}},
    "tiny_float_user_id": {"userId": 5e-324},
    "negative_user_id": {"userId": -1},
    "nul_in_strings": {"event": "a\u0000b", "properties": {"k\u0000": "v\u0000"}},
    "nul_user_id": {"userId": "\u0000"},
    "null_context": {"context": None},
    "null_properties": {"properties": None},
    "null_integrations": {"integrations": None},
    "long_user_id": {"userId": "u" * 20000},
    "long_event": {"event": "e" * 20000},
    "control_chars": {"event": "\t\n\r\x1b[31m", "userId": "\u2028\u2029"},
    "ts_naive": {"timestamp": "2024-01-02T03:04:05"},
    "ts_date_only": {"timestamp": "2024-01-02"},
    "ts_leap_second": {"timestamp": "2016-12-31T23:59:60Z"},
    "ts_offset_overflow": {"timestamp": "2024-01-02T03:04:05+24:00"},
    "ts_lowercase": {"timestamp": "2024-01-02t03:04:05z"},
    "message_id_long": {"messageId": "m" * 5000},
    "message_id_float": {"messageId": 1.5e300},
    "message_id_true": {"messageId": True},
    "many_properties": {"properties": {f"p{i}": i for i in range(2000)}},
}


@pytest.mark.parametrize("over", EDGY.values(), ids=EDGY.keys())
@pytest.mark.parametrize("endpoint", ["/v1/track", "/v1/batch"])
def test_edgy_values_get_a_clean_answer(
    writer: httpx.Client, admin: httpx.Client, endpoint: str, over: dict[str, Any]
) -> None:
    msg = message("track", **over)
    body: dict[str, Any] = {"batch": [{"type": "track", **msg}]} if endpoint in BATCH else msg
    response = writer.post(endpoint, json=body)
    assert_4xx_or_ok(response)
    user_id = str(msg["userId"])
    if response.status_code == 200 and len(user_id) < 1000:
        # reading the profile back must not blow up either (404 while unprocessed is fine)
        assert_4xx_or_ok(admin.get(f"/v1/profiles/user_id:{quote(user_id, safe='')}"))


# Values that pass validation but may trip the processor or the profile read model. Each gets
# its own server: a message that wedges the processor would otherwise hide every later one.
PROCESSOR_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "ts_far_future": ("track", {"timestamp": "9999-12-31T23:59:59.999999Z"}),
    "ts_year_one": ("track", {"timestamp": "0001-01-01T00:00:00Z"}),
    "skew_below_year_one": (
        "track",
        {"originalTimestamp": "1900-01-01T00:00:00Z", "sentAt": "9999-01-01T00:00:00Z"},
    ),
    "skew_past_year_9999": (
        "track",
        {"originalTimestamp": "9999-01-01T00:00:00Z", "sentAt": "0001-01-01T00:00:00Z"},
    ),
    "ts_naive": ("track", {"timestamp": "2024-01-02T03:04:05"}),
    "big_int_trait": ("identify", {"traits": {"n": 10**30, "m": -(10**30)}}),
    "nested_traits": ("identify", {"traits": {"a": {"b": [1, {"c": None}]}, "e": []}}),
    "nul_trait": ("identify", {"traits": {"k\u0000": "v\u0000"}}),
    "float_ids": ("identify", {"userId": 4.5, "anonymousId": 1e300}),
    # the crypto envelope's member name inside the sender's own object: it stopped every
    # reader of the log when nothing else in the message was sealed
    "member_named_sealed": ("track", {"properties": {"a": 1, "_sealed": {"k": "z"}}}),
    "envelope_shaped_member": (
        "track",
        {"properties": {"list": [{"_sealed": {"k": "z", "n": "AAAA", "c": "AAAA"}}]}},
    ),
    "member_named_sealed_with_context": (
        "track",
        {"context": {"ip": "10.1.2.3"}, "properties": {"a": 1, "_sealed": 3}},
    ),
}


def crash_lines(server: SegueServer) -> str:
    """The frames and exception lines of the server's logged tracebacks, without locals."""
    wanted = re.compile(r"^\S.*(Error|Exception|error|failed)|\.py:\d+ in ")
    lines = [line.strip(" │") for line in server.log().splitlines() if wanted.search(line)]
    return "\n".join(dict.fromkeys(lines))


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[SegueServer]:
    """A server of its own for one test."""
    srv = SegueServer(tmp_path / "data").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize(("kind", "over"), PROCESSOR_CASES.values(), ids=PROCESSOR_CASES.keys())
def test_processor_digests_accepted_extremes(
    fresh: SegueServer, kind: str, over: dict[str, Any]
) -> None:
    msg = message(kind, **over)
    with fresh.writer() as client:
        response = client.post(f"/v1/{kind}", json=msg)
    assert_4xx_or_ok(response)
    if response.status_code != 200:
        return  # refused up front: fine
    try:
        fresh.wait_processed(at_least=1, timeout=5)
    except TimeoutError as exc:
        raise AssertionError(
            f"accepted {msg} but the processor never got past it: {exc}\n{crash_lines(fresh)}"
        ) from None
    user_id = quote(str(msg["userId"]), safe="")
    with fresh.admin() as admin:
        profile = admin.get(f"/v1/profiles/user_id:{user_id}")
        assert profile.status_code == 200, (profile.text, crash_lines(fresh))
        events = admin.get(f"/v1/profiles/user_id:{user_id}/events")
        assert events.status_code == 200, (events.text, crash_lines(fresh))
        assert [e["messageId"] for e in events.json()["events"]] == [msg["messageId"]]


# --- batch-level context/integrations and duplicates ----------------------------------------


def test_batch_context_and_integrations_are_merged_into_each_message(
    writer: httpx.Client, admin: httpx.Client
) -> None:
    plain = typed("track")
    own = typed("identify", context={"ip": "10.0.0.1", "locale": "fr-FR"}, integrations={"A": True})
    body = {
        "batch": [plain, own],
        "context": {"library": {"name": "analytics-test", "version": "1.0"}, "locale": "en-US"},
        "integrations": {"All": False, "Mixpanel": True},
    }
    assert writer.post("/v1/batch", json=body).status_code == 200
    [plain_record] = stored(admin, plain["messageId"])
    [own_record] = stored(admin, own["messageId"])
    assert plain_record["message"]["context"]["library"] == body["context"]["library"]
    assert plain_record["message"]["context"]["locale"] == "en-US"
    assert plain_record["message"]["integrations"] == body["integrations"]
    # merged, with the message's own keys winning over the batch's
    assert own_record["message"]["context"]["library"] == body["context"]["library"]
    assert own_record["message"]["context"]["ip"] == "10.0.0.1"
    assert own_record["message"]["context"]["locale"] == "fr-FR"
    assert own_record["message"]["integrations"] == {"All": False, "Mixpanel": True, "A": True}


def test_duplicate_message_id_in_one_batch_is_stored_once(
    writer: httpx.Client, admin: httpx.Client
) -> None:
    first = typed("track", event="First")
    second = {**first, "event": "Second"}
    response = writer.post("/v1/batch", json={"batch": [first, second, first]})
    assert response.status_code == 200, response.text
    assert not response.json().get("rejected")
    records = stored(admin, first["messageId"])
    assert len(records) == 1, records
    assert records[0]["message"]["event"] == "First"


def test_duplicate_message_id_across_requests_is_stored_once(
    writer: httpx.Client, admin: httpx.Client
) -> None:
    msg = message("track")
    for _ in range(3):
        assert writer.post("/v1/track", json=msg).status_code == 200
    assert writer.post("/v1/batch", json={"batch": [{"type": "track", **msg}]}).status_code == 200
    assert len(stored(admin, msg["messageId"])) == 1


# --- hostile but well-formed inputs: any clean answer, never a 5xx --------------------------

DEEP = 100_000
HOSTILE: dict[str, bytes] = {
    "deep_arrays": b"[" * DEEP + b"]" * DEEP,
    "deep_objects_in_property": (
        b'{"userId": "u", "event": "e", "batch": [], "properties": '
        + b'{"a":' * 5000
        + b"1"
        + b"}" * 5000
        + b"}"
    ),
    "deep_in_batch_member": (
        b'{"batch": [{"type": "track", "userId": "u", "event": "e", "properties": '
        + b'{"a":' * 5000
        + b"1"
        + b"}" * 5000
        + b"}]}"
    ),
    "huge_number": b'{"userId": 1' + b"0" * 5000 + b', "event": "e", "batch": []}',
    "huge_exponent": b'{"userId": "u", "event": "e", "properties": {"x": 1e999999}}',
    "lone_surrogate": b'{"userId": "\\ud800", "event": "e", "batch": [{"userId": "\\udfff"}]}',
    "duplicate_keys": b'{"userId": "u", "userId": ["x"], "event": "e", "batch": [], "batch": 1}',
    "many_members": dumps({"batch": [{}] * 2000}),
    "empty_batch": b'{"batch": []}',
    "bom": b'\xef\xbb\xbf{"userId": "u", "event": "e", "batch": []}',
    "nul_bytes": b'{"userId": "u\x00", "event": "e"}',
    "whitespace_only": b" \n\t ",
}


@pytest.mark.parametrize("endpoint", ["/v1/batch", "/v1/track", "/v1/identify"])
@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_bodies_get_a_clean_answer(
    writer: httpx.Client, endpoint: str, body: bytes
) -> None:
    assert_4xx_or_ok(writer.post(endpoint, content=body, headers=JSON))


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "application/json; charset=latin-1"},
        {"Content-Type": "multipart/form-data; boundary=x"},
        {},
    ],
    ids=["text", "form", "latin1", "multipart", "none"],
)
def test_content_type_is_ignored(writer: httpx.Client, headers: dict[str, str]) -> None:
    response = writer.post("/v1/batch", content=dumps({"batch": [typed("track")]}), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}


# --- after all of it ------------------------------------------------------------------------


def test_zz_server_survived_everything(server: SegueServer, admin: httpx.Client) -> None:
    assert server.proc is not None
    assert server.proc.poll() is None, f"segue exited:\n{server.log()[-5000:]}"
    assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    assert httpx.get(server.url + "/readyz", timeout=10).status_code == 200
    # the processor swallowed every accepted message without wedging
    try:
        server.wait_processed(timeout=20)
    except TimeoutError as exc:
        raise AssertionError(f"the processor is stuck: {exc}\n{crash_lines(server)}") from None
    assert "Traceback" not in server.log(), crash_lines(server)
