"""IAB TCF v2.2 TC strings: a strict decoder, an encoder, and the mapping to segue's purposes.

A TC string is consent evidence. A string that cannot be read completely and consistently is
no evidence at all, so :func:`decode_tc_string` either returns every field of the string or
raises :class:`InvalidTCString` — it never guesses, never fills a missing field with a default
and never stops reading early. The caller then passes ``None`` to :func:`tcf_purposes`, which
refuses every purpose but ``necessary``: a truncated or malformed string is *no consent*.

Format (IAB Tech Lab, "Transparency and Consent String with Global Vendor List Format", v2):
dot-separated segments, each the web-safe base64 of a big-endian bit stream padded to whole
bytes, written without ``=`` padding (padding is accepted). The first segment is the core
string (Version 6 bits = 2, Created and LastUpdated 36 bits of epoch deciseconds, …, the
vendor consent and vendor legitimate interest sections, the publisher restrictions). Every
later segment starts with a 3-bit SegmentType: 1 DisclosedVendors, 2 AllowedVendors (removed
in v2.2, still decoded for older CMPs), 3 PublisherTC. The core segment alone decides
consent; the others are decoded and validated so that a damaged string is rejected whole.

What the decoder rejects (each with a reason naming the field): an empty string or segment;
a character outside the web-safe base64 alphabet (``+`` and ``/`` included: the format is
web-safe base64); malformed ``=`` padding, a character count no base64 encoding has, set
bits in a last character beyond the last whole byte; a Version other than 2; a
TcfPolicyVersion below 2 (v2.2 writes 4 or later; the value is exposed); a field that runs
past the end of its segment (truncation); Created or LastUpdated of zero or more than a day
in the future; a language or country letter outside A–Z; a vendor id of 0, above
MaxVendorId, or a range whose end is below its start; a publisher restriction for purpose 0
or above 24, or of the undefined type 3; a segment of type 0 (a second core) or of an
unknown type 4–7, or the same segment type twice; and set bits after the last field, or 24
or more bits of zero padding (trailing garbage: encoders pad to a byte, iabtcf-es to a
24-bit group). Only whole bytes carry fields, so a string cut anywhere — at a character or
at a byte — either fails or reads exactly as the whole string did.

Mapping to segue's purposes (:func:`tcf_purposes`), TCF v2.2 purpose numbers:

- ``necessary`` — always True: strictly necessary processing needs no consent, and no TC
  string can refuse it.
- ``personalization`` — purposes 5 (create profiles to personalise content) and 6 (use
  profiles to select personalised content): segue's decision path does both, so both are
  needed, as issue 5 requires.
- ``analytics`` — purposes 1 (store and/or access information on a device: segue keys
  behavioural events on a device identifier), 8 (measure content performance: the decision
  KPI reports) and 9 (understand audiences by combining data from different sources: the
  CDP's identity resolution). Purpose 1 is required even when PurposeOneTreatment says it was
  not disclosed: without its consent bit segue has no evidence, and evidence is what counts.
- ``advertising`` — purposes 2, 3, 4 and 7 (select basic ads, build and use ad profiles,
  measure ad performance): the sale/share and targeted advertising that CCPA and GPC also
  govern, so all of them are needed.
- ``marketing`` — purposes 3 and 4: a marketing message chosen from a person's profile is
  personalised advertising in TCF terms.
- ``automated_decisions`` — absent: TCF has no purpose for an objection to automated
  decisions (GDPR Art. 22), so a TC string says nothing about it; other signals decide.

Every purpose above also needs the vendor consent bit of segue's own vendor id
(``SEGUE_TCF_VENDOR_ID``): purpose consent is given to the publisher's vendors as a group,
the vendor bit says segue is one of the vendors the person accepted. Without a configured
vendor id nothing can be verified, so nothing is granted. Only consent counts, never
legitimate interest: in TCF v2.2 purposes 3–6 cannot rest on legitimate interest at all, and
segue cannot verify a balancing test for the others, so an LI transparency bit grants
nothing. A publisher restriction of type 0 ("purpose flatly not allowed") covering segue's
vendor id refuses that purpose whatever the consent bits say. Types 1 (require consent) and 2
(require legitimate interest) only apply to purposes a vendor declared flexible; segue
declares its purposes as consent and not flexible, so they change nothing.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Final

import msgspec

__all__ = [
    "TCF_PURPOSES",
    "InvalidTCString",
    "PublisherRestriction",
    "PublisherTC",
    "TCString",
    "VendorRange",
    "VendorSection",
    "consent_string",
    "decode_tc_string",
    "encode_tc_string",
    "tcf_purposes",
]

TCF_PURPOSES: Final[Mapping[str, tuple[int, ...]]] = {
    "analytics": (1, 8, 9),
    "personalization": (5, 6),
    "marketing": (3, 4),
    "advertising": (2, 3, 4, 7),
}
"""segue purpose → the TCF purposes that must all be consented (see the module docstring)."""

_VERSION: Final = 2
_MIN_POLICY_VERSION: Final = 2
_MAX_CLOCK_SKEW_DS: Final = 24 * 3600 * 10  # a day, in deciseconds
_MAX_PADDING_BITS: Final = 24  # encoders pad to a byte, or (iabtcf-es) to a 24-bit group
_SEGMENT_DISCLOSED: Final = 1
_SEGMENT_ALLOWED: Final = 2
_SEGMENT_PUBLISHER_TC: Final = 3
_RESTRICTION_NOT_ALLOWED: Final = 0
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
_B64_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_LEFTOVER_MASK: Final = {2: 0b1111, 3: 0b11}  # a last character's bits beyond the last byte
_LETTER_A: Final = ord("A")


class InvalidTCString(ValueError):
    """A TC string that cannot be trusted; it grants nothing. ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class VendorRange(msgspec.Struct, frozen=True):
    """An inclusive run of vendor ids; ``start == end`` is a single vendor."""

    start: int
    end: int


