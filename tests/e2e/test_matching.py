"""Probabilistic matching end to end: records that share no identifier."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.test_identity import decided_for, get, send

pytestmark = pytest.mark.e2e

ADDRESS = {"street": "12 Main Street", "city": "Springfield", "postalCode": "62704", "state": "IL"}


def test_crm_record_with_a_typo_merges_and_the_match_is_explained(server):
    tag = uuid.uuid4().hex[:8]
    last = f"Smith{tag}"
    send(
        server,
        [
            {
                "type": "identify",
                "anonymousId": f"web-{tag}",
                "traits": {
                    "firstName": "John",
                    "lastName": last,
                    "birthday": "1980-04-12",
                    "email": f"john.{tag}@example.com",
                    "address": ADDRESS,
                },
            },
            # a CRM row: no identifier in common, a typo in the first name, street abbreviated
            {
                "type": "identify",
                "anonymousId": f"crm:{tag}",
                "traits": {
                    "firstName": "Jon",
                    "lastName": last,
                    "birthday": "1980-04-12",
                    "address": {**ADDRESS, "street": "12 Main St"},
                    "crm_id": f"C-{tag}",
                },
            },
            # someone else with the same name: other birthday, other town
            {
                "type": "identify",
                "anonymousId": f"other-{tag}",
                "traits": {
                    "firstName": "John",
                    "lastName": last,
                    "birthday": "1962-09-30",
                    "address": {"street": "9 Elm Road", "city": "Portland", "postalCode": "97201"},
                },
            },
        ],
    )
    profile = get(server, f"crm_id:C-{tag}")
    assert profile["profile_id"] == get(server, f"anonymous_id:web-{tag}")["profile_id"]
    assert profile["profile_id"] != get(server, f"anonymous_id:other-{tag}")["profile_id"]
    (merge,) = [m for m in profile["merges"] if m["reason"] == "match"]
    assert merge["score"] >= 0.99
    fields = {e["field"]: e for e in merge["explanation"]}
    assert fields["birth"]["level"] == "exact"
    assert fields["first_name"]["level"] != "exact"
    assert fields["first_name"]["weight"] > 0
    assert fields["prior"]["weight"] < 0
    assert profile["traits"]["firstName"] in ("John", "Jon")
    assert {a["value"] for a in profile["alternates"]["firstName"]} <= {"John", "Jon"}


def test_household_member_is_a_possible_match_a_person_decides(server):
    tag = uuid.uuid4().hex[:8]
    last = f"Doe{tag}"
    send(
        server,
        [
            {
                "type": "identify",
                "anonymousId": f"john-{tag}",
                "traits": {
                    "firstName": "John",
                    "lastName": last,
                    "birthday": "1975-02-03",
                    "address": ADDRESS,
                },
            },
            {
                "type": "identify",
                "anonymousId": f"mary-{tag}",
                "traits": {"firstName": "Mary", "lastName": last, "address": ADDRESS},
            },
        ],
    )
    john, mary = get(server, f"anonymous_id:john-{tag}"), get(server, f"anonymous_id:mary-{tag}")
    assert john["profile_id"] != mary["profile_id"]
    (possible,) = mary["possible_matches"]
    assert {possible["profile_a"], possible["profile_b"]} == {
        john["profile_id"],
        mary["profile_id"],
    }
    assert 0.5 <= possible["score"] < 0.99
    with server.admin() as a:
        listed = a.get("/v1/admin/possible-matches").json()["matches"]
        assert possible["id"] in [m["id"] for m in listed]
        rejected = a.post(f"/v1/admin/possible-matches/{possible['id']}/reject")
        assert rejected.status_code == 200, rejected.text
        assert rejected.json()["status"] == "rejected"
        again = a.post(f"/v1/admin/possible-matches/{possible['id']}/accept")
        assert again.status_code == 409
        assert a.post("/v1/admin/possible-matches/99999/accept").status_code == 404
        assert a.post(f"/v1/admin/possible-matches/{possible['id']}/maybe").status_code == 404
    # a later record of Mary at the same address stays apart from John
    send(
        server,
        [
            {
                "type": "identify",
                "anonymousId": f"mary-{tag}",
                "traits": {"firstName": "Mary", "lastName": last, "birthday": "1977-06-01"},
            }
        ],
    )
    assert get(server, f"anonymous_id:mary-{tag}")["profile_id"] != john["profile_id"]


def test_accepting_a_possible_match_merges_the_profiles(server):
    tag = uuid.uuid4().hex[:8]
    last = f"Roe{tag}"
    # same name, postcodes one digit apart, nothing else: plausible, not certain
    send(
        server,
        [
            {
                "type": "identify",
                "anonymousId": f"a-{tag}",
                "traits": {
                    "firstName": "Ann",
                    "lastName": last,
                    "address": {"postalCode": "62704"},
                },
            },
            {
                "type": "identify",
                "anonymousId": f"b-{tag}",
                "traits": {
                    "firstName": "Ann",
                    "lastName": last,
                    "address": {"postalCode": "62705"},
                },
            },
        ],
    )
    a_profile = get(server, f"anonymous_id:a-{tag}")
    if a_profile["profile_id"] == get(server, f"anonymous_id:b-{tag}")["profile_id"]:
        pytest.fail("expected a grey-zone pair, the model merged it outright")
    (possible,) = a_profile["possible_matches"]
    with server.admin() as a:
        accepted = a.post(f"/v1/admin/possible-matches/{possible['id']}/accept")
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["status"] == "accepted"
    merged = get(server, f"anonymous_id:b-{tag}")
    assert merged["profile_id"] == get(server, f"anonymous_id:a-{tag}")["profile_id"]
    assert [m["reason"] for m in merged["merges"]] == ["manual"]
    assert merged["possible_matches"] == []


def test_after_a_merge_by_identifier_the_merged_away_side_still_matches(server):
    """A profile merged away by a shared identifier keeps matching through the survivor:
    the survivor is re-indexed with every record it inherited."""
    tag = uuid.uuid4().hex[:8]
    alan = {
        "firstName": "Alan",
        "lastName": f"Turing{tag}",
        "birthday": "1912-06-23",
        "address": {"street": "43 Adlington Road", "city": "Wilmslow", "postalCode": "SK9 1AA"},
    }
    # Xavier first: profiles merge into the older one (by the server's receive time)
    xavier = {"firstName": "Xavier", "lastName": f"Young{tag}"}
    send(server, [{"type": "identify", "userId": f"u9-{tag}", "traits": xavier}])
    send(server, [{"type": "identify", "anonymousId": f"a1-{tag}", "traits": alan}])
    alan_before = get(server, f"anonymous_id:a1-{tag}")["profile_id"]
    # one track carries both ids: the two profiles merge by identifier into the older one,
    # Xavier's, and Alan's profile (the one his records were indexed under) is merged away
    send(
        server,
        [
            {
                "type": "track",
                "event": "Signed In",
                "userId": f"u9-{tag}",
                "anonymousId": f"a1-{tag}",
            }
        ],
    )
    survivor = get(server, f"user_id:u9-{tag}")
    assert survivor["profile_id"] == get(server, f"anonymous_id:a1-{tag}")["profile_id"]
    assert survivor["profile_id"] != alan_before
    # Alan again under a new id, exactly as the merged-away side knew him
    send(server, [{"type": "identify", "anonymousId": f"a2-{tag}", "traits": alan}])
    again = get(server, f"anonymous_id:a2-{tag}")
    assert again["profile_id"] == survivor["profile_id"]
    assert [m["reason"] for m in again["merges"]].count("match") == 1


def grey_pair(server, first, second):
    """Two anonymous records of one name with postcodes a digit apart: a possible match."""
    last = f"Roe{uuid.uuid4().hex[:8]}"
    send(
        server,
        [
            {
                "type": "identify",
                "anonymousId": anonymous,
                "traits": {"firstName": "Ann", "lastName": last, "address": {"postalCode": code}},
            }
            for anonymous, code in ((first, "62704"), (second, "62705"))
        ],
    )
    one, other = get(server, f"anonymous_id:{first}"), get(server, f"anonymous_id:{second}")
    assert one["profile_id"] != other["profile_id"], "the model merged it outright"
    (possible,) = one["possible_matches"]
    return possible, one["profile_id"], other["profile_id"]


def test_decide_follows_an_accepted_possible_match_at_once(server):
    tag = uuid.uuid4().hex[:8]
    possible, a_id, b_id = grey_pair(server, f"a-{tag}", f"b-{tag}")
    for _ in range(4):  # cached in every API process
        assert decided_for(server, {"anonymous_id": f"a-{tag}"}) == a_id
        assert decided_for(server, {"anonymous_id": f"b-{tag}"}) == b_id
    with server.admin() as a:
        accepted = a.post(f"/v1/admin/possible-matches/{possible['id']}/accept")
        assert accepted.status_code == 200, accepted.text
    survivor = get(server, f"anonymous_id:b-{tag}")["profile_id"]
    assert survivor in (a_id, b_id)
    for _ in range(4):
        assert decided_for(server, {"anonymous_id": f"a-{tag}"}) == survivor
        assert decided_for(server, {"anonymous_id": f"b-{tag}"}) == survivor


def test_a_possible_match_between_two_user_ids_cannot_be_accepted(server):
    """Each side signed in as another user since the pair was proposed: with the default
    limits ({user_id: 1}) no profile holds two user ids, accepted or not."""
    tag = uuid.uuid4().hex[:8]
    possible, a_id, b_id = grey_pair(server, f"j1-{tag}", f"j2-{tag}")
    send(
        server,
        [
            {"type": "identify", "userId": f"100-{tag}", "anonymousId": f"j1-{tag}"},
            {"type": "identify", "userId": f"200-{tag}", "anonymousId": f"j2-{tag}"},
        ],
    )
    with server.admin() as a:
        refused = a.post(f"/v1/admin/possible-matches/{possible['id']}/accept")
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "conflict"
        assert "limits" in refused.json()["message"]
    assert get(server, f"user_id:100-{tag}")["profile_id"] == a_id
    assert get(server, f"user_id:200-{tag}")["profile_id"] == b_id
    # still for a person to reject
    with server.admin() as a:
        rejected = a.post(f"/v1/admin/possible-matches/{possible['id']}/reject")
        assert rejected.status_code == 200, rejected.text
        assert rejected.json()["status"] == "rejected"


def test_accepting_a_possible_match_keeps_the_features_of_both_sides(server):
    tag = uuid.uuid4().hex[:8]
    possible, _, _ = grey_pair(server, f"v1-{tag}", f"v2-{tag}")
    views = [("v1", "sku-1"), ("v2", "sku-2"), ("v2", "sku-3"), ("v2", "sku-4")]
    send(
        server,
        [
            {
                "type": "track",
                "anonymousId": f"{side}-{tag}",
                "event": "Product Viewed",
                "properties": {"product_id": product},
            }
            for side, product in views
        ],
    )
    with server.admin() as a:
        accepted = a.post(f"/v1/admin/possible-matches/{possible['id']}/accept")
        assert accepted.status_code == 200, accepted.text
    for side in ("v1", "v2"):
        features = get(server, f"anonymous_id:{side}-{tag}")["features"]
        assert features["counts"]["30d"]["product_views"] == 4
        assert sorted(features["recently_viewed"]) == ["sku-1", "sku-2", "sku-3", "sku-4"]
