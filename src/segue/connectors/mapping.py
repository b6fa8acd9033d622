"""The mapping language: a YAML file that turns one input row into Segment messages.

A mapping file names the connector, says how to read its input and lists message templates::

    name: crm_contacts
    input: {formats: [csv, json, jsonl], key: contact_id}
    params: {}                      # settings a source may override (connector_options)
    messages:
      - name: contact               # part of the default messageId
        type: identify              # track | identify | page | screen | group | alias
        anonymousId: "crm:{contact_id}"
        external_ids: {crm_id: {path: contact_id, required: true}}
        traits:
          email: {path: email, transform: [email]}

Every value of a template is an *expression*:

- a number, ``true``/``false`` or ``null`` is itself;
- a string is a template: ``"crm:{contact_id}"`` fills ``{path}`` from the row and is absent
  when a placeholder is; a string that is only ``"{path}"`` keeps the value's type; ``{{`` and
  ``}}`` are literal braces; a string without braces is a constant;
- a mapping with one *operator* key: ``path`` (a path or a list of alternatives, the first
  present wins), ``const``, ``template``, ``first`` (a list of expressions), ``join`` (a list
  of expressions, with ``sep``), or ``each`` (a list in the row, each element mapped through
  ``item``; with ``split``, ``fields`` and ``field_separator`` for lists written as text).
  Operators take the modifiers ``transform`` (a list, applied in order), ``default``,
  ``required`` (``true`` or a description of what is needed) and ``when`` (an expression;
  the value is absent unless it is present and truthy);
- any other mapping is an object and a list is a list: absent members are left out, and an
  object or list left empty is itself absent.

Paths are dotted (``customer.email``, ``line_items.0.sku``); a key that itself contains dots
is found as written first. ``$``-paths read variables: ``$params.NAME``, ``$connector``,
``$line``, ``$key`` (the row key) and ``$hash`` (a hash of the row's content).

Each message gets a deterministic ``messageId`` so that importing the same file twice stores
nothing twice: the template's ``message_id`` when given, else the row's own ``messageId``
(``passthrough``), else ``<connector>:<row key>:<message name>:<row hash>``.

Errors: :func:`compile_mapping` raises ``ConfigError`` listing every problem of a file at
once; :meth:`Mapping.apply` raises ``InvalidInput`` whose ``field`` is the JSON path of the
input value at fault (``$.line_items[1].price``).
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping as MappingABC
from collections.abc import Set as AbstractSet
from typing import Any, Final

import msgspec

from segue.connectors.readers import FORMATS
from segue.connectors.transforms import Transform, build_transform, text_of
from segue.core.events import EVENT_TYPES
from segue.errors import ConfigError, InvalidInput

__all__ = ["Mapping", "compile_mapping"]

_OPERATORS: Final = frozenset({"path", "const", "template", "first", "join", "each"})
_MODIFIERS: Final = frozenset({"transform", "default", "required", "when"})
_EXTRA: Final = {
    "join": frozenset({"sep"}),
    "each": frozenset({"item", "split", "fields", "field_separator"}),
}
_MESSAGE_FIELDS: Final = frozenset(
    {
        "userId",
        "anonymousId",
        "event",
        "name",
        "category",
        "properties",
        "traits",
        "context",
        "integrations",
        "timestamp",
        "originalTimestamp",
        "groupId",
        "previousId",
    }
)
_TEMPLATE_KEYS: Final = frozenset(
    {"name", "type", "when", "message_id", "passthrough", "external_ids"}
)
_VARIABLES: Final = frozenset({"connector", "line", "key", "hash", "params"})
_KEY_CHARS: Final = 64
_formatter = string.Formatter()


class _Scope:
    """What an expression is evaluated against: the current object and the variables."""

    __slots__ = ("at", "data", "variables")

    def __init__(self, data: MappingABC[str, Any], at: str, variables: dict[str, Any]) -> None:
        self.data = data
        self.at = at
        self.variables = variables

    def lookup(self, path: str) -> Any:
        if path.startswith("$"):
            return _descend(self.variables, path[1:])
        return _descend(self.data, path)

    def field(self, path: str) -> str:
        if path.startswith("$"):
            return path
        parts = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in path.split("."))
        return self.at + (f".{path}" if path in self.data else parts)


def _descend(data: Any, path: str) -> Any:
    if isinstance(data, MappingABC) and path in data:
        return _present(data[path])
    value = data
    for part in path.split("."):
        if isinstance(value, MappingABC):
            value = value.get(part)
        elif (
            isinstance(value, list) and part.isascii() and part.isdigit() and int(part) < len(value)
        ):
            value = value[int(part)]
        else:
            return None
        if value is None:
            return None
    return _present(value)


def _text(value: Any, scope: _Scope, hint: str | None) -> str:
    try:
        return text_of(value)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=scope.field(hint or "$")) from None


def _present(value: Any) -> Any:
    return None if value == "" or value == [] or value == {} else value


class _Expr:
    """A compiled expression; ``evaluate`` returns the value or None when absent."""

    hint: str | None = None  # the first path it reads, to name the field in errors

    def evaluate(self, scope: _Scope) -> Any:
        raise NotImplementedError


class _Const(_Expr):
    def __init__(self, value: Any) -> None:
        self.value = value

    def evaluate(self, scope: _Scope) -> Any:
        return self.value


class _Template(_Expr):
    def __init__(self, parts: list[tuple[str, str | None]]) -> None:
        self.parts = parts
        self.whole = len(parts) == 1 and parts[0][0] == "" and parts[0][1] is not None
        self.hint = next((p for _, p in parts if p is not None), None)

    def evaluate(self, scope: _Scope) -> Any:
        if self.whole:
            path = self.parts[0][1]
            assert path is not None
            return scope.lookup(path)
        out: list[str] = []
        for literal, path in self.parts:
            out.append(literal)
            if path is not None:
                value = scope.lookup(path)
                if value is None:
                    return None
                try:
                    out.append(text_of(value))
                except ValueError as exc:
                    raise InvalidInput(str(exc), field=scope.field(path)) from None
        return "".join(out)


class _Path(_Expr):
    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.hint = paths[0]

    def evaluate(self, scope: _Scope) -> Any:
        for path in self.paths:
            value = scope.lookup(path)
            if value is not None:
                return value
        return None

    def found(self, scope: _Scope) -> str:
        """The path the value came from (for error messages)."""
        for path in self.paths:
            if scope.lookup(path) is not None:
                return path
        return self.paths[0]


class _First(_Expr):
    def __init__(self, options: list[_Expr]) -> None:
        self.options = options
        self.hint = next((o.hint for o in options if o.hint), None)

    def evaluate(self, scope: _Scope) -> Any:
        for option in self.options:
            value = option.evaluate(scope)
            if value is not None:
                return value
        return None


class _Join(_Expr):
    def __init__(self, parts: list[_Expr], sep: str) -> None:
        self.parts = parts
        self.sep = sep
        self.hint = next((p.hint for p in parts if p.hint), None)

    def evaluate(self, scope: _Scope) -> Any:
        texts: list[str] = []
        for part in self.parts:
            value = part.evaluate(scope)
            if value is None:
                continue
            try:
                text = text_of(value).strip()
            except ValueError as exc:
                raise InvalidInput(str(exc), field=scope.field(part.hint or "$")) from None
            if text:
                texts.append(text)
        return self.sep.join(texts) or None


class _Object(_Expr):
    def __init__(self, members: dict[str, _Expr]) -> None:
        self.members = members

    def evaluate(self, scope: _Scope) -> Any:
        out = {}
        for name, member in self.members.items():
            value = member.evaluate(scope)
            if value is not None:
                out[name] = value
        return out or None


class _List(_Expr):
    def __init__(self, items: list[_Expr]) -> None:
        self.items = items

    def evaluate(self, scope: _Scope) -> Any:
        out = [v for v in (item.evaluate(scope) for item in self.items) if v is not None]
        return out or None


class _Each(_Expr):
    def __init__(
        self,
        source: _Path,
        item: _Expr,
        split: str | None,
        fields: list[str] | None,
        field_separator: str,
    ) -> None:
        self.source = source
        self.item = item
        self.split = split
        self.fields = fields
        self.field_separator = field_separator
        self.hint = source.hint

    def evaluate(self, scope: _Scope) -> Any:
        value = self.source.evaluate(scope)
        if value is None:
            return None
        path = self.source.found(scope)
        where = scope.field(path)
        if isinstance(value, str) and self.split is not None:
            value = [part.strip() for part in value.split(self.split) if part.strip()]
        if not isinstance(value, list):
            raise InvalidInput(f"expected a list, got {type(value).__name__}", field=where)
        out = []
        for index, element in enumerate(value):
            at = f"{where}[{index}]"
            if isinstance(element, str) and self.fields is not None:
                values = [v.strip() for v in element.split(self.field_separator)]
                if len(values) > len(self.fields):
                    wanted = self.field_separator.join(self.fields)
                    raise InvalidInput(f"expected {wanted}, got {element!r}", field=at)
                element = dict(zip(self.fields, values, strict=False))
            if not isinstance(element, MappingABC):
                raise InvalidInput("expected an object", field=at)
            mapped = self.item.evaluate(_Scope(element, at, scope.variables))
            if mapped is not None:
                out.append(mapped)
        return out or None


class _Modified(_Expr):
    """An operator with its modifiers: when → value → transforms → default → required."""

    def __init__(
        self,
        inner: _Expr,
        transforms: list[Transform],
        default: Any,
        required: str | None,
        when: _Expr | None,
    ) -> None:
        self.inner = inner
        self.transforms = transforms
        self.default = default
        self.required = required
        self.when = when
        self.hint = inner.hint

    def evaluate(self, scope: _Scope) -> Any:
        if self.when is not None and not self.when.evaluate(scope):
            return None
        value = self.inner.evaluate(scope)
        for transform in self.transforms:
            if value is None:
                break
            try:
                value = _present(transform(value))
            except ValueError as exc:
                where = self._source_path(scope)
                raise InvalidInput(f"{where}: {exc}", field=scope.field(where)) from None
        if value is None:
            value = self.default
        if value is None and self.required is not None:
            raise InvalidInput(
                f"{self.required} is required but missing or empty",
                field=scope.field(self.hint or "$"),
            )
        return value

    def _source_path(self, scope: _Scope) -> str:
        if isinstance(self.inner, _Path):
            return self.inner.found(scope)
        return self.hint or "$"


class _MessageTemplate:
    def __init__(
        self,
        name: str,
        kind: str | None,
        body: _Object,
        when: _Expr | None,
        message_id: _Expr | None,
        external_ids: dict[str, _Expr],
    ) -> None:
        self.name = name
        self.kind = kind
        self.body = body
        self.when = when
        self.message_id = message_id
        self.external_ids = external_ids


class Mapping:
    """A compiled mapping file: how to read the input and how to turn a row into messages.

    Attributes:
        name: the connector name (the first part of default message ids).
        description: one line for people.
        formats: the input formats it reads, the default first.
        delimiter: the CSV field separator.
        params: the parameters and their values (defaults, overridden by source options).
    """

    def __init__(
        self,
        *,
        name: str,
        description: str,
        formats: tuple[str, ...],
        delimiter: str,
        key: _Path | None,
        params: dict[str, Any],
        templates: list[_MessageTemplate],
    ) -> None:
        self.name = name
        self.description = description
        self.formats = formats
        self.delimiter = delimiter
        self.params = params
        self._key = key
        self._templates = templates

    def with_params(self, options: MappingABC[str, Any]) -> Mapping:
        """This mapping with some parameters set (a source's ``connector_options``).

        Raises:
            ConfigError: an option is not a parameter of this mapping.
        """
        unknown = sorted(set(options) - set(self.params))
        if unknown:
            known = ", ".join(sorted(self.params)) or "none"
            raise ConfigError(
                [
                    f"connector {self.name!r} has no parameter {n!r} (known: {known})"
                    for n in unknown
                ]
            )
        return Mapping(
            name=self.name,
            description=self.description,
            formats=self.formats,
            delimiter=self.delimiter,
            key=self._key,
            params={**self.params, **options},
            templates=self._templates,
        )

    def apply(self, row: MappingABC[str, Any], line: int) -> list[dict[str, Any]]:
        """Turn one row into its messages (zero or more), in template order.

        Args:
            row: the row: column → text for CSV, the object for JSON.
            line: its line number, available to templates as ``$line``.

        Raises:
            InvalidInput: a required value is missing or a value cannot be transformed;
                ``field`` is the JSON path of the input value.
        """
        content = hashlib.sha256(msgspec.json.encode(row, order="sorted")).hexdigest()[:24]
        variables: dict[str, Any] = {
            "connector": self.name,
            "line": line,
            "hash": content,
            "params": self.params,
        }
        scope = _Scope(row, "$", variables)
        key_text = "-"
        if self._key is not None:
            key = self._key.evaluate(scope)
            if key is not None:
                key_text = _text(key, scope, self._key.hint)[:_KEY_CHARS]
        variables["key"] = key_text
        messages = []
        for template in self._templates:
            if template.when is not None and not template.when.evaluate(scope):
                continue
            message = self._render(template, row, scope)
            if template.message_id is not None:
                message_id = template.message_id.evaluate(scope)
                if message_id is None:
                    raise InvalidInput(
                        f"the messageId of {template.name} needs values that are missing",
                        field=scope.field(template.message_id.hint or "$"),
                    )
                message["messageId"] = _text(message_id, scope, template.message_id.hint)
            elif message.get("messageId") in (None, ""):
                message["messageId"] = f"{self.name}:{key_text}:{template.name}:{content}"
            messages.append(message)
        return messages

    def _render(
        self, template: _MessageTemplate, row: MappingABC[str, Any], scope: _Scope
    ) -> dict[str, Any]:
        if template.kind is None:  # passthrough: the row is a Segment message already
            return dict(row)
        message: dict[str, Any] = {"type": template.kind, **(template.body.evaluate(scope) or {})}
        ids = []
        for kind, expr in template.external_ids.items():
            value = expr.evaluate(scope)
            if value is not None:
                text = _text(value, scope, expr.hint)
                ids.append({"id": text, "type": kind, "collection": "users", "encoding": "none"})
        if ids:
            context = message.setdefault("context", {})
            context["externalIds"] = [*context.get("externalIds", []), *ids]
        return message


# --- compiling ----------------------------------------------------------------------------


class _Compiler:
    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.problems: list[str] = []

    def problem(self, where: str, text: str) -> None:
        self.problems.append(f"{self.origin}: {where}: {text}")

    def expr(self, node: Any, where: str) -> _Expr:
        if isinstance(node, str):
            return self.template(node, where)
        if isinstance(node, list):
            return _List([self.expr(item, f"{where}[{i}]") for i, item in enumerate(node)])
        if isinstance(node, dict):
            operators = _OPERATORS & set(node)
            if not operators:
                return self.object(node, where)
            return self.operator(node, operators, where)
        if node is None or isinstance(node, bool | int | float):
            return _Const(node)
        self.problem(where, f"unsupported value {node!r}")
        return _Const(None)

    def object(self, node: dict[Any, Any], where: str) -> _Object:
        members = {}
        for name, value in node.items():
            if not isinstance(name, str):
                self.problem(where, f"key {name!r} must be text")
                continue
            members[name] = self.expr(value, f"{where}.{name}")
        return _Object(members)

    def template(self, text: str, where: str) -> _Expr:
        try:
            parsed = list(_formatter.parse(text))
        except ValueError as exc:
            self.problem(where, f"bad template {text!r}: {exc}")
            return _Const(None)
        parts: list[tuple[str, str | None]] = []
        for literal, field, spec, conversion in parsed:
            if field is not None and (spec or conversion):
                self.problem(where, f"template {text!r}: write {{path}} without ':' or '!'")
            if field is not None:
                if not field:
                    self.problem(where, f"template {text!r} has an empty {{}}")
                self.path(field, where)
            parts.append((literal, field))
        if all(field is None for _, field in parts):
            return _Const("".join(literal for literal, _ in parts))
        return _Template(parts)

    def path(self, path: Any, where: str) -> str:
        if not isinstance(path, str) or not path:
            self.problem(where, f"a path must be non-empty text, got {path!r}")
            return "-"
        if path.startswith("$"):
            name = path[1:].split(".", 1)[0]
            if name not in _VARIABLES:
                known = ", ".join(f"${v}" for v in sorted(_VARIABLES))
                self.problem(where, f"unknown variable ${name}; known: {known}")
        return path

    def paths(self, node: Any, where: str) -> _Path:
        items = node if isinstance(node, list) else [node]
        if not items:
            self.problem(where, "path needs at least one path")
        return _Path([self.path(p, where) for p in items])

    def operator(self, node: dict[str, Any], operators: AbstractSet[str], where: str) -> _Expr:
        if len(operators) > 1:
            self.problem(where, f"use one of {', '.join(sorted(operators))}, not several")
        (op,) = sorted(operators)[:1]
        allowed = _OPERATORS | _MODIFIERS | _EXTRA.get(op, frozenset())
        for extra in sorted(set(node) - allowed, key=str):
            self.problem(where, f"unknown key {extra!r} for {op}")
        value = node[op]
        inner: _Expr
        if op == "path":
            inner = self.paths(value, f"{where}.path")
        elif op == "const":
            inner = _Const(value)
        elif op == "template":
            inner = (
                self.template(value, f"{where}.template")
                if isinstance(value, str)
                else self.bad(where, "template takes text")
            )
        elif op in ("first", "join"):
            if not isinstance(value, list) or not value:
                inner = self.bad(where, f"{op} takes a non-empty list")
            else:
                options = [self.expr(v, f"{where}.{op}[{i}]") for i, v in enumerate(value)]
                sep = node.get("sep", " ")
                if not isinstance(sep, str):
                    self.problem(where, "sep must be text")
                    sep = " "
                inner = _First(options) if op == "first" else _Join(options, sep)
        else:
            inner = self.each(node, where)
        transforms: list[Transform] = []
        raw_transforms = node.get("transform", [])
        if not isinstance(raw_transforms, list):
            raw_transforms = [raw_transforms]
        for i, spec in enumerate(raw_transforms):
            try:
                transforms.append(build_transform(spec))
            except ValueError as exc:
                self.problem(f"{where}.transform[{i}]", str(exc))
        required = node.get("required", False)
        if required is True:
            required = inner.hint or "a value"
        elif required is False or required is None:
            required = None
        elif not isinstance(required, str):
            self.problem(where, "required is true, false or a description")
            required = None
        when = self.expr(node["when"], f"{where}.when") if "when" in node else None
        if not (transforms or required or when is not None or "default" in node):
            return inner
        return _Modified(inner, transforms, node.get("default"), required, when)

    def each(self, node: dict[str, Any], where: str) -> _Expr:
        source = self.paths(node["each"], f"{where}.each")
        item_node = node.get("item")
        if not isinstance(item_node, dict):
            self.problem(where, "each needs an item mapping (the template of one element)")
            item_node = {}
        split = node.get("split")
        if split is not None and (not isinstance(split, str) or not split):
            self.problem(where, "split must be non-empty text")
            split = None
        fields = node.get("fields")
        if fields is not None and (
            not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields)
        ):
            self.problem(where, "fields must be a list of names")
            fields = None
        separator = node.get("field_separator", ":")
        if not isinstance(separator, str) or not separator:
            self.problem(where, "field_separator must be non-empty text")
            separator = ":"
        item = self.object(item_node, f"{where}.item")
        return _Each(source, item, split, fields, separator)

    def bad(self, where: str, text: str) -> _Expr:
        self.problem(where, text)
        return _Const(None)

    def message(self, node: Any, index: int) -> _MessageTemplate | None:
        where = f"messages[{index}]"
        if not isinstance(node, dict):
            self.problem(where, "a message template is a mapping")
            return None
        name = node.get("name", f"m{index}")
        if not isinstance(name, str) or not name or ":" in name:
            self.problem(where, "name must be text without ':'")
            name = f"m{index}"
        when = self.expr(node["when"], f"{where}.when") if "when" in node else None
        message_id = (
            self.expr(node["message_id"], f"{where}.message_id") if "message_id" in node else None
        )
        if node.get("passthrough"):
            for extra in sorted(set(node) - {"name", "when", "message_id", "passthrough"}):
                self.problem(where, f"passthrough takes no {extra!r}: the row is the message")
            return _MessageTemplate(name, None, _Object({}), when, message_id, {})
        kind = node.get("type")
        if kind not in EVENT_TYPES:
            self.problem(where, f"type must be one of {', '.join(sorted(EVENT_TYPES))}")
        if kind == "track" and "event" not in node:
            self.problem(where, "a track needs an event")
        body = {k: v for k, v in node.items() if k not in _TEMPLATE_KEYS}
        for extra in sorted(set(body) - _MESSAGE_FIELDS, key=str):
            self.problem(where, f"unknown message field {extra!r}")
        external = node.get("external_ids", {})
        external_ids: dict[str, _Expr] = {}
        if not isinstance(external, dict):
            self.problem(where, "external_ids maps an id type to an expression")
        else:
            for id_type, expr in external.items():
                external_ids[str(id_type)] = self.expr(expr, f"{where}.external_ids.{id_type}")
        return _MessageTemplate(
            name, str(kind), self.object(body, where), when, message_id, external_ids
        )


def compile_mapping(document: Any, origin: str) -> Mapping:
    """Check and compile a parsed mapping file.

    Args:
        document: the YAML document, already parsed.
        origin: the file name, to say where a problem is.

    Raises:
        ConfigError: listing every problem of the file.
    """
    compiler = _Compiler(origin)
    if not isinstance(document, dict):
        raise ConfigError([f"{origin}: a mapping file is a YAML mapping"])
    for extra in sorted(set(document) - {"name", "description", "input", "params", "messages"}):
        compiler.problem("top level", f"unknown key {extra!r}")
    name = document.get("name")
    if not isinstance(name, str) or not name or ":" in name:
        compiler.problem("name", "a connector needs a name (text without ':')")
        name = "connector"
    description = document.get("description", "")
    source = document.get("input")
    formats: tuple[str, ...] = ()
    delimiter = ","
    key: _Path | None = None
    if not isinstance(source, dict):
        compiler.problem("input", "input is a mapping with formats (and optionally key)")
    else:
        for extra in sorted(set(source) - {"formats", "key", "delimiter"}):
            compiler.problem("input", f"unknown key {extra!r}")
        raw_formats = source.get("formats")
        if not isinstance(raw_formats, list) or not raw_formats:
            compiler.problem("input.formats", f"list one or more of {', '.join(FORMATS)}")
        else:
            for fmt in raw_formats:
                if fmt not in FORMATS:
                    compiler.problem("input.formats", f"unknown format {fmt!r}")
            formats = tuple(str(f) for f in raw_formats if f in FORMATS)
        delimiter = source.get("delimiter", ",")
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            compiler.problem("input.delimiter", "the delimiter is one character")
            delimiter = ","
        if "key" in source:
            key = compiler.paths(source["key"], "input.key")
    params = document.get("params", {})
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        compiler.problem("params", "params maps names to default values")
        params = {}
    raw_messages = document.get("messages")
    templates: list[_MessageTemplate] = []
    if not isinstance(raw_messages, list) or not raw_messages:
        compiler.problem("messages", "list one or more message templates")
    else:
        for index, node in enumerate(raw_messages):
            template = compiler.message(node, index)
            if template is not None:
                templates.append(template)
        names = [t.name for t in templates]
        for twice in sorted({n for n in names if names.count(n) > 1}):
            compiler.problem("messages", f"two templates are named {twice!r}")
    if compiler.problems:
        raise ConfigError(compiler.problems)
    return Mapping(
        name=name,
        description=str(description),
        formats=formats,
        delimiter=delimiter,
        key=key,
        params=dict(params),
        templates=templates,
    )
