"""IAB TCF v2 TC strings: published strings, every purpose mapping case, every malformed case.

A TC string that cannot be read completely is no consent; these tests pin that down together
with the field-by-field decoding and the encoder's round trip.
"""

from __future__ import annotations

import base64
import contextlib
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segue.privacy.tcf import (
    InvalidTCString,
    PublisherRestriction,
    PublisherTC,
    TCString,
    VendorRange,
    VendorSection,
    decode_tc_string,
    encode_tc_string,
    tcf_purposes,
)

SEGUE = 42
CREATED = 17_000_000_000  # 2023-11-14, epoch deciseconds
NOW = 1_800_000_000.0  # 2027-01-15, epoch seconds: every test string is in its past
EVERYTHING = frozenset(range(1, 25))


def tc(**fields: object) -> TCString:
    base = TCString(created=CREATED, last_updated=CREATED, cmp_id=7, vendor_list_version=80)
    return msgspec.structs.replace(base, **fields)


def consented(purposes: set[int], vendors: set[int], **fields: object) -> TCString:
    return tc(
        purposes_consent=frozenset(purposes),
        vendor_consents=VendorSection.from_ids(vendors, max_vendor_id=100),
        **fields,
    )


def mapped(value: TCString, vendor_id: int | None = SEGUE) -> dict[str, bool]:
    """The purposes of ``value`` after a trip through the string, as segue would read it."""
    return tcf_purposes(decode_tc_string(encode_tc_string(value), now=NOW), vendor_id)


def raw(value: TCString) -> str:
    """The string for ``value`` without the encoder's check: malformed on purpose."""
    return encode_tc_string(value, check=False)


def rejected(text: str, reason: str) -> None:
    with pytest.raises(InvalidTCString, match=reason):
        decode_tc_string(text, now=NOW)


# ---------------------------------------------------------------------------- published strings


def test_iabtcf_cli_example_decodes_field_by_field():
    # the example of @iabtcf/cli's README, with the field values it prints
    decoded = decode_tc_string("COrVd1pOrVd1pACABCENAHCAAAAAAAAAAAiQAAAAAAAA", now=NOW)
    assert decoded.version == 2
    assert decoded.created_at == datetime(2019, 12, 10, 2, 1, 46, 500_000, UTC)
    assert decoded.last_updated == decoded.created == 15_759_433_065
    assert (decoded.cmp_id, decoded.cmp_version, decoded.consent_screen) == (2, 1, 2)
    assert decoded.consent_language == "EN"
    assert decoded.vendor_list_version == 7
    assert decoded.tcf_policy_version == 2
    assert decoded.is_service_specific is False
    assert decoded.use_non_standard_texts is False
    assert decoded.purpose_one_treatment is False
    assert decoded.publisher_cc == "ES"
    assert decoded.special_feature_opt_ins == frozenset()
    assert decoded.purposes_consent == decoded.purposes_li_transparency == frozenset()
    assert decoded.vendor_consents == VendorSection(max_vendor_id=0)
    assert decoded.vendor_legitimate_interests == VendorSection(max_vendor_id=0)
    assert decoded.publisher_restrictions == ()
    assert decoded.disclosed_vendors is decoded.publisher_tc is None


def test_iabtcf_java_example_decodes_field_by_field():
    # the example of iabtcf-java's README: version 2, no consent for vendor 10
    decoded = decode_tc_string("COwxsONOwxsONKpAAAENAdCAAMAAAAAAAAAAAAAAAAAA", now=NOW)
    assert decoded.version == 2
    assert 10 not in decoded.vendor_consents
    assert decoded.created == decoded.last_updated == 15_850_718_093
    assert (decoded.cmp_id, decoded.cmp_version, decoded.consent_screen) == (681, 0, 0)
    assert (decoded.consent_language, decoded.publisher_cc) == ("EN", "AA")
    assert (decoded.vendor_list_version, decoded.tcf_policy_version) == (29, 2)
    assert decoded.purposes_consent == frozenset({1, 2})
    assert decoded.vendor_consents.max_vendor_id == 0


