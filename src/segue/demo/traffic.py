"""The demo traffic: load the shop into a running segue, then simulate its visitors.

:func:`run_demo` loads the catalog (``POST /v1/catalog/items``, admin key) and the customers
(``identify`` through ``/v1/batch``, write key), then runs concurrent sessions until the
duration is up:

- a visitor lands on the home page, which asks decide for ``home_hero``; browses a category
  (``Product List Viewed``) chosen by their hidden taste; opens products (``Product Viewed``),
  each product page asking decide for ``product_detail`` with ``context.item_id``; adds some
  to the cart (``Product Added``); on the cart page decide answers ``cart``; and some check
  out (``Order Completed`` with ``products[]``);
- every decision shown is reported as an exposure (``Decision Viewed`` with its
  ``decision_id`` and ``item_ids``); the visitor clicks a shown item (``Product Clicked``
  with ``decision_id`` and ``product_id``) with a probability that follows the hidden
  taste (:func:`segue.demo.shop.appeal`) and the position, so a ranker that learns the
  person's interests earns more clicks; adds and orders that follow a click carry the
  ``decision_id`` too (conversions);
- a quarter of the customers browse anonymously until they log in at the cart (an identify
  with ``userId`` and ``anonymousId``: segue stitches the device to the customer); one
  session in ten is a guest who never logs in; 3 % of customers refuse personalization
  (``context.consent.categoryPreferences.personalization = false``); and 10 % are a
  client-side control group whose pages ask decide without identifiers, so the
  personalised click-through rate has a fair contextual baseline.

Every few seconds it prints events, decisions and the click-through rate of personalised
and of contextual decisions over a rolling window, so learning shows; at the end it prints a
summary and one JSON line (``{"demo": "summary", …}``) for scripts. Requests go to the given
URL only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import random
import signal
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

import msgspec

from segue.demo.client import HttpClient, HttpResponse, TransportError
from segue.demo.shop import Customer, Product, Shop, Taste, appeal, build_shop, random_taste

__all__ = ["DemoOptions", "DemoStats", "run_demo"]

#: the chance of a click on the first item of a decision, for a perfect match
_CLICK_BASE: Final = 0.12
_POSITION_DECAY: Final = 0.35
_GUEST_SHARE: Final = 0.10
_WINDOW_S: Final = 60.0
_CATALOG_CHUNK: Final = 500
_IDENTIFY_CHUNK: Final = 250
_SERVER_GONE_S: Final = 5.0
_LIBRARY: Final = {"name": "segue-demo", "version": "1.0"}

_encode = msgspec.json.encode
_decode = msgspec.json.decode


@dataclass(slots=True)
class DemoOptions:
    """How to run the demo.

    Attributes:
        duration: seconds of simulated traffic after the shop is loaded; 0 runs until stopped.
        rate: the most HTTP requests per second.
        seed: the shop (products, customers) and the visitors' choices.
        report_every: seconds between progress lines.
        parent_pid: stop when this process is no longer our parent (``serve --demo``).
    """

    url: str
    admin_key: str
    publishable_key: str
    write_key: str
    duration: float = 60.0
    rate: float = 200.0
    seed: int = 1
    products: int = 2000
    customers: int = 5000
    report_every: float = 5.0
    parent_pid: int | None = None


@dataclass(slots=True)
class DemoStats:
    """What the demo did; printed as the final JSON line."""

    seconds: float = 0.0
    catalog_items: int = 0
    customers: int = 0
    requests: int = 0
    events: int = 0
    sessions: int = 0
    identifies: int = 0
    stitched: int = 0
    decisions: int = 0
    personalized_decisions: int = 0
    contextual_decisions: int = 0
    exposures: int = 0
    clicks: int = 0
    clicks_personalized: int = 0
    clicks_contextual: int = 0
    adds: int = 0
    orders: int = 0
    revenue: float = 0.0
    http_errors: int = 0
    rejected_events: int = 0
    rejected_items: int = 0
    #: the sum over decisions shown of the chance of a click on random products instead
    random_chance: float = 0.0
    model_version: str | None = None
    errors: list[str] = field(default_factory=list)

    def ctr(self, personalized: bool) -> float | None:
        shown = self.personalized_decisions if personalized else self.contextual_decisions
        clicked = self.clicks_personalized if personalized else self.clicks_contextual
        return round(clicked / shown, 4) if shown else None

    def summary(self) -> dict[str, Any]:
        out = {
            "demo": "summary",
            "seconds": round(self.seconds, 1),
            "catalog_items": self.catalog_items,
            "customers": self.customers,
            "requests": self.requests,
            "events": self.events,
            "sessions": self.sessions,
            "identifies": self.identifies,
            "stitched": self.stitched,
            "decisions": self.decisions,
            "personalized_decisions": self.personalized_decisions,
            "contextual_decisions": self.contextual_decisions,
            "exposures": self.exposures,
            "clicks": self.clicks,
            "ctr_personalized": self.ctr(True),
            "ctr_contextual": self.ctr(False),
            "ctr_random_baseline": (
                round(self.random_chance / self.exposures, 4) if self.exposures else None
            ),
            "adds": self.adds,
            "orders": self.orders,
            "revenue": round(self.revenue, 2),
            "http_errors": self.http_errors,
            "rejected_events": self.rejected_events,
            "rejected_items": self.rejected_items,
            "model_version": self.model_version,
        }
        return out


class _Fatal(Exception):
    """The demo cannot go on (refused key, server unreachable)."""


class _Pacer:
    """Spaces requests to at most ``rate`` per second across all sessions."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        at = max(self.next, now)
        self.next = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)


