"""Attribution: exposures, clicks, adds and orders within the window, sessions and bounces,
time on page, the pre-period covariate, replays and merges."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict

import msgspec
import pytest

from segue.core.events import Identify, Page, Track
from segue.metrics.attribution import (
    MAX_SHOWN,
    Arm,
    Attribution,
    PersonState,
    day_of,
    decode_person,
    encode_person,
    merge_people,
    order_revenue,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HERO = Arm("home_hero", "hero", "personalized", "p_ann")
HELD = Arm("home_hero", "hero", "holdout", "p_bob")
PDP = Arm("product_detail", "", "", "p_ann")
ARMS = {"d1": HERO, "d2": HERO, "d3": HELD, "d4": PDP}


def page(at: float) -> tuple[Page, float]:
    return Page(message_id=f"pg{at}", anonymous_id="a"), at


def track(name: str, at: float, **props) -> tuple[Track, float]:
    return Track(message_id=f"t{at}{name}", anonymous_id="a", event=name, properties=props), at


def fold(events, *, people=None, person="ann", window=3600.0, **options):
    attribution = Attribution({"hero": window}, **options)
    people = {} if people is None else people
    rows, covariates = attribution.fold(people, [(person, e, at) for e, at in events], ARMS.get)
    return rows, covariates, people


def totals(rows) -> dict[tuple[Arm, str], dict[str, float]]:
    out: dict[tuple[Arm, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        key = (Arm(r.placement, r.experiment, r.variant, r.unit), r.day)
        for name in (
            "impressions",
            "clicks",
            "add_to_carts",
            "conversions",
            "revenue",
            "sessions",
            "bounces",
            "timed_pages",
            "time_on_page_s",
            "time_on_page_sq",
        ):
            out[key][name] += getattr(r, name)
    return out


def test_impressions_once_per_decision_and_clicks_once_within_the_window():
    rows, _, _ = fold(
        [
            track("Decision Viewed", T0, decision_id="d1"),
            track("Decision Viewed", T0 + 1, decision_id="d1"),  # reported twice
            track("Product Clicked", T0 + 5, decision_id="d1", product_id="i1"),
            track("Product Clicked", T0 + 6, decision_id="d1", product_id="i2"),  # 2nd click
            track("Decision Viewed", T0 + 10, decision_id="d2"),
            track("Product Clicked", T0 + 10 + 3601, decision_id="d2"),  # too late
            track("Promotion Clicked", T0 + 20, decision_id="d4"),  # never reported shown
            track("Decision Viewed", T0 + 30, decision_id="unknown"),
        ]
    )
    t = totals(rows)
    day = day_of(T0)
    assert t[(HERO, day)]["impressions"] == 2
    assert t[(HERO, day)]["clicks"] == 1
    assert t[(PDP, day)]["impressions"] == 1  # the click proved the exposure
    assert t[(PDP, day)]["clicks"] == 1
    assert len(t) == 2


def test_adds_and_orders_count_for_the_last_exposure_per_placement_within_its_window():
    rows, covariates, people = fold(
        [
            track("Order Completed", T0 - 100, revenue=30.0),  # before any exposure
            track("Decision Viewed", T0, decision_id="d1"),
            track("Decision Viewed", T0 + 50, decision_id="d4"),
            track("Product Added", T0 + 60, product_id="i1"),
            track(
                "Order Completed",
                T0 + 120,
                products=[{"product_id": "i1", "price": 10.0, "quantity": 2}],
            ),
            track("Order Completed", T0 + 3700, total=5.0),  # hero's window is over
        ]
    )
    t = totals(rows)
    day = day_of(T0)
    assert t[(HERO, day)]["add_to_carts"] == 1
    assert t[(HERO, day)]["conversions"] == 1
    assert t[(HERO, day)]["revenue"] == 20.0
    # outside any experiment the default window (a day) applies
    assert t[(PDP, day)]["conversions"] == 2
    assert t[(PDP, day)]["revenue"] == 25.0
    assert [(c.experiment, c.unit, c.orders, c.revenue) for c in covariates] == [
        ("hero", "p_ann", 1, 30.0)
    ]
    assert (people["ann"].orders, people["ann"].revenue) == (3, 55.0)


def test_sessions_bounces_and_time_on_page():
    rows, _, _ = fold(
        [
            page(T0),  # session 1: exposed on its first page, then a second page
            track("Decision Viewed", T0 + 2, decision_id="d1"),
            page(T0 + 30),
            page(T0 + 90),
            track("Product Viewed", T0 + 100),  # keeps the session alive, no page
            page(T0 + 100 + 1800 + 1),  # more than 30 min after the last event: session 2
            track("Decision Viewed", T0 + 100 + 1800 + 2, decision_id="d2"),
        ],
    )
    t = totals(rows)[(HERO, day_of(T0))]
    assert t["sessions"] == 2
    assert t["bounces"] == 1  # only the second session stayed at one page
    assert t["timed_pages"] == 2
    assert t["time_on_page_s"] == 30.0 + 60.0
    assert t["time_on_page_sq"] == 30.0**2 + 60.0**2


def test_a_session_exposed_late_counts_with_the_pages_it_already_had():
    rows, _, _ = fold(
        [page(T0), page(T0 + 10), track("Decision Viewed", T0 + 12, decision_id="d3")]
    )
    t = totals(rows)[(HELD, day_of(T0))]
    assert (t["sessions"], t["bounces"], t["timed_pages"], t["time_on_page_s"]) == (1, 0, 1, 10)


def test_no_session_without_a_page_view():
    rows, _, _ = fold([track("Decision Viewed", T0, decision_id="d1")])
    t = totals(rows)[(HERO, day_of(T0))]
    assert (t["impressions"], t["sessions"]) == (1, 0)


def test_folding_in_batches_with_the_state_in_between_gives_the_same_rows():
    events = [
        page(T0),
        track("Decision Viewed", T0 + 1, decision_id="d1"),
        page(T0 + 20),
        track("Product Clicked", T0 + 21, decision_id="d1"),
        Identify(message_id="i", user_id="u"),
        track("Order Completed", T0 + 40, revenue=12.5),
        page(T0 + 50),
    ]
    events[4] = (events[4], T0 + 30)
    whole, _, _ = fold(events)
    state: dict[str, PersonState] = {}
    parts = []
    for chunk in (events[:2], events[2:5], events[5:]):
        rows, _, state = fold(chunk, people=state)
        parts += rows
        state = {k: decode_person(encode_person(v)) for k, v in state.items()}  # stored
    assert totals(parts) == totals(whole)


def test_merged_people_keep_both_exposures_and_the_latest_session():
    _, _, first = fold([page(T0), track("Decision Viewed", T0 + 1, decision_id="d1")])
    _, _, second = fold(
        [page(T0 + 5), track("Decision Viewed", T0 + 6, decision_id="d3")], person="bob"
    )
    merged = merge_people(first["ann"], [second["bob"]])
    assert {s.decision_id for s in merged.shown} == {"d1", "d3"}
    assert merged.session is second["bob"].session
    rows, _, _ = fold([track("Order Completed", T0 + 60, revenue=8.0)], people={"ann": merged})
    t = totals(rows)
    # one placement and experiment: the later exposure (the holdout's) gets the order
    assert t[(HELD, day_of(T0))]["conversions"] == 1
    assert (HERO, day_of(T0)) not in t


@pytest.mark.parametrize(
    ("props", "revenue"),
    [
        ({"revenue": "12.5", "total": 99}, 12.5),
        ({"total": 20}, 20.0),
        ({"value": 3}, 3.0),
        ({"products": [{"price": 2, "quantity": 3}, {"price": 1.5}, "junk"]}, 7.5),
        ({"revenue": True, "total": float("nan")}, 0.0),
    ],
)
def test_order_revenue(props, revenue):
    assert order_revenue(props) == revenue


def test_late_events_are_attributed_by_their_own_time_not_by_the_newest():
    rows, _, state = fold(
        [
            track("Decision Viewed", T0, decision_id="d1"),
            (Identify(message_id="now", user_id="u"), T0 + 86400 * 30),  # newer, first
        ]
    )
    rows, _, _ = fold([track("Order Completed", T0 + 10, revenue=4.0)], people=state)
    assert totals(rows)[(HERO, day_of(T0))]["conversions"] == 1


def test_a_decision_without_a_unit_counts_under_the_person():
    stranger = Arm("cart", "", "", "")
    attribution = Attribution()
    rows, _ = attribution.fold(
        {}, [("p_ann", *track("Decision Viewed", T0, decision_id="x"))], {"x": stranger}.get
    )
    assert [(r.placement, r.unit, r.impressions) for r in rows] == [("cart", "p_ann", 1)]


def test_the_window_a_decision_was_made_under_wins_over_the_configured_one():
    recorded = HERO._replace(window=60.0)  # the configuration says 3600 for "hero"
    events = [
        track("Decision Viewed", T0, decision_id="d"),
        track("Order Completed", T0 + 120, revenue=1.0),
    ]
    attribution = Attribution({"hero": 3600.0})
    rows, _ = attribution.fold({}, [("ann", e, at) for e, at in events], {"d": recorded}.get)
    assert sum(r.conversions for r in rows) == 0


@pytest.mark.parametrize("order", list(itertools.permutations([0.0, 50.0, 100.0, 160.0])))
def test_late_pages_count_as_in_time_order(order):
    first, *rest = order
    events = [page(T0 + first), track("Decision Viewed", T0 + 1, decision_id="d1")]
    rows, _, _ = fold(events + [page(T0 + at) for at in rest])
    t = totals(rows)[(HERO, day_of(T0))]
    assert (t["sessions"], t["bounces"], t["timed_pages"]) == (1, 0, 3)
    assert t["time_on_page_s"] == 50.0 + 50.0 + 60.0
    assert t["time_on_page_sq"] == 50.0**2 + 50.0**2 + 60.0**2


def test_a_late_page_turns_a_bounce_into_two_pages_only_within_the_session():
    exposed = [page(T0 + 100), track("Decision Viewed", T0 + 101, decision_id="d1")]
    rows, _, _ = fold([*exposed, page(T0 + 40)])  # 60 s before: the session's first page
    t = totals(rows)[(HERO, day_of(T0))]
    assert (t["sessions"], t["bounces"], t["timed_pages"], t["time_on_page_s"]) == (1, 0, 1, 60)
    rows, _, _ = fold([*exposed, page(T0 + 100 - 1800 - 1)])  # an earlier session's page
    t = totals(rows)[(HERO, day_of(T0))]
    assert (t["sessions"], t["bounces"], t["timed_pages"], t["time_on_page_s"]) == (1, 1, 0, 0)


def test_a_session_stored_without_page_times_still_loads_and_counts():
    # the stored format before page times were kept: the session as an 8-item array
    old = msgspec.msgpack.encode(
        {
            "shown": [],
            "touches": [],
            "session": [T0, T0 + 30, 2, T0 + 30, 1, 30.0, 900.0, [[list(HERO), day_of(T0)]]],
            "orders": 0,
            "revenue": 0.0,
        }
    )
    state = decode_person(old)
    rows, _, _ = fold([page(T0 + 90), page(T0 + 60), page(T0 + 10)], people={"ann": state})
    t = totals(rows)[(HERO, day_of(T0))]
    # T0+90 is timed after the newest page known (T0+30) and T0+60 splits that gap; T0+10
    # falls before every page time kept, so its neighbours are unknown: a page, not timed
    assert (t["timed_pages"], t["time_on_page_s"], t["bounces"]) == (2, 60.0, 0)
    assert t["time_on_page_sq"] == 2 * 30.0**2
    assert state.session is not None
    assert state.session.pages == 5


def test_a_session_across_midnight_counts_once_on_the_day_of_its_first_exposure():
    rows, _, _ = fold(
        [
            page(T0 - 100),
            track("Decision Viewed", T0 - 50, decision_id="d1"),  # the day before
            page(T0 + 10),
            track("Decision Viewed", T0 + 20, decision_id="d2"),  # same arm, next day
            page(T0 + 30),
        ]
    )
    by_day = totals(rows)
    before, after = by_day[(HERO, day_of(T0 - 50))], by_day[(HERO, day_of(T0))]
    assert (before["sessions"], before["bounces"], before["timed_pages"]) == (1, 0, 2)
    assert before["time_on_page_s"] == 110.0 + 20.0
    assert (after["impressions"], after["sessions"], after["timed_pages"]) == (1, 0, 0)


def test_an_order_folded_before_its_exposure_counts_for_it_and_not_in_the_covariate():
    rows, covariates, _ = fold(
        [
            track("Order Completed", T0 + 50, revenue=10.0),
            track("Decision Viewed", T0, decision_id="d1"),  # shown before, folded after
        ]
    )
    t = totals(rows)[(HERO, day_of(T0))]
    assert (t["conversions"], t["revenue"]) == (1, 10.0)
    assert [(c.unit, c.orders, c.revenue) for c in covariates] == [("p_ann", 0, 0.0)]


def test_an_order_counts_for_the_last_exposure_before_it_in_time():
    # d3 is a later exposure in the same placement and experiment (another unit, as after
    # a merge), made after the order: d1 is the last touch before it
    rows, _, _ = fold(
        [
            track("Decision Viewed", T0, decision_id="d1"),
            track("Decision Viewed", T0 + 100, decision_id="d3"),
            track("Order Completed", T0 + 50, revenue=10.0),
        ]
    )
    t = totals(rows)
    assert t[(HERO, day_of(T0))]["conversions"] == 1
    assert t[(HELD, day_of(T0))]["conversions"] == 0


EVENTS = [
    track("Decision Viewed", T0, decision_id="d1"),
    track("Decision Viewed", T0 + 20, decision_id="d3"),
    track("Product Added", T0 + 10, product_id="i1"),
    track("Order Completed", T0 + 50, revenue=10.0),
    track("Order Completed", T0 + 5000, revenue=7.0),  # past every window
    track("Decision Viewed", T0 + 60, decision_id="d4"),
    track("Decision Viewed", T0 + 60, decision_id="d4"),  # reported twice
]


@pytest.mark.parametrize("seed", range(40))
def test_adds_and_orders_count_once_whatever_order_exposures_arrive_in(seed):
    expected = {
        (HERO, day_of(T0)): (1, 0, 0.0),  # the add, before d3
        (HELD, day_of(T0)): (0, 1, 10.0),  # the order: d3 is its last touch in "hero"
        (PDP, day_of(T0)): (0, 1, 7.0),  # PDP's window is a day: the late order only
    }
    events = list(EVENTS)
    random.Random(seed).shuffle(events)
    state: dict[str, PersonState] = {}
    rows = []
    for event in events:  # one batch each, the state stored in between
        batch, _, state = fold([event], people=state)
        rows += batch
        state = {k: decode_person(encode_person(v)) for k, v in state.items()}
    t = totals(rows)
    for key, (adds, conversions, revenue) in expected.items():
        assert (t[key]["add_to_carts"], t[key]["conversions"], t[key]["revenue"]) == (
            adds,
            conversions,
            revenue,
        )
    assert state["ann"].orders == 2


def test_attribution_state_stored_before_recent_orders_were_kept_still_loads():
    old = msgspec.msgpack.encode(
        {
            "shown": [["d1", list(HERO), day_of(T0), T0, False]],
            "touches": [[list(HERO), day_of(T0), T0]],
            "session": None,
            "orders": 2,
            "revenue": 40.0,
        }
    )
    state = decode_person(old)
    rows, _, _ = fold([track("Order Completed", T0 + 9, revenue=5.0)], people={"ann": state})
    assert totals(rows)[(HERO, day_of(T0))]["conversions"] == 1
    assert (state.orders, state.revenue) == (3, 45.0)


def test_recent_exposures_and_orders_are_bounded_per_person():
    arms = {f"h{i}": HERO for i in range(30)} | {"p": PDP}
    events = [track("Decision Viewed", T0, decision_id="p")]
    events += [track("Decision Viewed", T0 + i, decision_id=f"h{i}") for i in range(30)]
    events += [track("Order Completed", T0 + 100 + i, revenue=1.0) for i in range(40)]
    people: dict[str, PersonState] = {}
    Attribution().fold(people, [("ann", e, at) for e, at in events], arms.get)
    state = people["ann"]
    # the newest exposures of each (placement, experiment), the older placement's too
    assert [t.at for t in state.touches] == [T0] + [T0 + i for i in range(22, 30)]
    assert len(state.outcomes) == 32
    assert state.outcomes[0].at == T0 + 108
    assert (state.orders, state.revenue) == (40, 40.0)


def test_a_decision_reported_again_after_max_shown_others_counts_again():
    arms = {f"x{i}": PDP for i in range(MAX_SHOWN + 1)}
    first = [track("Decision Viewed", T0, decision_id="x0")]
    others = [track("Decision Viewed", T0 + i, decision_id=f"x{i}") for i in range(1, 201)]
    again = [track("Decision Viewed", T0 + 300, decision_id="x0")]
    # after 199 others x0 is still remembered: one impression; after 200 it is not: two
    for between, impressions in ((others[:-1], MAX_SHOWN), (others, MAX_SHOWN + 2)):
        events = first + between + again
        rows, _ = Attribution().fold({}, [("ann", e, at) for e, at in events], arms.get)
        assert sum(r.impressions for r in rows) == impressions
