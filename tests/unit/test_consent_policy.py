"""Consent: region regimes, the newest-signal-wins ledger fold, and how every kind of signal
(categoryPreferences, TCF, US Privacy, GPC, Art. 22 objection) maps to a decision."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segue.core.events import to_event
from segue.core.model import ConsentRecord
from segue.privacy.policy import (
    PURPOSES,
    ConsentState,
    RegionPolicy,
    RequestSignals,
    evaluate,
    fold,
)
from segue.privacy.screen import ConsentScreen
from segue.privacy.service import ConsentService
from segue.privacy.signals import Signal, categories, from_context
from segue.privacy.tcf import consent_string
from segue.settings import _default_regions
from segue.storage.memory_consent import MemoryConsentStore

VENDOR = 755
POLICY = RegionPolicy(
    {name: (r.regime, r.codes) for name, r in _default_regions().items()},
    default_region=None,
    default_regime="opt_out",
)
NONE = RequestSignals()


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def now(self) -> float:
        self.t += 1.0
        return self.t


def tc_string(purposes: set[int], vendors: set[int]) -> str:
    return consent_string(purposes, vendors)


def rec(seq: int, **kw: object) -> ConsentRecord:
    return ConsentRecord(subject="user_id:1", at=float(seq), source="api", seq=seq, **kw)  # type: ignore[arg-type]


# --- regions ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "regime"),
    [
        ("DE", "opt_in"),
        ("de", "opt_in"),
        ("FR", "opt_in"),
        ("NO", "opt_in"),
        ("GB", "opt_in"),
        ("CH", "opt_in"),
        ("EEA", "opt_in"),
        ("US-CA", "opt_out"),
        ("US-NY", "opt_out"),  # a subdivision falls back to its country
        ("US", "opt_out"),
        ("BR", "opt_out"),  # unlisted: the default regime
        (None, "opt_out"),
    ],
)
def test_region_codes_map_to_their_regime(code, regime):
    assert POLICY.regime(code)[1] == regime


def test_the_default_region_applies_when_nobody_names_one():
    eu_default = RegionPolicy({"EEA": ("opt_in", ["DE"])}, default_region="DE")
    assert eu_default.regime(None) == ("DE", "opt_in")
    assert eu_default.regime("US") == ("US", "opt_out")
    with pytest.raises(ValueError, match="regime must be one of"):
        RegionPolicy({"X": ("maybe", [])})


# --- the decision ------------------------------------------------------------------------
def test_silence_is_refusal_in_opt_in_regions_and_consent_in_opt_out_ones():
    eu = ConsentState(region="DE")
    us = ConsentState(region="US-CA")
    assert evaluate("personalization", eu, NONE, POLICY).reason == "no_consent_opt_in_region"
    assert not evaluate("analytics", eu, NONE, POLICY).allowed
    assert evaluate("personalization", us, NONE, POLICY).allowed
    assert evaluate("personalization", us, NONE, POLICY).reason == "opt_out_region_default"
    for state in (eu, us):
        assert evaluate("necessary", state, NONE, POLICY).allowed


def test_the_request_region_overrides_the_recorded_one():
    state = ConsentState(region="US")
    assert not evaluate("analytics", state, RequestSignals(region="DE"), POLICY).allowed


def test_the_newest_signal_wins_per_purpose_grant_after_revocation_and_back():
    state = fold(
        [
            rec(3, purposes={"personalization": False}),
            rec(1, purposes={"personalization": True, "analytics": True}),
        ]
    )
    assert state.purposes["personalization"].granted is False
    assert state.purposes["analytics"].granted is True
    again = fold(
        [rec(1, purposes={"personalization": False}), rec(2, purposes={"personalization": True})]
    )
    assert evaluate("personalization", again, NONE, POLICY).allowed


def test_request_refusal_beats_recorded_grant_but_request_grant_loses_to_recorded_refusal():
    granted = fold([rec(1, purposes={"personalization": True})])
    refused = fold([rec(1, purposes={"personalization": False})])
    request_no = RequestSignals(purposes={"personalization": False})
    request_yes = RequestSignals(purposes={"personalization": True})
    assert not evaluate("personalization", granted, request_no, POLICY).allowed
    assert not evaluate("personalization", refused, request_yes, POLICY).allowed
    eu_silent = ConsentState(region="DE")
    assert evaluate("personalization", eu_silent, request_yes, POLICY).reason == (
        "personalization_granted_in_request"
    )


def test_gpc_is_a_binding_opt_out_of_sale_share_and_marketing_even_after_a_grant():
    state = fold([rec(1, purposes={"advertising": True, "marketing": True}, region="US-CA")])
    with_gpc = RequestSignals(gpc=True)
    for purpose in ("advertising", "marketing"):
        verdict = evaluate(purpose, state, with_gpc, POLICY)
        assert (verdict.allowed, verdict.reason) == (False, "global_privacy_control")
    assert evaluate("personalization", state, with_gpc, POLICY).allowed
    recorded_gpc = fold([rec(1, gpc=True)])
    assert not evaluate("advertising", recorded_gpc, NONE, POLICY).allowed


def test_an_objection_to_automated_decisions_refuses_personalization_whatever_else_says_yes():
    state = fold([rec(1, purposes={"personalization": True}), rec(2, objects_to_automated=True)])
    verdict = evaluate("personalization", state, NONE, POLICY)
    assert (verdict.allowed, verdict.reason) == (False, "objected_to_automated_decisions")
    assert evaluate("analytics", state, NONE, POLICY).allowed
    withdrawn = fold(
        [
            *[rec(1, purposes={"personalization": True}), rec(2, objects_to_automated=True)],
            rec(3, objects_to_automated=False),
        ]
    )
    assert evaluate("personalization", withdrawn, NONE, POLICY).allowed


@given(
    st.lists(
        st.tuples(st.sampled_from(PURPOSES), st.booleans()),
        min_size=1,
        max_size=20,
    )
)
def test_fold_keeps_exactly_the_last_word_on_each_purpose(words):
    records = [rec(i + 1, purposes={p: g}) for i, (p, g) in enumerate(words)]
    state = fold(reversed(records))
    last = {}
    for p, g in words:
        last[p] = g
    assert {p: s.granted for p, s in state.purposes.items()} == last


# --- signals -------------------------------------------------------------------------------
def test_category_names_of_consent_managers_map_to_purposes_and_unknown_ones_are_ignored():
    assert categories(
        {"Analytics": True, "Advertising": False, "Functional": True, "C0004": False, "x": 1}
    ) == {"analytics": True, "advertising": False, "personalization": True}
    # several categories for one purpose: any refusal refuses
    assert categories({"targeting": True, "ads": False}) == {"advertising": False}


def test_tcf_in_a_context_grants_personalization_only_with_purposes_5_6_and_segue_s_vendor():
    good = tc_string({1, 5, 6, 8, 9}, {VENDOR})
    signal = from_context({"consent": {"tcf": good}}, vendor_id=VENDOR)
    assert signal.purposes["personalization"] is True
    assert signal.purposes["analytics"] is True
    assert signal.purposes["advertising"] is False
    assert signal.proof["tcf"] == good
    other_vendor = from_context({"consent": {"tcf": tc_string({5, 6}, {1})}}, vendor_id=VENDOR)
    assert other_vendor.purposes["personalization"] is False
    only_5 = from_context({"consent": {"tcString": tc_string({5}, {VENDOR})}}, vendor_id=VENDOR)
    assert only_5.purposes["personalization"] is False
    unconfigured = from_context({"consent": {"tcf": good}}, vendor_id=None)
    assert unconfigured.purposes["personalization"] is False


@pytest.mark.parametrize(
    "broken",
    ["", "not a tc string", "CO", "COrVd1pOrVd1pACABCENAHCAAAAAAAAAAAiQ", "@@@@", "COrVd1p.OrVd1p"],
)
def test_a_malformed_tc_string_is_no_consent_not_all_granted(broken):
    good = tc_string(set(range(1, 12)), {VENDOR})
    signal = from_context(
        {"consent": {"tcf": good[:12] if broken == "" else broken}}, vendor_id=VENDOR
    )
    assert signal.purposes
    assert not any(g for p, g in signal.purposes.items() if p != "necessary"), signal.purposes
    assert "tcf_error" in signal.proof
    state = fold([])
    decided = evaluate("personalization", state, signal.request(), POLICY)
    assert not decided.allowed


@pytest.mark.parametrize(
    ("usp", "advertising"),
    [("1YYN", False), ("1NYY", False), ("1YNN", None), ("1---", None), ("1yyn", False)],
)
def test_us_privacy_strings_opt_out_of_sale_and_share(usp, advertising):
    signal = from_context({"consent": {"usp": usp}})
    assert signal.purposes.get("advertising") == advertising
    assert signal.purposes.get("personalization") is not False


@pytest.mark.parametrize("usp", ["2YNN", "1YN", "1YNNX", "1ZNN", "", "YYYY"])
def test_a_malformed_us_privacy_string_reads_as_an_opt_out_of_sale(usp):
    signal = from_context({"consent": {"usPrivacy": usp}})
    assert signal.purposes["advertising"] is False
    assert "usp_error" in signal.proof


def test_gpc_region_and_objection_are_read_from_the_context():
    assert from_context({}, gpc_header=True).gpc is True
    assert from_context({"gpc": True}).gpc is True
    assert from_context({"consent": {"gpc": False}}).gpc is False
    assert from_context({}).gpc is None
    assert from_context({"location": {"country": "de"}}).region == "DE"
    assert from_context({"location": {"country": "US", "region": "CA"}}).region == "US-CA"
    assert from_context({"consent": {"region": "fr"}, "region": "US"}).region == "FR"
    assert from_context({"consent": {"objectToAutomatedDecisions": True}}).objects_to_automated
    assert from_context({"consent": "garbage", "gpc": "yes"}).empty


# --- the service and the ingestion screen --------------------------------------------------
def test_record_is_effective_for_the_very_next_read_of_any_set_containing_the_subject():
    async def scenario() -> list[bool]:
        service = ConsentService(MemoryConsentStore(), POLICY, Clock())
        await service.start()
        person = ["user_id:1", "anonymous_id:a"]
        seen = []
        await service.record(
            ["anonymous_id:a"], Signal(purposes={"personalization": True}), source="api", actor="t"
        )
        seen.append((await service.decide("personalization", person, NONE)).allowed)
        await service.record(
            ["user_id:1"], Signal(purposes={"personalization": False}), source="api", actor="t"
        )
        seen.append((await service.decide("personalization", person, NONE)).allowed)
        await service.record(
            ["anonymous_id:a"], Signal(purposes={"personalization": True}), source="api", actor="t"
        )
        seen.append((await service.decide("personalization", person, NONE)).allowed)
        await service.erase(person)
        seen.append((await service.state(person)).purposes == {})
        return seen

    assert asyncio.run(scenario()) == [True, False, True, True]


def test_the_screen_records_consent_once_and_strips_events_without_analytics_consent():
    async def scenario():
        service = ConsentService(MemoryConsentStore(), POLICY, Clock())
        await service.start()
        screen = ConsentScreen(service, b"secret")

        def msg(**kw):
            m = {"type": "identify", "messageId": kw.pop("mid"), "userId": "u1", **kw}
            return m, to_event(m)

        refused = {
            "consent": {"categoryPreferences": {"analytics": False}},
            "ip": "10.1.2.3",
            "traits": {"email": "a@b.c"},
        }
        batch = [
            msg(mid="1", traits={"email": "a@b.c", "firstName": "Ann"}, context=refused),
            msg(
                mid="2",
                traits={"email": "a@b.c"},
                context={"consent": {"categoryPreferences": {"analytics": False}}},
            ),
            msg(mid="3", traits={"email": "x@y.z"}, context={"location": {"country": "DE"}}),
            msg(mid="4", traits={"email": "ok@y.z"}, context={"ip": "10.0.0.1"}),
        ]
        changed = await screen.screen("web", batch)
        history = await service.history(["user_id:u1"])
        return [m for m, _ in batch], history, screen, changed

    messages, history, screen, changed = asyncio.run(scenario())
    assert list(changed) == [0, 1, 2, 3]  # ingest encodes these four again
    assert len(history) == 1  # the same preference on the next event is not recorded again
    assert history[0].purposes == {"analytics": False}
    assert history[0].source == "event:web"
    first = messages[0]
    assert "traits" not in first
    assert "traits" not in first["context"]
    assert first["context"]["ip"].startswith("hmac:")
    assert "10.1.2.3" not in str(first)
    assert first["context"]["segue"] == {"attach": False, "reason": "analytics_refused_in_request"}
    assert messages[1]["context"]["segue"]["attach"] is False
    # recorded refusal for u1, whatever region the next event is from
    assert messages[2]["context"]["segue"]["attach"] is False
    assert messages[3]["context"]["segue"]["reason"] == "analytics_refused"
    assert (screen.unattached, screen.recorded) == (4, 1)


def test_the_screen_keeps_opt_in_regions_out_until_granted_and_opt_out_regions_in():
    async def scenario():
        service = ConsentService(MemoryConsentStore(), POLICY, Clock())
        await service.start()
        screen = ConsentScreen(service, b"secret")

        def msg(uid, context):
            m = {"type": "track", "event": "Product Viewed", "messageId": uid, "userId": uid}
            m["context"] = context
            return m, to_event(m)

        batch = [
            msg("eu-silent", {"location": {"country": "DE"}}),
            msg(
                "eu-granted",
                {
                    "location": {"country": "DE"},
                    "consent": {"categoryPreferences": {"analytics": True}},
                },
            ),
            msg("us-silent", {"location": {"country": "US", "region": "CA"}}),
            msg("unknown-region", {}),
        ]
        changed = await screen.screen("web", batch)
        return {m["userId"]: m["context"].get("segue") for m, _ in batch}, changed

    marks, changed = asyncio.run(scenario())
    assert list(changed) == [0]  # only the stripped message is encoded again
    assert marks == {
        "eu-silent": {"attach": False, "reason": "no_consent_opt_in_region"},
        "eu-granted": None,
        "us-silent": None,
        "unknown-region": None,
    }
