"""docs/identity.md's console examples, run as written against fresh servers.

The page says every example is from a real run of ``segue serve`` with
``SEGUE_ADMIN_KEY=admin-secret`` and ``SEGUE_WRITE_KEY=web-write-key``, except the golden
record's, which ran with ``--config segue.yaml`` (the example file of
docs/configuration.md) and ``SEGUE_WRITE_KEY=default-write-key``. Each runs here on a
server started that way, its examples in page order on the same server (later ones build
on earlier ones: the unmerge undoes the merge shown before it), and every command must
print what the page shows (see ``tests.e2e.console`` for what may differ).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.e2e.console import Step, block_steps, check_steps, matches, serving

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGE = DOCS / "identity.md"
#: the sections whose examples ran with the example configuration
CONFIGURED = ("Golden record",)


def sections(text: str) -> dict[str, str]:
    """The page's ``##`` sections by title."""
    parts = (part.partition("\n") for part in text.split("\n## ")[1:])
    return {title.strip(): body for title, _, body in parts}


def section_steps(body: str) -> list[Step]:
    """The commands of a section. A console block whose last command shows nothing is
    answered by the JSON block that follows it (the page shows a long answer apart)."""
    steps: list[Step] = []
    for found in re.finditer(r"```(console|json)\n(.*?)```", body, re.S):
        kind, text = found.groups()
        if kind == "console":
            steps.extend(block_steps(text))
        elif steps and not steps[-1].expected:
            steps[-1] = Step(steps[-1].command, text.rstrip("\n"))
    return steps


def page_steps(configured: bool) -> list[Step]:
    """The commands of the sections that ran with the example configuration (or of the
    others), in page order."""
    return [
        step
        for title, body in sections(PAGE.read_text()).items()
        if (title in CONFIGURED) == configured
        for step in section_steps(body)
    ]


def example_configuration() -> str:
    """The ``segue.yaml`` of docs/configuration.md's example."""
    part = (DOCS / "configuration.md").read_text().split("### Example", 1)[1]
    found = re.search(r"```yaml\n(.*?)```", part, re.S)
    assert found is not None, "docs/configuration.md has no example segue.yaml"
    return found.group(1)


@pytest.fixture(autouse=True)
def _tools() -> None:
    missing = [tool for tool in ("bash", "curl", "python3") if shutil.which(tool) is None]
    assert not missing, f"the page's commands need {missing} on PATH (e.g. apt-get install curl)"


def test_the_page_parses_into_its_commands() -> None:
    """A page edit that broke a block's shape would otherwise shrink what the others run."""
    plain, configured = page_steps(False), page_steps(True)
    assert len(plain) >= 15
    assert len(configured) >= 4
    assert all(step.command.startswith(("curl", "for ")) for step in plain + configured)
    assert all(step.expected for step in plain + configured)  # every command shows its answer


def test_every_example_but_the_golden_record_prints_what_the_page_shows(
    tmp_path: Path,
) -> None:
    keys = {"SEGUE_ADMIN_KEY": "admin-secret", "SEGUE_WRITE_KEY": "web-write-key"}
    with serving(tmp_path, keys, []) as (url, _):
        check_steps(page_steps(False), dict(os.environ, S=url), {})


def test_the_golden_record_examples_print_what_the_page_shows(tmp_path: Path) -> None:
    (tmp_path / "segue.yaml").write_text(example_configuration())
    keys = {"SEGUE_ADMIN_KEY": "admin-secret", "SEGUE_WRITE_KEY": "default-write-key"}
    with serving(tmp_path, keys, ["--config", "segue.yaml"]) as (url, printed):
        pos = re.search(r"write key \(pos\) (\S+)", printed)
        assert pos is not None, printed
        env = dict(os.environ, S=url, POS_WRITE_KEY=pos.group(1))
        check_steps(page_steps(True), env, {})


def test_json_answers_compare_as_json_and_only_a_member_named_so_may_be_left_out() -> None:
    """Controls for ``matches`` on JSON: layout may differ, content may not."""
    shown = '{"identities": [{"type": "email", "value": "a@b.c"}], "traits": {"plan": "pro"}}'
    printed = '{\n    "identities": [\n        {"type": "email", "value": "a@b.c"}\n    ],\n'
    printed += '    "traits": {"plan": "pro"}\n}'
    assert matches(shown, printed, {})
    assert not matches(shown, printed.replace('"pro"', '"free"'), {})
    assert not matches(shown, printed.replace('"traits"', '"extra": 1, "traits"'), {})
    # members in another order are a different answer
    assert not matches(shown, '{"traits": {"plan": "pro"}, "identities": []}', {})
    # "…" lets the object it is in hold more members, and only that object
    short = '{"traits": {"plan": "pro", "…": "other traits"}, "event_count": 2}'
    assert matches(short, '{"traits": {"plan": "pro", "email": "a@b.c"}, "event_count": 2}', {})
    assert not matches(short, '{"traits": {"plan": "pro"}, "event_count": 2, "more": 1}', {})
    assert not matches(short, '{"traits": {"email": "a@b.c"}, "event_count": 2}', {})
    # ids are learnt inside JSON as in text
    ids: dict[str, str] = {}
    assert matches(
        '{"profile_id": "p_8c6885373551a4d9d3f83204"}',
        '{"profile_id":"p_0123456789abcdef01234567"}',
        ids,
    )
    assert ids == {"p_8c6885373551a4d9d3f83204": "p_0123456789abcdef01234567"}