@dataclass(slots=True)
class _Visitor:
    customer: Customer | None
    taste: Taste
    anonymous_id: str
    user_id: str | None
    country: str
    refuses: bool
    control: bool


@dataclass(slots=True)
class _Shown:
    decision_id: str
    personalized: bool


class _Api:
    """The three credentials and what every call counts."""

    def __init__(self, client: HttpClient, options: DemoOptions, stats: DemoStats) -> None:
        self.client = client
        self.stats = stats
        self.pacer = _Pacer(options.rate)
        token = base64.b64encode(f"{options.write_key}:".encode()).decode()
        json = {"Content-Type": "application/json"}
        self.write = {"Authorization": f"Basic {token}", **json}
        self.admin = {"Authorization": f"Bearer {options.admin_key}", **json}
        self.publishable = {"Authorization": f"Bearer {options.publishable_key}", **json}
        self.stopping = False
        self.unreachable_since: float | None = None

    async def call(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any = None,
        *,
        paced: bool = True,
        retries: int = 3,
    ) -> HttpResponse | None:
        """One request, retried on 5xx and lost connections; None when it failed."""
        raw = None if body is None else _encode(body)
        delay = 0.2
        for attempt in range(retries + 1):
            if paced:
                await self.pacer.wait()
            self.stats.requests += 1
            try:
                response = await self.client.request(method, path, raw, headers)
            except TransportError as exc:
                now = time.monotonic()
                if self.unreachable_since is None:
                    self.unreachable_since = now
                if self.stopping:
                    return None
                if attempt == retries:
                    self._error(str(exc))
                    return None
            else:
                self.unreachable_since = None
                if response.status < 500 or attempt == retries:
                    if response.status >= 400 and not self.stopping:
                        self._error(f"{method} {path}: {response.status} {response.body[:200]!r}")
                    return response
            await asyncio.sleep(delay)
            delay *= 2
        return None  # pragma: no cover - the loop always returns

    def _error(self, message: str) -> None:
        self.stats.http_errors += 1
        if len(self.stats.errors) < 20:
            self.stats.errors.append(message)

    async def send(self, messages: list[dict[str, Any]], *, paced: bool = True) -> bool:
        """Send events through ``/v1/batch``; count them and any the server rejected."""
        if not messages:
            return True
        response = await self.call(
            "POST", "/v1/batch", self.write, {"batch": messages}, paced=paced
        )
        if response is None or response.status != 200:
            return False
        self.stats.events += len(messages)
        if response.body != b'{"success":true}':
            rejected = _decode(response.body).get("rejected", [])
            self.stats.rejected_events += len(rejected)
            self.stats.events -= len(rejected)
            for r in rejected[:3]:
                if len(self.stats.errors) < 20:
                    self.stats.errors.append(f"event rejected: {r}")
        return True


