"""Probabilistic matching: records, blocking, comparison levels, weights, EM and the matcher."""

from __future__ import annotations

import random
import unicodedata
from datetime import date

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segue.identity._records import _DROP, _PUNCT, _SPACES, _text
from segue.identity.matching import (
    FIELDS,
    LEVELS,
    IncrementalMatcher,
    MatchModel,
    MatchRecord,
    TermFrequencies,
    blocking_keys,
    compare,
    estimate,
    presence,
    probe_keys,
    rank,
    record_from_traits,
)

MODEL = MatchModel.default()


def person(**changes: object) -> MatchRecord:
    base: dict[str, object] = {
        "firstName": "Katherine",
        "lastName": "Oduya",
        "birthday": "1984-03-11",
        "email": "k.oduya@example.org",
        "address": {
            "street": "12 Tullaroop Street",
            "city": "Box Hill",
            "postalCode": "3128",
            "state": "VIC",
            "country": "AU",
        },
    }
    base.update(changes)
    record = record_from_traits(base)
    assert record is not None
    return record


def level(a: MatchRecord, b: MatchRecord, field: str) -> str:
    index = FIELDS.index(field)
    found = compare(a, b)[index]
    return "null" if found == -1 else LEVELS[field][found]


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


def test_record_from_traits_normalises():
    record = record_from_traits(
        {
            "firstName": "  José ",
            "lastName": "O'Brien-Smith",
            "birthday": "1990-07-04T00:00:00.000Z",
            "email": " Jo@Example.ORG ",
            "phone": "+61 (3) 9123-4567",
            "address": {"street": "12  Main   St.", "city": "MELBOURNE", "postalCode": "30 00"},
        }
    )
    assert record == MatchRecord(
        first_name="jose",
        last_name="obrien smith",
        birth=date(1990, 7, 4),
        street="12 main st",
        city="melbourne",
        postal_code="3000",
        email="jo@example.org",
        phone="61391234567",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1982-06-28", date(1982, 6, 28)),
        ("19820628", date(1982, 6, 28)),
        ("1982-06-28T10:00:00Z", date(1982, 6, 28)),
        ("19820638", None),  # day 38
        ("28/06/1982", None),
        ("not a date", None),
        ("", None),
        (19820628, date(1982, 6, 28)),
        (None, None),
        (True, None),
    ],
)
def test_birthday_formats(value, expected):
    record = record_from_traits({"birthday": value, "firstName": "a", "lastName": "b"})
    assert record is not None
    assert record.birth == expected


def test_record_from_traits_reads_alternatives():
    snake = record_from_traits({"first_name": "Ann", "last_name": "Lee", "email": "a@b.c"})
    split = record_from_traits({"name": "Ann Marie Lee", "email": "a@b.c"})
    assert snake is not None
    assert split is not None
    assert (snake.first_name, snake.last_name) == ("ann", "lee")
    assert (split.first_name, split.last_name) == ("ann marie", "lee")


@pytest.mark.parametrize(
    "traits",
    [
        {},
        {"email": "a@b.c"},
        {"firstName": "Ann"},
        {"address": {"state": "VIC", "country": "AU"}, "firstName": "Ann"},
        {"firstName": "   ", "lastName": None, "birthday": "junk", "phone": "12"},
        {"address": "not an object", "plan": "gold"},
    ],
)
def test_too_little_to_match_on(traits):
    assert record_from_traits(traits) is None


# ---------------------------------------------------------------------------------------------
# Blocking and comparison
# ---------------------------------------------------------------------------------------------


def test_blocking_keys_shape():
    keys = blocking_keys(person())
    assert len(keys) == len(set(keys))
    assert all(":" in key for key in keys)
    assert {"dob_i:1984:3:11:k", "dob_i:1984:3:11:o"} <= set(keys)
    assert "em:k.oduya@example.org" in keys
    # the date alone only for a record with no name; looked up for every record, since
    # versions before 2026-12-07 stored it for all
    assert not any(key.startswith("dob:") for key in keys)
    assert "dob:1984:3:11" in probe_keys(person())
    # both names with day and month, in either order; either name alone only looked up
    # (versions before 2026-12-07 stored it)
    assert "nm_md:K0RN:OTY:3:11" in keys
    assert blocking_keys(person(firstName="Oduya", lastName="Katherine"))[3] == (
        "nm_md:K0RN:OTY:3:11"
    )
    assert not any(key.startswith(("fn_md:", "ln_md:")) for key in keys)
    assert {"fn_md:K0RN:3:11", "ln_md:OTY:3:11"} <= set(probe_keys(person()))
    assert not any(
        key.startswith(("fn_md:", "ln_md:")) for key in probe_keys(person(birthday=None))
    )
    nameless = person(firstName=None, lastName=None)
    assert "dob:1984:3:11" in blocking_keys(nameless)
    assert probe_keys(nameless) == blocking_keys(nameless)