def test_iab_specification_example_with_disclosed_vendors():
    # the sample string of the IAB "Consent string and vendor list formats v2" specification
    text = "CQSbk4AQSbk4ANwAAAENAwCgAAAAAAAAAAYgACPAAAAA.IDKQA4AAgAKAGQAygAAA"
    decoded = decode_tc_string(text, now=NOW)
    assert decoded.created_at == decoded.last_updated_at == datetime(2025, 6, 3, tzinfo=UTC)
    assert (decoded.cmp_id, decoded.vendor_list_version) == (880, 48)
    assert (decoded.consent_language, decoded.publisher_cc) == ("EN", "DE")
    assert decoded.is_service_specific is True
    assert decoded.vendor_consents == VendorSection.from_ids({1, 2, 3, 4})
    assert decoded.disclosed_vendors == VendorSection(
        max_vendor_id=404,
        is_range_encoding=True,
        ranges=(VendorRange(1, 5), VendorRange(100, 100), VendorRange(404, 404)),
    )
    assert decoded.disclosed_vendors.ids() == {1, 2, 3, 4, 5, 100, 404}
    # the IAB encoder pads to 24 bits, segue's to a byte: same fields, shorter tail
    assert decode_tc_string(encode_tc_string(decoded), now=NOW) == decoded


def test_older_iab_specification_example_with_a_bitfield_disclosed_segment():
    text = (
        "COvFyGBOvFyGBAbAAAENAPCAAOAAAAAAAAAAAEEUACCKAAA.IFoEUQQgAIQwgIwQABAEAAAAOIAACAIAAAAQAIAgEA"
        "ACEAAAAAgAQBAAAAAAAGBAAgAAAAAAAFAAECAAAgAAQARAEQAAAAAJAAIAAgAAAYQEAAAQmAgBC3ZAYzUw"
    )
    decoded = decode_tc_string(text, now=NOW)
    assert decoded.purposes_consent == frozenset({1, 2, 3})
    assert decoded.vendor_consents.ids() == decoded.vendor_legitimate_interests.ids() == {2, 6, 8}
    assert decoded.disclosed_vendors is not None
    assert decoded.disclosed_vendors.max_vendor_id == 720
    assert {2, 6, 8, 720} <= decoded.disclosed_vendors.ids()


# ---------------------------------------------------------------------------- purpose mapping


def test_personalization_needs_purposes_5_and_6_and_segue_s_vendor_consent():
    assert mapped(consented({5, 6}, {SEGUE}))["personalization"] is True
    assert mapped(consented({5, 6}, {SEGUE + 1}))["personalization"] is False
    assert mapped(consented({5}, {SEGUE}))["personalization"] is False
    assert mapped(consented({6}, {SEGUE}))["personalization"] is False
    assert mapped(consented(set(EVERYTHING), set()))["personalization"] is False


def test_an_unconfigured_vendor_id_grants_nothing():
    assert mapped(consented(set(EVERYTHING), set(range(1, 101))), None) == {
        "necessary": True,
        "analytics": False,
        "personalization": False,
        "marketing": False,
        "advertising": False,
    }


def test_a_malformed_string_is_no_consent():
    assert tcf_purposes(None, SEGUE) == {
        "necessary": True,
        "analytics": False,
        "personalization": False,
        "marketing": False,
        "advertising": False,
    }


@pytest.mark.parametrize(
    ("purpose", "needed"),
    [
        ("analytics", {1, 8, 9}),
        ("personalization", {5, 6}),
        ("marketing", {3, 4}),
        ("advertising", {2, 3, 4, 7}),
    ],
)
def test_each_purpose_needs_exactly_its_tcf_purposes(purpose, needed):
    assert mapped(consented(needed, {SEGUE}))[purpose] is True
    for missing in needed:
        assert mapped(consented(needed - {missing}, {SEGUE}))[purpose] is False
    assert mapped(consented(set(EVERYTHING - needed), {SEGUE}))[purpose] is False


