"""Experiments and KPI reports through HTTP: known events in, exact KPIs out; the holdout's
answers; CSV; a private release charging its consumer's budget; erasure; a restart."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime

import httpx
import pytest

from tests.e2e.server import PUBLISHABLE_KEY, SegueServer

pytestmark = pytest.mark.e2e

CONFIG = """
experiments:
  - name: hero_test
    placement: home_hero
    holdout: 0.5
    attribution_window_s: 3600
    variants:
      - name: personalized
reports:
  privacy_budget: 2.5
"""
DAY = "2025-03-10"
BASE = datetime(2025, 3, 10, 8, 0, tzinfo=UTC).timestamp()
USERS = 30


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def item(i: int) -> dict:
    return {
        "item_id": f"sku-{i}",
        "type": "product",
        "title": f"Item {i}",
        "category": ["Shoes", "Bags"][i % 2],
        "price": 10.0 + i,
        "content": {"web": {"title": f"Item {i}"}},
    }


def message(user: str, kind: str, at: float, n: int, **fields) -> dict:
    return {
        "type": kind,
        "userId": user,
        "messageId": f"{user}-{n}",
        "timestamp": iso(at),
        **fields,
    }


def script(i: int, decision_id: str) -> list[dict]:
    """User i's day: a page, the exposure, maybe a click, a second page, an add, orders."""
    user, t = f"u{i}", BASE + i * 100
    out: list[dict] = []

    def add(kind: str, at: float, **fields) -> None:
        out.append(message(user, kind, at, len(out), **fields))

    if i % 7 == 0:  # an order before any exposure: the pre-period covariate
        add("track", t - 5000, event="Order Completed", properties={"revenue": 5.0})
    add("page", t, name="Home")
    add("track", t + 1, event="Decision Viewed", properties={"decision_id": decision_id})
    if i % 3 == 0:
        props = {"decision_id": decision_id, "product_id": "sku-1"}
        add("track", t + 5, event="Product Clicked", properties=props)
        add("track", t + 6, event="Product Clicked", properties=props)  # counted once
    if i % 2 == 0:
        add("page", t + 30, name="Product")
    if i % 4 == 0:
        add("track", t + 40, event="Product Added", properties={"product_id": "sku-1"})
    if i % 5 == 0:
        add("track", t + 60, event="Order Completed", properties={"revenue": 10.0 + i})
    if i == 1:  # outside the attribution window
        add("track", t + 3700, event="Order Completed", properties={"revenue": 99.0})
    return out


def expected(users: list[int]) -> dict:
    n = len(users)
    revenue = sum(10.0 + i for i in users if i % 5 == 0)
    conversions = sum(1 for i in users if i % 5 == 0)
    timed = sum(1 for i in users if i % 2 == 0)
    clicks = sum(1 for i in users if i % 3 == 0)
    return {
        "visitors": n,
        "impressions": n,
        "clicks": clicks,
        "add_to_carts": sum(1 for i in users if i % 4 == 0),
        "conversions": conversions,
        "revenue": revenue,
        "sessions": n,
        "ctr": round(clicks / n, 6),
        "conversion_rate": round(conversions / n, 6),
        "revenue_per_visitor": round(revenue / n, 4),
        "average_order_value": round(revenue / conversions, 4) if conversions else None,
        "bounce_rate": round((n - timed) / n, 6),
        "time_on_page_s": 30.0 if timed else None,
    }


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reports")
    (folder / "segue.yaml").write_text(CONFIG)
    server = SegueServer(folder / "data", args=["--config", str(folder / "segue.yaml")])
    with server as srv:
        with srv.admin() as a:
            assert a.post(
                "/v1/catalog/items", json={"items": [item(i) for i in range(8)]}
            ).is_success
        with srv.writer() as w:
            batch = [
                message(f"u{i}", "identify", BASE - 10_000, 999, traits={"plan": "x"})
                for i in range(USERS)
            ]
            assert w.post("/v1/batch", json={"batch": batch}).is_success
        srv.wait_processed()
        arms: dict[str, list[int]] = {}
        decisions: dict[int, dict] = {}
        for i in range(USERS):
            r = httpx.post(
                srv.url + "/v1/decide",
                json={"placement": "home_hero", "user": {"user_id": f"u{i}"}, "k": 3},
                headers={"Authorization": f"Bearer {PUBLISHABLE_KEY}"},
            )
            assert r.status_code == 200, r.text
            decisions[i] = r.json()
            arms.setdefault(r.json()["experiment"]["variant"], []).append(i)
        with srv.writer() as w:
            for i in range(USERS):
                batch = script(i, decisions[i]["decision_id"])
                assert w.post("/v1/batch", json={"batch": batch}).is_success
        srv.wait_processed()
        yield srv, arms, decisions
    server.stop()