class _Simulation:
    def __init__(
        self, shop: Shop, api: _Api, options: DemoOptions, stats: DemoStats, out: TextIO
    ) -> None:
        self.shop = shop
        self.api = api
        self.options = options
        self.stats = stats
        self.out = out
        self.rng = random.Random(options.seed * 7919 + 17)
        self.products = {p.item_id: p for p in shop.products}
        self.weights = list(itertools.accumulate(c.taste.visit_weight for c in shop.customers))
        self.active: set[str] = set()
        self.stitched: set[str] = set()
        #: (time, personalised, clicked, chance of a click had the items been random)
        self.window: deque[tuple[float, bool, bool, float]] = deque()
        self.in_stock = [p for p in shop.products if p.in_stock]
        self.baseline_rng = random.Random(options.seed * 104729 + 3)
        self.stop = asyncio.Event()
        self.run_id = uuid.UUID(int=random.getrandbits(128), version=4).hex[:8]
        self._order = itertools.count(1)

    # --- visitors --------------------------------------------------------------------
    def visitor(self) -> _Visitor:
        rng = self.rng
        if rng.random() >= _GUEST_SHARE:
            for _ in range(5):
                c = rng.choices(self.shop.customers, cum_weights=self.weights)[0]
                if c.user_id in self.active:
                    continue
                logged_in = not c.anonymous_first or c.user_id in self.stitched
                return _Visitor(
                    customer=c,
                    taste=c.taste,
                    anonymous_id=c.anonymous_id,
                    user_id=c.user_id if logged_in else None,
                    country=c.country,
                    refuses=c.refuses_personalization,
                    control=c.control,
                )
        guest_country = rng.choice(("DE", "FR", "GB", "US", "NL", "ES", "IT"))
        return _Visitor(
            customer=None,
            taste=random_taste(rng),
            anonymous_id=f"guest-{self.run_id}-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}",
            user_id=None,
            country=guest_country,
            refuses=False,
            control=False,
        )

    # --- messages ---------------------------------------------------------------------
    def message(self, v: _Visitor, kind: str, **fields: Any) -> dict[str, Any]:
        context: dict[str, Any] = {"library": _LIBRARY, "location": {"country": v.country}}
        page = fields.pop("page", None)
        if page is not None:
            context["page"] = page
        # what a consent manager sends with every event once the banner was answered: most
        # visitors accept, the refusers keep analytics but refuse personalization (the shop
        # is in the EU too: without an answer, an opt-in region would keep them unprofiled)
        context["consent"] = {
            "categoryPreferences": {"personalization": not v.refuses, "analytics": True}
        }
        m: dict[str, Any] = {
            "type": kind,
            "messageId": uuid.uuid4().hex,
            "anonymousId": v.anonymous_id,
            "context": context,
            **fields,
        }
        if v.user_id is not None:
            m["userId"] = v.user_id
        return m

    def track(self, v: _Visitor, event: str, properties: dict[str, Any]) -> dict[str, Any]:
        return self.message(v, "track", event=event, properties=properties)

    def page(self, v: _Visitor, name: str, path: str, **props: Any) -> dict[str, Any]:
        page = {"path": path, "url": f"https://shop.example.com{path}", "title": name}
        return self.message(v, "page", name=name, properties={**page, **props}, page=page)

    # --- decisions and feedback ---------------------------------------------------------
    async def decide(
        self,
        v: _Visitor,
        placement: str,
        k: int,
        context: dict[str, Any],
        buffer: list[dict[str, Any]],
    ) -> tuple[_Shown, Product] | None:
        """Ask decide, report the exposure, and maybe click; the clicked product, if any."""
        user: dict[str, str] = {}
        if not v.control:
            if v.user_id is not None:
                user["user_id"] = v.user_id
            user["anonymous_id"] = v.anonymous_id
        ctx: dict[str, Any] = {"region": v.country, **context}
        if v.refuses:
            ctx["consent"] = {"categoryPreferences": {"personalization": False}}
        body = {"placement": placement, "user": user, "context": ctx, "k": k}
        response = await self.api.call("POST", "/v1/decide", self.api.publishable, body)
        if response is None or response.status != 200:
            return None
        answer = _decode(response.body)
        stats = self.stats
        stats.decisions += 1
        personalized = bool(answer.get("personalized"))
        version = answer.get("explanation", {}).get("model_version")
        if isinstance(version, str) and placement == "product_detail":
            stats.model_version = version
        item_ids = [str(i["item_id"]) for i in answer.get("items", [])]
        if not item_ids:
            return None
        shown = _Shown(str(answer["decision_id"]), personalized)
        stats.exposures += 1
        if personalized:
            stats.personalized_decisions += 1
        else:
            stats.contextual_decisions += 1
        buffer.append(
            self.track(
                v,
                "Decision Viewed",
                {"decision_id": shown.decision_id, "placement": placement, "item_ids": item_ids},
            )
        )
        clicked: Product | None = None
        for position, item_id in enumerate(item_ids):
            product = self.products.get(item_id)
            if product is None:
                continue
            if self.rng.random() < self.click_chance(v, product, position):
                clicked = product
                buffer.append(
                    self.track(
                        v,
                        "Product Clicked",
                        {
                            "decision_id": shown.decision_id,
                            "product_id": product.item_id,
                            "position": position + 1,
                            "placement": placement,
                            "name": product.title,
                            "category": product.category,
                            "brand": product.brand,
                            "price": product.price,
                        },
                    )
                )
                break
        stats.clicks += clicked is not None
        if personalized:
            stats.clicks_personalized += clicked is not None
        else:
            stats.clicks_contextual += clicked is not None
        random_chance = self.random_chance(v, len(item_ids))
        stats.random_chance += random_chance
        self.window.append((time.monotonic(), personalized, clicked is not None, random_chance))
        return (shown, clicked) if clicked is not None else None

    def click_chance(self, v: _Visitor, product: Product, position: int) -> float:
        """The hidden truth: how likely this visitor clicks this product at this position."""
        fit = appeal(v.taste, product, self.shop.median_price.get(product.subcategory))
        return _CLICK_BASE * v.taste.click_propensity * fit / (1.0 + _POSITION_DECAY * position)

    def random_chance(self, v: _Visitor, k: int) -> float:
        """The chance of a click had the decision shown ``k`` random products (a baseline)."""
        miss = 1.0
        for position, product in enumerate(self.baseline_rng.sample(self.in_stock, k)):
            miss *= 1.0 - self.click_chance(v, product, position)
        return 1.0 - miss

    # --- a session -------------------------------------------------------------------------
    def choose(self, v: _Visitor, pool: list[Product], n: int = 1) -> list[Product]:
        weights = [appeal(v.taste, p, self.shop.median_price.get(p.subcategory)) ** 2 for p in pool]
        return self.rng.choices(pool, weights, k=n)

    def category_for(self, v: _Visitor) -> str:
        if self.rng.random() < 0.75:
            names = list(v.taste.categories)
            return self.rng.choices(names, list(v.taste.categories.values()))[0]
        return self.rng.choice(self.shop.categories)

    async def pause(self) -> None:
        await asyncio.sleep(self.rng.uniform(0.05, 0.4))

    async def session(self, v: _Visitor) -> None:
        rng, api, stats = self.rng, self.api, self.stats
        stats.sessions += 1
        cart_id = uuid.uuid4().hex[:12]
        cart: list[tuple[Product, str | None]] = []
        buffer: list[dict[str, Any]] = [self.page(v, "Home", "/")]
        await api.send(buffer)
        buffer = []
        hit = await self.decide(v, "home_hero", 4, {"page": {"path": "/"}}, buffer)
        current: Product | None = hit[1] if hit else None
        via: str | None = hit[0].decision_id if hit else None
        category: str | None = None
        for _ in range(rng.randint(1, 6)):
            if self.stop.is_set():
                break
            await self.pause()
            if current is None:
                if category is None or rng.random() < 0.5:
                    category = self.category_for(v)
                listed = rng.sample(
                    self.shop.by_category[category], min(24, len(self.shop.by_category[category]))
                )
                path = f"/c/{category.lower().replace(' & ', '-').replace(' ', '-')}"
                buffer.append(self.page(v, "Category", path, category=category))
                buffer.append(
                    self.track(
                        v,
                        "Product List Viewed",
                        {
                            "list_id": path,
                            "category": category,
                            "products": [
                                {"product_id": p.item_id, "position": i + 1}
                                for i, p in enumerate(listed[:12])
                            ],
                        },
                    )
                )
                current, via = self.choose(v, listed)[0], None
            product = current
            category = product.category
            path = product.content["web"]["url"]
            buffer.append(self.page(v, "Product", path, product_id=product.item_id))
            buffer.append(self.track(v, "Product Viewed", _product(product)))
            if product.in_stock:
                fit = appeal(v.taste, product, self.shop.median_price.get(product.subcategory))
                if rng.random() < 0.35 * fit:
                    cart.append((product, via))
                    props = {**_product(product), "cart_id": cart_id, "quantity": 1}
                    if via is not None:
                        props["decision_id"] = via
                    buffer.append(self.track(v, "Product Added", props))
                    stats.adds += 1
            await api.send(buffer)
            buffer = []
            context = {"item_id": product.item_id, "category": product.category,
                       "page": {"path": path}}  # fmt: skip
            hit = await self.decide(v, "product_detail", 6, context, buffer)
            current, via = (hit[1], hit[0].decision_id) if hit else (None, None)
            if hit is None and rng.random() < 0.2:
                break  # bounced
        if cart and not self.stop.is_set():
            await self.pause()
            await self.checkout(v, cart, cart_id, buffer)
        await api.send(buffer)

    async def checkout(
        self,
        v: _Visitor,
        cart: list[tuple[Product, str | None]],
        cart_id: str,
        buffer: list[dict[str, Any]],
    ) -> None:
        rng, stats = self.rng, self.stats
        lines = [{**_product(p), "quantity": 1} for p, _ in cart]
        buffer.append(self.page(v, "Cart", "/cart"))
        buffer.append(self.track(v, "Cart Viewed", {"cart_id": cart_id, "products": lines}))
        await self.api.send(buffer)
        buffer.clear()
        hit = await self.decide(v, "cart", 4, {"page": {"path": "/cart"}}, buffer)
        if hit is not None:
            shown, product = hit
            if product.in_stock and rng.random() < 0.5:
                cart.append((product, shown.decision_id))
                added = {**_product(product), "cart_id": cart_id, "quantity": 1,
                         "decision_id": shown.decision_id}  # fmt: skip
                buffer.append(self.track(v, "Product Added", added))
                stats.adds += 1
        if rng.random() >= 0.6:
            return  # an abandoned cart
        c = v.customer
        if c is not None and v.user_id is None:
            # log in to check out: the device's anonymous history joins the customer
            v.user_id = c.user_id
            buffer.append(self.message(v, "identify", traits={"email": c.traits["email"]}))
            self.stitched.add(c.user_id)
            stats.identifies += 1
            stats.stitched += 1
        buffer.append(self.page(v, "Checkout", "/checkout"))
        lines = [{**_product(p), "quantity": 1} for p, _ in cart]
        total = round(sum(p.price for p, _ in cart), 2)
        buffer.append(self.track(v, "Checkout Started", {"cart_id": cart_id, "value": total}))
        props: dict[str, Any] = {
            "order_id": f"demo-{self.run_id}-{next(self._order)}",
            "total": total,
            "revenue": total,
            "currency": "EUR",
            "products": lines,
        }
        attributed = next((d for _, d in cart if d is not None), None)
        if attributed is not None:
            props["decision_id"] = attributed
        buffer.append(self.track(v, "Order Completed", props))
        stats.orders += 1
        stats.revenue += total

    async def worker(self) -> None:
        while not self.stop.is_set():
            v = self.visitor()
            key = v.customer.user_id if v.customer else v.anonymous_id
            self.active.add(key)
            try:
                await self.session(v)
            finally:
                self.active.discard(key)

    # --- reporting -------------------------------------------------------------------------
    def rolling(self) -> tuple[tuple[int, int], tuple[int, int], float | None]:
        """(clicks, decisions) personalised, the same contextual, and the random baseline."""
        horizon = time.monotonic() - _WINDOW_S
        while self.window and self.window[0][0] < horizon:
            self.window.popleft()
        counts = {True: [0, 0], False: [0, 0]}
        chance = 0.0
        for _, personalized, clicked, random_chance in self.window:
            counts[personalized][0] += clicked
            counts[personalized][1] += 1
            chance += random_chance
        p, c = counts[True], counts[False]
        baseline = chance / len(self.window) if self.window else None
        return (p[0], p[1]), (c[0], c[1]), baseline


