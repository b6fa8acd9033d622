"""Per-profile features: windows, decay, affinities, sessions, cart, purchases, RFM, bounds."""

import ast
import math
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import segue.features
from segue.core.events import Event, to_event
from segue.features import (
    FEATURE_NAMES,
    FeatureConfig,
    FeatureFolder,
    ItemInfo,
    ItemModels,
    ProfileFeatures,
    affinities,
    compact_features,
    decode_features,
    encode_features,
    feature_vector,
    features_view,
    fold_features,
    merge_features,
    relative_affinities,
    rfm_scores,
    session_key,
    window_counts,
)

T = 1_714_521_600.0  # 2024-05-01T00:00:00Z
MIN, HOUR, DAY = 60.0, 3600.0, 86400.0


def track(name: str, sid: str | None = None, country: str | None = None, **props: Any) -> Event:
    context: dict[str, Any] = {}
    if sid is not None:
        context["sessionId"] = sid
    if country is not None:
        context["location"] = {"country": country}
    return to_event(
        {
            "type": "track",
            "messageId": "m",
            "anonymousId": "a",
            "event": name,
            "properties": props,
            "context": context,
        }
    )


def page(sid: str | None = None) -> Event:
    context = {"sessionId": sid} if sid else {}
    return to_event(
        {"type": "page", "messageId": "m", "anonymousId": "a", "name": "Home", "context": context}
    )


def view(pid: str = "p1", **props: Any) -> Event:
    return track("Product Viewed", product_id=pid, **props)


def order(order_id: str, products: list[dict[str, Any]], **props: Any) -> Event:
    return track("Order Completed", order_id=order_id, products=products, **props)


def folded(*events: tuple[Event, float], config: FeatureConfig | None = None) -> ProfileFeatures:
    f = ProfileFeatures()
    for event, at in events:
        if config is None:
            fold_features(f, event, at)
        else:
            fold_features(f, event, at, None, config)
    return f


# --- windows ---------------------------------------------------------------------------------
def test_an_event_two_hours_ago_counts_in_24h_but_not_in_1h():
    f = folded((view(), T))
    counts = window_counts(f, T + 2 * HOUR)
    assert counts["1h"]["product_views"] == 0
    assert counts["24h"]["product_views"] == 1
    assert counts["30d"]["product_views"] == 1


def test_windows_roll_over_at_each_resolution():
    f = folded((view(), T))
    assert window_counts(f, T + 30 * MIN)["1h"]["views"] == 1
    assert window_counts(f, T + 61 * MIN)["1h"]["views"] == 0
    assert window_counts(f, T + 23 * HOUR)["24h"]["views"] == 1
    assert window_counts(f, T + 25 * HOUR)["24h"]["views"] == 0
    assert window_counts(f, T + 2 * DAY)["30d"]["views"] == 1
    assert window_counts(f, T + 29 * DAY)["30d"]["views"] == 1
    assert window_counts(f, T + 31 * DAY)["30d"]["views"] == 0


def test_each_kind_of_event_has_its_counter():
    f = folded(
        (page(), T),
        (view("p1"), T + 1),
        (track("Product Clicked", product_id="p1"), T + 2),
        (track("product_added", product_id="p1"), T + 3),  # snake case is read too
        (order("o1", [{"product_id": "p1", "quantity": 2}, {"product_id": "p2"}]), T + 4),
        (track("Signed In"), T + 5),
    )
    assert window_counts(f, T + 10)["1h"] == {
        "views": 2,
        "page_views": 1,
        "product_views": 1,
        "clicks": 1,
        "adds": 1,
        "orders": 1,
        "products_purchased": 3,
    }


def test_buckets_stay_bounded_over_three_months_of_traffic():
    f = ProfileFeatures()
    event = view()
    for n in range(90 * 24 * 3):  # every 20 minutes for 90 days
        fold_features(f, event, T + n * 20 * MIN)
    assert len(f.minutes) <= 60
    assert len(f.hours) <= 24
    assert len(f.days) <= 30
    end = T + (90 * 24 * 3 - 1) * 20 * MIN  # 23:40 on the 90th day
    counts = window_counts(f, end)
    assert counts["1h"]["product_views"] == 3
    assert counts["24h"]["product_views"] == 72
    # the current day so far plus the 29 whole days before it
    assert counts["30d"]["product_views"] == 30 * 72


