"""The README's 5-minute tour, run as written against a fresh server.

The README says every output in the tour comes from a real run; this test keeps that true.
It starts ``segue serve`` as the tour's first block does (and checks what it prints),
runs each ``$`` command of the tour's console blocks in bash and compares what it prints
with the README, except for what the README itself says will differ: profile ids, request
ids, decision ids, server times, the port, the data folder and generated keys.
An id in an output is learnt (the README's id → this run's), and later commands that name
it get this run's. Outputs abbreviated with ``…`` must hold their other parts in order.
Reads are retried for a while, as the reader of the tour may wait for the processor;
writes run once.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.console import Step, block_steps, blocks, check_steps, matches, serving
from tests.e2e.readme import README, banner_line

ADMIN_KEY = "admin-secret"
WRITE_KEY = "web-write-key"


def _tour_blocks(text: str) -> list[str]:
    return blocks(text.split("## A 5-minute tour", 1)[1].split("\n## ", 1)[0])


def tour_start(text: str) -> Step:
    """The first block: the command that starts segue and what it prints."""
    command, _, printed = _tour_blocks(text)[0].rstrip("\n").partition("\n")
    return Step(command.removeprefix("$ "), printed)


def tour_steps(text: str) -> list[Step]:
    """The tour's commands and their printed outputs, in order, without the first block
    (it starts the server, which the fixture does as that block says)."""
    return [step for block in _tour_blocks(text)[1:] for step in block_steps(block)]


@dataclass
class Started:
    url: str
    #: what segue printed when it started
    printed: str
    #: the publishable key it generated and printed (the tour's ``$PUB``)
    publishable: str


@pytest.fixture(scope="module")
def tour_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    """``segue serve`` as the tour's first block starts it: one process, no demo, the keys
    its variables set (segue generates the publishable key), on a free port."""
    start = tour_start(README.read_text())
    variables = dict(re.findall(r"(SEGUE_[A-Z_]+)=(\S+)", start.command))
    assert variables == {"SEGUE_ADMIN_KEY": ADMIN_KEY, "SEGUE_WRITE_KEY": WRITE_KEY}
    folder = tmp_path_factory.mktemp("tour")
    with serving(folder, variables, []) as (url, printed):
        key = re.search(r"publishable key +(\S+)", printed)
        assert key is not None, printed
        yield Started(url, printed, key.group(1))


def test_segue_starts_printing_what_the_readme_shows(tour_server: Started) -> None:
    """The tour's first block: the URLs, the data folder and the generated key, as the
    README prints them (its port, folder and key are the reader's own)."""
    shown = tour_start(README.read_text()).expected.split("\n")
    printed = tour_server.printed.split("\n")[: len(shown)]
    assert [banner_line(line) for line in printed] == [banner_line(line) for line in shown]


def test_the_tour_parses_into_its_commands() -> None:
    """The parser sees every command of the tour (a README edit that broke a block's
    shape would otherwise shrink the tour the other test runs)."""
    steps = tour_steps(README.read_text())
    assert len(steps) >= 20
    assert all(step.command.startswith(("curl", "echo")) for step in steps)
    assert sum("…" in step.expected for step in steps) >= 3
    # the commands with a continuation kept theirs
    assert any("\n" in step.command for step in steps)


def test_every_command_of_the_readme_tour_prints_what_the_readme_shows(
    tour_server: Started,
) -> None:
    missing = [tool for tool in ("bash", "curl", "gzip", "python3") if shutil.which(tool) is None]
    assert not missing, f"the tour's commands need {missing} on PATH (e.g. apt-get install curl)"
    env = dict(os.environ, S=tour_server.url, PUB=tour_server.publishable)
    check_steps(tour_steps(README.read_text()), env, {})


def test_the_comparison_fails_on_what_the_readme_does_not_allow_to_differ() -> None:
    """Controls for ``matches``: what may differ passes, anything else fails."""
    shown = (
        '{"profile_id": "p_cfc40d54bd4f5b1920bc629a", "event_count": 4, "created_at": "2026-11-25"}'
    )
    ids: dict[str, str] = {}
    run = (
        '{"profile_id": "p_0123456789abcdef01234567", "event_count": 4, "created_at": "2026-12-07"}'
    )
    assert matches(shown, run, ids)
    assert ids == {"p_cfc40d54bd4f5b1920bc629a": "p_0123456789abcdef01234567"}
    # a count that differs, and the same README id as another profile of this run
    assert not matches(shown, run.replace('"event_count": 4', '"event_count": 5'), dict(ids))
    assert not matches(shown, run.replace("p_0123", "p_9999"), dict(ids))
    # two README profiles that are one profile in this run, and one README id that
    # stands for two ids in one answer
    two = '"a": "p_cfc40d54bd4f5b1920bc629a", "b": "p_66f87351ad893fe271eac6d4"'
    same = '"a": "p_0123456789abcdef01234567", "b": "p_0123456789abcdef01234567"'
    assert not matches(two, same, {})
    once = '"a": "p_cfc40d54bd4f5b1920bc629a", "b": "p_cfc40d54bd4f5b1920bc629a"'
    assert not matches(once, same.replace('"b": "p_0123', '"b": "p_9999'), {})
    assert matches(once, same, {})
    # abbreviated: the parts must all be there, in order
    short = '{"ok":true,"entries":…,"reason":null}'
    assert matches(short, '{"ok":true,"entries":12,"first_bad_seq":null,"reason":null}', {})
    assert not matches(short, '{"ok":false,"entries":12,"reason":null}', {})
    assert not matches(short, '{"reason":null,"ok":true,"entries":12}', {})