def report(srv: SegueServer, **params) -> httpx.Response:
    with srv.admin() as a:
        return a.get("/v1/reports/kpis", params={"from": DAY, "to": DAY, **params})


def settled(srv: SegueServer, impressions: int, timeout: float = 30.0) -> dict:
    """The report once the reports consumer has folded every exposure."""
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = report(srv, granularity="total").json()
        if sum(r["impressions"] for r in body["rows"]) >= impressions:
            return body
        time.sleep(0.1)
    raise AssertionError(f"the report did not catch up: {body}")


def test_the_holdout_gets_a_contextual_answer_recorded_with_its_experiment(shop):
    srv, arms, decisions = shop
    assert set(arms) == {"holdout", "personalized"}
    assert min(len(users) for users in arms.values()) >= 2
    held = decisions[arms["holdout"][0]]
    assert held["personalized"] is False
    assert held["strategy"] == "contextual"
    assert held["explanation"]["reason"] == "holdout"
    assert held["experiment"] == {"name": "hero_test", "variant": "holdout"}
    assert decisions[arms["personalized"][0]]["personalized"] is True
    with srv.admin() as a:
        logged = a.get(f"/v1/decisions/{held['decision_id']}").json()
    assert (logged["experiment"], logged["variant"]) == ("hero_test", "holdout")
    assert logged["personalized"] is False


def test_events_in_exact_kpis_out(shop):
    srv, arms, _ = shop
    body = settled(srv, USERS)
    assert (body["from"], body["to"], body["granularity"]) == (DAY, DAY, "total")
    assert body["privacy"] is None
    got = {r["variant"]: r for r in body["rows"]}
    assert set(got) == {"holdout", "personalized"}
    for variant, users in arms.items():
        row = got[variant]
        assert (row["placement"], row["experiment"], row["day"]) == ("home_hero", "hero_test", None)
        assert {k: row[k] for k in expected(users)} == expected(users), variant
    daily = report(srv).json()
    assert [(r["variant"], r["day"]) for r in daily["rows"]] == [
        ("holdout", DAY),
        ("personalized", DAY),
    ]
    for row in daily["rows"]:
        assert row["visitors"] == len(arms[row["variant"]])
    lift = {r["metric"]: r for r in body["lift"]}
    assert set(lift) == {
        "ctr",
        "conversion_rate",
        "revenue_per_visitor",
        "bounce_rate",
        "time_on_page_s",
    }
    assert all(r["variant"] == "personalized" for r in body["lift"])
    assert lift["conversion_rate"]["cuped"] is True
    assert 0.0 <= lift["revenue_per_visitor"]["variance_reduction"] <= 1.0
    assert lift["ctr"]["cuped"] is False
    t, c = expected(arms["personalized"]), expected(arms["holdout"])
    if c["clicks"] and t["clicks"]:  # else a continuity correction applies
        ratio = (t["clicks"] / t["impressions"]) / (c["clicks"] / c["impressions"])
        assert lift["ctr"]["estimate"] == pytest.approx(ratio - 1, abs=1e-6)
    (srm,) = body["srm"]
    assert srm["experiment"] == "hero_test"
    assert 0.0 <= srm["p_value"] <= 1.0
    assert srm["ok"] == (srm["p_value"] >= 0.001)


