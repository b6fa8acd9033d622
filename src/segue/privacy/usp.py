"""IAB US Privacy strings (CCPA): a strict parser and the mapping to segue's purposes.

The string is four characters: the specification version (``1``), then three flags, each
``Y`` (yes), ``N`` (no) or ``-`` (not applicable): explicit notice given, the person opted out
of sale, the transaction is covered by the Limited Service Provider Agreement (LSPA). Letters
are read case-insensitively; anything else — another length, another version, another
character — raises :class:`InvalidUSPrivacy`.

Mapping (:func:`usp_purposes`):

- opt-out of sale ``Y`` → ``advertising`` and ``marketing`` refused: CCPA's "sale" and
  "sharing" cover handing data on for cross-context behavioural advertising, which is what
  those two purposes are.
- opt-out of sale ``N`` or ``-`` → nothing said (``{}``). ``N`` only means the person has not
  opted out; answering ``advertising: True`` would grant advertising to someone whose region
  requires opt-in consent (a US string does not make a person's consent GDPR consent). The
  region's default and the other signals decide.
- ``1---`` (CCPA does not apply) → ``{}``.
- a malformed string (the caller passes ``None``) → the conservative reading, an opt-out of
  sale: a person who tried to say something we could not read may have said "do not sell".

Notice and LSPA describe the publisher's obligations, not the person's choice, so they map
to nothing; they are kept on :class:`USPrivacy` for the consent ledger.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

__all__ = ["InvalidUSPrivacy", "USPrivacy", "parse_us_privacy", "usp_purposes"]

Flag = Literal["Y", "N", "-"]

_VERSION: Final = 1
_FLAGS: Final[dict[str, Flag]] = {"Y": "Y", "N": "N", "-": "-"}
_FIELDS: Final = ("explicit notice", "opt-out of sale", "LSPA covered")
_REFUSED_BY_OPT_OUT: Final = ("advertising", "marketing")


class InvalidUSPrivacy(ValueError):
    """A US Privacy string that cannot be read. ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class USPrivacy(msgspec.Struct, frozen=True):
    """A parsed US Privacy string; each flag is ``"Y"``, ``"N"`` or ``"-"``."""

    version: int
    explicit_notice: Flag
    opt_out_sale: Flag
    lspa_covered: Flag

    @property
    def applies(self) -> bool:
        """False for ``1---``: the publisher says CCPA does not apply."""
        return (self.explicit_notice, self.opt_out_sale, self.lspa_covered) != ("-", "-", "-")

    def __str__(self) -> str:
        return f"{self.version}{self.explicit_notice}{self.opt_out_sale}{self.lspa_covered}"


def parse_us_privacy(text: str) -> USPrivacy:
    """Parse a US Privacy string such as ``1YNN``, or raise :class:`InvalidUSPrivacy`."""
    if not isinstance(text, str) or not text:
        raise InvalidUSPrivacy("empty US Privacy string")
    if len(text) != 4:
        raise InvalidUSPrivacy(f"a US Privacy string has 4 characters, not {len(text)}")
    if text[0] != str(_VERSION):
        raise InvalidUSPrivacy(f"version {text[0]!r}: only version 1 is defined")
    flags: list[Flag] = []
    for name, char in zip(_FIELDS, text[1:], strict=True):
        flag = _FLAGS.get(char.upper())
        if flag is None:
            raise InvalidUSPrivacy(f"{name}: {char!r} is not Y, N or -")
        flags.append(flag)
    return USPrivacy(_VERSION, flags[0], flags[1], flags[2])


def usp_purposes(usp: USPrivacy | None) -> dict[str, bool]:
    """segue purpose → granted, from a parsed US Privacy string (``None``: it did not parse).

    Only refusals: an opt-out of sale refuses advertising and marketing; nothing else is
    ever granted or refused by a US Privacy string.
    """
    if usp is None or usp.opt_out_sale == "Y":
        return dict.fromkeys(_REFUSED_BY_OPT_OUT, False)
    return {}
