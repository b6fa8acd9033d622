"""The demo shop generator (deterministic, the promised sizes, valid items) and the demo's
small HTTP client (keep-alive, chunked answers, idle connections the server closed)."""

from __future__ import annotations

import asyncio
from collections import Counter

import msgspec
import pytest

from segue.api.catalog import ItemIn
from segue.demo.client import HttpClient, TransportError
from segue.demo.shop import CATEGORIES, appeal, build_shop


@pytest.fixture(scope="module")
def shop():
    return build_shop(seed=1)


def test_the_same_seed_gives_the_same_shop_and_another_seed_another(shop):
    again = build_shop(seed=1)
    assert [p.payload() for p in again.products] == [p.payload() for p in shop.products]
    assert again.customers == shop.customers
    other = build_shop(seed=2)
    assert [p.title for p in other.products] != [p.title for p in shop.products]
    assert [c.traits for c in other.customers] != [c.traits for c in shop.customers]


def test_sizes_categories_and_stock(shop):
    assert len(shop.products) == 2000
    assert len(shop.customers) == 5000
    assert len({p.item_id for p in shop.products}) == 2000
    per_category = Counter(p.category for p in shop.products)
    assert set(per_category) == {name for name, *_ in CATEGORIES}
    assert len(per_category) == 12
    assert min(per_category.values()) >= 50
    assert all(len({p.subcategory for p in shop.by_category[c]}) >= 3 for c in per_category)
    out_of_stock = [p for p in shop.products if not p.in_stock]
    assert 10 <= len(out_of_stock) <= 150  # a few, not many
    assert len({p.brand for p in shop.products}) >= 30


def test_every_product_is_a_valid_catalog_item_with_content_per_channel(shop):
    for product in shop.products:
        payload = product.payload()
        item = msgspec.convert(payload, ItemIn)  # what POST /v1/catalog/items accepts
        assert item.price is not None
        assert item.price > 0
        assert set(payload["content"]) == {"web", "app", "email"}
        for channel in payload["content"].values():
            assert set(channel) == {"title", "image_url", "description", "url"}
            assert all(channel.values())
    assert "quality" not in shop.products[0].payload()  # the hidden truth stays hidden


def test_customers_have_identify_traits_and_a_mix_of_behaviours(shop):
    emails = [c.traits["email"] for c in shop.customers]
    assert len(set(emails)) == len(emails)
    assert len({c.user_id for c in shop.customers}) == 5000
    for c in shop.customers[:100]:
        assert {"email", "firstName", "lastName", "address"} <= set(c.traits)
        assert c.traits["address"]["country"] == c.country
        assert 1 <= len(c.taste.categories) <= 3
        assert max(c.taste.categories.values()) == 1.0
    share = lambda flag: sum(map(flag, shop.customers)) / len(shop.customers)  # noqa: E731
    assert 0.15 < share(lambda c: c.anonymous_first) < 0.35
    assert 0.01 < share(lambda c: c.refuses_personalization) < 0.06
    assert 0.05 < share(lambda c: c.control) < 0.15


def test_people_want_what_their_hidden_taste_says(shop):
    liked, other = [], []
    for c in shop.customers[:300]:
        for p in shop.products[::5]:
            fit = appeal(c.taste, p, shop.median_price[p.subcategory])
            assert 0.01 <= fit <= 1.0
            (liked if p.category in c.taste.categories else other).append(fit)
    assert sum(liked) / len(liked) > 3 * sum(other) / len(other)


# --- the HTTP client ---------------------------------------------------------------------
async def _serve(answers: list[bytes], close_after: int | None = None):
    """A raw HTTP server that answers each request with the next of ``answers``."""
    connections: list[int] = []
    replies = iter(answers)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        served = 0
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # the client closed it
                writer.close()
                return
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            writer.write(next(replies))
            await writer.drain()
            served += 1
            if close_after is not None and served >= close_after:
                writer.close()
                return

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, port, connections


def test_client_keeps_connections_alive_and_reads_chunked_answers():
    async def main():
        ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        chunked = (
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        server, port, connections = await _serve([ok, chunked, ok])
        client = HttpClient(f"http://127.0.0.1:{port}", connections=1)
        assert await client.request("GET", "/a") == (200, b"ok")
        assert await client.request("POST", "/b", b"{}", {"X": "1"}) == (201, b"abcde")
        assert await client.request("GET", "/c") == (200, b"ok")
        assert len(connections) == 1
        await client.aclose()
        server.close()

    asyncio.run(main())


def test_client_retries_once_when_the_server_closed_an_idle_connection():
    async def main():
        ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        server, port, connections = await _serve([ok, ok, ok], close_after=1)
        client = HttpClient(f"http://127.0.0.1:{port}", connections=1)
        assert await client.request("GET", "/") == (200, b"ok")
        await asyncio.sleep(0.05)  # the server has closed it by now
        assert await client.request("GET", "/") == (200, b"ok")
        assert len(connections) == 2
        await client.aclose()
        server.close()
        await server.wait_closed()
        with pytest.raises(TransportError):
            await client.request("GET", "/")

    asyncio.run(main())


def test_the_demo_is_a_pure_http_client_of_segue():
    import ast
    import sys
    from pathlib import Path

    import segue.demo

    for path in Path(segue.demo.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                allowed = top in sys.stdlib_module_names or top == "msgspec"
                assert allowed or name.startswith("segue.demo"), f"{path.name} imports {name}"
