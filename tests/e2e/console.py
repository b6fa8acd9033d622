"""Console examples of the documentation, run against a live server and compared with
what the page shows.

A console block holds ``$`` commands (a command may go on over several lines) each followed
by what it printed. What may differ from run to run is masked: server times, generated ids
(learnt as they appear: the page's id stands for this run's from then on), and whatever a
page abbreviates with ``…``. Reads are retried for a while, as the reader may wait for the
processor; writes run once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.server import free_port

#: values the pages say differ from run to run (server times, generated ids, timings)
VOLATILE = re.compile(
    r'"(receivedAt|received_at|created_at|updated_at|at|last_seen|uptime_s|duration_ms|process|'
    r'decision_id)":\s*("[^"]*"|-?[0-9][0-9.eE+-]*|null)'
)
#: generated ids: profiles (p_ and 24 hex digits) and privacy requests (pr_ and 32)
ID = re.compile(r"\b(?:p_[0-9a-f]{24}|pr_[0-9a-f]{32})\b")
ANY_ID = r"(?:p_[0-9a-f]{24}|pr_[0-9a-f]{32})"
#: a command that sends nothing only reads: it may be repeated until the server caught up
WRITES = re.compile(r"(^|\s)(-d|--data|--data-binary|-X)(\s|$)")


_NOT_JSON = object()


@dataclass
class Step:
    command: str
    expected: str


@contextmanager
def serving(folder: Path, keys: dict[str, str], args: list[str]) -> Iterator[tuple[str, str]]:
    """``segue serve`` as a page starts it: the ``SEGUE_*`` variables in ``keys`` (no
    others from this environment), ``args``, a free port, the data folder
    ``folder/segue-data`` and ``folder`` as its working directory. Yields its URL and what
    it printed when it started."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUE_")}
    env.update(keys)
    cmd = [sys.executable, "-m", "segue", "serve", "--port", str(port)]
    cmd += ["--data", str(folder / "segue-data"), *args]
    log_path = folder / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "segue did not become ready"
            time.sleep(0.05)
        yield url, log_path.read_text()
    finally:
        proc.terminate()
        proc.wait(20)


def blocks(text: str) -> list[str]:
    """The console blocks of a page (or of a part of one), in order."""
    return list(re.findall(r"```console\n(.*?)```", text, re.S))


def block_steps(block: str) -> list[Step]:
    """The commands of one console block and what each printed."""
    steps: list[Step] = []
    lines = block.rstrip("\n").split("\n")
    i = 0
    while i < len(lines):
        assert lines[i].startswith("$ "), f"not a command: {lines[i]!r}"
        command = [lines[i][2:]]
        i += 1
        while not complete("\n".join(command)):
            command.append(lines[i])
            i += 1
        expected = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        steps.append(Step("\n".join(command), "\n".join(expected)))
    return steps


def run_step(step: Step, env: dict[str, str], ids: dict[str, str], read_for: float = 20) -> str:
    """Run one command in bash, its page ids replaced by this run's; a read is run again
    for up to ``read_for`` seconds until it prints what the page shows.

    Returns:
        what the command printed (the caller asserts it with :func:`matches`).
    """
    command = ID.sub(lambda m: ids.get(m.group(), m.group()), step.command)
    unknown = [i for i in ID.findall(command) if i not in ids.values()]
    assert not unknown, f"{step.command}\nnames {unknown}, which no earlier output gave"
    reads = WRITES.search(command) is None
    deadline = time.monotonic() + (read_for if reads else 0)
    while True:
        out = subprocess.run(
            ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60
        )
        if matches(step.expected, out.stdout, dict(ids)) or time.monotonic() >= deadline:
            return out.stdout + out.stderr if out.returncode else out.stdout
        time.sleep(0.2)