def _product(p: Product) -> dict[str, Any]:
    return {
        "product_id": p.item_id,
        "sku": p.item_id,
        "name": p.title,
        "category": p.category,
        "brand": p.brand,
        "price": p.price,
        "currency": "EUR",
    }


def _rate(clicked: int, shown: int) -> str:
    return f"{100.0 * clicked / shown:4.1f}% (n={shown:,})" if shown else "  –"


def _say(out: TextIO, text: str) -> None:
    print(f"demo  {text}", file=out, flush=True)


async def _wait_ready(client: HttpClient, deadline: float) -> None:
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = await client.request("GET", "/readyz")
            if response.status == 200:
                return
            last = f"{response.status}"
        except TransportError as exc:
            last = str(exc)
        await asyncio.sleep(0.2)
    raise _Fatal(f"segue at {client.host}:{client.port} is not ready ({last})")


async def _load(shop: Shop, api: _Api, options: DemoOptions, out: TextIO) -> None:
    stats = api.stats
    probe = await api.call("GET", "/v1/stats", api.admin, paced=False, retries=1)
    if probe is None:
        raise _Fatal("cannot reach segue")
    if probe.status == 401:
        raise _Fatal("the admin key was refused (--admin-key, or SEGUE_ADMIN_KEY)")
    probe = await api.call(
        "POST", "/v1/decide", api.publishable, {"placement": "home_hero", "k": 1}, paced=False
    )
    if probe is None or probe.status == 401:
        raise _Fatal(
            "the publishable key was refused (--publishable-key, or SEGUE_PUBLISHABLE_KEY)"
        )
    probe = await api.call("POST", "/v1/batch", api.write, {"batch": []}, paced=False)
    if probe is None or probe.status == 401:
        raise _Fatal("the write key was refused (--write-key, or SEGUE_WRITE_KEY)")
    stats.http_errors, stats.errors = 0, []  # the decide probe may 200 or 400; not the demo's
    started = time.monotonic()

    async def catalog(chunk: list[Product]) -> None:
        response = await api.call(
            "POST", "/v1/catalog/items", api.admin, {"items": [p.payload() for p in chunk]},
            paced=False,
        )  # fmt: skip
        if response is None or response.status != 200:
            raise _Fatal("the catalog could not be loaded")
        answer = _decode(response.body)
        stats.catalog_items += int(answer.get("stored", 0))
        for rejection in answer.get("rejected", [])[:3]:
            stats.errors.append(f"item rejected: {rejection}")
        stats.rejected_items += len(answer.get("rejected", []))

    products = shop.products
    await asyncio.gather(
        *(
            catalog(products[i : i + _CATALOG_CHUNK])
            for i in range(0, len(products), _CATALOG_CHUNK)
        )
    )

    async def identify(chunk: list[Customer]) -> None:
        batch = []
        for c in chunk:
            m: dict[str, Any] = {
                "type": "identify",
                "messageId": f"demo-{shop.seed}-identify-{c.user_id}",
                "userId": c.user_id,
                "traits": c.traits,
                "context": {"library": _LIBRARY},
            }
            if not c.anonymous_first:  # the device was linked at an earlier login
                m["anonymousId"] = c.anonymous_id
            if c.refuses_personalization:
                m["context"]["consent"] = {"categoryPreferences": {"personalization": False}}
            batch.append(m)
        if not await api.send(batch, paced=False):
            raise _Fatal("the customers could not be loaded")
        stats.identifies += len(batch)

    customers = shop.customers
    await asyncio.gather(
        *(
            identify(customers[i : i + _IDENTIFY_CHUNK])
            for i in range(0, len(customers), _IDENTIFY_CHUNK)
        )
    )
    stats.customers = len(customers)
    _say(
        out,
        f"loaded {stats.catalog_items:,} products in {len(shop.categories)} categories and "
        f"{len(customers):,} customers in {time.monotonic() - started:.1f} s",
    )
    # let the processor build the profiles before the first visitor arrives
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        response = await api.call("GET", "/v1/stats", api.admin, paced=False)
        if response is None or response.status != 200:
            break
        if int(_decode(response.body).get("lag_events", 0)) == 0:
            break
        await asyncio.sleep(0.2)


