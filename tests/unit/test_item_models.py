"""Item models: popularity, co-visitation, bought together, fresh items, content similarity."""

import math
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segue.core.events import Event, to_event
from segue.core.model import Item
from segue.features import ContentIndex, ItemInfo, ItemModels, ItemModelsConfig, item_tokens

T = 1_714_521_600.0  # 2024-05-01T00:00:00Z
MIN, HOUR, DAY = 60.0, 3600.0, 86400.0


def track(name: str, country: str | None = None, **props: Any) -> Event:
    context = {"location": {"country": country}} if country else {}
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


def view(pid: str, country: str | None = None, **props: Any) -> Event:
    return track("Product Viewed", country, product_id=pid, **props)


def order(order_id: str, *pids: str) -> Event:
    return track("Order Completed", order_id=order_id, products=[{"product_id": p} for p in pids])


# --- popularity ------------------------------------------------------------------------------
def test_popularity_weights_views_clicks_adds_and_purchases():
    m = ItemModels()
    m.apply(view("v"), T)
    m.apply(track("Product Clicked", product_id="c"), T)
    m.apply(track("Product Added", product_id="a"), T)
    m.apply(order("o1", "o"), T)
    m.apply(view("v"), T)
    assert m.top(10, now=T) == [("o", 5.0), ("a", 3.0), ("c", 2.0), ("v", 2.0)]
    assert m.popularity("a", T) == 3.0
    assert m.popularity("unknown", T) == 0.0


def test_popularity_halves_after_its_half_life():
    m = ItemModels(ItemModelsConfig(popularity_half_life=DAY))
    m.apply(view("a"), T)
    m.apply(view("b"), T + DAY)
    assert m.top(2, now=T + DAY) == [("b", 1.0), ("a", pytest.approx(0.5))]
    assert m.top(1) == [("b", 1.0)]  # default: as of the newest event
    assert m.popularity("b", T + 3 * DAY) == pytest.approx(0.25)


def test_popularity_by_category_and_region():
    m = ItemModels()
    m.apply(view("s1", "DE", category="Shoes"), T)
    m.apply(view("s1", "DE", category="Shoes"), T)
    m.apply(view("s2", "us", category="Shoes"), T)
    m.apply(view("b1", "DE", category="Bags"), T)
    m.apply(view("b2", category="Bags"), T, region="fr")  # the argument wins
    assert [pid for pid, _ in m.top(5, category="Shoes", now=T)] == ["s1", "s2"]
    assert [pid for pid, _ in m.top(5, region="de", now=T)] == ["s1", "b1"]
    assert [pid for pid, _ in m.top(5, region="US", now=T)] == ["s2"]
    assert [pid for pid, _ in m.top(5, region="FR", now=T)] == ["b2"]
    assert [pid for pid, _ in m.top(5, category="Bags", region="DE", now=T)] == ["b1"]
    assert m.top(5, region="JP") == []
    assert m.top(0) == []


def test_the_catalog_category_wins_and_fills_events_without_one():
    m = ItemModels()
    m.observe_item(Item(item_id="p1", category="Shoes", brand="Nike"), T)
    m.apply(view("p1", category="Sneakers"), T)
    m.apply(view("p2"), T, item_lookup={"p2": ItemInfo(category="Shoes")}.get)
    assert [pid for pid, _ in m.top(5, category="Shoes", now=T)] == ["p1", "p2"]
    assert m.top(5, category="Sneakers") == []
    assert m.category_of("p1") == "Shoes"


def test_events_that_teach_nothing_are_ignored():
    m = ItemModels()
    m.apply(to_event({"type": "page", "messageId": "m", "anonymousId": "a"}), T)
    m.apply(to_event({"type": "identify", "messageId": "m", "userId": "u"}), T)
    m.apply(track("Product Removed", product_id="p"), T)
    m.apply(track("Product Viewed"), T)  # no product
    m.apply(view("p"), math.inf)
    assert m.state.items == {}
    assert m.state.anchor is None


# --- co-visitation ---------------------------------------------------------------------------
def test_co_visitation_is_symmetric_and_per_session():
    m = ItemModels()
    for pid in ["a", "b", "c", "a"]:  # "a" seen again: no new pairs
        m.apply(view(pid), T, session_key="s1")
    m.apply(view("z"), T, session_key="s2")
    assert m.neighbours("a", "co_visitation") == [("b", 1.0), ("c", 1.0)]
    assert m.neighbours("b", "co_visitation") == [("a", 1.0), ("c", 1.0)]
    assert m.neighbours("c", "co_visitation", 1) == [("a", 1.0)]
    assert m.neighbours("z", "co_visitation") == []
    for a, b in [("a", "b"), ("a", "c"), ("b", "c")]:
        assert m.state.covisit[a][b] == m.state.covisit[b][a]