def test_everything_consented_grants_every_mapped_purpose_and_says_nothing_of_art_22():
    answer = mapped(consented(set(EVERYTHING), {SEGUE}))
    assert answer == {
        "necessary": True,
        "analytics": True,
        "personalization": True,
        "marketing": True,
        "advertising": True,
    }
    assert "automated_decisions" not in answer


def test_legitimate_interest_is_not_consent():
    li_only = tc(
        purposes_li_transparency=EVERYTHING,
        vendor_legitimate_interests=VendorSection.from_ids({SEGUE}),
    )
    assert not any(v for k, v in mapped(li_only).items() if k != "necessary")
    mixed = tc(
        purposes_consent=EVERYTHING,
        vendor_legitimate_interests=VendorSection.from_ids({SEGUE}),
    )
    assert mapped(mixed)["personalization"] is False


@pytest.mark.parametrize("ranges", [False, True])
def test_range_and_bitfield_vendor_encodings_read_the_same(ranges):
    vendors = VendorSection.from_ids({1, 2, 3, SEGUE, 900}, ranges=ranges)
    assert vendors.is_range_encoding is ranges
    value = tc(purposes_consent=frozenset({5, 6}), vendor_consents=vendors)
    assert mapped(value)["personalization"] is True
    assert mapped(value, SEGUE + 1)["personalization"] is False
    assert mapped(value, 901)["personalization"] is False  # above MaxVendorId


def test_a_type_0_publisher_restriction_refuses_the_purpose_for_segue():
    def restricted(purpose: int, kind: int, vendors: tuple[VendorRange, ...]) -> TCString:
        restriction = PublisherRestriction(purpose, kind, vendors)
        return consented(set(EVERYTHING), {SEGUE}, publisher_restrictions=(restriction,))

    flat_no = mapped(restricted(5, 0, (VendorRange(40, 50),)))
    assert flat_no["personalization"] is False
    assert flat_no["analytics"] is flat_no["advertising"] is True
    assert mapped(restricted(3, 0, (VendorRange(SEGUE, SEGUE),)))["marketing"] is False
    assert mapped(restricted(3, 0, (VendorRange(SEGUE, SEGUE),)))["advertising"] is False
    assert mapped(restricted(5, 0, (VendorRange(1, SEGUE - 1),)))["personalization"] is True
    assert mapped(restricted(5, 1, (VendorRange(SEGUE, SEGUE),)))["personalization"] is True
    assert mapped(restricted(5, 2, (VendorRange(SEGUE, SEGUE),)))["personalization"] is True


# ---------------------------------------------------------------------------- malformed strings


def full_example() -> TCString:
    return tc(
        purposes_consent=frozenset({1, 5, 6}),
        vendor_consents=VendorSection.from_ids({3, SEGUE, 300}, ranges=True),
        vendor_legitimate_interests=VendorSection.from_ids({7, 8}),
        publisher_restrictions=(PublisherRestriction(2, 0, (VendorRange(10, 20),)),),
        disclosed_vendors=VendorSection.from_ids({3, SEGUE}),
        publisher_tc=PublisherTC(
            purposes_consent=frozenset({1}),
            num_custom_purposes=3,
            custom_purposes_consent=frozenset({2}),
        ),
    )


def test_every_truncation_of_the_core_is_rejected():
    core = encode_tc_string(full_example()).split(".")[0]
    for length in range(len(core)):
        rejected(core[:length], "empty|truncated")
    raw_core = base64.urlsafe_b64decode(core + "=" * (-len(core) % 4))
    for size in range(len(raw_core)):
        rejected(base64.urlsafe_b64encode(raw_core[:size]).decode().rstrip("="), "empty|truncated")


def test_truncating_a_later_segment_rejects_the_whole_string():
    core, disclosed, publisher = encode_tc_string(full_example()).split(".")
    for length in range(1, len(publisher)):
        rejected(f"{core}.{disclosed}.{publisher[:length]}", "truncated")
    rejected(f"{core}.{disclosed}.", "empty")
    rejected(f"{core}.", "empty")