def test_a_late_event_lands_in_its_bucket_and_one_beyond_retention_is_dropped():
    f = folded((view(), T + 2 * HOUR), (view(), T + 90 * MIN), (view(), T - 40 * DAY))
    counts = window_counts(f, T + 2 * HOUR)
    assert counts["1h"]["product_views"] == 2
    assert counts["30d"]["product_views"] == 2
    assert [b[0] for b in f.minutes] == sorted(b[0] for b in f.minutes)


def test_compact_features_drops_stale_buckets_and_changes_no_read():
    f = folded((view(), T), (view(), T + 10 * MIN))
    later = T + 3 * HOUR
    before = window_counts(f, later)
    compact_features(f, later)
    assert f.minutes == []
    assert len(f.hours) == 1
    assert window_counts(f, later) == before


# --- affinities ------------------------------------------------------------------------------
def test_half_life_halves_the_affinity():
    f = folded((view(category="Shoes", brand="Nike"), T))
    assert affinities(f, "category", T) == [("Shoes", 1.0)]
    assert affinities(f, "category", T + 7 * DAY)[0][1] == pytest.approx(0.5)
    assert affinities(f, "brand", T + 14 * DAY)[0][1] == pytest.approx(0.25)


def test_decay_is_exact_across_a_rebase_and_for_late_events():
    f = folded(
        (view(category="A"), T),
        (view(category="A"), T + 10 * DAY),  # more than a half-life later: re-based
        (view(category="A"), T + 3 * DAY),  # late
    )
    expected = 1 + 0.5 ** (10 / 7) + 0.5 ** (7 / 7)
    assert affinities(f, "category", T + 10 * DAY)[0][1] == pytest.approx(expected)
    assert affinities(f, "category", T + 17 * DAY)[0][1] == pytest.approx(expected / 2)


def test_event_weights_are_view_1_click_2_add_3_purchase_5():
    f = folded(
        (view(category="V"), T),
        (track("Product Clicked", product_id="c", category="C"), T),
        (track("Product Added", product_id="a", category="A"), T),
        (order("o", [{"product_id": "o", "category": "O"}]), T),
    )
    assert affinities(f, "category", T) == [("O", 5.0), ("A", 3.0), ("C", 2.0), ("V", 1.0)]
    assert relative_affinities(f, "category", T) == {"O": 1.0, "A": 0.6, "C": 0.4, "V": 0.2}


def test_configured_weights_and_half_life_apply():
    config = FeatureConfig(half_life=HOUR, view_weight=4.0)
    f = folded((view(category="V"), T), config=config)
    assert affinities(f, "category", T + HOUR, config)[0][1] == pytest.approx(2.0)


def test_only_the_top_n_categories_are_kept_and_a_stronger_newcomer_displaces_the_weakest():
    config = FeatureConfig(top_n=3)
    f = folded(*[(view(category=f"c{n}"), T) for n in range(3)], config=config)
    fold_features(f, view(category="weak"), T - 30 * DAY, None, config)  # decayed: not kept
    assert set(f.categories) == {"c0", "c1", "c2"}
    fold_features(f, track("Product Added", product_id="x", category="new"), T, None, config)
    assert len(f.categories) == 3
    assert "new" in f.categories
    with pytest.raises(ValueError, match="unknown affinity kind"):
        affinities(f, "colour", T)


def test_catalog_lookup_fills_what_the_event_omits_and_the_event_wins():
    catalog = {
        "p1": ItemInfo(category="Shoes", brand="Nike", price=50.0),
        "p2": ItemInfo(category="Bags", brand="Gucci", price=900.0),
    }
    f = ProfileFeatures()
    fold_features(f, view("p1"), T, catalog.get)
    fold_features(f, view("p2", category="Luggage"), T, catalog.get)
    fold_features(f, track("Product Added", product_id="p1"), T, catalog.get)
    assert dict(affinities(f, "category", T)) == {"Shoes": 4.0, "Luggage": 1.0}
    assert dict(affinities(f, "brand", T)) == {"Nike": 4.0, "Gucci": 1.0}
    assert f.cart["p1"].price == 50.0