class VendorSection(msgspec.Struct, frozen=True, kw_only=True):
    """A set of vendor ids as the string encodes it: a bit field or a list of ranges.

    The bit field stays a ``"0"``/``"1"`` string (index 0 is vendor 1) and ranges stay ranges,
    so decoding costs no more than reading the string and a range of 65,535 vendors is not
    expanded; ask membership with ``vendor_id in section``.
    """

    max_vendor_id: int = 0
    is_range_encoding: bool = False
    bitfield: str = ""
    ranges: tuple[VendorRange, ...] = ()

    def __contains__(self, vendor_id: object) -> bool:
        if not isinstance(vendor_id, int) or not 1 <= vendor_id <= self.max_vendor_id:
            return False
        if not self.is_range_encoding:
            return self.bitfield[vendor_id - 1] == "1"
        return any(r.start <= vendor_id <= r.end for r in self.ranges)

    def ids(self) -> frozenset[int]:
        """Every vendor id in the section (expands ranges: for tests and small sets)."""
        if self.is_range_encoding:
            return frozenset(i for r in self.ranges for i in range(r.start, r.end + 1))
        return frozenset(i for i, bit in enumerate(self.bitfield, 1) if bit == "1")

    @classmethod
    def from_ids(
        cls, ids: Iterable[int], *, max_vendor_id: int | None = None, ranges: bool = False
    ) -> VendorSection:
        """The section for ``ids``, as a bit field or (``ranges=True``) as merged ranges."""
        wanted = sorted(set(ids))
        top = max_vendor_id if max_vendor_id is not None else (wanted[-1] if wanted else 0)
        if wanted and (wanted[0] < 1 or wanted[-1] > top):
            raise ValueError(f"vendor ids must be between 1 and {top}")
        if ranges:
            return cls(max_vendor_id=top, is_range_encoding=True, ranges=_runs(wanted))
        bits = ["0"] * top
        for vendor_id in wanted:
            bits[vendor_id - 1] = "1"
        return cls(max_vendor_id=top, bitfield="".join(bits))