@pytest.mark.parametrize(
    "text",
    [
        "COrVd1pOrVd1pACABCENAHCAAAAAAAAAAAiQAAAAAAAA",
        "COwxsONOwxsONKpAAAENAdCAAMAAAAAAAAAAAAAAAAAA",
        "CQSbk4AQSbk4ANwAAAENAwCgAAAAAAAAAAYgACPAAAAA",
    ],
)
def test_prefixes_of_published_strings_are_rejected_or_only_lose_padding(text):
    whole = decode_tc_string(text, now=NOW)
    for length in range(len(text)):
        try:
            prefix = decode_tc_string(text[:length], now=NOW)
        except InvalidTCString as exc:
            reason = exc.reason
        else:
            reason = "read" if prefix == whole else "read differently"
        assert reason.startswith(("empty", "truncated", "read")), reason
        assert reason != "read differently"


@pytest.mark.parametrize(
    "text",
    ["", "C=", "CO rVd1p", "COrVd1pOrVd1pACABCENAHCAAAAAAAAAAAiQAAAAAAAA\n", "CÖrVd1p", "COr+Vd1p"],
)
def test_characters_outside_web_safe_base64_are_rejected(text):
    with pytest.raises(InvalidTCString):
        decode_tc_string(text, now=NOW)


def test_padding_is_accepted_when_well_formed():
    text = encode_tc_string(consented({5, 6}, {SEGUE}))
    padded = text + "=" * (-len(text) % 4)
    assert decode_tc_string(padded, now=NOW) == decode_tc_string(text, now=NOW)
    if padded != text:
        rejected(padded + "=", "padding")
    rejected(text + "===", "padding|truncated")


def test_version_1_and_other_versions_are_rejected():
    rejected(raw(tc(version=1)), "version 1")
    rejected(raw(tc(version=3)), "version 3")
    # a TCF v1.1 string from the v1 era
    rejected("BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA", "version 1")


def test_old_policy_versions_are_rejected_and_the_policy_version_is_exposed():
    rejected(raw(tc(tcf_policy_version=1)), "TcfPolicyVersion 1")
    assert decode_tc_string(raw(tc(tcf_policy_version=2)), now=NOW).tcf_policy_version == 2
    assert decode_tc_string(raw(tc(tcf_policy_version=5)), now=NOW).tcf_policy_version == 5


def test_zero_and_future_timestamps_are_rejected():
    rejected(raw(tc(created=0)), "Created is zero")
    rejected(raw(tc(last_updated=0)), "LastUpdated is zero")
    future = int((NOW + 2 * 24 * 3600) * 10)
    rejected(raw(tc(last_updated=future)), "LastUpdated is in the future")
    rejected(raw(tc(created=future)), "Created is in the future")
    skewed = int((NOW + 3600) * 10)
    assert decode_tc_string(raw(tc(last_updated=skewed)), now=NOW).last_updated == skewed


@pytest.mark.parametrize("field", ["vendor_consents", "vendor_legitimate_interests"])
def test_inconsistent_vendor_ranges_are_rejected(field):
    def section(*ranges: VendorRange, top: int = 10) -> str:
        vendors = VendorSection(max_vendor_id=top, is_range_encoding=True, ranges=ranges)
        return raw(tc(**{field: vendors}))

    rejected(section(VendorRange(5, 3)), "before its start")
    rejected(section(VendorRange(0, 0)), "vendor id 0")
    rejected(section(VendorRange(0, 4)), "vendor id 0")
    rejected(section(VendorRange(11, 11)), "above MaxVendorId")
    rejected(section(VendorRange(4, 11)), "above MaxVendorId")
    rejected(section(VendorRange(1, 1), top=0), "above MaxVendorId")
    assert SEGUE not in decode_tc_string(section(VendorRange(1, 10)), now=NOW).vendor_consents