def test_co_visitation_needs_a_session_and_the_window():
    m = ItemModels(ItemModelsConfig(covisit_window=30 * MIN))
    m.apply(view("a"), T)
    m.apply(view("b"), T + MIN)  # no session key
    m.apply(view("c"), T, session_key="s")
    m.apply(view("d"), T + 31 * MIN, session_key="s")  # too far apart
    m.apply(view("e"), T + 40 * MIN, session_key="s")
    assert m.neighbours("a", "co_visitation") == []
    assert m.neighbours("c", "co_visitation") == []
    assert m.neighbours("d", "co_visitation") == [("e", pytest.approx(1.0))]


def test_co_visitation_scores_decay_with_the_neighbour_half_life():
    m = ItemModels(ItemModelsConfig(neighbour_half_life=10 * DAY))
    m.apply(view("a"), T, session_key="s1")
    m.apply(view("b"), T + MIN, session_key="s1")
    m.apply(view("a"), T + 10 * DAY, session_key="s2")
    m.apply(view("b"), T + 10 * DAY + MIN, session_key="s2")
    (pid, score), *_ = m.neighbours("a", "co_visitation", now=T + 10 * DAY + MIN)
    assert pid == "b"
    assert score == pytest.approx(1.0 + 0.5)


def test_neighbour_lists_and_sessions_are_bounded():
    config = ItemModelsConfig(neighbours=3, session_items=4, max_sessions=5)
    m = ItemModels(config)
    for n in range(200):
        m.apply(view(f"p{n % 40}"), T + n, session_key=f"s{n // 10}")
    sizes = m.sizes()
    assert sizes["sessions"] <= 5
    assert all(len(row) <= 6 for row in m.state.covisit.values())
    assert all(len(buffer) <= 4 for buffer in m.state.sessions.values())
    assert len(m.neighbours("p1", "co_visitation", 50)) <= 6
    with pytest.raises(ValueError, match="unknown neighbour kind"):
        m.neighbours("p1", "covisit")


# --- bought together -------------------------------------------------------------------------
def test_products_of_one_order_are_bought_together():
    m = ItemModels()
    m.apply(order("o1", "a", "b", "c"), T)
    m.apply(order("o1", "a", "b", "c"), T)  # the same order again: ignored
    m.apply(order("o2", "a", "b"), T)
    assert m.neighbours("a", "bought_together") == [("b", 2.0), ("c", 1.0)]
    assert m.neighbours("c", "bought_together") == [("a", 1.0), ("b", 1.0)]
    assert m.popularity("a", T) == 10.0


def test_orders_of_one_customer_within_30_days_are_paired_at_half_weight():
    m = ItemModels()
    m.apply(order("o1", "old"), T - 40 * DAY)
    m.apply(order("o2", "a"), T - 3 * DAY)
    history = {"old": T - 40 * DAY, "a": T - 3 * DAY, "x": T}
    m.apply(order("o3", "x", "y"), T, recent_purchases=history)
    assert m.neighbours("x", "bought_together") == [("y", 1.0), ("a", 0.5)]
    assert m.neighbours("a", "bought_together") == [("x", 0.5), ("y", 0.5)]
    assert m.neighbours("old", "bought_together") == []


# --- fresh items -----------------------------------------------------------------------------
def test_fresh_lists_new_items_newest_first():
    m = ItemModels(ItemModelsConfig(fresh_age=7 * DAY))
    m.apply(view("old"), T - 10 * DAY)
    m.apply(view("mid"), T - 2 * DAY)
    m.apply(view("new"), T)
    m.apply(view("old"), T)  # seen again, still not new
    m.observe_item(Item(item_id="catalog-only"), T - DAY)
    fresh = m.fresh(10, T)
    assert [pid for pid, _ in fresh] == ["new", "catalog-only", "mid"]
    assert fresh[0][1] == 1.0
    assert fresh[2][1] == pytest.approx(1 - 2 / 7)
    assert [pid for pid, _ in m.fresh(10, T, max_age=DAY)] == ["new", "catalog-only"]
    assert m.fresh(1, T) == [("new", 1.0)]


def test_fresh_is_bounded():
    m = ItemModels(ItemModelsConfig(max_fresh=4))
    for n in range(50):
        m.apply(view(f"p{n}"), T + n)
    assert len(m.state.fresh) <= 5
    assert [pid for pid, _ in m.fresh(3, T + 50)] == ["p49", "p48", "p47"]