@pytest.mark.parametrize(
    "other",
    [
        person(lastName="Oduyah"),
        person(birthday="1984-11-03"),
        person(firstName="Oduya", lastName="Katherine"),
        person(birthday=None, address={"street": "12 Tullaroop St", "postalCode": "3128"}),
        person(birthday="1948-03-11", email=None, address={"city": "Box Hill"}),
    ],
)
def test_duplicates_share_a_block_key(other):
    assert set(blocking_keys(person())) & set(blocking_keys(other))


def test_missing_fields_compare_as_null_and_weigh_nothing():
    a = person(email=None)
    b = person()
    assert level(a, b, "email") == "null"
    assert level(a, b, "phone") == "null"
    explained = {field for field, _, _ in MODEL.score(a, b).fields}
    assert "email" not in explained
    assert "phone" not in explained


def test_comparison_levels():
    a = person()
    assert level(a, person(lastName="Oduyaa"), "last_name") == "close"
    assert level(a, person(firstName="Kathryn"), "first_name") == "similar"
    assert level(a, person(firstName="Xavier"), "first_name") == "different"
    assert level(a, person(firstName="Oduya", lastName="Katherine"), "first_name") == "swapped"
    assert level(a, person(birthday="1984-11-03"), "birth") == "day_month_swapped"
    assert level(a, person(birthday="1985-03-11"), "birth") == "one_part_differs"
    assert level(a, person(birthday="1961-08-30"), "birth") == "different"
    assert level(a, person(address={"postalCode": "3129"}), "postal_code") == "one_edit"
    assert level(a, person(address={"street": "Tullaroop Street 12"}), "street") == "close"


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------


def crm(**changes: object) -> MatchRecord:
    """A CRM export row: name, birthday and address, no e-mail (unless given)."""
    return person(**{"email": None, **changes})


def test_typo_in_name_still_matches():
    score = MODEL.score(crm(), crm(lastName="Oduay", firstName="Katherin"))
    assert score.probability >= MODEL.match_threshold


def test_swapped_day_and_month_still_matches():
    score = MODEL.score(crm(), crm(birthday="1984-11-03"))
    assert ("birth", "day_month_swapped") in {(f, lv) for f, lv, _ in score.fields}
    assert score.probability >= MODEL.match_threshold


def test_same_common_name_different_birthday_is_not_a_match():
    a = crm(firstName="John", lastName="Smith", birthday="1970-01-01")
    b = crm(
        firstName="John",
        lastName="Smith",
        birthday="1991-09-23",
        address={"street": "4 Elm Road", "city": "Box Hill", "postalCode": "3128"},
    )
    tf = {"first_name": 0.03, "last_name": 0.01}
    score = MODEL.score(a, b, lambda field, _: tf.get(field))
    assert score.probability < MODEL.possible_threshold


def test_household_members_are_not_merged():
    """Same address and family name, different first name and birthday: another person."""
    partner = crm(firstName="Daniel", birthday="1979-12-30")
    score = MODEL.score(crm(), partner)
    assert score.probability < MODEL.match_threshold


def test_address_fields_count_once_by_default():
    a, b = crm(), crm()
    weights = {field: weight for field, _, weight in MODEL.score(a, b).fields}
    positive = [f for f in ("street", "postal_code", "city", "state") if weights[f] > 0]
    assert positive == ["street"]
    independent = msgspec.structs.replace(
        MODEL, address_independence=dict.fromkeys(("street", "postal_code", "city", "state"), 1.0)
    )
    assert independent.score(a, b).weight > MODEL.score(a, b).weight + 10