def test_inconsistent_publisher_restrictions_are_rejected():
    def restriction(purpose: int, kind: int, *ranges: VendorRange) -> str:
        return raw(tc(publisher_restrictions=(PublisherRestriction(purpose, kind, ranges),)))

    rejected(restriction(0, 0, VendorRange(1, 2)), "purpose 0")
    rejected(restriction(25, 0, VendorRange(1, 2)), "purpose 25")
    rejected(restriction(2, 3, VendorRange(1, 2)), "undefined type 3")
    rejected(restriction(2, 0, VendorRange(9, 2)), "before its start")
    rejected(restriction(2, 0, VendorRange(0, 2)), "vendor id 0")


def test_letters_outside_a_to_z_are_rejected():
    text = raw(tc())
    bits = bin(int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))))[2:]
    bits = bits.zfill(len(text) * 6 // 8 * 8)
    language_at = 6 + 36 + 36 + 12 + 12 + 6
    broken = bits[:language_at] + "111111" + bits[language_at + 6 :]
    data = int(broken, 2).to_bytes(len(broken) // 8, "big")
    rejected(base64.urlsafe_b64encode(data).decode().rstrip("="), "not a letter")


def garbage(text: str, char: str, extra: int = 0) -> str:
    """``text`` with ``char`` and zero characters after it, to a whole number of bytes."""
    missing = -(len(text) + 1) % 4 + extra
    return text + char + "A" * missing


def test_trailing_garbage_is_rejected():
    text = encode_tc_string(consented({5, 6}, {SEGUE}))
    rejected(garbage(text, "B"), "trailing garbage")
    rejected(garbage(text, "_"), "trailing garbage")
    rejected(garbage(text, "A", 4), "trailing garbage")  # more zero padding than encoders write
    publisher = encode_tc_string(tc(publisher_tc=PublisherTC()))
    rejected(garbage(publisher, "Q"), "trailing garbage")
    rejected(text + "B", "truncated|trailing garbage")


def test_set_bits_beyond_the_last_byte_are_rejected():
    text = "CQSbk4AQSbk4ANwAAAENAwCgAAAAAAAAAAYgACPAAAAA.IDKQA4AAgAKAGQAygA"
    assert decode_tc_string(text, now=NOW).disclosed_vendors is not None
    rejected(text[:-1] + "B", "trailing garbage")  # 'B' sets a bit of no whole byte
    rejected(text[:-2] + "AB", "trailing garbage")


def test_unknown_repeated_and_misplaced_segments_are_rejected():
    core = encode_tc_string(tc())
    disclosed = encode_tc_string(tc(disclosed_vendors=VendorSection())).split(".")[1]
    for kind in (0, 4, 5, 6, 7):
        segment = base64.urlsafe_b64encode(bytes([kind << 5, 0, 0])).decode()
        rejected(f"{core}.{segment}", f"segment type {kind}")
    rejected(f"{core}.{disclosed}.{disclosed}", "appears twice")
    rejected(f"{disclosed}.{core}", "version")


def test_the_removed_allowed_vendors_segment_is_still_read():
    value = tc(
        disclosed_vendors=VendorSection.from_ids({1, 2}),
        allowed_vendors=VendorSection.from_ids({2}),
    )
    decoded = decode_tc_string(encode_tc_string(value), now=NOW)
    assert decoded.allowed_vendors == VendorSection.from_ids({2})


def test_the_encoder_refuses_what_it_cannot_write_or_the_decoder_would_reject():
    with pytest.raises(ValueError, match="does not fit"):
        encode_tc_string(tc(cmp_id=4096))
    with pytest.raises(ValueError, match="ids must be between"):
        encode_tc_string(tc(purposes_consent=frozenset({25})))
    with pytest.raises(ValueError, match="two letters"):
        encode_tc_string(tc(publisher_cc="D"))
    with pytest.raises(ValueError, match="bit field"):
        encode_tc_string(tc(vendor_consents=VendorSection(max_vendor_id=3, bitfield="1")))
    with pytest.raises(ValueError, match="not a valid TC string"):
        encode_tc_string(tc(version=1))
    with pytest.raises(ValueError, match="canonical"):
        encode_tc_string(tc(consent_language="en"))


def test_a_non_string_is_rejected():
    with pytest.raises(InvalidTCString, match="empty"):
        decode_tc_string(None, now=NOW)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- properties

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def vendor_ranges(low: int, high: int) -> st.SearchStrategy[tuple[VendorRange, ...]]:
    pair = st.tuples(st.integers(low, high), st.integers(0, 50)).map(
        lambda p: VendorRange(p[0], min(high, p[0] + p[1]))
    )
    return st.lists(pair, max_size=6).map(tuple)


@st.composite
def vendor_sections(draw: st.DrawFn) -> VendorSection:
    top = draw(st.integers(0, 400))
    if draw(st.booleans()):
        return VendorSection(
            max_vendor_id=top, bitfield=draw(st.text("01", min_size=top, max_size=top))
        )
    ranges = draw(vendor_ranges(1, top)) if top else ()
    return VendorSection(max_vendor_id=top, is_range_encoding=True, ranges=ranges)


def id_sets(top: int) -> st.SearchStrategy[frozenset[int]]:
    return st.frozensets(st.integers(1, top)) if top else st.just(frozenset())


@st.composite
def publisher_tcs(draw: st.DrawFn) -> PublisherTC:
    custom = draw(st.integers(0, 63))
    return PublisherTC(
        purposes_consent=draw(id_sets(24)),
        purposes_li_transparency=draw(id_sets(24)),
        num_custom_purposes=custom,
        custom_purposes_consent=draw(id_sets(custom)),
        custom_purposes_li_transparency=draw(id_sets(custom)),
    )


letters = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2)
restrictions = st.builds(
    PublisherRestriction, st.integers(1, 24), st.integers(0, 2), vendor_ranges(1, 65535)
)
tc_strings = st.builds(
    TCString,
    created=st.integers(1, int(NOW * 10)),
    last_updated=st.integers(1, int(NOW * 10)),
    cmp_id=st.integers(0, 4095),
    cmp_version=st.integers(0, 4095),
    consent_screen=st.integers(0, 63),
    consent_language=letters,
    vendor_list_version=st.integers(0, 4095),
    tcf_policy_version=st.integers(2, 63),
    is_service_specific=st.booleans(),
    use_non_standard_texts=st.booleans(),
    special_feature_opt_ins=id_sets(12),
    purposes_consent=id_sets(24),
    purposes_li_transparency=id_sets(24),
    purpose_one_treatment=st.booleans(),
    publisher_cc=letters,
    vendor_consents=vendor_sections(),
    vendor_legitimate_interests=vendor_sections(),
    publisher_restrictions=st.lists(restrictions, max_size=4).map(tuple),
    disclosed_vendors=st.none() | vendor_sections(),
    allowed_vendors=st.none() | vendor_sections(),
    publisher_tc=st.none() | publisher_tcs(),
)


@settings(max_examples=300, deadline=None)
@given(tc_strings)
def test_decode_of_encode_is_the_identity(value):
    text = encode_tc_string(value, check=False)
    assert decode_tc_string(text, now=NOW) == value
    assert encode_tc_string(value) == text


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_invalid_tc_string(data):
    text = base64.urlsafe_b64encode(data).decode().rstrip("=")
    try:
        decoded = decode_tc_string(text, now=NOW)
    except InvalidTCString:
        return
    tcf_purposes(decoded, SEGUE)


@settings(max_examples=500, deadline=None)
@given(st.text(B64URL + ".=+/ \x00é", max_size=120))
def test_random_text_only_ever_raises_invalid_tc_string(text):
    with contextlib.suppress(InvalidTCString):
        decode_tc_string(text, now=NOW)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(B64URL + "."))
def test_a_damaged_valid_string_is_rejected_or_still_consistent(where, char):
    text = encode_tc_string(full_example())
    position = where % len(text)
    damaged = text[:position] + char + text[position + 1 :]
    try:
        decoded = decode_tc_string(damaged, now=NOW)
    except InvalidTCString:
        return
    assert decode_tc_string(encode_tc_string(decoded, check=False), now=NOW) == decoded
