"""Tracking plans: per source, which events may arrive and what their properties look like.

A plan maps event names (and ``$identify`` for identify traits) to a JSON Schema of the
properties. The source's mode says what happens to what the plan does not mention:

- ``accept``: unplanned events and properties pass;
- ``drop_properties``: unplanned events pass, properties of planned events that the schema
  does not declare are removed;
- ``quarantine``: unplanned events, and planned events with undeclared properties, go to the
  quarantine.

A planned event whose properties break its schema is always quarantined: it is data the
owner said is wrong, and dropping it silently would lose it.
"""

from __future__ import annotations

from typing import Any, Literal

import jsonschema_rs
import msgspec

from segue.core.events import Event, Identify, Page, Screen, Track
from segue.errors import ConfigError, InvalidEvent

__all__ = ["PlanMode", "TrackingPlan"]

PlanMode = Literal["accept", "drop_properties", "quarantine"]
_MODES = ("accept", "drop_properties", "quarantine")


class _Rule:
    __slots__ = ("declared", "open", "validator")

    def __init__(self, schema: dict[str, Any]) -> None:
        self.validator = jsonschema_rs.validator_for(schema)
        props = schema.get("properties")
        self.declared: frozenset[str] = frozenset(props) if isinstance(props, dict) else frozenset()
        self.open = not isinstance(props, dict)


class TrackingPlan:
    """A compiled tracking plan for one source.

    Args:
        mode: what to do with unplanned events and properties (see module docstring).
        events: event name → JSON Schema for its ``properties``; the key ``$identify``
            applies to identify ``traits``, ``$page`` / ``$screen`` to page and screen
            properties.

    Raises:
        ConfigError: listing every invalid schema or an unknown mode, all at once.
    """

    def __init__(self, mode: str, events: dict[str, dict[str, Any]]) -> None:
        problems: list[str] = []
        if mode not in _MODES:
            problems.append(f"tracking plan mode must be one of {_MODES}, got {mode!r}")
        self.mode = mode
        self.rules: dict[str, _Rule] = {}
        for name, schema in events.items():
            try:
                self.rules[name] = _Rule(schema)
            except (ValueError, TypeError, jsonschema_rs.ValidationError) as exc:
                problems.append(f"tracking plan schema for {name!r} is invalid: {exc}")
        if problems:
            raise ConfigError(problems)

    def apply(self, event: Event, message: dict[str, Any]) -> tuple[Event, dict[str, Any]]:
        """Check one validated message against the plan.

        Returns:
            the event and message, possibly with undeclared properties dropped.

        Raises:
            InvalidEvent: with code ``unplanned_event`` / ``unplanned_property`` /
                ``plan_violation``; the caller quarantines the message.
        """
        name, field, payload = _subject(event)
        if name is None:
            return event, message
        rule = self.rules.get(name)
        if rule is None:
            if self.mode == "quarantine" and not name.startswith("$"):
                raise InvalidEvent(
                    f"event {name!r} is not in the tracking plan",
                    field="$.event",
                    code="unplanned_event",
                )
            return event, message
        kept = self._check(rule, name, field, payload)
        if kept is not None:
            message = {**message, field: kept}
            event = msgspec.structs.replace(event, **{field: kept})
        if isinstance(event, Identify):  # Rudder sends identify traits in context.traits
            context_traits = event.context.get("traits")
            if isinstance(context_traits, dict):
                kept = self._check(rule, name, "context.traits", context_traits)
                if kept is not None:
                    context = {**event.context, "traits": kept}
                    message = {**message, "context": context}
                    event = msgspec.structs.replace(event, context=context)
        return event, message

    def _check(
        self, rule: _Rule, name: str, field: str, payload: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Validate; return the payload without undeclared keys if some must be dropped."""
        errors = list(rule.validator.iter_errors(payload))
        if errors:
            first = errors[0]
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.instance_path)
            raise InvalidEvent(
                f"{name!r} breaks the tracking plan: {first.message}",
                field=f"$.{field}{path}",
                code="plan_violation",
            )
        if rule.open:
            return None
        extra = sorted(k for k in payload if k not in rule.declared)
        if not extra:
            return None
        if self.mode == "quarantine":
            raise InvalidEvent(
                f"{name!r} has properties the tracking plan does not declare: {', '.join(extra)}",
                field=f"$.{field}.{extra[0]}",
                code="unplanned_property",
            )
        if self.mode == "drop_properties":
            return {k: v for k, v in payload.items() if k in rule.declared}
        return None


def _subject(event: Event) -> tuple[str | None, str, dict[str, Any]]:
    if isinstance(event, Track):
        return event.event, "properties", event.properties
    if isinstance(event, Identify):
        return "$identify", "traits", event.traits
    if isinstance(event, Page):
        return "$page", "properties", event.properties
    if isinstance(event, Screen):
        return "$screen", "properties", event.properties
    return None, "", {}