def test_swapped_names_count_once():
    swapped = crm(firstName="Oduya", lastName="Katherine")
    weights = {field: weight for field, _, weight in MODEL.score(crm(), swapped).fields}
    assert weights["first_name"] > 0
    assert weights["last_name"] == 0.0
    assert MODEL.score(crm(), swapped).probability >= MODEL.match_threshold


def test_explanation_adds_up():
    score = MODEL.score(crm(), crm(lastName="Oduay"))
    fields = [field for field, _, _ in score.fields]
    assert fields[0] == "prior"
    assert {"first_name", "last_name", "birth", "street", "city", "postal_code"} <= set(fields)
    assert score.weight == pytest.approx(sum(w for _, _, w in score.fields), abs=0.01)
    labels = dict((f, lv) for f, lv, _ in score.fields)
    assert labels["last_name"] == "close"
    assert MODEL.weigh(crm(), crm(lastName="Oduay")) == pytest.approx(score.weight)
    assert 0.0 < score.probability <= 1.0


# Few values per field, so that random pairs hit every level: exact, swapped, close, similar.
_NAMES = ("anna", "ana", "anne", "james", "thomas", "garcia", "li", "lee", "o", "katherine")
_STREETS = ("12 tullaroop street", "tullaroop street 12", "12 tullarop st", "4 elm road")