def test_csv_export_has_one_line_per_row(shop):
    srv, arms, _ = shop
    settled(srv, USERS)
    r = report(srv, format="csv", granularity="day")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    lines = list(csv.DictReader(io.StringIO(r.text)))
    assert [(line["variant"], line["day"]) for line in lines] == [
        ("holdout", DAY),
        ("personalized", DAY),
    ]
    row = lines[1]
    want = expected(arms["personalized"])
    assert int(row["visitors"]) == want["visitors"]
    assert float(row["revenue"]) == want["revenue"]
    assert float(row["ctr"]) == want["ctr"]


def test_bad_parameters_are_400_with_the_field(shop):
    srv, _, _ = shop
    for params, field in [
        ({"from": "2025-13-01"}, "from"),
        ({"from": "2025-03-11", "to": "2025-03-10"}, "from"),
        ({"granularity": "week"}, "granularity"),
        ({"format": "xml"}, "format"),
        ({"epsilon": "1"}, "consumer"),
        ({"epsilon": "-1", "consumer": "c"}, "epsilon"),
        ({"consumer": "c"}, "consumer"),
        ({"epsilon": "1", "consumer": "bad name!"}, "consumer"),
    ]:
        with srv.admin() as a:
            r = a.get("/v1/reports/kpis", params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["field"] == field
        assert r.json()["code"]
    assert httpx.get(srv.url + "/v1/reports/kpis").status_code == 401


def test_a_private_release_charges_the_budget_and_stops_at_its_limit(shop):
    srv, _, _ = shop
    settled(srv, USERS)
    first = report(srv, epsilon="1", consumer="agency", granularity="total")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["privacy"] == {
        "mechanism": "laplace",
        "epsilon": 1.0,
        "delta": 0.0,
        "consumer": "agency",
        "budget_spent": 1.0,
        "budget_limit": 2.5,
    }
    # the domain comes from the configuration, not the data: both arms and the
    # placement's decisions outside the experiment, each noisy but present
    assert {(r["experiment"], r["variant"]) for r in body["rows"]} == {
        ("hero_test", "holdout"),
        ("hero_test", "personalized"),
        (None, None),
    }
    assert all(r["cuped"] is False for r in body["lift"])
    daily = report(srv, epsilon="1", consumer="agency", mechanism="gaussian").json()
    assert daily["privacy"]["mechanism"] == "gaussian"
    assert daily["privacy"]["delta"] > 0
    assert daily["privacy"]["budget_spent"] == pytest.approx(2.0)
    assert {(r["variant"], r["day"]) for r in daily["rows"]} == {
        ("holdout", DAY),
        ("personalized", DAY),
        (None, DAY),
    }
    refused = report(srv, epsilon="1", consumer="agency")
    assert refused.status_code == 403
    assert refused.json()["code"] == "privacy_budget_exceeded"
    assert "limit" in refused.json()["message"]
    last = report(srv, epsilon="0.5", consumer="agency", granularity="total")
    assert last.status_code == 200
    assert last.json()["privacy"]["budget_spent"] == pytest.approx(2.5)
    # another consumer has its own budget; the exact report costs nothing
    assert report(srv, epsilon="1", consumer="other").status_code == 200
    assert report(srv).json()["privacy"] is None


def test_an_erased_person_leaves_the_report_and_a_restart_counts_nothing_twice(shop):
    srv, arms, _ = shop
    before = settled(srv, USERS)
    with srv.admin() as a:
        r = a.post("/v1/privacy/requests", json={"type": "erasure", "user": {"user_id": "u3"}})
        assert r.status_code in (200, 201, 202), r.text
        request_id = r.json()["request_id"]
        deadline = time.monotonic() + 30
        while a.get(f"/v1/privacy/requests/{request_id}").json()["status"] != "done":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        receipt = a.get(f"/v1/privacy/requests/{request_id}").json()["receipt"]
    assert receipt["stores"]["reports"]["rows"] >= 1
    after = report(srv, granularity="total").json()
    arm = next(v for v, users in arms.items() if 3 in users)
    visitors = {r["variant"]: r["visitors"] for r in after["rows"]}
    assert visitors[arm] == len(arms[arm]) - 1
    srv.stop()
    srv.start()
    again = report(srv, granularity="total").json()
    assert again["rows"] == after["rows"]
    assert before["rows"] != after["rows"]