# --- recency and sessions --------------------------------------------------------------------
def test_recency_tracks_first_and_last_seen_and_last_purchase():
    f = folded((view(), T), (order("o1", [{"product_id": "p1"}]), T + HOUR), (page(), T + DAY))
    assert (f.first_seen, f.last_seen, f.last_purchase) == (T, T + DAY, T + HOUR)
    recency = features_view(f, T + 2 * DAY)["recency"]
    assert recency["last_purchase"] == "2024-05-01T01:00:00.000Z"
    assert recency["days_since_last_seen"] == 1.0


def test_sessions_split_after_30_minutes_of_inactivity():
    f = folded((page(), T), (page(), T + 10 * MIN), (view(), T + 35 * MIN))
    assert f.sessions == 1
    assert (f.session_pages, f.session_events) == (2, 3)
    fold_features(f, page(), T + 35 * MIN + 31 * MIN)
    assert f.sessions == 2
    assert f.session_start == T + 66 * MIN
    assert (f.session_pages, f.session_events) == (1, 1)
    assert f.time_on_site == 35 * MIN
    session = features_view(f, T + 70 * MIN)["session"]
    assert session["active"] is True
    assert session["pages"] == 1
    assert features_view(f, T + 200 * MIN)["session"]["active"] is False


def test_a_session_id_decides_when_present():
    f = folded((page("s1"), T), (page("s2"), T + MIN))
    assert f.sessions == 2  # a new id is a new session, however close
    fold_features(f, page("s2"), T + 50 * MIN)
    assert f.sessions == 2  # the same id holds past 30 minutes
    fold_features(f, view(), T + 55 * MIN)
    assert (f.sessions, f.session_id) == (2, "s2")  # no id: joins by inactivity
    fold_features(f, page(), T + 2 * HOUR)
    assert (f.sessions, f.session_id) == (3, None)
    fold_features(f, page("s3"), T + 2 * HOUR + MIN)
    assert (f.sessions, f.session_id) == (3, "s3")  # an inferred session adopts the id


def test_a_late_event_never_opens_a_session():
    f = folded((page(), T + DAY), (page(), T))
    assert f.sessions == 1
    assert f.session_pages == 1
    assert f.first_seen == T


def test_identify_group_and_alias_change_nothing():
    f = ProfileFeatures()
    for message in (
        {"type": "identify", "userId": "u", "traits": {"email": "a@b.c"}},
        {"type": "group", "userId": "u", "groupId": "g"},
        {"type": "alias", "userId": "u", "previousId": "a"},
    ):
        fold_features(f, to_event({"messageId": "m", **message}), T)
    assert f == ProfileFeatures()


def test_session_key_names_the_current_session():
    f = ProfileFeatures()
    assert session_key("p", f) is None
    fold_features(f, page(), T)
    first = session_key("p", f)
    fold_features(f, page(), T + MIN)
    assert session_key("p", f) == first
    fold_features(f, page(), T + HOUR)
    assert session_key("p", f) != first


# --- cart and purchases ----------------------------------------------------------------------
def test_cart_add_remove_view_and_order():
    f = folded(
        (track("Product Added", product_id="p1", quantity=2, price=10.0), T),
        (track("Product Added", product_id="p2", price="5.5"), T + 1),
        (track("Product Added", product_id="p3", price=1.0), T + 2),
        (track("Product Removed", product_id="p1", quantity=1), T + 3),
        (track("Product Removed", product_id="p2"), T + 4),
        (track("Product Removed", product_id="never-added"), T + 5),
    )
    assert {pid: line.quantity for pid, line in f.cart.items()} == {"p1": 1, "p3": 1}
    assert features_view(f, T + 10)["cart"]["value"] == 11.0
    fold_features(
        f,
        track("Cart Viewed", products=[{"product_id": "p3", "quantity": 4}, {"product_id": "p4"}]),
        T + 6,
    )
    assert {pid: line.quantity for pid, line in f.cart.items()} == {"p3": 4, "p4": 1}
    assert f.cart["p3"].added_at == T + 2  # still in the cart since then
    fold_features(f, track("Cart Viewed"), T + 7)  # no products[]: says nothing about contents
    assert set(f.cart) == {"p3", "p4"}
    fold_features(f, order("o1", [{"product_id": "p3"}]), T + 8)
    assert set(f.cart) == {"p4"}