def _maybe(values: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.none() | values


_records = st.builds(
    MatchRecord,
    first_name=_maybe(st.sampled_from(_NAMES)),
    last_name=_maybe(st.sampled_from(_NAMES)),
    birth=_maybe(
        st.sampled_from(
            (date(1984, 3, 11), date(1984, 11, 3), date(1985, 3, 11), date(1961, 8, 30))
        )
    ),
    street=_maybe(st.sampled_from(_STREETS)),
    city=_maybe(st.sampled_from(("box hill", "box hil", "perth"))),
    postal_code=_maybe(st.sampled_from(("3128", "3129", "6000"))),
    state=_maybe(st.sampled_from(("vic", "wa"))),
    country=_maybe(st.sampled_from(("au", "nz"))),
    email=_maybe(st.sampled_from(("k@example.org", "k@example.com", "x@example.org"))),
    phone=_maybe(st.sampled_from(("61412345678", "61412345679", "61499999999"))),
)


@st.composite
def _models(draw: st.DrawFn) -> MatchModel:
    """The default model with every m/u, the prior and the address independence redrawn
    (so that some weights that are usually positive turn negative, and the other way)."""
    fields = {}
    for field, params in MODEL.fields.items():
        size = len(params.m)
        m = draw(st.lists(st.floats(0.001, 1.0), min_size=size, max_size=size))
        u = draw(st.lists(st.floats(0.00001, 1.0), min_size=size, max_size=size))
        fields[field] = msgspec.structs.replace(
            params, m=tuple(x / sum(m) for x in m), u=tuple(x / sum(u) for x in u)
        )
    independence = {
        f: draw(st.floats(0.0, 1.0)) for f in ("street", "postal_code", "city", "state")
    }
    return msgspec.structs.replace(
        MODEL,
        fields=fields,
        prior=draw(st.floats(1e-9, 0.5)),
        address_independence=independence,
        tf_fields=tuple(draw(st.sets(st.sampled_from(FIELDS)))),
    )


@settings(max_examples=400, deadline=None)
@given(
    a=_records,
    b=_records,
    model=st.sampled_from((MODEL,)) | _models(),
    floor=st.floats(-60.0, 60.0),
    frequency=st.none() | st.floats(0.0, 1.0),
)
def test_weigh_above_agrees_with_weigh(a, b, model, floor, frequency):
    """The pruned weight is the full one whenever it reaches the floor, and a pair is only
    ever pruned when its full weight is below the floor."""
    tf = None if frequency is None else (lambda field, value: frequency)
    full = model.weigh(a, b, tf)
    found = model.weigh_above(a, b, floor, tf)
    if found is None:
        assert full < floor
    else:
        assert found == full
    assert model.weigh_above(a, b, floor, tf, presence(a) & presence(b)) == found


def test_weigh_above_drops_someone_else_early():
    """A pair far below the floor is pruned; a duplicate keeps its exact weight."""
    other = crm(firstName="Xavier", lastName="Garcia", birthday="1961-08-30")
    assert MODEL.weigh(crm(), other) < MODEL.possible_weight
    assert MODEL.weigh_above(crm(), other, MODEL.possible_weight) is None
    twin = crm(lastName="Oduay")
    assert MODEL.weigh_above(crm(), twin, MODEL.possible_weight) == MODEL.weigh(crm(), twin)


def test_term_frequency_lowers_a_common_surname_and_raises_a_rare_one():
    a = crm(firstName="John", lastName="Smith")
    b = crm(firstName="Jon", lastName="Smith", birthday="1984-03-12")

    def weight_of(tf):
        fields = MODEL.score(a, b, tf).fields
        return next(w for f, _, w in fields if f == "last_name")

    plain = weight_of(None)
    assert weight_of(lambda field, value: 0.02) < plain - 2
    assert weight_of(lambda field, value: 0.0002) > plain + 2
    assert weight_of(lambda field, value: None) == plain


def test_term_frequencies_count_and_forget():
    tf = TermFrequencies(min_total=2)
    assert tf.frequency("last_name", "smith") is None
    for last in ("smith", "smith", "jones", "lee"):
        tf.add(crm(lastName=last))
    assert tf.frequency("last_name", "smith") == pytest.approx(0.5)
    assert tf.frequency("last_name", "unseen") == pytest.approx(0.25)
    tf.remove(crm(lastName="smith"))
    assert tf.frequency("last_name", "smith") == pytest.approx(1 / 3)
    assert msgspec.json.decode(msgspec.json.encode(tf), type=TermFrequencies) == tf


def test_model_round_trips_through_msgspec():
    encoded = msgspec.json.encode(MODEL)
    decoded = msgspec.json.decode(encoded, type=MatchModel)
    assert decoded == MODEL
    assert decoded.score(crm(), crm(lastName="Oduay")) == MODEL.score(crm(), crm(lastName="Oduay"))


def test_default_model_is_complete():
    for field in FIELDS:
        params = MODEL.fields[field]
        assert len(params.m) == len(params.u) == len(LEVELS[field])
        assert sum(params.m) == pytest.approx(1.0, abs=1e-6)
        assert sum(params.u) == pytest.approx(1.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# Estimation
# ---------------------------------------------------------------------------------------------

SYLLABLES = ("ka", "lo", "mi", "ra", "ten", "su", "vor", "an", "bel", "dri", "fa", "go", "hul")


def _synthetic(rng: random.Random, people: int, duplicate_rate: float):
    """People with distinct-looking names; duplicates with known error rates per field."""

    def word() -> str:
        return "".join(rng.choice(SYLLABLES) for _ in range(3))

    def typo(text: str) -> str:
        i = rng.randrange(1, len(text) - 1)
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]

    records: list[MatchRecord] = []
    for _ in range(people):
        born = date(1940 + rng.randrange(60), 1 + rng.randrange(12), 1 + rng.randrange(28))
        original = MatchRecord(
            first_name=word(),
            last_name=word(),
            birth=born,
            street=f"{rng.randrange(1, 300)} {word()} street",
            city=word(),
            postal_code=str(rng.randrange(1000, 9999)),
        )
        records.append(original)
        if rng.random() < duplicate_rate:
            changes: dict[str, object] = {}
            if rng.random() < 0.2:  # m(first_name exact) = 0.8
                changes["first_name"] = typo(original.first_name or "")
            if rng.random() < 0.1 and born.day <= 12:  # some swapped day and month
                changes["birth"] = date(born.year, born.day, born.month)
            if rng.random() < 0.3:  # m(postal_code exact) = 0.7
                changes["postal_code"] = str(rng.randrange(1000, 9999))
            records.append(msgspec.structs.replace(original, **changes))
    return records


def test_em_recovers_m_and_the_prior():
    rng = random.Random(20240601)
    records = _synthetic(rng, people=1500, duplicate_rate=0.4)
    matcher = IncrementalMatcher(MatchModel.default())
    for i, record in enumerate(records):
        matcher.insert(str(i), record)
    model = estimate(
        matcher.pairs(),
        MatchModel.default(),
        rng=random.Random(1),
        records=records,
        u_samples=20_000,
    )
    first = model.fields["first_name"].m
    postal = model.fields["postal_code"].m
    assert first[0] == pytest.approx(0.8, abs=0.06)
    assert postal[0] == pytest.approx(0.7, abs=0.06)
    assert postal[2] == pytest.approx(0.3, abs=0.06)  # a new random postcode: "different"
    # About 600 duplicate pairs among 2,100 records.
    n = len(records)
    true_prior = (n - 1500) / (n * (n - 1) / 2)
    assert true_prior / 1.5 < model.prior < true_prior * 1.5
    # u from random pairs: names coined from 22 syllables rarely agree by chance.
    assert model.fields["last_name"].u[0] < 0.01
    # Independent synthetic addresses are found to be independent.
    assert model.address_independence["city"] > 0.8


def test_em_with_no_duplicates_lowers_the_prior():
    rng = random.Random(7)
    records = _synthetic(rng, people=1500, duplicate_rate=0.0)
    matcher = IncrementalMatcher()
    for i, record in enumerate(records):
        matcher.insert(str(i), record)
    # blocked pairs are few here (a shared date of birth needs a shared initial too): the
    # population EM weighs them against is every record held, as the linker passes it
    pairs = matcher.pairs()
    model = estimate(pairs, MODEL, rng=random.Random(1), u_samples=20_000, records=records)
    assert pairs
    assert model.prior < MODEL.prior / 10


def test_em_keeps_parameters_without_evidence():
    model = estimate([], MODEL, rng=random.Random(1))
    assert model is MODEL
    records = _synthetic(random.Random(3), people=300, duplicate_rate=0.3)
    matcher = IncrementalMatcher()
    for i, record in enumerate(records):
        matcher.insert(str(i), record)
    model = estimate(matcher.pairs(), MODEL, rng=random.Random(1), u_samples=5_000)
    assert model.fields["phone"] == MODEL.fields["phone"]  # nobody has a phone
    assert model.fields["email"] == MODEL.fields["email"]


# ---------------------------------------------------------------------------------------------
# Incremental matching
# ---------------------------------------------------------------------------------------------


def test_incremental_matcher_scores_on_arrival_and_clusters():
    matcher = IncrementalMatcher()
    assert matcher.add("a", crm()) == []
    assert matcher.add("b", crm(firstName="Ben", lastName="Ward", birthday="1950-01-01")) == []
    found = matcher.add("c", crm(lastName="Oduay"))
    assert [record_id for record_id, _ in found] == ["a"]
    assert found[0][1].probability >= matcher.model.match_threshold
    matcher.link("c", "a")
    assert matcher.cluster("c") == matcher.cluster("a")
    assert matcher.clusters() == [["a", "c"], ["b"]]


def test_rank_orders_best_first_and_drops_the_unlikely():
    candidates = [
        ("far", crm(firstName="Ben", lastName="Ward", birthday="1950-01-01")),
        ("typo", crm(lastName="Oduay")),
        ("same", crm()),
    ]
    ranked = rank(crm(), candidates, MODEL)
    assert [record_id for record_id, _ in ranked] == ["same", "typo"]
    assert ranked[0][1].weight > ranked[1][1].weight


def test_resolve_keeps_possible_matches_and_reestimate_rescores_them():
    matcher = IncrementalMatcher()
    matcher.resolve("a", crm())
    # Same name and birthday, but another address: a possible match only.
    moved = crm(address={"street": "7 Rue Lepic", "city": "Paris", "postalCode": "75018"})
    found = matcher.resolve("b", moved)
    assert found
    score = found[0][1]
    assert MODEL.possible_threshold <= score.probability < MODEL.match_threshold
    assert ("b", "a") in matcher.possible
    assert matcher.cluster("b") != matcher.cluster("a")
    # Under a model that expects more duplicates, the possible match is merged.
    matcher.model = msgspec.structs.replace(matcher.model, prior=0.01)
    assert matcher.rescore() == [("b", "a")]
    assert matcher.cluster("b") == matcher.cluster("a")
    assert not matcher.possible
    assert not matcher.pending


def test_reestimate_learns_from_the_records_held():
    matcher = IncrementalMatcher()
    for i, record in enumerate(_synthetic(random.Random(5), people=400, duplicate_rate=0.3)):
        matcher.resolve(str(i), record)
    before = matcher.model
    matcher.reestimate(random.Random(1), u_samples=5_000)
    assert matcher.model != before
    assert matcher.model.prior > before.prior  # 30 % duplicates among 520 records


def _text_by_unicode(value: str) -> str | None:
    """The normalisation _text applies, always through Unicode decomposition and regexes."""
    text = unicodedata.normalize("NFKD", value.casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return _SPACES.sub(" ", _PUNCT.sub(" ", _DROP.sub("", text))).strip() or None


@settings(max_examples=2000)
@given(st.text(alphabet=st.characters(max_codepoint=0x2FF) | st.sampled_from("’ﬁK\u00a0\u3000")))
def test_ascii_shortcut_normalises_as_unicode_path(value: str) -> None:
    """ASCII text skips decomposition and regexes; the result must not change."""
    assert _text(value) == _text_by_unicode(value)


def _weigh_many(model, mine, theirs, pairs, tf, floor):
    """``model.weigh_many`` over ``pairs`` of positions in ``mine`` and ``theirs``."""
    exact = np.array([model.exact_weights(r, tf) for r in mine], dtype=np.float64)
    first = np.array([i for i, _ in pairs], dtype=np.intp)
    second = np.array([j for _, j in pairs], dtype=np.intp)
    return model.weigh_many(mine, first, theirs, second, exact, floor)


@settings(max_examples=300, deadline=None)
@given(
    mine=st.lists(_records, min_size=1, max_size=4),
    theirs=st.lists(_records, min_size=1, max_size=6),
    pairs=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), max_size=25),
    model=st.sampled_from((MODEL,)) | _models(),
    floor=st.floats(-60.0, 60.0),
    frequency=st.none() | st.floats(0.0, 1.0),
)
def test_weigh_many_agrees_with_weigh(mine, theirs, pairs, model, floor, frequency):
    """Weighed all at once, each pair weighs what weigh() gives it whenever that reaches the
    floor, to the last bit, and a pair below the floor never shows above it."""
    pairs = [(i % len(mine), j % len(theirs)) for i, j in pairs]
    tf = None if frequency is None else (lambda field, value: frequency)
    found = _weigh_many(model, mine, theirs, pairs, tf, floor)
    assert len(found) == len(pairs)
    for (i, j), weight in zip(pairs, found.tolist(), strict=True):
        full = model.weigh(mine[i], theirs[j], tf)
        if full >= floor:
            assert weight == full
        else:
            assert weight < floor


