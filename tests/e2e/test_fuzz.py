"""Fuzzing a live ``segue serve``: whatever arrives, the answer is 200 or a clean 4xx.

Two generators:

* Hypothesis builds arbitrary JSON-ish values and near-valid Segment messages with random
  field mutations and POSTs them to ``/v1/batch`` and ``/v1/track`` (sometimes gzipped);
* Schemathesis reads the server's own ``/openapi.json`` and generates valid and invalid
  requests for every operation, authenticated with the write key (collection) or the admin
  key (reads and operations).

Neither may ever see a 5xx or a dropped connection, and afterwards the server is alive and its
processor has digested everything it accepted.
"""

from __future__ import annotations

import collections
import gzip
import json
import re
from collections.abc import Iterator
from datetime import UTC, timedelta, timezone
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from schemathesis.engine import Status, events

from tests.e2e.server import ADMIN_KEY, WRITE_KEY, SegueServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KINDS = ("track", "identify", "page", "screen", "group", "alias")
FIELDS = (
    "type",
    "messageId",
    "userId",
    "anonymousId",
    "event",
    "name",
    "category",
    "properties",
    "traits",
    "context",
    "integrations",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "previousId",
    "groupId",
    "writeKey",
)


# --- strategies ---------------------------------------------------------------------------

LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and ±Infinity make the document invalid JSON: a 400, not a 500
    | st.text(max_size=20)
)
#: member names: any, and the ones segue itself gives meaning to inside a message (the crypto
#: envelope's ``_sealed`` once stopped every reader of the log from inside ``properties``)
KEYS = st.text(max_size=8) | st.sampled_from(
    ["_sealed", "segue", "attach", "traits", "context", "email", "properties", "writeKey"]
)
JSONISH = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)
TRICKY = st.sampled_from(
    [
        "",
        " ",
        "\u0000",
        "track",
        "identify",
        "alias",
        "Track",
        "2024-01-02T03:04:05Z",
        "2024-01-02T03:04:05.123456789+05:30",
        "2024-02-30T00:00:00Z",
        "2016-12-31T23:59:60Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "1970-01-01T00:00:00-23:59",
        "x" * 300,
        "user_id:42",
        "😀" * 50,
        WRITE_KEY,
        2**63,
        -(2**63) - 1,
        2**64,
        1e308,
        -0.0,
        [],
        {},
    ]
)
VALUES = TRICKY | JSONISH | st.dictionaries(KEYS, TRICKY | JSONISH, max_size=3)
OFFSETS = st.sampled_from(
    [
        None,
        UTC,
        timezone(timedelta(hours=5, minutes=30)),
        timezone(-timedelta(hours=23, minutes=59)),
    ]
)
TIMES = st.builds(
    lambda moment, sep, digits: moment.isoformat(sep=sep, timespec=digits),
    st.datetimes(timezones=OFFSETS),
    st.sampled_from(["T", "t", " "]),
    st.sampled_from(["seconds", "milliseconds", "microseconds"]),
)
IDS = st.text(max_size=30) | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
OBJECTS = st.dictionaries(KEYS, VALUES, max_size=4)
TEXTS = st.text(max_size=40)
# per field, a value of the right shape (still odd: any text, any int, any date, any object)
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "type": st.sampled_from(KINDS),
    "messageId": st.text(min_size=1, max_size=40) | st.integers(),
    "userId": IDS,
    "anonymousId": IDS,
    "previousId": IDS,
    "groupId": IDS,
    "event": TEXTS,
    "name": TEXTS,
    "category": TEXTS,
    "properties": OBJECTS,
    "traits": OBJECTS,
    "context": OBJECTS,
    "integrations": OBJECTS,
    "timestamp": TIMES,
    "originalTimestamp": TIMES,
    "sentAt": TIMES,
    "writeKey": st.just(WRITE_KEY),
}