async def _experiments(api: _Api) -> list[str]:
    """What segue's own KPI report says: the CTR lift of each personalised variant over
    its holdout, with its 95 % interval (the report's numbers, not the demo's counting)."""
    response = await api.call(
        "GET", "/v1/reports/kpis?granularity=total", api.admin, paced=False, retries=2
    )
    if response is None or response.status != 200:
        return []
    body = _decode(response.body)
    rows = {(r["placement"], r["variant"]): r for r in body["rows"] if r["experiment"]}
    lines = []
    for lift in body["lift"]:
        treated = rows.get((lift["placement"], lift["variant"]))
        held = rows.get((lift["placement"], "holdout"))
        if lift["metric"] != "ctr" or treated is None or held is None:
            continue
        bounds = (lift["estimate"], lift["low"], lift["high"])
        if any(b is None for b in bounds):
            continue
        estimate, low, high = (f"{100.0 * b:+.1f}%" for b in bounds)
        lines.append(
            f"report  {lift['placement']}: CTR {lift['variant']} "
            f"{_rate(treated['clicks'], treated['impressions'])} vs holdout "
            f"{_rate(held['clicks'], held['impressions'])}: lift {estimate} "
            f"[{low}, {high}], p{_p(lift['p_value'])}"
        )
    return lines