# --- bounds, compaction, persistence ---------------------------------------------------------
def test_items_and_tables_are_bounded():
    config = ItemModelsConfig(max_items=10, table_size=4, max_categories=2, max_regions=1)
    m = ItemModels(config)
    for n in range(100):
        m.apply(view(f"p{n}", f"C{n % 3}", category=f"cat{n % 5}"), T + n)
    sizes = m.sizes()
    assert sizes["items"] <= 11
    assert sizes["overall"] <= 5
    assert sizes["categories"] <= 2
    assert sizes["regions"] <= 1
    assert sizes["category_entries"] <= 10
    assert len(m.top(10)) <= 5


def test_compaction_drops_what_decayed_and_keeps_answers():
    config = ItemModelsConfig(popularity_half_life=DAY, neighbour_half_life=DAY, min_score=0.01)
    m = ItemModels(config)
    m.apply(view("a"), T, session_key="s")
    m.apply(view("b"), T + 1, session_key="s")
    m.apply(view("c"), T + 30 * DAY)  # a month later: the compaction ran
    assert m.state.anchor is not None
    assert m.top(5, now=T + 30 * DAY) == [("c", 1.0)]
    assert m.neighbours("a", "co_visitation") == []
    assert m.state.sessions == {}
    assert m.fresh(5, T + 30 * DAY) == [("c", 1.0)]
    before = m.top(5, now=T + 31 * DAY)
    m.compact(T + 31 * DAY, rebase=True)
    assert m.state.anchor == T + 31 * DAY
    assert m.top(5, now=T + 31 * DAY) == [("c", pytest.approx(before[0][1]))]


def test_scores_stay_finite_over_years():
    m = ItemModels(ItemModelsConfig(popularity_half_life=HOUR, neighbour_half_life=HOUR))
    for n in range(0, 3 * 365):
        m.apply(view("a"), T + n * DAY, session_key=f"s{n}")
        m.apply(view("b"), T + n * DAY + 1, session_key=f"s{n}")
    at = T + (3 * 365 - 1) * DAY + 1
    assert m.popularity("b", at) == pytest.approx(1.0)
    assert m.neighbours("a", "co_visitation", now=at) == [("b", pytest.approx(1.0, rel=1e-3))]
    assert all(math.isfinite(s.score) for s in m.state.items.values())


def test_serialisation_round_trip():
    m = ItemModels()
    m.apply(view("a", "DE", category="Shoes"), T, session_key="s")
    m.apply(view("b", "DE", category="Shoes"), T + 1, session_key="s")
    m.apply(order("o1", "a", "b"), T + 2)
    copy = ItemModels.from_bytes(m.to_bytes())
    assert copy.state == m.state
    assert copy.to_bytes() == m.to_bytes()
    assert copy.top(5, region="DE") == m.top(5, region="DE")
    copy.apply(order("o1", "a", "b"), T + 3)  # remembered: still a repeat
    assert copy.state == m.state
    with pytest.raises(msgspec.DecodeError):
        ItemModels.from_bytes(b"\x00nope")
    snapshot = m.snapshot()
    m.apply(view("c"), T + 4)
    assert snapshot.popularity("c") == 0.0
    assert snapshot.top(5, region="DE") == copy.top(5, region="DE")


def _run(steps: Any) -> tuple[int, ItemModels]:
    """Drive a step generator to its end; return how many steps it took and its result."""
    n = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return n, done.value
        n += 1


def test_served_models_equal_the_whole_state_less_what_only_learning_needs():
    m = ItemModels()
    for n in range(5000):  # enough items that the big maps are decoded over several steps
        m.apply(view(f"i{n}", "DE", category=f"c{n % 7}"), T + n, session_key=f"s{n % 300}")
        if n % 10 == 0:
            m.apply(order(f"o{n}", f"i{n}", f"i{n - 1}"), T + n)
    steps, served = _run(ItemModels.served_from_bytes(m.to_bytes()))
    assert steps > 5  # yields while it decodes: an API process keeps answering meanwhile
    full = ItemModels.from_bytes(m.to_bytes())
    for name in full.state.__struct_fields__:
        if name in ("sessions", "orders"):
            assert getattr(served.state, name) == {}
        else:
            assert getattr(served.state, name) == getattr(full.state, name), name
    at = T + 5000
    assert served.top(10, now=at) == full.top(10, now=at)
    assert served.top(10, region="DE", now=at) == full.top(10, region="DE", now=at)
    assert served.neighbours("i10", "co_visitation", now=at) == full.neighbours(
        "i10", "co_visitation", now=at
    )
    assert served.neighbours("i10", "bought_together", now=at) == full.neighbours(
        "i10", "bought_together", now=at
    )
    with pytest.raises(msgspec.DecodeError):
        _run(ItemModels.served_from_bytes(b"\x00nope"))