def base_message(kind: str, message_id: str) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": kind, "messageId": message_id, "userId": "fuzz-user"}
    extra = {
        "track": {"event": "Fuzzed", "properties": {"n": 1}},
        "identify": {"traits": {"plan": "pro"}},
        "page": {"name": "Home", "properties": {}},
        "screen": {"name": "Main"},
        "group": {"groupId": "g-1", "traits": {}},
        "alias": {"previousId": "anon-1"},
    }[kind]
    return {**msg, **extra}


@st.composite
def near_valid(draw: st.DrawFn, kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    """A valid Segment message with up to three random drops, overwrites or additions."""
    kind = draw(st.sampled_from(kinds))
    msg = base_message(kind, str(draw(st.uuids())))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(("drop", "set", "set_plausible", "add")))
        if action == "drop" and msg:
            del msg[draw(st.sampled_from(sorted(msg)))]
        elif action == "set":
            msg[draw(st.sampled_from(FIELDS))] = draw(VALUES)
        elif action == "set_plausible":
            field = draw(st.sampled_from(FIELDS))
            msg[field] = draw(PLAUSIBLE[field])
        else:
            msg[draw(st.text(max_size=10))] = draw(JSONISH)
    return msg


BATCH_BODIES = st.one_of(
    JSONISH,
    st.fixed_dictionaries(
        {"batch": st.lists(st.one_of(near_valid(), near_valid(), JSONISH), max_size=5)},
        optional={"context": VALUES, "integrations": VALUES, "sentAt": VALUES, "writeKey": VALUES},
    ),
    st.fixed_dictionaries({"batch": VALUES}),
)
TRACK_BODIES = st.one_of(JSONISH, *(near_valid(("track",)) for _ in range(3)))


@st.composite
def encoded(draw: st.DrawFn, bodies: st.SearchStrategy[Any]) -> tuple[bytes, dict[str, str]]:
    """A body as bytes with its headers: JSON (now and then with one byte overwritten),
    gzipped JSON, or raw bytes."""
    headers = {"Content-Type": "application/json"}
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(max_size=200)), headers
    data = json.dumps(draw(bodies)).encode()
    if data and draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    if draw(st.booleans()):
        headers["Content-Encoding"] = "gzip"
        data = gzip.compress(data)
    return data, headers


# --- fixtures and checks ------------------------------------------------------------------


@pytest.fixture(scope="module")
def writer(server: SegueServer) -> Iterator[httpx.Client]:
    with server.writer() as client:
        yield client


def assert_clean(response: httpx.Response) -> None:
    """200 with ``success``, or a 4xx whose JSON body carries a string ``code``."""
    status = response.status_code
    event(f"status {status}")
    assert status == 200 or 400 <= status < 500, f"{status}: {response.text[:500]}"
    body = response.json()
    assert isinstance(body, dict), body
    if status == 200:
        assert body.get("success") is True, body
        if body.get("rejected"):
            event("200 with rejected messages")
    else:
        assert isinstance(body.get("code"), str), body
        assert isinstance(body.get("message"), str), body


FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- (a) hypothesis: random values and mutated messages -----------------------------------


@FUZZ
@given(sent=encoded(BATCH_BODIES))
def test_batch_never_fails_on_garbage(
    writer: httpx.Client, sent: tuple[bytes, dict[str, str]]
) -> None:
    body, headers = sent
    note(f"POST /v1/batch {headers} {body!r}")
    assert_clean(writer.post("/v1/batch", content=body, headers=headers))


@FUZZ
@given(sent=encoded(TRACK_BODIES))
def test_track_never_fails_on_garbage(
    writer: httpx.Client, sent: tuple[bytes, dict[str, str]]
) -> None:
    body, headers = sent
    note(f"POST /v1/track {headers} {body!r}")
    assert_clean(writer.post("/v1/track", content=body, headers=headers))