def test_purchased_items_are_recorded_and_bounded():
    config = FeatureConfig(max_purchased=3)
    f = folded(
        *[(order(f"o{n}", [{"product_id": f"p{n}"}]), T + n) for n in range(5)],
        (order("o9", [{"product_id": "p2"}]), T + 9),  # bought again: now the latest
        config=config,
    )
    assert list(f.purchased) == ["p3", "p4", "p2"]
    assert f.purchased["p2"] == T + 9
    assert features_view(f, T + 10, config)["purchased"] == {
        "count": 3,
        "recent": ["p2", "p4", "p3"],
    }


def test_an_order_sent_twice_counts_once():
    event = order("o1", [{"product_id": "p1", "price": 10}], revenue=10)
    f = folded((event, T), (event, T + 1))
    assert (f.orders, f.revenue) == (1, 10.0)
    assert window_counts(f, T + 2)["1h"]["orders"] == 1


def test_recently_viewed_is_newest_first_and_bounded():
    config = FeatureConfig(max_recent_items=2)
    f = folded((view("a"), T), (view("b"), T + 1), (view("c"), T + 2), (view("b"), T + 3))
    assert features_view(f, T + 4)["recently_viewed"] == ["b", "c", "a"]
    g = folded((view("a"), T), (view("b"), T + 1), (view("c"), T + 2), config=config)
    assert list(g.recent) == ["b", "c"]


# --- RFM -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("days_ago", "r"), [(0, 5), (7, 5), (8, 4), (30, 4), (60, 3), (120, 2), (365, 1)]
)
def test_rfm_recency_score(days_ago, r):
    f = folded((order("o", [{"product_id": "p"}], revenue=1), T))
    assert rfm_scores(f, T + days_ago * DAY)[0] == r


def test_rfm_frequency_and_monetary_scores_and_value_sources():
    f = folded(
        (order("o1", [{"product_id": "a"}], revenue=30), T),
        (order("o2", [{"product_id": "b"}], total=40), T + 1),
        (order("o3", [{"product_id": "c", "price": 20, "quantity": 3}]), T + 2),
        (order("o4", [], value="100"), T + 3),
        (order("o5", [{"product_id": "d"}], revenue=-5), T + 4),  # a refund is not revenue
    )
    assert (f.orders, f.revenue) == (5, 230.0)
    assert rfm_scores(f, T + DAY) == (5, 4, 3)
    rfm = features_view(f, T + DAY)["rfm"]
    assert rfm["score"] == "543"
    assert (rfm["frequency"], rfm["monetary"]) == (5, 230.0)


def test_rfm_of_someone_who_never_bought_is_lowest():
    f = folded((view(), T))
    assert rfm_scores(f, T) == (1, 1, 1)
    assert features_view(f, T)["rfm"]["recency_days"] is None


def test_currency_rates_convert_revenue():
    config = FeatureConfig(currency_rates={"USD": 0.5})
    f = folded(
        (order("o1", [], revenue=100, currency="usd"), T),
        (order("o2", [], revenue=100, currency="EUR"), T),
        config=config,
    )
    assert f.revenue == 150.0


# --- reads, storage, merge -------------------------------------------------------------------
def shopper() -> ProfileFeatures:
    return folded(
        (page("s1"), T),
        (view("p1", category="Shoes", brand="Nike", price=80.0), T + MIN),
        (view("p2", category="Bags", brand="Nike"), T + 2 * MIN),
        (track("Product Added", product_id="p1", price=80.0), T + 3 * MIN),
        (track("Product Added", product_id="p3", category="Shoes", price=20.0), T + 4 * MIN),
        (order("o1", [{"product_id": "p1", "category": "Shoes", "price": 80.0}]), T + 5 * MIN),
    )


def test_features_view_is_json_and_sorted():
    body = features_view(shopper(), T + HOUR)
    assert msgspec.json.decode(msgspec.json.encode(body)) == body
    assert [a["name"] for a in body["affinities"]["category"]] == ["Shoes", "Bags"]
    assert sum(a["share"] for a in body["affinities"]["category"]) == pytest.approx(1.0)
    assert body["cart"]["items"] == [
        {"product_id": "p3", "quantity": 1, "price": 20.0, "added_at": "2024-05-01T00:04:00.000Z"}
    ]
    assert body["counts"]["1h"]["product_views"] == 2
    assert body["session"]["id"] == "s1"


