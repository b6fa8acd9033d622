"""A connector: a mapping file plus its reader, run on a file or one chunk of it.

Connectors are found by name among the builtin mapping files (``segue/connectors/builtin``)
or, when the caller allows it (a source's configured connector), as a path to a YAML file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as MappingABC
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import yaml

from segue.connectors.mapping import Mapping, compile_mapping
from segue.connectors.readers import default_first_line, read_rows, sniff_format
from segue.errors import ConfigError, InvalidInput, SegueError

__all__ = ["Connector", "MappedChunk", "builtin_connectors", "load_connector"]

_NAME = re.compile(r"^[a-z0-9_]{1,64}$")


class MappedChunk(NamedTuple):
    """What a connector made of a chunk, for ``IngestService.collect_rows``.

    Attributes:
        mapped: per readable row, its line and its messages (possibly none).
        failed: per row that could not be read or mapped, its line, bytes and the error.
    """

    mapped: list[tuple[int, list[dict[str, Any]]]]
    failed: list[tuple[int, bytes, SegueError]]


class Connector:
    """Reads rows in one of the mapping's formats and maps each to Segment messages."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping

    @property
    def name(self) -> str:
        return self.mapping.name

    @property
    def formats(self) -> tuple[str, ...]:
        return self.mapping.formats

    def map(
        self, data: bytes, *, fmt: str | None = None, first_line: int | None = None
    ) -> MappedChunk:
        """Read and map every row of ``data``; rows that fail are returned, never skipped.

        Args:
            data: a whole file or one chunk of it (CSV chunks start with the header line).
            fmt: ``csv``, ``json`` or ``jsonl``; guessed from the bytes when None.
            first_line: the number of the chunk's first row in the whole file; by default
                that of a whole file (2 for CSV, 1 otherwise).

        Raises:
            InvalidInput: the format is not one this connector reads, or the chunk as a whole
                is unreadable (a CSV header missing or naming a column twice).
        """
        if fmt is None:
            fmt = sniff_format(data, self.formats)
        elif fmt not in self.formats:
            raise InvalidInput(
                f"connector {self.name} reads {', '.join(self.formats)}, not {fmt}", field="format"
            )
        line = default_first_line(fmt) if first_line is None else first_line
        mapped: list[tuple[int, list[dict[str, Any]]]] = []
        failed: list[tuple[int, bytes, SegueError]] = []
        for row in read_rows(data, fmt, line, delimiter=self.mapping.delimiter):
            if row.data is None:
                assert row.error is not None
                failed.append((row.line, row.raw, row.error))
                continue
            try:
                mapped.append((row.line, self.mapping.apply(row.data, row.line)))
            except InvalidInput as exc:
                failed.append((row.line, msgspec.json.encode(row.data), exc))
        return MappedChunk(mapped, failed)


def builtin_connectors() -> list[str]:
    """The names of the connectors shipped with segue."""
    folder = resources.files("segue.connectors").joinpath("builtin")
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    )


def load_connector(
    name: str, options: MappingABC[str, Any] | None = None, *, allow_files: bool = False
) -> Connector:
    """Load and compile a connector.

    Args:
        name: a builtin connector name, or (with ``allow_files``) a path ending in ``.yaml``
            or ``.yml``.
        options: values for the mapping's ``params``.
        allow_files: whether ``name`` may be a path; only trusted configuration may say so.

    Raises:
        InvalidInput: no builtin connector has that name (code ``unknown_connector``).
        ConfigError: the mapping file is unreadable or wrong (every problem listed), or an
            option is not one of its parameters.
    """
    if allow_files and name.endswith((".yaml", ".yml")):
        path = Path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"cannot read connector file {name}: {exc}"]) from exc
        origin = str(path)
    else:
        if not _NAME.match(name) or name not in builtin_connectors():
            known = ", ".join(builtin_connectors())
            raise InvalidInput(
                f"no connector {name!r}; builtin: {known}",
                field="connector",
                code="unknown_connector",
            )
        resource = resources.files("segue.connectors").joinpath(f"builtin/{name}.yaml")
        text = resource.read_text(encoding="utf-8")
        origin = f"{name}.yaml"
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{origin}: not valid YAML: {exc}"]) from exc
    mapping = compile_mapping(document, origin)
    if options:
        mapping = mapping.with_params(options)
    return Connector(mapping)
