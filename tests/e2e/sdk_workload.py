"""A deterministic, realistic mix of Segment-spec calls for driving the real SDKs.

Both SDKs (Segment's and RudderStack's) share the same call signatures, so one workload drives
either. Every call knows which profile it must end up in (``owner``), which lets a test
compare each profile's timeline with the exact set of messageIds the SDK sent for it.

Shape of the workload:
* users, each with their own anonymous id; half of them browse anonymously before their
  first identify (the classic anonymous → known merge), the others identify first;
* after that, a shuffled mix of track (incl. e-commerce ``Order Completed`` with
  ``products[]``), page, screen, identify, group and alias, sent with userId only,
  anonymousId only or both;
* anonymous visitors that never identify;
* a few numeric user ids (the SDKs stringify them).

Timestamps are explicit and strictly increasing, so "last write wins" is the same whether
segue orders trait updates by log offset or by event time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e import audit
from tests.e2e.server import SegueServer

PRODUCTS = [
    {
        "product_id": "sku-001",
        "sku": "TEE-M-BLK",
        "name": "T-shirt noir",
        "price": 19.99,
        "category": "Apparel",
        "attributes": {"size": "M", "colors": ["black"]},
    },
    {
        "product_id": "sku-002",
        "sku": "MUG-CRM",
        "name": "Crème brûlée mug 🍮",
        "price": 12.5,
        "category": "Kitchen",
        "attributes": {"capacity_ml": 350, "dishwasher_safe": True},
    },
    {
        "product_id": "sku-003",
        "sku": "BK-PY-3",
        "name": "Fluent Python",
        "price": 49.0,
        "category": "Books",
        "attributes": {"isbn": "978-1492056355", "tags": ["python", "3.11"]},
    },
    {
        "product_id": "sku-004",
        "sku": "HD-ZRH",
        "name": "Zürich hoodie",
        "price": 64.9,
        "category": "Apparel",
        "attributes": {"size": "XL", "colors": ["grey", "blue"]},
    },
]
TRACK_EVENTS = [
    "Product Viewed",
    "Product Added",
    "Signed Up",
    "Button Clicked",
    "Video Played",
    "Checkout Started",
]
PLANS = ["free", "pro", "team", "enterprise"]


@dataclass
class Call:
    """One SDK call: ``getattr(client, method)(**kwargs)``; lands in ``owner``'s timeline."""

    method: str
    kwargs: dict[str, Any]
    owner: str


@dataclass
class Workload:
    calls: list[Call]
    users: list[str]
    anon_of: dict[str, str]
    visitors: list[str]
    owners: list[str] = field(default_factory=list)


def _properties(rng: random.Random, event: str, n: int) -> dict[str, Any]:
    if event == "Order Completed":
        lines = rng.sample(PRODUCTS, rng.randint(1, 3))
        products = [
            {**p, "quantity": rng.randint(1, 4), "position": i + 1} for i, p in enumerate(lines)
        ]
        total = round(sum(p["price"] * p["quantity"] for p in products), 2)
        return {
            "order_id": f"ord-{n}",
            "checkout_id": f"chk-{n}",
            "total": total,
            "revenue": round(total / 1.2, 2),
            "tax": round(total - total / 1.2, 2),
            "shipping": {
                "method": rng.choice(["ground", "express"]),
                "address": {"city": "Zürich", "zip": "8001", "country": "CH"},
            },
            "discount": 0,
            "coupon": None,
            "currency": "CHF",
            "products": products,
        }
    return {
        "n": n,
        "label": f"{event} #{n} — ünïcödé ✓",
        "value": rng.random(),
        "flag": rng.random() < 0.5,
        "nothing": None,
        "list": [n, str(n), {"k": n}],
        "nested": {"level1": {"level2": {"level3": [1, 2.5, "three", False]}}},
        "a.dotted.key": n,
        "$dollar": "kept",
    }