def test_feature_vector_has_the_fixed_names_and_finite_values():
    for f in (ProfileFeatures(), shopper()):
        vector = feature_vector(f, T + HOUR)
        assert tuple(vector) == FEATURE_NAMES
        assert all(isinstance(v, float) and math.isfinite(v) for v in vector.values())
    vector = feature_vector(shopper(), T + 10 * MIN)
    assert vector["in_session"] == 1.0
    assert vector["has_purchased"] == 1.0
    assert vector["cart_lines"] == 1.0
    assert vector["top_category_share"] > 0.5
    assert feature_vector(ProfileFeatures(), T)["days_since_last_seen"] == 365.0


def test_serialisation_round_trip_is_exact_and_compact():
    f = shopper()
    blob = encode_features(f)
    assert decode_features(blob) == f
    assert b"categories" not in blob  # short keys
    assert len(blob) < 600
    with pytest.raises(msgspec.DecodeError):
        decode_features(b"\x01garbage")


def test_the_fold_is_deterministic():
    assert encode_features(shopper()) == encode_features(shopper())


def test_merge_adds_counts_and_affinities_and_joins_a_touching_session():
    anonymous = folded(
        (page(), T),
        (view("p1", category="Shoes"), T + MIN),
        (track("Product Added", product_id="p1", quantity=1), T + 2 * MIN),
    )
    known = folded(
        (view("p2", category="Bags"), T + 5 * MIN),
        (track("Product Added", product_id="p1", quantity=2), T + 6 * MIN),
        (order("o1", [{"product_id": "p9"}], revenue=20), T + 7 * MIN),
    )
    merge_features(known, anonymous)
    assert window_counts(known, T + 10 * MIN)["1h"]["product_views"] == 2
    assert dict(affinities(known, "category", T + 10 * MIN)) == pytest.approx(
        {"Shoes": 0.5 ** (9 * MIN / (7 * DAY)), "Bags": 0.5 ** (5 * MIN / (7 * DAY))}
    )
    assert known.cart["p1"].quantity == 3
    assert known.sessions == 1
    assert (known.session_start, known.session_last) == (T, T + 7 * MIN)
    assert (known.first_seen, known.last_seen) == (T, T + 7 * MIN)
    assert (known.orders, known.revenue) == (1, 20.0)


def test_merge_of_separate_sessions_keeps_the_latest_as_current():
    early = folded((page(), T), (page(), T + MIN))
    late = folded((page(), T + DAY))
    merge_features(early, late)
    assert early.sessions == 2
    assert early.session_start == T + DAY
    assert early.session_pages == 1
    empty = ProfileFeatures()
    merge_features(empty, folded((page(), T)))
    assert empty.sessions == 1


def test_merge_counts_an_order_present_in_both_once():
    a = folded((order("o1", [], revenue=5), T))
    b = folded((order("o1", [], revenue=5), T), (order("o2", [], revenue=5), T))
    merge_features(a, b)
    assert a.orders == 2
    assert a.order_ids == ["o1", "o2"]


def test_config_is_validated():
    with pytest.raises(ValueError, match="half_life"):
        FeatureConfig(half_life=0)
    with pytest.raises(ValueError, match="top_n"):
        FeatureConfig(top_n=0)


def test_the_feature_folder_does_what_the_two_calls_do():
    catalog = {"p1": ItemInfo(category="Shoes", brand="Nike", price=50.0)}
    events = [
        (view("p1"), T),
        (view("p2", category="Bags"), T + MIN),
        (track("Product Added", product_id="p1"), T + 2 * MIN),
        (order("o1", [{"product_id": "p1"}, {"product_id": "p2"}]), T + 3 * MIN),
        (page(), T + 4 * MIN),
        (order("o2", [{"product_id": "p3"}]), T + DAY),
    ]
    f1, m1 = ProfileFeatures(), ItemModels()
    folder = FeatureFolder(m1, item_lookup=catalog.get)
    f2, m2 = ProfileFeatures(), ItemModels()
    for event, at in events:
        folder.fold("p_1", f1, event, at)
        fold_features(f2, event, at, catalog.get)
        m2.apply(
            event,
            at,
            session_key("p_1", f2),
            recent_purchases=f2.purchased,
            item_lookup=catalog.get,
        )
    assert encode_features(f1) == encode_features(f2)
    assert m1.to_bytes() == m2.to_bytes()
    assert m1.neighbours("p3", "bought_together") == [("p1", 0.5), ("p2", 0.5)]
    folder.fold("p_1", f1, view("p1"), math.nan)  # a broken time is ignored
    assert encode_features(f1) == encode_features(f2)