def _busy_models(events: int = 20_000) -> ItemModels:
    m = ItemModels()
    for n in range(events):  # maps of thousands of entries, nested and flat, and a few small
        m.apply(view(f"i{n % 9000}", "DE", category=f"c{n % 7}"), T + n, session_key=f"s{n % 3000}")
        if n % 10 == 0:
            m.apply(order(f"o{n}", f"i{n % 9000}", f"i{(n - 1) % 9000}"), T + n)
    return m


def test_saving_in_steps_gives_the_bytes_of_one_encode():
    m = _busy_models()
    steps, saved = _run(m.to_bytes_in_steps())
    assert saved == m.to_bytes()
    assert steps > 5  # the loop gets its turn while the state is encoded
    assert ItemModels.from_bytes(saved).state == m.state
    _, saved = _run(ItemModels().to_bytes_in_steps())  # empty maps too
    assert saved == ItemModels().to_bytes()


def test_events_folded_while_saving_in_steps_leave_a_state_that_decodes():
    m = _busy_models()
    steps = m.to_bytes_in_steps()
    n = 0
    while True:  # the processor folds events between the saver's steps
        try:
            next(steps)
        except StopIteration as done:
            saved: bytes = done.value
            break
        m.apply(view(f"new{n}", "DE", category="c1"), T + 20_000 + n, session_key=f"s{n}")
        m.apply(view(f"i{n}"), T + 20_000 + n, session_key=f"s{n}")
        n += 1
    assert n > 5
    copy = ItemModels.from_bytes(saved)
    # what a map held when its slices were taken is there; later entries may be
    assert set(copy.state.items) >= {f"i{j}" for j in range(9000)}
    assert copy.state.anchor == m.state.anchor
    assert copy.top(5, now=T + 30_000) != []


def test_a_compaction_while_saving_in_steps_makes_one_consistent_encode():
    m = _busy_models()
    steps = m.to_bytes_in_steps()
    next(steps)
    m.compact(T + 40_000, rebase=True)  # rescales every score and moves the anchor
    _, saved = _run(steps)
    assert saved == m.to_bytes()  # not slices of two scales


def test_a_new_half_life_applies_from_the_newest_event():
    m = ItemModels(ItemModelsConfig(popularity_half_life=DAY))
    m.apply(view("a"), T)
    m.apply(view("b"), T + DAY)
    slower = ItemModels.from_bytes(m.to_bytes(), ItemModelsConfig(popularity_half_life=2 * DAY))
    assert slower.popularity("a", T + DAY) == pytest.approx(0.5)
    assert slower.popularity("a", T + 3 * DAY) == pytest.approx(0.25)


def test_the_same_events_give_the_same_bytes():
    def build() -> bytes:
        m = ItemModels(ItemModelsConfig(neighbours=2, table_size=3))
        for n in range(300):
            m.apply(view(f"p{(n * 7) % 23}", f"R{n % 3}"), T + n * 97, session_key=f"s{n // 6}")
            if n % 11 == 0:
                m.apply(order(f"o{n}", f"p{n % 5}", f"p{n % 7}"), T + n * 97)
        return m.to_bytes()

    assert build() == build()


def test_config_is_validated():
    with pytest.raises(ValueError, match="neighbours"):
        ItemModelsConfig(neighbours=0)
    with pytest.raises(ValueError, match="popularity_half_life"):
        ItemModelsConfig(popularity_half_life=-1)


# --- content similarity ----------------------------------------------------------------------
CATALOG = [
    Item(item_id="run1", category="Shoes/Running", brand="Nike", price=100.0, tags=["road"]),
    Item(item_id="run2", category="Shoes/Running", brand="Nike", price=110.0, tags=["road"]),
    Item(item_id="run3", category="Shoes/Running", brand="Asics", price=95.0),
    Item(item_id="boot", category="Shoes/Hiking", brand="Salomon", price=180.0),
    Item(item_id="bag", category="Bags", brand="Nike", price=40.0),
    Item(item_id="hat", category="Hats", brand="Kangol", price=30.0, attributes={"color": "red"}),
]