def _p(value: float) -> str:
    return "<0.0001" if value < 1e-4 else f"={value:.2g}"


async def _report(
    sim: _Simulation, started: float, every: float, out: TextIO, experiments_every: float = 30.0
) -> None:
    stats = sim.stats
    last_events, last_at = stats.events, time.monotonic()
    looked_at = time.monotonic()
    while True:
        await asyncio.sleep(every)
        if time.monotonic() - looked_at >= experiments_every:
            looked_at = time.monotonic()
            for line in await _experiments(sim.api):
                _say(out, line)
        now = time.monotonic()
        per_s = (stats.events - last_events) / max(now - last_at, 1e-9)
        last_events, last_at = stats.events, now
        (pc, pn), (cc, cn), baseline = sim.rolling()
        random_ctr = "  –" if baseline is None else f"{100.0 * baseline:4.1f}%"
        _say(
            out,
            f"{now - started:5.0f}s  events {stats.events:,} ({per_s:,.0f}/s)  decisions "
            f"{stats.decisions:,}  orders {stats.orders:,}  errors {stats.http_errors}  |  CTR "
            f"last {_WINDOW_S:.0f}s: personalised {_rate(pc, pn)}  contextual {_rate(cc, cn)}"
            f"  random {random_ctr}",
        )


async def _watch(sim: _Simulation, api: _Api, options: DemoOptions, out: TextIO) -> None:
    """Stop when the parent process is gone or segue stopped answering."""
    while not sim.stop.is_set():
        await asyncio.sleep(0.5)
        if options.parent_pid is not None and os.getppid() != options.parent_pid:
            sim.stop.set()
        since = api.unreachable_since
        if since is not None and time.monotonic() - since > _SERVER_GONE_S:
            _say(out, "segue stopped answering; stopping")
            sim.stop.set()