class PublisherRestriction(msgspec.Struct, frozen=True):
    """A publisher's override of one purpose for some vendors.

    ``restriction_type``: 0 purpose flatly not allowed, 1 require consent, 2 require
    legitimate interest.
    """

    purpose_id: int
    restriction_type: int
    ranges: tuple[VendorRange, ...]

    def covers(self, vendor_id: int) -> bool:
        return any(r.start <= vendor_id <= r.end for r in self.ranges)


class PublisherTC(msgspec.Struct, frozen=True, kw_only=True):
    """The PublisherTC segment: the publisher's own purposes and custom purposes."""

    purposes_consent: frozenset[int] = frozenset()
    purposes_li_transparency: frozenset[int] = frozenset()
    num_custom_purposes: int = 0
    custom_purposes_consent: frozenset[int] = frozenset()
    custom_purposes_li_transparency: frozenset[int] = frozenset()


class TCString(msgspec.Struct, frozen=True, kw_only=True):
    """Every field of a TC string; purpose and feature sets hold the ids whose bit is 1.

    ``created`` and ``last_updated`` are epoch deciseconds, as encoded (see
    :attr:`created_at`); the two letter fields are upper case.
    """

    created: int
    last_updated: int
    version: int = _VERSION
    cmp_id: int = 0
    cmp_version: int = 0
    consent_screen: int = 0
    consent_language: str = "EN"
    vendor_list_version: int = 0
    tcf_policy_version: int = 4
    is_service_specific: bool = True
    use_non_standard_texts: bool = False
    special_feature_opt_ins: frozenset[int] = frozenset()
    purposes_consent: frozenset[int] = frozenset()
    purposes_li_transparency: frozenset[int] = frozenset()
    purpose_one_treatment: bool = False
    publisher_cc: str = "AA"
    vendor_consents: VendorSection = VendorSection()
    vendor_legitimate_interests: VendorSection = VendorSection()
    publisher_restrictions: tuple[PublisherRestriction, ...] = ()
    disclosed_vendors: VendorSection | None = None
    allowed_vendors: VendorSection | None = None
    publisher_tc: PublisherTC | None = None

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.created / 10, UTC)

    @property
    def last_updated_at(self) -> datetime:
        return datetime.fromtimestamp(self.last_updated / 10, UTC)


# ---------------------------------------------------------------------------------- decoding


class _Reader:
    """Reads big-endian fields from one segment's bit string; running out is truncation."""

    __slots__ = ("bits", "pos", "segment")

    def __init__(self, bits: str, segment: str) -> None:
        self.bits = bits
        self.pos = 0
        self.segment = segment

    def take(self, width: int, field: str) -> str:
        end = self.pos + width
        if end > len(self.bits):
            raise InvalidTCString(
                f"truncated: {self.segment} field {field} needs {width} bits at bit "
                f"{self.pos}, {len(self.bits) - self.pos} left"
            )
        chunk = self.bits[self.pos : end]
        self.pos = end
        return chunk

    def uint(self, width: int, field: str) -> int:
        return int(self.take(width, field), 2)

    def flag(self, field: str) -> bool:
        return self.take(1, field) == "1"

    def ids(self, width: int, field: str) -> frozenset[int]:
        return frozenset(i for i, bit in enumerate(self.take(width, field), 1) if bit == "1")

    def letters(self, field: str) -> str:
        return self.letter(field) + self.letter(field)

    def letter(self, field: str) -> str:
        value = self.uint(6, field)
        if value > 25:
            raise InvalidTCString(f"{self.segment} field {field}: {value} is not a letter A-Z")
        return chr(_LETTER_A + value)

    def finish(self) -> None:
        """Only zero padding may follow the last field."""
        rest = self.bits[self.pos :]
        if "1" in rest or len(rest) >= _MAX_PADDING_BITS:
            raise InvalidTCString(
                f"trailing garbage: {len(rest)} bits after the {self.segment} segment's last field"
            )