def build_workload(
    total: int, *, n_users: int = 40, n_visitors: int = 15, seed: int = 7, prefix: str = "u"
) -> Workload:
    """Return ``total`` calls over ``n_users`` users and ``n_visitors`` anonymous visitors."""
    rng = random.Random(seed)
    tag = f"{prefix}{rng.randrange(16**6):06x}"
    users: list[str | int] = []
    for i in range(n_users):
        # every eighth user has a numeric id: the SDKs send it as a string
        users.append(900_000_000 + rng.randrange(10**8) if i % 8 == 7 else f"{tag}-user-{i}")
    anon_of = {str(u): f"{tag}-anon-{i}" for i, u in enumerate(users)}
    visitors = [f"{tag}-visitor-{i}" for i in range(n_visitors)]
    start = datetime.now(UTC) - timedelta(hours=2)

    head: list[Call] = []
    # anonymous browsing before the first identify, for half of the users
    for i, u in enumerate(users):
        if i % 2 == 0:
            anon = anon_of[str(u)]
            head.append(
                Call(
                    "page",
                    {
                        "anonymous_id": anon,
                        "name": "Landing",
                        "category": "Marketing",
                        "properties": {"path": "/", "utm": {"source": "ads"}},
                    },
                    f"user_id:{u}",
                )
            )
            head.append(
                Call(
                    "track",
                    {
                        "anonymous_id": anon,
                        "event": "Product Viewed",
                        "properties": _properties(rng, "Product Viewed", i),
                    },
                    f"user_id:{u}",
                )
            )
    # the identify that links user id and anonymous id
    for i, u in enumerate(users):
        head.append(
            Call(
                "identify",
                {
                    "user_id": u,
                    "anonymous_id": anon_of[str(u)],
                    "traits": {
                        "email": f"user{i}@example.com",
                        "plan": "free",
                        "name": f"User {i}",
                        "address": {"city": "Zürich"},
                    },
                },
                f"user_id:{u}",
            )
        )
    for v in visitors:
        head.append(
            Call(
                "identify", {"anonymous_id": v, "traits": {"newsletter": True}}, f"anonymous_id:{v}"
            )
        )

    rest: list[Call] = []
    for n in range(max(0, total - len(head))):
        if rng.random() < 0.12:
            v = rng.choice(visitors)
            method = rng.choice(["page", "track", "screen"])
            kwargs: dict[str, Any] = {"anonymous_id": v}
            if method == "track":
                kwargs.update(event=rng.choice(TRACK_EVENTS), properties=_properties(rng, "x", n))
            else:
                kwargs.update(name=f"Screen {n % 7}", properties={"n": n})
            rest.append(Call(method, kwargs, f"anonymous_id:{v}"))
            continue
        u = rng.choice(users)
        anon = anon_of[str(u)]
        mode = rng.random()
        ids: dict[str, Any]
        if mode < 0.5:
            ids = {"user_id": u}
        elif mode < 0.8:
            ids = {"user_id": u, "anonymous_id": anon}
        else:
            ids = {"anonymous_id": anon}
        kind = rng.random()
        if kind < 0.50:
            event = "Order Completed" if rng.random() < 0.3 else rng.choice(TRACK_EVENTS)
            call = Call(
                "track",
                {
                    **ids,
                    "event": event,
                    "properties": _properties(rng, event, n),
                    "context": {
                        "ip": "203.0.113.7",
                        "locale": "de-CH",
                        "campaign": {"name": "spring", "source": "news"},
                    },
                },
                f"user_id:{u}",
            )
        elif kind < 0.65:
            call = Call(
                "page",
                {
                    **ids,
                    "name": f"Page {n % 11}",
                    "category": "Docs",
                    "properties": {"path": f"/docs/{n}", "referrer": None},
                },
                f"user_id:{u}",
            )
        elif kind < 0.75:
            call = Call(
                "screen",
                {
                    **ids,
                    "name": "Home",
                    "category": "App",
                    "properties": {"orientation": "portrait", "n": n},
                },
                f"user_id:{u}",
            )
        elif kind < 0.88:
            call = Call(
                "identify",
                {
                    **ids,
                    "traits": {
                        "plan": rng.choice(PLANS),
                        "logins": n,
                        "prefs": {"theme": "dark", "n": n},
                    },
                },
                f"user_id:{u}",
            )
        elif kind < 0.95:
            call = Call(
                "group",
                {
                    **ids,
                    "group_id": f"{tag}-acct-{rng.randrange(5)}",
                    "traits": {"industry": "retail", "employees": 42},
                },
                f"user_id:{u}",
            )
        else:
            # alias of an id that already belongs to this person: must not merge anyone else
            call = Call("alias", {"previous_id": anon, "user_id": u}, f"user_id:{u}")
        rest.append(call)
    rng.shuffle(rest)

    calls = head + rest
    for i, call in enumerate(calls):
        call.kwargs["timestamp"] = start + timedelta(milliseconds=10 * i)
    owners = sorted({c.owner for c in calls})
    return Workload(
        calls=calls,
        users=[str(u) for u in users],
        anon_of=anon_of,
        visitors=visitors,
        owners=owners,
    )