def test_weigh_many_levels_match_compare():
    """Initials, swapped names, e-mail local parts and phone tails: the array comparisons
    give the levels compare() gives (with no floor, every pair is weighed in full)."""
    base = person()
    others = [
        person(firstName="K"),
        person(firstName="Oduya", lastName="Katherine"),
        person(firstName="Oduya", lastName="Kathryn"),
        person(email="k.oduya@example.com"),
        person(email="kodu@example.org"),
        person(phone="+61 412 345 678"),
        person(birthday="1984-11-03", address={"street": "Tullaroop Street 12"}),
        person(address={"street": "14 Tullaroop Street", "postalCode": "3129"}),
        person(lastName="O"),
    ]
    withphone = msgspec.structs.replace(base, phone="61412345679")
    mine = [base, withphone]
    pairs = [(i, j) for i in range(2) for j in range(len(others))]
    found = _weigh_many(MODEL, mine, others, pairs, None, -1e9)
    for (i, j), weight in zip(pairs, found.tolist(), strict=True):
        assert weight == MODEL.weigh(mine[i], others[j])
    levels = {level(base, other, "first_name") for other in others}
    assert {"exact", "swapped", "similar"} <= levels  # the cases above were exercised


def test_name_and_city_alone_are_a_possible_match_not_a_merge():
    """Before any data is seen, two "John Smith, Leeds" records are for a person to decide;
    one more agreeing field (street, birthday, e-mail, phone) makes them a match."""
    alone = record_from_traits(
        {"firstName": "John", "lastName": "Smith", "address": {"city": "Leeds"}}
    )
    assert alone is not None
    probability = MODEL.score(alone, alone).probability
    assert MODEL.possible_threshold <= probability < MODEL.match_threshold
    for extra in (
        {"birthday": "1980-02-03"},
        {"email": "john@example.org"},
        {"phone": "+44 113 496 0000"},
        {"address": {"city": "Leeds", "street": "1 Park Row"}},
    ):
        more = record_from_traits(
            {"firstName": "John", "lastName": "Smith", "address": {"city": "Leeds"}, **extra}
        )
        assert more is not None
        assert MODEL.score(more, more).probability >= MODEL.match_threshold, extra