def decode_tc_string(text: str, *, now: float | None = None) -> TCString:
    """Decode and validate a whole TC string, or raise :class:`InvalidTCString`.

    Args:
        text: the TC string as a CMP hands it out (``euconsent-v2``, ``gdpr_consent``).
        now: epoch seconds to judge "in the future" against (default: the clock).
    """
    if not isinstance(text, str) or not text:
        raise InvalidTCString("empty TC string")
    core_text, *others = text.split(".")
    core = _decode_core(_Reader(_bits(core_text, "core"), "core"), now)
    segments: dict[int, VendorSection | PublisherTC] = {}
    for index, segment_text in enumerate(others, 1):
        kind, value = _decode_segment(segment_text, index)
        if kind in segments:
            raise InvalidTCString(f"segment {index}: segment type {kind} appears twice")
        segments[kind] = value
    disclosed = segments.get(_SEGMENT_DISCLOSED)
    allowed = segments.get(_SEGMENT_ALLOWED)
    publisher = segments.get(_SEGMENT_PUBLISHER_TC)
    return msgspec.structs.replace(
        core,
        disclosed_vendors=disclosed if isinstance(disclosed, VendorSection) else None,
        allowed_vendors=allowed if isinstance(allowed, VendorSection) else None,
        publisher_tc=publisher if isinstance(publisher, PublisherTC) else None,
    )


def _bits(segment: str, name: str) -> str:
    """The segment's bit string: the bytes its base64 encodes, big-endian.

    Only whole bytes carry fields. The two or four bits of a last character that do not
    complete a byte must be zero; were they read as fields, a string cut at a byte boundary
    and re-encoded could turn into a shorter valid string that says something else.
    """
    body = segment.rstrip("=")
    padding = len(segment) - len(body)
    if padding and (padding > 2 or len(segment) % 4):
        raise InvalidTCString(f"{name} segment: malformed base64 padding")
    if not body:
        raise InvalidTCString(f"{name} segment is empty")
    if not _BASE64URL.fullmatch(body):
        raise InvalidTCString(f"{name} segment: a character outside web-safe base64")
    leftover = len(body) % 4
    if leftover == 1:
        raise InvalidTCString(f"truncated: {name} segment of {len(body)} characters, 4k+1")
    if leftover and _B64_ALPHABET.index(body[-1]) & _LEFTOVER_MASK[leftover]:
        raise InvalidTCString(
            f"truncated or trailing garbage: {name} segment has set bits beyond its last byte"
        )
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    return format(int.from_bytes(raw, "big"), f"0{len(raw) * 8}b")


def _decode_core(r: _Reader, now: float | None) -> TCString:
    version = r.uint(6, "Version")
    if version != _VERSION:
        raise InvalidTCString(f"version {version}: only TCF v2 strings (version 2) are read")
    created = r.uint(36, "Created")
    last_updated = r.uint(36, "LastUpdated")
    _check_time(created, "Created", now)
    _check_time(last_updated, "LastUpdated", now)
    cmp_id = r.uint(12, "CmpId")
    cmp_version = r.uint(12, "CmpVersion")
    consent_screen = r.uint(6, "ConsentScreen")
    consent_language = r.letters("ConsentLanguage")
    vendor_list_version = r.uint(12, "VendorListVersion")
    policy_version = r.uint(6, "TcfPolicyVersion")
    if policy_version < _MIN_POLICY_VERSION:
        raise InvalidTCString(f"TcfPolicyVersion {policy_version}: v2 strings use 2 or later")
    tc = TCString(
        version=version,
        created=created,
        last_updated=last_updated,
        cmp_id=cmp_id,
        cmp_version=cmp_version,
        consent_screen=consent_screen,
        consent_language=consent_language,
        vendor_list_version=vendor_list_version,
        tcf_policy_version=policy_version,
        is_service_specific=r.flag("IsServiceSpecific"),
        use_non_standard_texts=r.flag("UseNonStandardTexts"),
        special_feature_opt_ins=r.ids(12, "SpecialFeatureOptIns"),
        purposes_consent=r.ids(24, "PurposesConsent"),
        purposes_li_transparency=r.ids(24, "PurposesLITransparency"),
        purpose_one_treatment=r.flag("PurposeOneTreatment"),
        publisher_cc=r.letters("PublisherCC"),
        vendor_consents=_decode_vendors(r, "vendor consent"),
        vendor_legitimate_interests=_decode_vendors(r, "vendor legitimate interest"),
        publisher_restrictions=_decode_restrictions(r),
    )
    r.finish()
    return tc