# --- (b) schemathesis: every operation of the server's own OpenAPI document ---------------
#
# ``schemathesis.pytest.from_fixture`` (the 4.x way to test a server a fixture starts) does not
# work with pytest 9.2: it sets ``request.node._nodeid``, which pytest 9.2 no longer has. So the
# test drives schemathesis's own engine (the one behind ``schemathesis run``): examples,
# coverage and fuzzing phases over every operation, with the server-error check.


def openapi_config(server: SegueServer) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": 20240102,
            "base-url": server.url,
            "request-timeout": 30,
            "workers": 1,
            "generation": {"mode": "all", "max-examples": 12, "database": "none"},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
            "checks": {"enabled": False, "not_a_server_error": {"enabled": True}},
            "auth": {
                "openapi": {
                    "writeKey": {"username": WRITE_KEY, "password": ""},
                    "bearer": {"bearer": ADMIN_KEY},
                }
            },
        }
    )


def test_openapi_operations_never_fail(server: SegueServer) -> None:
    schema = schemathesis.openapi.from_url(
        f"{server.url}/openapi.json", config=openapi_config(server)
    )
    problems: list[str] = []
    statuses: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for happened in schemathesis.engine.from_schema(schema).execute():
        if isinstance(happened, events.FatalError | events.NonFatalError):
            problems.append(f"schemathesis error: {happened!r} {getattr(happened, 'value', '')!r}")
        if not isinstance(happened, events.ScenarioFinished):
            continue
        recorder = happened.recorder
        for case_id, interaction in recorder.interactions.items():
            case = recorder.cases[case_id].value
            where = f"{interaction.request.method} {interaction.request.uri}"
            response = interaction.response
            if response is None:
                problems.append(f"no response (dropped connection?): {case.as_curl_command()}")
                continue
            statuses[recorder.label][response.status_code] += 1
            problem = unclean(response.status_code, response.content)
            if problem:
                problems.append(f"{where}: {problem}\n  {case.as_curl_command()}")
        for checks in recorder.checks.values():
            problems.extend(
                f"{recorder.label}: check {check.name} failed: {check.failure_info}"
                for check in checks
                if check.status is not Status.SUCCESS
            )
    assert not problems, "\n".join(dict.fromkeys(problems))
    assert len(statuses) >= 15, f"too few operations exercised: {sorted(statuses)}"
    only_401 = [op for op, codes in statuses.items() if set(codes) <= {401}]
    assert not only_401, f"never got past auth (vacuous): {only_401}"


def unclean(status: int, content: bytes) -> str | None:
    """Why a response breaks the error contract, or None: no 5xx, 4xx bodies carry a code."""
    if status >= 500:
        return f"server error {status}: {content[:300]!r}"
    if 400 <= status < 500:
        try:
            body = json.loads(content)
        except ValueError:
            return f"{status} without a JSON body: {content[:300]!r}"
        if not isinstance(body, dict) or not isinstance(body.get("code"), str):
            return f"{status} body has no string code: {content[:300]!r}"
        if not isinstance(body.get("message"), str):
            return f"{status} body has no string message: {content[:300]!r}"
    return None


# --- afterwards ---------------------------------------------------------------------------


def test_zz_server_survived_the_fuzzing(server: SegueServer) -> None:
    assert server.proc is not None
    assert server.proc.poll() is None, f"segue exited:\n{server.log()[-5000:]}"
    assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    try:
        server.wait_processed(timeout=20)
    except TimeoutError as exc:
        wanted = re.compile(r"^\S.*(Error|Exception|error|failed)|\.py:\d+ in ")
        lines = [line.strip(" │") for line in server.log().splitlines() if wanted.search(line)]
        raise AssertionError(
            f"the processor is stuck on something it accepted: {exc}\n"
            + "\n".join(dict.fromkeys(lines))
        ) from None
    # every accepted near-valid message went to this one profile; it must still be readable
    with server.admin() as admin:
        for path in ("/v1/profiles/user_id:fuzz-user", "/v1/profiles/user_id:fuzz-user/events"):
            response = admin.get(path)
            assert response.status_code in (200, 404), (path, response.text[:300])