def expected_traits(
    calls: list[Call], messages: list[dict[str, Any]]
) -> dict[str, dict[str, tuple[Any, str]]]:
    """owner → trait → (last value, messageId that set it), from the identify calls in order."""
    result: dict[str, dict[str, tuple[Any, str]]] = {}
    for call, message in zip(calls, messages, strict=True):
        if call.method == "identify":
            traits = result.setdefault(call.owner, {})
            for key, value in call.kwargs["traits"].items():
                traits[key] = (value, str(message["messageId"]))
    return result


def send_all(client: Any, calls: list[Call]) -> list[dict[str, Any]]:
    """Make every call on a real SDK client; return the messages it queued (with messageIds)."""
    messages: list[dict[str, Any]] = []
    for call in calls:
        queued, message = getattr(client, call.method)(**call.kwargs)
        assert queued, f"SDK refused to queue {call}"
        messages.append(message)
    return messages


class ErrorSink:
    """An SDK ``on_error`` hook that remembers every failed upload instead of dropping it."""

    def __init__(self) -> None:
        self.failures: list[tuple[BaseException, list[dict[str, Any]]]] = []

    def __call__(self, error: BaseException, batch: list[dict[str, Any]]) -> None:
        self.failures.append((error, list(batch)))

    def summary(self) -> list[str]:
        return [f"{type(e).__name__}: {e} ({len(b)} messages)" for e, b in self.failures]


def assert_workload_delivered(
    server: SegueServer, workload: Workload, messages: list[dict[str, Any]]
) -> None:
    """Everything the SDK sent is stored once, unchanged, and in the right profile."""
    sent_ids = [str(m["messageId"]) for m in messages]
    assert len(set(sent_ids)) == len(sent_ids), "the SDK itself produced duplicate messageIds"

    records = audit.log_records(server)
    audit.assert_stored_exactly_once(records, sent_ids)
    stored = {r["message_id"]: audit.message_of(r) for r in records if r["source"] == audit.SOURCE}
    for message in messages:
        audit.assert_same_as_sent(stored[str(message["messageId"])], message)

    expected: dict[str, set[str]] = {}
    for call, message in zip(workload.calls, messages, strict=True):
        expected.setdefault(call.owner, set()).add(str(message["messageId"]))
    traits = expected_traits(workload.calls, messages)

    for owner, ids in sorted(expected.items()):
        timeline = audit.timeline_ids(server, owner)
        assert len(timeline) == len(set(timeline)), f"{owner}: duplicate events in timeline"
        missing, extra = ids - set(timeline), set(timeline) - ids
        assert not missing, (
            f"{owner}: {len(missing)} of the SDK's events missing from the timeline "
            f"(e.g. {sorted(missing)[:3]})"
        )
        assert not extra, (
            f"{owner}: {len(extra)} foreign events in the timeline (e.g. {sorted(extra)[:3]})"
        )
        found = audit.profile(server, owner)
        assert found is not None, f"{owner}: no profile"
        assert found["event_count"] == len(ids), (
            f"{owner}: event_count {found['event_count']} != {len(ids)} events in its timeline"
        )
        for key, (value, message_id) in traits.get(owner, {}).items():
            assert found["traits"].get(key) == value, (
                f"{owner}: trait {key!r} is {found['traits'].get(key)!r}, last identify set "
                f"{value!r} in {message_id}"
            )
            lineage = found["lineage"].get(key) or {}
            assert lineage.get("message_id") == message_id, (owner, key, lineage)
            assert lineage.get("source") == audit.SOURCE, (owner, key, lineage)

    # the anonymous id of each user resolves to the same profile as the user id
    for user in workload.users:
        known = audit.profile(server, f"user_id:{user}")
        via_anon = audit.profile(server, f"anonymous_id:{workload.anon_of[user]}")
        assert known is not None, user
        assert via_anon is not None, user
        assert via_anon["profile_id"] == known["profile_id"], (user, via_anon, known)
        identities = {(i["type"], i["value"]) for i in known["identities"]}
        assert {("user_id", user), ("anonymous_id", workload.anon_of[user])} <= identities
