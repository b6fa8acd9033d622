"""The one mapping from segue errors to HTTP responses.

Bodies are JSON ``{"code", "message", "field"?}`` at the top level: RudderStack's SDK
retries a 4xx whose body lacks ``code``, and Segment's SDKs read ``message``.
"""

from __future__ import annotations

from typing import Any

from segue.api.http import Response, json_response
from segue.errors import (
    BackendUnavailable,
    ConfigError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    SegueError,
    Unauthorized,
)

__all__ = ["problem", "status_of"]

_BY_CODE = {"not_found": 404, "method_not_allowed": 405, "unsupported_encoding": 415}


def status_of(error: SegueError) -> int:
    if error.code in _BY_CODE:
        return _BY_CODE[error.code]
    if isinstance(error, PayloadTooLarge):
        return 413
    if isinstance(error, InvalidInput):
        return 400
    if isinstance(error, Unauthorized):
        return 401
    if isinstance(error, Forbidden):
        return 403
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Conflict):
        return 409
    if isinstance(error, BackendUnavailable):
        return 503
    if isinstance(error, ConfigError):
        return 500
    return 400


def problem(error: SegueError, *, bearer: bool = False, **extra: Any) -> Response:
    """Render an error as its JSON response with the right status.

    ``bearer`` picks the ``WWW-Authenticate`` challenge of a 401: Bearer for admin and
    decision endpoints, Basic (the write key) for collection.
    """
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.field is not None:
        body["field"] = error.field
    body.update(extra)
    response = json_response(body, status_of(error))
    if isinstance(error, Unauthorized):
        challenge = b'Bearer realm="segue"' if bearer else b'Basic realm="segue"'
        response.headers.append((b"www-authenticate", challenge))
    if isinstance(error, BackendUnavailable):
        # SDKs wait this long before retrying (Segment's without spending a retry)
        wait = error.retry_after if isinstance(error, Overloaded) else 1
        response.headers.append((b"retry-after", str(wait).encode()))
    return response
