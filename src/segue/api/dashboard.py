"""The dashboard at ``/ui``: static HTML, CSS and ES modules served by segue itself.

No build step, no CDN, no server-side rendering: the page is plain files in
``segue/api/static/`` (package data) that call the admin API from the browser with the admin
key the operator typed in (kept in ``sessionStorage``). The files are read once, when the app
is built, and served from memory with an ETag; only names found in that folder are served, so
a path can never reach outside it. The HTML carries a Content-Security-Policy that allows
nothing but this origin: no inline script, no third-party host, not even by accident.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Final

from segue.api.http import Request, Response, Route
from segue.errors import NotFound

if TYPE_CHECKING:
    from segue.api.app import SegueApp

__all__ = ["Assets", "routes"]

STATIC: Final = Path(__file__).with_name("static")
INDEX: Final = "dashboard.html"
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}
_CSP: Final = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    b"frame-ancestors 'none'"
)
_COMMON: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # revalidate every time: a new segue version must never run a stale module
    (b"cache-control", b"no-cache"),
)


class Assets:
    """The dashboard's files by name, with their content type and ETag, read once."""

    def __init__(self, folder: Path = STATIC) -> None:
        self.files: dict[str, tuple[bytes, str, bytes]] = {}
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                kind = _TYPES.get(path.suffix)
                if kind is None or not path.is_file():
                    continue
                body = path.read_bytes()
                etag = b'"' + hashlib.sha256(body).hexdigest()[:20].encode() + b'"'
                self.files[path.name] = (body, kind, etag)

    def response(self, name: str, request: Request) -> Response:
        """The file ``name`` (a 304 when the client's copy is current).

        Raises:
            NotFound: no such file in the dashboard's folder.
        """
        found = self.files.get(name)
        if found is None:
            raise NotFound(f"no dashboard file {name}")
        body, kind, etag = found
        headers = [*_COMMON, (b"etag", etag)]
        if name.endswith(".html"):
            headers.append((b"content-security-policy", _CSP))
        if request.headers.get("if-none-match", "").encode() == etag:
            return Response(304, b"", kind, headers)
        return Response(200, body, kind, headers)


def routes(app: SegueApp) -> list[Route]:
    """``/ui`` (the page) and ``/ui/{asset}`` (its files); no key needed, they hold no data."""
    assets = Assets()

    async def page(request: Request) -> Response:
        return assets.response(INDEX, request)

    async def asset(request: Request) -> Response:
        return assets.response(request.params["asset"], request)

    return [
        Route(
            method="GET",
            path="/ui",
            handler=page,
            tag="operations",
            content_type="text/html",
            summary="The dashboard for marketers and operators (needs the admin key to log in)",
        ),
        Route(
            method="GET",
            path="/ui/",
            handler=page,
            tag="operations",
            content_type="text/html",
            summary="The dashboard (same as /ui)",
        ),
        Route(
            method="GET",
            path="/ui/{asset}",
            handler=asset,
            tag="operations",
            content_type="text/plain",
            errors=(404,),
            summary="A file of the dashboard (HTML, CSS, ES module)",
        ),
    ]