def _check_time(deciseconds: int, field: str, now: float | None) -> None:
    if deciseconds == 0:
        raise InvalidTCString(f"{field} is zero")
    clock = time.time() if now is None else now
    if deciseconds > clock * 10 + _MAX_CLOCK_SKEW_DS:
        raise InvalidTCString(f"{field} is in the future")


def _decode_vendors(r: _Reader, section: str) -> VendorSection:
    max_vendor_id = r.uint(16, f"{section} MaxVendorId")
    if not r.flag(f"{section} IsRangeEncoding"):
        return VendorSection(
            max_vendor_id=max_vendor_id, bitfield=r.take(max_vendor_id, f"{section} BitField")
        )
    ranges = _decode_ranges(r, section, max_vendor_id)
    return VendorSection(max_vendor_id=max_vendor_id, is_range_encoding=True, ranges=ranges)


def _decode_ranges(r: _Reader, section: str, max_vendor_id: int) -> tuple[VendorRange, ...]:
    entries = []
    for _ in range(r.uint(12, f"{section} NumEntries")):
        is_range = r.flag(f"{section} IsARange")
        start = r.uint(16, f"{section} StartOrOnlyVendorId")
        end = r.uint(16, f"{section} EndVendorId") if is_range else start
        if start == 0:
            raise InvalidTCString(f"{section}: vendor id 0")
        if end < start:
            raise InvalidTCString(f"{section}: range ends at {end}, before its start {start}")
        if end > max_vendor_id:
            raise InvalidTCString(f"{section}: vendor id {end} above MaxVendorId {max_vendor_id}")
        entries.append(VendorRange(start, end))
    return tuple(entries)


def _decode_restrictions(r: _Reader) -> tuple[PublisherRestriction, ...]:
    restrictions = []
    for _ in range(r.uint(12, "NumPubRestrictions")):
        purpose_id = r.uint(6, "PurposeId")
        if not 1 <= purpose_id <= 24:
            raise InvalidTCString(f"publisher restriction for purpose {purpose_id}")
        restriction_type = r.uint(2, "RestrictionType")
        if restriction_type == 3:
            raise InvalidTCString("publisher restriction of the undefined type 3")
        ranges = _decode_ranges(r, "publisher restriction", 0xFFFF)
        restrictions.append(PublisherRestriction(purpose_id, restriction_type, ranges))
    return tuple(restrictions)


def _decode_segment(text: str, index: int) -> tuple[int, VendorSection | PublisherTC]:
    """One segment after the core: its type and its content."""
    name = f"segment {index}"
    r = _Reader(_bits(text, name), name)
    kind = r.uint(3, "SegmentType")
    value: VendorSection | PublisherTC
    if kind in (_SEGMENT_DISCLOSED, _SEGMENT_ALLOWED):
        value = _decode_vendors(r, "disclosed vendors" if kind == 1 else "allowed vendors")
    elif kind == _SEGMENT_PUBLISHER_TC:
        value = _decode_publisher_tc(r)
    else:
        raise InvalidTCString(f"{name}: segment type {kind} is not allowed after the core")
    r.finish()
    return kind, value


def _decode_publisher_tc(r: _Reader) -> PublisherTC:
    consent = r.ids(24, "PubPurposesConsent")
    li = r.ids(24, "PubPurposesLITransparency")
    custom = r.uint(6, "NumCustomPurposes")
    return PublisherTC(
        purposes_consent=consent,
        purposes_li_transparency=li,
        num_custom_purposes=custom,
        custom_purposes_consent=r.ids(custom, "CustomPurposesConsent"),
        custom_purposes_li_transparency=r.ids(custom, "CustomPurposesLITransparency"),
    )