def test_similar_items_share_category_brand_tags_and_price_band():
    index = ContentIndex.build(CATALOG)
    ranked = index.similar("run1", 5)
    assert [pid for pid, _ in ranked][:3] == ["run2", "run3", "boot"]
    assert all(0 < score <= 1 for _, score in ranked)
    assert "run1" not in dict(ranked)
    assert "hat" not in dict(ranked)
    new = Item(item_id="run4", category="shoes / running", brand="NIKE", price=105.0)
    assert index.similar(new, 1)[0][0] in {"run1", "run2"}
    assert index.similar("run1", 5, candidates=["bag", "hat", "nope"]) == [
        ("bag", pytest.approx(index.similar("run1", 10)[-1][1]))
    ]


def test_the_index_follows_catalog_changes():
    index = ContentIndex.build(CATALOG)
    assert len(index) == 6
    index.remove("run2")
    index.remove("never-there")
    assert "run2" not in index
    assert "run2" not in dict(index.similar("run1", 10))
    index.add(Item(item_id="hat", category="Shoes/Running", brand="Nike", price=100.0))
    assert index.similar("run1", 1)[0][0] == "hat"
    assert index.similar("unknown", 3) == []
    assert ContentIndex().similar(CATALOG[0], 3) == []


def test_item_tokens_are_bounded():
    item = Item(item_id="x", tags=[f"t{n}" for n in range(500)], price=float("nan"))
    assert len(item_tokens(item)) <= 64


# --- properties ------------------------------------------------------------------------------
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4), st.just([1])
)
IDS = st.one_of(st.sampled_from([f"p{n}" for n in range(12)]), st.integers(0, 3), JUNK)
PRODUCT = st.fixed_dictionaries(
    {},
    optional={
        "product_id": IDS,
        "category": st.one_of(st.sampled_from(["A", "B", "C"]), JUNK),
        "quantity": JUNK,
    },
)


@st.composite
def events(draw: st.DrawFn) -> tuple[Event, float, str | None, str | None]:
    name = draw(
        st.sampled_from(
            ["Product Viewed", "Product Clicked", "Product Added", "Order Completed", "Other"]
        )
    )
    props = dict(draw(PRODUCT))
    if draw(st.booleans()):
        props["products"] = draw(st.one_of(st.lists(PRODUCT, max_size=5), JUNK))
    if draw(st.booleans()):
        props["order_id"] = draw(st.one_of(st.sampled_from(["o1", "o2"]), JUNK))
    context: dict[str, Any] = {}
    if draw(st.booleans()):
        context["location"] = draw(st.one_of(st.fixed_dictionaries({"country": JUNK}), JUNK))
    event = to_event(
        {
            "type": "track",
            "messageId": "m",
            "anonymousId": "a",
            "event": name,
            "properties": props,
            "context": context,
        }
    )
    at = T + draw(st.floats(-5 * DAY, 60 * DAY, allow_nan=False))
    session = draw(st.one_of(st.none(), st.sampled_from(["s1", "s2", "s3"])))
    region = draw(st.one_of(st.none(), st.sampled_from(["DE", " fr", ""])))
    return event, at, session, region


SMALL = ItemModelsConfig(
    neighbours=2,
    table_size=3,
    max_items=6,
    max_categories=2,
    max_regions=2,
    session_items=3,
    max_sessions=2,
    max_order_products=3,
    cross_order_items=2,
    max_fresh=3,
    max_orders=2,
    compact_every=7 * DAY,
)


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), max_size=30), st.sampled_from([SMALL, ItemModelsConfig()]))
def test_random_event_sequences_never_raise_and_stay_within_bounds(stream, config):
    m = ItemModels(config)
    history: dict[str, float] = {}
    for event, at, session, region in stream:
        m.apply(event, at, session, region, recent_purchases=history)
        history.update({pid: at for pid in list(m.state.items)[:2]})
        sizes = m.sizes()
        assert sizes["items"] <= config.max_items + config.max_items // 10
        assert sizes["overall"] <= config.table_size + config.table_size // 4
        assert sizes["categories"] <= config.max_categories
        assert sizes["regions"] <= config.max_regions
        assert sizes["sessions"] <= config.max_sessions
        assert sizes["fresh"] <= config.max_fresh + config.max_fresh // 4
        assert sizes["orders"] <= config.max_orders
        for rows in (m.state.covisit, m.state.bought):
            assert all(len(row) <= 2 * config.neighbours for row in rows.values())
            assert all(pid not in row for pid, row in rows.items())
    now = T + 61 * DAY
    for pid, score in m.top(10, now=now) + m.fresh(10, now):
        assert isinstance(pid, str)
        assert math.isfinite(score)
    for pid in list(m.state.items)[:3]:
        for kind in ("co_visitation", "bought_together"):
            assert all(math.isfinite(s) and s > 0 for _, s in m.neighbours(pid, kind, 5, now))
    assert ItemModels.from_bytes(m.to_bytes(), config).state == m.state
