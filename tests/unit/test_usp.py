"""IAB US Privacy strings: every valid combination, every malformed shape, the mapping."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segue.privacy.usp import InvalidUSPrivacy, USPrivacy, parse_us_privacy, usp_purposes

COMBINATIONS = ["1" + "".join(flags) for flags in itertools.product("YN-", repeat=3)]
OPTED_OUT = {"advertising": False, "marketing": False}


@pytest.mark.parametrize("text", COMBINATIONS)
def test_every_valid_combination_parses_in_either_case(text):
    parsed = parse_us_privacy(text)
    assert parsed == USPrivacy(1, text[1], text[2], text[3])  # type: ignore[arg-type]
    assert parse_us_privacy(text.lower()) == parsed
    assert str(parsed) == text
    assert parsed.applies is (text != "1---")


@pytest.mark.parametrize("text", COMBINATIONS)
def test_only_an_opt_out_of_sale_refuses_and_only_advertising_and_marketing(text):
    expected = OPTED_OUT if text[2] == "Y" else {}
    assert usp_purposes(parse_us_privacy(text)) == expected


def test_named_cases():
    assert usp_purposes(parse_us_privacy("1YYN")) == OPTED_OUT
    assert usp_purposes(parse_us_privacy("1YNN")) == {}
    assert usp_purposes(parse_us_privacy("1---")) == {}
    assert usp_purposes(parse_us_privacy("1nyy")) == OPTED_OUT


def test_a_malformed_string_reads_as_an_opt_out_of_sale():
    assert usp_purposes(None) == OPTED_OUT


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2YNN", "version"),
        ("0YNN", "version"),
        ("1YN", "4 characters"),
        ("1YNNX", "4 characters"),
        ("1YNN ", "4 characters"),
        (" 1YN", "version"),
        ("1ZNN", "explicit notice"),
        ("1YXN", "opt-out of sale"),
        ("1YN?", "LSPA"),
        ("1Y N", "opt-out of sale"),
        ("YNN1", "version"),
        ("１YNN", "version"),
        ("1ÿNN", "explicit notice"),
        ("", "empty"),
    ],
)
def test_malformed_strings_are_rejected(text, reason):
    with pytest.raises(InvalidUSPrivacy, match=reason):
        parse_us_privacy(text)


@pytest.mark.parametrize("value", [None, 1, b"1YNN"])
def test_non_strings_are_rejected(value):
    with pytest.raises(InvalidUSPrivacy, match="empty"):
        parse_us_privacy(value)  # type: ignore[arg-type]


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=6))
def test_any_text_parses_or_raises_invalid_us_privacy(text):
    try:
        parsed = parse_us_privacy(text)
    except InvalidUSPrivacy:
        return
    assert str(parsed) == text.upper()