# --- properties ------------------------------------------------------------------------------
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
IDS = st.one_of(st.sampled_from(["p1", "p2", "p3", "p4", "p5", " p6 ", ""]), st.integers(0, 9))
PRODUCT = st.fixed_dictionaries(
    {},
    optional={
        "product_id": IDS,
        "sku": IDS,
        "category": st.one_of(st.sampled_from(["A", "B", "C", "D", "E"]), JUNK),
        "brand": st.one_of(st.sampled_from(["x", "y", "z"]), JUNK),
        "price": st.one_of(st.floats(0, 500), JUNK),
        "quantity": st.one_of(st.integers(-2, 5), JUNK),
    },
)
NAMES = st.sampled_from(
    [
        "Product Viewed",
        "Product Clicked",
        "Product Added",
        "Product Removed",
        "Cart Viewed",
        "Order Completed",
        "order_completed",
        "Signed In",
    ]
)


@st.composite
def events(draw: st.DrawFn) -> tuple[Event, float]:
    at = T + draw(st.floats(-40 * DAY, 40 * DAY, allow_nan=False))
    kind = draw(st.sampled_from(["track", "track", "track", "page", "identify"]))
    context: dict[str, Any] = {}
    if draw(st.booleans()):
        context["sessionId"] = draw(st.one_of(st.sampled_from(["s1", "s2"]), JUNK))
    base = {"messageId": "m", "anonymousId": "a", "context": context, "type": kind}
    if kind == "page":
        return to_event(base), at
    if kind == "identify":
        return to_event({**base, "traits": {"email": "a@b.c"}}), at
    props = dict(draw(PRODUCT))
    if draw(st.booleans()):
        props["products"] = draw(st.one_of(st.lists(PRODUCT, max_size=4), JUNK))
    for key in ("order_id", "revenue", "total", "currency"):
        if draw(st.booleans()):
            props[key] = draw(st.one_of(st.sampled_from(["o1", "o2", "EUR", "10"]), JUNK))
    return to_event({**base, "event": draw(NAMES), "properties": props}), at


SMALL = FeatureConfig(
    top_n=3,
    max_cart_lines=3,
    max_purchased=4,
    max_recent_items=2,
    max_order_ids=2,
    currency_rates={"EUR": 1.1},
)


def check_bounds(f: ProfileFeatures, config: FeatureConfig) -> None:
    assert len(f.minutes) <= 60
    assert len(f.hours) <= 24
    assert len(f.days) <= 30
    for buckets in (f.minutes, f.hours, f.days):
        assert [b[0] for b in buckets] == sorted({b[0] for b in buckets})
        assert all(len(b) == 7 and min(b[1:]) >= 0 for b in buckets)
    assert len(f.categories) <= config.top_n
    assert len(f.brands) <= config.top_n
    assert len(f.cart) <= config.max_cart_lines
    assert all(line.quantity >= 1 for line in f.cart.values())
    assert len(f.purchased) <= config.max_purchased
    assert len(f.recent) <= config.max_recent_items
    assert len(f.order_ids) <= config.max_order_ids
    assert math.isfinite(f.revenue)
    assert f.revenue >= 0


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), max_size=25), st.sampled_from([SMALL, FeatureConfig()]))
def test_random_event_sequences_never_raise_and_stay_within_bounds(stream, config):
    f = ProfileFeatures()
    catalog = {"p1": ItemInfo(category="A", brand="x", price=3.0), "p2": ItemInfo()}
    for event, at in stream:
        fold_features(f, event, at, catalog.get, config)
        check_bounds(f, config)
    now = T + 41 * DAY
    body = features_view(f, now, config)
    msgspec.json.encode(body)
    assert all(math.isfinite(v) for v in feature_vector(f, now, config).values())
    assert decode_features(encode_features(f)) == f
    other = ProfileFeatures()
    for event, at in stream[::2]:
        fold_features(other, event, at, None, config)
    merge_features(f, other, config)
    check_bounds(f, config)


def test_features_import_only_the_stdlib_msgspec_and_the_core():
    for path in Path(segue.features.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert (
                    top in sys.stdlib_module_names
                    or top == "msgspec"
                    or name.startswith(("segue.core", "segue.errors", "segue.features"))
                ), f"{path.name} imports {name}"