async def _main(options: DemoOptions, out: TextIO, stats: DemoStats) -> int:
    connections = max(4, min(64, int(options.rate // 4)))
    client = HttpClient(options.url, connections=connections)
    api = _Api(client, options, stats)
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, interrupted.set)

    async def setup() -> Shop:
        await _wait_ready(client, time.monotonic() + 60.0)
        shop = build_shop(options.seed, options.products, options.customers)
        _say(out, f"loading the demo shop (seed {options.seed}) into {options.url}")
        await _load(shop, api, options, out)
        return shop

    loader = asyncio.ensure_future(setup())
    stopper = asyncio.ensure_future(interrupted.wait())
    await asyncio.wait({loader, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not loader.done():  # stopped while waiting for segue or loading the shop
        loader.cancel()
        await asyncio.gather(loader, stopper, return_exceptions=True)
        await client.aclose()
        return 130
    try:
        shop = loader.result()
    except _Fatal as exc:
        print(f"segue demo: {exc}", file=sys.stderr, flush=True)
        await client.aclose()
        return 2
    sim = _Simulation(shop, api, options, stats, out)
    limit = "until stopped" if options.duration <= 0 else f"for {options.duration:g} s"
    _say(
        out,
        f"simulating visitors {limit}, at most {options.rate:g} requests/s; CTR = decisions "
        f"with a click / decisions shown",
    )
    started = time.monotonic()
    workers = [asyncio.ensure_future(sim.worker()) for _ in range(max(2, connections))]
    helpers = [
        asyncio.ensure_future(_report(sim, started, options.report_every, out)),
        asyncio.ensure_future(_watch(sim, api, options, out)),
        asyncio.ensure_future(_relay(interrupted, sim.stop)),
    ]
    timeout = options.duration if options.duration > 0 else None
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sim.stop.wait(), timeout)
    sim.stop.set()
    if interrupted.is_set():
        api.stopping = True  # the server may be going away too: failures are not errors
    # let the sessions finish their current step (they check the stop flag between steps)
    _, pending = await asyncio.wait(workers, timeout=5.0)
    for task in (*pending, *helpers):
        task.cancel()
    await asyncio.gather(*pending, *helpers, return_exceptions=True)
    stats.seconds = time.monotonic() - started
    # what segue's KPI report says (not when interrupted: the server may be going away)
    report = [] if interrupted.is_set() else await _experiments(api)
    await client.aclose()
    _say(
        out,
        f"done after {stats.seconds:.0f} s: {stats.sessions:,} sessions, {stats.events:,} events, "
        f"{stats.decisions:,} decisions, {stats.clicks:,} clicks, {stats.orders:,} orders; CTR "
        f"personalised {_rate(stats.clicks_personalized, stats.personalized_decisions)} vs "
        f"contextual {_rate(stats.clicks_contextual, stats.contextual_decisions)} "
        f"(random products would get {100.0 * (stats.summary()['ctr_random_baseline'] or 0):.1f}%)",
    )
    for line in report:
        _say(out, line)
    for error in stats.errors[:5]:
        _say(out, f"error: {error}")
    print(_encode(stats.summary()).decode(), file=out, flush=True)
    clean = stats.http_errors == stats.rejected_events == stats.rejected_items == 0
    return 0 if clean else 1


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def run_demo(options: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Load the shop and simulate traffic; return the exit code.

    Returns:
        0 when every request succeeded, 1 when some failed or events were rejected, 2 when
        the demo could not start (segue unreachable, a key refused), 130 when interrupted
        while loading.
    """
    if options.rate <= 0:
        raise ValueError("rate must be > 0")
    stats = DemoStats()
    return asyncio.run(_main(options, out, stats))
