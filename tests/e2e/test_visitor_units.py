"""A visitor decide does not know yet, in an experiment: the unit they are assigned by is
the profile id their first event creates, whatever ids decide was sent; and their erasure
takes the decisions made under that unit with it."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.server import PUBLISHABLE_KEY, SegueServer

pytestmark = pytest.mark.e2e

CONFIG = """
experiments:
  - name: hero_test
    placement: home_hero
    holdout: 0.5
    variants:
      - name: personalized
"""
VISITORS = 24


def decide(srv: SegueServer, user: dict[str, str]) -> dict:
    r = httpx.post(
        srv.url + "/v1/decide",
        json={"placement": "home_hero", "user": user, "k": 2},
        headers={"Authorization": f"Bearer {PUBLISHABLE_KEY}"},
    )
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("visitors")
    (folder / "segue.yaml").write_text(CONFIG)
    server = SegueServer(folder / "data", args=["--config", str(folder / "segue.yaml")])
    with server as s:
        with s.admin() as a:
            items = [{"item_id": f"sku-{i}", "title": f"Item {i}"} for i in range(6)]
            assert a.post("/v1/catalog/items", json={"items": items}).is_success
        yield s


def test_a_visitor_sent_with_a_user_id_keeps_their_arm_once_their_profile_exists(srv):
    people = [{"user_id": f"vu{i}", "anonymous_id": f"va{i}"} for i in range(VISITORS)]
    first = [decide(srv, user) for user in people]
    assert all(d["personalized"] is False for d in first)  # nobody is known yet
    arms = [d["experiment"]["variant"] for d in first]
    assert set(arms) == {"holdout", "personalized"}  # 24 visitors: both arms drawn
    with srv.writer() as w:
        batch = [
            {"type": "page", "userId": u["user_id"], "anonymousId": u["anonymous_id"]}
            for u in people
        ]
        assert w.post("/v1/batch", json={"batch": batch}).is_success
    srv.wait_processed()
    again = [decide(srv, user) for user in people]
    assert [d["experiment"]["variant"] for d in again] == arms
    with srv.admin() as a:
        for before, after in zip(first, again, strict=True):
            unit = a.get(f"/v1/decisions/{before['decision_id']}").json()["profile_id"]
            known = a.get(f"/v1/decisions/{after['decision_id']}").json()["profile_id"]
            assert unit == known  # the unit was the profile's id before it existed


def test_an_erasure_takes_the_decisions_made_before_the_person_had_a_profile(srv):
    user = {"user_id": "zed", "anonymous_id": "anon-zed"}
    made = decide(srv, user)
    with srv.writer() as w:
        page = {"type": "page", "userId": "zed", "anonymousId": "anon-zed"}
        assert w.post("/v1/batch", json={"batch": [page]}).is_success
    srv.wait_processed()
    later = decide(srv, user)
    with srv.admin() as a:
        for d in (made, later):
            assert a.get(f"/v1/decisions/{d['decision_id']}").status_code == 200
    receipt = run_request(srv, "erasure", {"user_id": "zed"})["receipt"]
    assert receipt["stores"]["decisions"]["decisions"] == 2
    with srv.admin() as a:
        for d in (made, later):
            assert a.get(f"/v1/decisions/{d['decision_id']}").status_code == 404


def run_request(srv: SegueServer, kind: str, user: dict[str, str]) -> dict:
    with srv.admin() as a:
        r = a.post("/v1/privacy/requests", json={"type": kind, "user": user})
        assert r.status_code in (200, 201, 202), r.text
        request_id = r.json()["request_id"]
        deadline = time.monotonic() + 30
        while (body := a.get(f"/v1/privacy/requests/{request_id}").json())["status"] != "done":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        return dict(body)


def test_access_and_erasure_find_a_decision_made_under_an_anonymous_unit(srv):
    # decide knew only the anonymous id; the first event brought the user id too, so the
    # profile's id derives from the user id and the decision's unit is held by no profile
    made = decide(srv, {"anonymous_id": "anon-q"})
    with srv.writer() as w:
        page = {"type": "page", "userId": "q", "anonymousId": "anon-q"}
        assert w.post("/v1/batch", json={"batch": [page]}).is_success
    srv.wait_processed()
    time.sleep(0.3)  # the decision log is written in the background
    export = run_request(srv, "access", {"user_id": "q"})["export"]
    (profile,) = export["profiles"]
    outside = export["decisions_outside_profiles"]
    assert [d["decision_id"] for d in outside] == [made["decision_id"]]
    assert outside[0]["profile_id"] != profile["profile_id"]
    receipt = run_request(srv, "erasure", {"user_id": "q"})["receipt"]
    assert receipt["stores"]["decisions"]["decisions"] == 1
    with srv.admin() as a:
        assert a.get(f"/v1/decisions/{made['decision_id']}").status_code == 404


def test_the_access_export_holds_the_person_s_report_rows_and_attribution_state(srv):
    user = {"user_id": "rep", "anonymous_id": "anon-rep"}
    made = decide(srv, user)
    with srv.writer() as w:
        ids = {"userId": "rep", "anonymousId": "anon-rep"}
        batch = [
            {"type": "page", **ids, "name": "Home"},
            {
                "type": "track",
                **ids,
                "event": "Decision Viewed",
                "properties": {"decision_id": made["decision_id"]},
            },
        ]
        assert w.post("/v1/batch", json={"batch": batch}).is_success
    srv.wait_processed()
    deadline = time.monotonic() + 30
    while True:  # the reports consumer follows the processor
        export = run_request(srv, "access", {"user_id": "rep"})["export"]
        if export["reports"]["rows"]:
            break
        assert time.monotonic() < deadline, export["reports"]
        time.sleep(0.2)
    (profile,) = export["profiles"]
    rows = export["reports"]["rows"]
    assert {r["unit"] for r in rows} == {profile["profile_id"]}
    assert sum(r["impressions"] for r in rows) == 1
    assert rows[0]["experiment"] == "hero_test"
    assert profile["profile_id"] in export["reports"]["attribution_state"]
