"""Consent rates: per-person folding of the ledger matches the consent gate's fold, and the
counts per region and purpose come out as the gate would decide each person."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from segue.core.model import ConsentRecord, Identifier
from segue.privacy.consent_rates import SubjectSummary, consent_rates, tally
from segue.privacy.policy import PURPOSES, RegionPolicy, fold
from segue.settings import _default_regions
from segue.storage.memory_consent import MemoryConsentStore

POLICY = RegionPolicy(
    {name: (r.regime, r.codes) for name, r in _default_regions().items()},
    default_region=None,
    default_regime="opt_out",
)


class Profiles:
    """The one ProfileStore method consent rates use: identifiers → profile id."""

    def __init__(self, links: dict[str, str]) -> None:
        self.links = {Identifier.parse(k): v for k, v in links.items()}
        self.asked: list[int] = []

    async def lookup(self, identifiers):
        wanted = list(identifiers)
        self.asked.append(len(wanted))
        return {i: self.links[i] for i in wanted if i in self.links}


RECORDS = st.lists(
    st.builds(
        ConsentRecord,
        subject=st.sampled_from(["user_id:1", "anonymous_id:a", "email:x@y.z"]),
        at=st.floats(0, 100),
        source=st.sampled_from(["api", "event"]),
        purposes=st.dictionaries(st.sampled_from(PURPOSES), st.booleans(), max_size=3),
        region=st.none() | st.sampled_from(["DE", "US-CA", "FR"]),
        gpc=st.none() | st.booleans(),
        objects_to_automated=st.none() | st.booleans(),
    ),
    max_size=12,
)


@given(RECORDS, st.randoms())
def test_summaries_merged_per_subject_equal_the_gates_fold(records, rnd):
    ledger = [
        ConsentRecord(**{**{f: getattr(r, f) for f in r.__struct_fields__}, "seq": n})
        for n, r in enumerate(records, start=1)
    ]
    by_subject: dict[str, SubjectSummary] = {}
    shuffled = list(ledger)
    rnd.shuffle(shuffled)
    for rec in shuffled:
        by_subject.setdefault(rec.subject, SubjectSummary()).add(rec)
    person = SubjectSummary()
    parts = list(by_subject.values())
    rnd.shuffle(parts)
    for part in parts:
        person.merge(part)
    assert person.state() == fold(ledger)


def test_people_are_grouped_by_profile_and_counted_per_region_and_purpose():
    store = MemoryConsentStore()

    def record(subject: str, at: float, **kw) -> None:
        asyncio.run(store.record([ConsentRecord(subject=subject, at=at, source="api", **kw)]))

    # person 1 (profile p1): granted under the anonymous id, refused after logging in, in DE
    record("anonymous_id:a", 1.0, purposes={"personalization": True, "analytics": True})
    record("user_id:1", 2.0, purposes={"personalization": False}, region="DE")
    # person 2 (profile p2): California with Global Privacy Control, nothing else said
    record("user_id:2", 3.0, region="US-CA", gpc=True)
    # person 3: a subject no profile holds, in Germany, no purpose stated
    record("email:lone@example.com", 4.0, region="DE")
    # not an identifier at all: a person of its own, no region (default regime, opt-out)
    record("garbage", 5.0, purposes={"marketing": False})
    profiles = Profiles({"anonymous_id:a": "p1", "user_id:1": "p1", "user_id:2": "p2"})

    rates = asyncio.run(consent_rates(store, profiles, POLICY, page=2))  # type: ignore[arg-type]

    assert (rates.people, rates.subjects, rates.ledger_entries) == (4, 5, 5)
    assert [(r.region, r.regime, r.people) for r in rates.regions] == [
        ("DE", "opt_in", 2),
        (None, "opt_out", 1),
        ("US-CA", "opt_out", 1),
    ]
    de = rates.regions[0].purposes
    # newest word wins across the person's subjects: refused, not granted
    assert (de["personalization"].granted, de["personalization"].refused) == (0, 1)
    assert de["personalization"].unset == 1
    assert de["personalization"].allowed == 0  # opt-in: unset is not allowed either
    assert (de["analytics"].granted, de["analytics"].unset, de["analytics"].allowed) == (1, 1, 1)
    assert de["necessary"].allowed == 2
    ca = rates.regions[2].purposes
    assert ca["advertising"].unset == 1
    assert ca["advertising"].allowed == 0  # GPC refuses it
    assert ca["personalization"].allowed == 1  # opt-out default
    assert rates.purposes["marketing"].refused == 1
    assert rates.purposes["marketing"].allowed == 0  # two opt-in unset, GPC, one refusal
    assert rates.purposes["necessary"].allowed == 4
    for purpose in PURPOSES:
        count = rates.purposes[purpose]
        assert count.granted + count.refused + count.unset == rates.people
    assert sum(profiles.asked) == 4  # every subject but "garbage", in one lookup


def test_an_empty_ledger_counts_nobody():
    rates = asyncio.run(
        consent_rates(MemoryConsentStore(), Profiles({}), POLICY)  # type: ignore[arg-type]
    )
    assert (rates.people, rates.subjects, rates.ledger_entries, rates.regions) == (0, 0, 0, [])
    assert tally([], POLICY).purposes["analytics"].allowed == 0