def check_steps(steps: list[Step], env: dict[str, str], ids: dict[str, str]) -> None:
    """Run the steps in order; each must print what the page shows."""
    for step in steps:
        printed = run_step(step, env, ids)
        assert matches(step.expected, printed, ids), (
            f"$ {step.command}\n--- the page shows:\n{step.expected}\n"
            f"--- this run printed:\n{printed}"
        )


def complete(command: str) -> bool:
    if command.endswith(("\\", "|")):
        return False
    return subprocess.run(["bash", "-n", "-c", command], capture_output=True).returncode == 0


def _masked(text: str) -> str:
    return VOLATILE.sub(lambda m: f'"{m.group(1)}": <varies>', text)


def _pattern(expected: str, ids: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A regular expression for ``expected`` and its groups: ids already learnt stand for
    this run's, a new one for any id (a named group; the same id again must be the same)."""
    parts, at = [], 0
    groups: dict[str, str] = {}
    for found in ID.finditer(expected):
        parts.append(re.escape(expected[at : found.start()]))
        documented = found.group()
        if documented in ids:
            parts.append(re.escape(ids[documented]))
        elif documented in groups:
            parts.append(f"(?P={groups[documented]})")
        else:
            groups[documented] = f"id{len(groups)}"
            parts.append(f"(?P<{groups[documented]}>{ANY_ID})")
        at = found.end()
    parts.append(re.escape(expected[at:]))
    return "".join(parts), groups


def _learn(groups: dict[str, str], match: re.Match[str], ids: dict[str, str]) -> bool:
    """Record the new ids; False when one of this run's ids already stands for another
    README id (two of the README's profiles would be one here)."""
    for documented, name in groups.items():
        actual = match.group(name)
        if actual in ids.values():
            return False
        ids[documented] = actual
    return True


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


def _pruned(shown: Any, printed: Any) -> tuple[Any, Any]:
    """Both sides without what the page leaves out: an object of the page with a ``"…"``
    member (its value says in words what was left out) holds only some members. Each side
    keeps its own order of members."""
    if isinstance(shown, dict) and isinstance(printed, dict):
        if "…" in shown:
            shown = {k: v for k, v in shown.items() if k != "…"}
            printed = {k: v for k, v in printed.items() if k in shown}
        return (
            {k: _pruned(v, printed[k])[0] if k in printed else v for k, v in shown.items()},
            {k: _pruned(shown[k], v)[1] if k in shown else v for k, v in printed.items()},
        )
    if isinstance(shown, list) and isinstance(printed, list) and len(shown) == len(printed):
        both = [_pruned(a, b) for a, b in zip(shown, printed, strict=True)]
        return [a for a, _ in both], [b for _, b in both]
    return shown, printed


def matches(expected: str, actual: str, ids: dict[str, str]) -> bool:
    """Whether ``actual`` is what the page shows, learning the ids it introduces.

    When both are JSON they are compared as JSON (a page may write small objects on one
    line, and leave members out where it says so with a ``"…"`` member)."""
    shown, printed = _json(expected), _json(actual)
    if shown is not _NOT_JSON and printed is not _NOT_JSON:
        shown, printed = _pruned(shown, printed)
        expected = json.dumps(shown, ensure_ascii=False)
        actual = json.dumps(printed, ensure_ascii=False)
    expected, actual = _masked(expected), _masked(actual.rstrip("\n"))
    if "…" not in expected:
        pattern, groups = _pattern(expected, ids)
        found = re.fullmatch(pattern, actual)
        return found is not None and _learn(groups, found, ids)
    # abbreviated: the README wraps the one-line JSON (continuations start with a space)
    lines = expected.split("\n")
    joined = lines[0] + "".join(line[1:] if line.startswith(" ") else line for line in lines[1:])
    at = 0
    known = dict(ids)  # learnt for good only if every part is there
    for fragment in joined.split("…"):
        if not fragment:
            continue
        pattern, groups = _pattern(fragment, known)
        found = re.compile(pattern).search(actual, at)
        if found is None or not _learn(groups, found, known):
            return False
        at = found.end()
    ids.update(known)
    return True
