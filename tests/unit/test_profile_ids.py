"""Profile ids are derived from a profile's first identifier, and must stay so.

A replay, an unmerge and two workers folding side by side all re-derive ids and expect the
ones already stored; an upgrade that changed the derivation would split people. These
values were produced by the derivation as first released (HMAC-BLAKE2b, 12 bytes).
"""

from __future__ import annotations

from segue.core.model import Identifier
from segue.processor.service import profile_id_factory


def test_the_derivation_of_profile_ids_never_changes() -> None:
    new_id = profile_id_factory(b"installation-secret")
    assert new_id(Identifier("user_id", "u1")) == "p_cd3f42d71c7769df668982b4"
    assert new_id(Identifier("email", "ann@example.com")) == "p_6c7d995aec278af6c5378aec"
    assert new_id(Identifier("user_id", "u1")) == "p_cd3f42d71c7769df668982b4"  # no state kept


def test_another_installation_secret_gives_other_ids() -> None:
    ours = profile_id_factory(b"installation-secret")
    theirs = profile_id_factory(b"another-secret")
    assert ours(Identifier("user_id", "u1")) != theirs(Identifier("user_id", "u1"))
