"""Survivorship on its own: which observation wins, and how many are kept."""

from __future__ import annotations

from segue.core.model import Profile
from segue.profiles.golden import MAX_ALTERNATES, Survivorship

T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z


def profile(pid: str = "p1") -> Profile:
    return Profile(profile_id=pid, created_at=T0, updated_at=T0, first_seen=T0, last_seen=T0)


def test_source_priority_ranks_a_value_by_the_best_source_that_sent_it():
    """A lower-ranked source repeating the CRM's value does not demote it below another
    source's typo."""
    rules = Survivorship("non_empty", ["crm", "pos", "shop", "web"], {})
    rules.traits["lastName"] = ("source_priority", [])
    person = profile()
    sightings = [("crm", "Lovelace"), ("pos", "Lovelase"), ("web", "Lovelace")]
    for k, (source, value) in enumerate(sightings):
        rules.observe(person, "lastName", value, source=source, message_id=f"m{k}", at=T0 + k)
    golden = person.traits["lastName"]
    assert golden.value == "Lovelace"
    assert golden.rule == "source_priority"
    # the lineage still names the value's latest sighting
    assert (golden.source, golden.message_id) == ("web", "m2")


def test_a_merge_keeps_at_most_the_limit_of_values_per_trait_the_newest_and_the_winner():
    rules = Survivorship("first_seen")
    survivor, victim = profile("p1"), profile("p2")
    for k in range(MAX_ALTERNATES):
        for person, offset in ((survivor, 0), (victim, MAX_ALTERNATES)):
            at = T0 + offset + k
            rules.observe(person, "city", f"city-{offset + k}", source="web", message_id="m", at=at)
    assert len(survivor.alternates["city"]) == len(victim.alternates["city"]) == MAX_ALTERNATES
    rules.merge(survivor, victim)
    kept = sorted(o.value for o in survivor.alternates["city"])
    assert len(kept) == MAX_ALTERNATES
    # the first value seen wins (first_seen) and stays; the rest are the newest
    assert survivor.traits["city"].value == "city-0"
    newest = [f"city-{k}" for k in range(MAX_ALTERNATES + 1, 2 * MAX_ALTERNATES)]
    assert kept == sorted(["city-0", *newest])
