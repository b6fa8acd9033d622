"""The one exception tree of segue.

Every error segue raises on purpose derives from :class:`SegueError`. Names say what the
caller can do about them; HTTP status codes live only in ``segue.api.problems``::

    SegueError
    ├── InvalidInput            the caller sent something malformed; fix it and resend
    │   ├── InvalidEvent        one Segment message failed validation (carries the field)
    │   └── PayloadTooLarge     a message or request is over its configured limit
    ├── Unauthorized            missing or wrong key
    ├── Forbidden               the key is valid but lacks the right
    ├── NotFound                the thing asked for does not exist
    ├── Conflict                the request clashes with current state
    ├── ConfigError             segue.yaml or the environment is wrong (lists every problem)
    ├── MissingDependencyError  a backend's optional driver is not installed (names the extra)
    └── BackendUnavailable      a store or log could not be reached; retry later
        └── Overloaded          segue is over its load bounds and refused the work; retry later
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "InvalidEvent",
    "InvalidInput",
    "MissingDependencyError",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "SegueError",
    "Unauthorized",
]


class SegueError(Exception):
    """Root of every error segue raises deliberately.

    Attributes:
        code: a stable, machine-readable snake_case code (clients branch on it).
        message: a human-readable sentence.
        field: the JSON path of the offending field, when one is at fault.
    """

    code = "segue_error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class InvalidInput(SegueError):
    code = "invalid_input"


class InvalidEvent(InvalidInput):
    code = "invalid_event"


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"


class Unauthorized(SegueError):
    code = "unauthorized"


class Forbidden(SegueError):
    code = "forbidden"


class NotFound(SegueError):
    code = "not_found"


class Conflict(SegueError):
    code = "conflict"


class StaleState(Conflict):
    """Another writer committed state since this one read it: read again, then retry."""

    code = "stale_state"


class ConfigError(SegueError):
    """Raised with every configuration problem at once, one per line in ``problems``."""

    code = "config_error"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = problems


class MissingDependencyError(SegueError):
    code = "missing_dependency"

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'segue[{extra}]'"
        )
        self.package = package
        self.extra = extra


class BackendUnavailable(SegueError):
    code = "backend_unavailable"


class Overloaded(BackendUnavailable):
    """Work refused before it started because a load bound is exceeded (load shedding).

    Nothing of the refused request was done, so a retry is always safe.

    Attributes:
        reason: which bound refused it (``queue_full``, ``queue_timeout``, ``log_backlog``,
            ``log_stalled``), for metrics.
        retry_after: whole seconds the client should wait before it retries.
    """

    code = "overloaded"

    def __init__(self, message: str, *, reason: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = max(1, retry_after)