# ---------------------------------------------------------------------------------- encoding


class _Writer:
    """Collects big-endian fields; a value that does not fit its width cannot be encoded."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[str] = []

    def uint(self, value: int, width: int, field: str) -> None:
        if not 0 <= value < 1 << width:
            raise ValueError(f"{field}: {value} does not fit in {width} bits")
        if width:
            self.parts.append(format(value, f"0{width}b"))

    def flag(self, value: bool) -> None:
        self.parts.append("1" if value else "0")

    def ids(self, ids: frozenset[int], width: int, field: str) -> None:
        if any(not 1 <= i <= width for i in ids):
            raise ValueError(f"{field}: ids must be between 1 and {width}")
        self.parts.append("".join("1" if i in ids else "0" for i in range(1, width + 1)))

    def letters(self, text: str, field: str) -> None:
        if len(text) != 2 or not all("A" <= c <= "Z" for c in text.upper()):
            raise ValueError(f"{field}: {text!r} is not two letters A-Z")
        for c in text.upper():
            self.uint(ord(c) - _LETTER_A, 6, field)

    def text(self) -> str:
        """Padded to whole bytes, web-safe base64 without padding, as CMPs write it."""
        bits = "".join(self.parts)
        bits += "0" * (-len(bits) % 8)
        raw = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def consent_string(
    purposes: Iterable[int], vendors: Iterable[int], *, created: float | None = None
) -> str:
    """A valid TC string in which the person consented to ``purposes`` for ``vendors``:
    what a consent manager would send, for tests, benchmarks and the demo."""
    stamp = int((time.time() - 60 if created is None else created) * 10)
    ids = set(vendors)
    return encode_tc_string(
        TCString(
            created=stamp,
            last_updated=stamp,
            cmp_id=7,
            vendor_list_version=80,
            purposes_consent=frozenset(purposes),
            vendor_consents=VendorSection.from_ids(ids, max_vendor_id=max(ids, default=0)),
        )
    )


def encode_tc_string(tc: TCString, *, check: bool = True) -> str:
    """The TC string for ``tc``; segments in the order core, disclosed, allowed, publisher.

    With ``check`` (the default) the result must decode back to ``tc``, else ``ValueError``:
    what segue writes is what segue accepts. ``check=False`` writes any values that fit their
    bit widths — tests use it to build the malformed strings the decoder must reject.
    """
    core = _Writer()
    _encode_core(core, tc)
    segments = [core.text()]
    for kind, section in ((1, tc.disclosed_vendors), (2, tc.allowed_vendors)):
        if section is not None:
            w = _Writer()
            w.uint(kind, 3, "SegmentType")
            _encode_vendors(w, section, "vendors segment")
            segments.append(w.text())
    if tc.publisher_tc is not None:
        segments.append(_encode_publisher_tc(tc.publisher_tc))
    text = ".".join(segments)
    if check:
        try:
            decoded = decode_tc_string(text, now=max(tc.created, tc.last_updated) / 10)
        except InvalidTCString as exc:
            raise ValueError(f"not a valid TC string: {exc.reason}") from exc
        if decoded != tc:
            raise ValueError("not in canonical form: the string would decode differently")
    return text


def _encode_core(w: _Writer, tc: TCString) -> None:
    w.uint(tc.version, 6, "Version")
    w.uint(tc.created, 36, "Created")
    w.uint(tc.last_updated, 36, "LastUpdated")
    w.uint(tc.cmp_id, 12, "CmpId")
    w.uint(tc.cmp_version, 12, "CmpVersion")
    w.uint(tc.consent_screen, 6, "ConsentScreen")
    w.letters(tc.consent_language, "ConsentLanguage")
    w.uint(tc.vendor_list_version, 12, "VendorListVersion")
    w.uint(tc.tcf_policy_version, 6, "TcfPolicyVersion")
    w.flag(tc.is_service_specific)
    w.flag(tc.use_non_standard_texts)
    w.ids(tc.special_feature_opt_ins, 12, "SpecialFeatureOptIns")
    w.ids(tc.purposes_consent, 24, "PurposesConsent")
    w.ids(tc.purposes_li_transparency, 24, "PurposesLITransparency")
    w.flag(tc.purpose_one_treatment)
    w.letters(tc.publisher_cc, "PublisherCC")
    _encode_vendors(w, tc.vendor_consents, "vendor consent")
    _encode_vendors(w, tc.vendor_legitimate_interests, "vendor legitimate interest")
    w.uint(len(tc.publisher_restrictions), 12, "NumPubRestrictions")
    for restriction in tc.publisher_restrictions:
        w.uint(restriction.purpose_id, 6, "PurposeId")
        w.uint(restriction.restriction_type, 2, "RestrictionType")
        _encode_ranges(w, restriction.ranges)


def _encode_vendors(w: _Writer, section: VendorSection, field: str) -> None:
    w.uint(section.max_vendor_id, 16, f"{field} MaxVendorId")
    w.flag(section.is_range_encoding)
    if section.is_range_encoding:
        if section.bitfield:
            raise ValueError(f"{field}: a bit field given with range encoding")
        _encode_ranges(w, section.ranges)
        return
    if section.ranges or len(section.bitfield) != section.max_vendor_id:
        raise ValueError(f"{field}: the bit field must hold exactly MaxVendorId bits")
    if section.bitfield.strip("01"):
        raise ValueError(f"{field}: the bit field holds only '0' and '1'")
    w.parts.append(section.bitfield)


def _encode_ranges(w: _Writer, ranges: tuple[VendorRange, ...]) -> None:
    w.uint(len(ranges), 12, "NumEntries")
    for entry in ranges:
        w.flag(entry.start != entry.end)
        w.uint(entry.start, 16, "StartOrOnlyVendorId")
        if entry.start != entry.end:
            w.uint(entry.end, 16, "EndVendorId")


def _encode_publisher_tc(publisher: PublisherTC) -> str:
    w = _Writer()
    w.uint(_SEGMENT_PUBLISHER_TC, 3, "SegmentType")
    w.ids(publisher.purposes_consent, 24, "PubPurposesConsent")
    w.ids(publisher.purposes_li_transparency, 24, "PubPurposesLITransparency")
    custom = publisher.num_custom_purposes
    w.uint(custom, 6, "NumCustomPurposes")
    w.ids(publisher.custom_purposes_consent, custom, "CustomPurposesConsent")
    w.ids(publisher.custom_purposes_li_transparency, custom, "CustomPurposesLITransparency")
    return w.text()


def _runs(ids: list[int]) -> tuple[VendorRange, ...]:
    """Sorted distinct ids → the fewest inclusive ranges."""
    runs: list[VendorRange] = []
    for vendor_id in ids:
        if runs and runs[-1].end == vendor_id - 1:
            runs[-1] = VendorRange(runs[-1].start, vendor_id)
        else:
            runs.append(VendorRange(vendor_id, vendor_id))
    return tuple(runs)


# ---------------------------------------------------------------------------------- mapping


def tcf_purposes(tc: TCString | None, vendor_id: int | None) -> dict[str, bool]:
    """segue purpose → granted, from a decoded TC string, for segue's vendor id.

    ``tc`` is None when the string did not decode: every purpose but ``necessary`` is then
    refused. ``automated_decisions`` is never in the answer (TCF says nothing about it).
    """
    answer = {"necessary": True}
    for purpose, needed in TCF_PURPOSES.items():
        answer[purpose] = (
            tc is not None and vendor_id is not None and _granted(tc, vendor_id, needed)
        )
    return answer


def _granted(tc: TCString, vendor_id: int, needed: tuple[int, ...]) -> bool:
    if vendor_id not in tc.vendor_consents:
        return False
    if not all(p in tc.purposes_consent for p in needed):
        return False
    return not any(
        r.restriction_type == _RESTRICTION_NOT_ALLOWED
        and r.purpose_id in needed
        and r.covers(vendor_id)
        for r in tc.publisher_restrictions
    )
