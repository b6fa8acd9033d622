"""The in-memory block index answers as a table of (key, profile) rows would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from segue.storage._block_index import BlockIndex

_keys = st.sampled_from([f"k{i}" for i in range(6)])
_profiles = st.sampled_from([f"p{i}" for i in range(5)])
#: (profile, its keys from now on): what a commit tells the store
_steps = st.lists(st.tuples(_profiles, st.lists(_keys, max_size=4)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(_steps, st.integers(min_value=1, max_value=5))
def test_members_are_what_every_profile_holds_now(steps, cap):
    index = BlockIndex()
    index.reset(0)
    held: dict[str, set[str]] = {}
    for profile, keys in steps:
        before = held.get(profile, set())
        now = set(keys)
        index.remove(profile, sorted(before - now))
        index.add(profile, sorted(now - before))
        held[profile] = now
    every = [f"k{i}" for i in range(6)]
    expected = {}
    for key in every:
        members = sorted(p for p, keys in held.items() if key in keys)
        expected[key] = [] if len(members) > cap else members
    assert index.members(every, cap) == expected
    # built again from the profiles' rows, it answers the same
    fresh = BlockIndex()
    fresh.reset(1, [(p, sorted(keys)) for p, keys in held.items()])
    assert fresh.members(every, cap) == expected
    assert fresh.epoch == 1


def test_a_key_nobody_holds_any_more_leaves_no_entry():
    index = BlockIndex()
    index.reset(0, [("p1", ["a", "b"]), ("p2", ["a"])])
    assert len(index) == 2
    index.remove("p1", ["a", "b"])
    index.remove("p2", ["a"])
    index.remove("p3", ["a"])  # not held: nothing happens
    assert len(index) == 0
    assert index.members(["a", "b"], 10) == {"a": [], "b": []}
