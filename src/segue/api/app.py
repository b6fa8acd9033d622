"""create_app(runtime) → the ASGI application: routes, auth, errors, metrics, OpenAPI."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import msgspec
import structlog
from prometheus_client import CollectorRegistry, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from segue.api import (
    audit,
    catalog,
    consent,
    dashboard,
    decide,
    decisions,
    ops_reports,
    preferences,
    privacy_requests,
    rank,
    reports,
    schemas,
    sources,
)
from segue.api.admission import AdmissionControl
from segue.api.http import Receive, Request, Response, Route, Router, Scope, Send, json_response
from segue.api.openapi import build_spec
from segue.api.problems import problem
from segue.api.profile_view import iso, profile_body
from segue.core.model import Identifier, PossibleMatch
from segue.errors import InvalidInput, NotFound, SegueError, Unauthorized
from segue.ingest.validate import body_write_key
from segue.keys import basic_user
from segue.runtime import Runtime

__all__ = ["create_app"]

_log = structlog.get_logger("segue.api")
_SUCCESS = b'{"success":true}'
_ALLOW_ORIGIN = (b"access-control-allow-origin", b"*")
_PREFLIGHT = (
    _ALLOW_ORIGIN,
    (b"access-control-allow-methods", b"GET, POST, PUT, DELETE, OPTIONS"),
    (b"access-control-allow-headers", b"authorization, content-type, content-encoding, sec-gpc"),
    (b"access-control-max-age", b"86400"),
)
#: the collection paths and the message type each one sets (None: a batch)
_COLLECT = {
    "/v1/batch": None,
    "/v1/import": None,
    "/v1/track": "track",
    "/v1/identify": "identify",
    "/v1/page": "page",
    "/v1/screen": "screen",
    "/v1/group": "group",
    "/v1/alias": "alias",
}
#: the short paths analytics.js (analytics-next) and the mobile SDKs post to (``/v1/t``),
#: each with the path it stands for
_SHORT = {
    f"/v1/{name[0]}": f"/v1/{name}"
    for name in ("batch", "track", "identify", "page", "screen", "group", "alias")
}
_COLLECT |= {short: _COLLECT[path] for short, path in _SHORT.items()}
_replay_decoder = msgspec.json.Decoder(schemas.ReplayRequest)
_unmerge_decoder = msgspec.json.Decoder(schemas.UnmergeRequest)


def _possible_out(match: PossibleMatch) -> dict[str, Any]:
    return {
        "id": match.id,
        "profile_a": match.profile_a,
        "profile_b": match.profile_b,
        "score": match.score,
        "status": match.status,
        "created_at": iso(match.created_at),
        "explanation": [
            {"field": f, "level": level, "weight": round(w, 3)} for f, level, w in match.explanation
        ],
    }


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer", field=name) from None
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}", field=name)
    return value


class _StatsCollector:
    """Exposes the runtime's counters to Prometheus at scrape time (no per-event cost)."""

    def __init__(self) -> None:
        self.snapshot: dict[str, Any] = {}

    def collect(self) -> Any:
        s = self.snapshot
        if not s:
            return
        events = CounterMetricFamily(
            "segue_events", "Collected messages by outcome", labels=["outcome"]
        )
        stored = s["events_received"]
        events.add_metric(["accepted"], stored)
        events.add_metric(["rejected"], s["events_rejected"])
        events.add_metric(["duplicate"], s["events_duplicate"])
        yield events
        yield CounterMetricFamily(
            "segue_events_processed", "Events folded into state", value=s["events_processed"]
        )
        yield GaugeMetricFamily(
            "segue_processor_lag_events", "Events not yet processed", value=s["lag_events"]
        )
        yield GaugeMetricFamily(
            "segue_processor_lag_seconds",
            "Age of the oldest unprocessed event",
            value=s["lag_ms"] / 1000.0,
        )
        yield GaugeMetricFamily("segue_profiles", "Profiles", value=s["profiles"])
        yield GaugeMetricFamily("segue_identities", "Linked identifiers", value=s["identities"])
        yield GaugeMetricFamily(
            "segue_quarantined", "Messages in quarantine", value=s["quarantined"]
        )


class SegueApp:
    """The ASGI callable. Holds the router and the per-route latency histogram."""

    def __init__(
        self, runtime: Runtime, on_started: Callable[[Runtime], None] | None = None
    ) -> None:
        self.runtime = runtime
        self._on_started = on_started
        self.registry = CollectorRegistry(auto_describe=True)
        #: ``serve --workers``: the API processes' histograms are summed from shared files
        self.shared_metrics = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.latency = Histogram(
            "segue_http_request_duration_seconds",
            "Request latency by route",
            ["method", "route", "status"],
            registry=None if self.shared_metrics else self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.stats_collector = _StatsCollector()
        self.registry.register(self.stats_collector)
        self.admission = AdmissionControl(
            runtime.settings.overload, None if self.shared_metrics else self.registry
        )
        self.registry.register(self.admission)
        self.router = Router(self._routes())
        try:
            version = metadata.version("segue")
        except metadata.PackageNotFoundError:
            version = "0.0.0"
        self.spec = msgspec.json.encode(build_spec(self.router.routes, version))

    def _routes(self) -> list[Route]:
        write_errors = (400, 401, 413, 415, 503)
        routes = [
            Route(
                method="POST",
                path=path,
                handler=self.collect,
                tag="collection",
                auth="write",
                request=schemas.BatchRequest if kind is None else schemas.SegmentMessage,
                response=schemas.CollectResponse,
                errors=write_errors,
                summary=f"Segment-compatible {kind or 'batch'} collection"
                + (f" (the short path for {_SHORT[path]} that SDKs use)" if path in _SHORT else ""),
            )
            for path, kind in _COLLECT.items()
        ]
        routes += [
            Route(
                method="GET",
                path="/v1/profiles/{ref}",
                handler=self.get_profile,
                tag="profiles",
                auth="admin",
                response=schemas.ProfileResponse,
                errors=(400, 401, 404),
                summary="A profile by any identifier, e.g. user_id:42",
            ),
            Route(
                method="GET",
                path="/v1/profiles/{ref}/events",
                handler=self.get_events,
                tag="profiles",
                auth="admin",
                response=schemas.EventsResponse,
                errors=(400, 401, 404),
                summary="The person's event timeline, oldest first",
                query={
                    "limit": "page size, 1–1000 (default 100)",
                    "cursor": "next_cursor of the previous page",
                },
            ),
            Route(
                method="POST",
                path="/v1/profiles/{ref}/unmerge",
                handler=self.unmerge,
                tag="profiles",
                auth="admin",
                request=schemas.UnmergeRequest,
                response=schemas.UnmergeResponse,
                errors=(400, 401, 404),
                summary="Undo a merge: re-derive the profiles from the event log",
            ),
            Route(
                method="GET",
                path="/v1/admin/possible-matches",
                handler=self.get_possible_matches,
                tag="profiles",
                auth="admin",
                response=schemas.PossibleMatchesResponse,
                errors=(400, 401),
                summary="Grey-zone probabilistic matches waiting for a decision",
                query={
                    "status": "open (default), accepted, rejected or all",
                    "after": "id to start after",
                    "limit": "entries, 1–1000 (default 100)",
                },
            ),
            Route(
                method="POST",
                path="/v1/admin/possible-matches/{match_id}/{decision}",
                handler=self.decide_possible_match,
                tag="profiles",
                auth="admin",
                response=schemas.PossibleMatchOut,
                errors=(400, 401, 404, 409),
                summary="Accept (merge) or reject (keep apart for good) a possible match",
            ),
            Route(
                method="GET",
                path="/v1/stats",
                handler=self.get_stats,
                tag="operations",
                auth="admin",
                response=schemas.StatsResponse,
                errors=(401,),
                summary="Received, processed, lag, profiles, identities",
            ),
            Route(
                method="GET",
                path="/v1/admin/log",
                handler=self.get_log,
                tag="operations",
                auth="admin",
                response=schemas.LogResponse,
                errors=(400, 401),
                summary="Read the event log from any offset (replay)",
                query={
                    "after": "offset to start after (default 0)",
                    "limit": "records, 1–5000 (default 500)",
                },
            ),
            Route(
                method="GET",
                path="/v1/admin/quarantine",
                handler=self.get_quarantine,
                tag="operations",
                auth="admin",
                response=schemas.QuarantineResponse,
                errors=(400, 401),
                summary="Messages kept aside, with the reason",
                query={
                    "source": "only this source",
                    "after": "id to start after",
                    "limit": "entries, 1–1000 (default 100)",
                },
            ),
            Route(
                method="POST",
                path="/v1/admin/quarantine/{entry_id}/replay",
                handler=self.replay,
                tag="operations",
                auth="admin",
                request=schemas.ReplayRequest,
                response=schemas.ReplayResponse,
                errors=(400, 401, 404, 413),
                summary="Re-submit a quarantined message",
            ),
            Route(
                method="GET",
                path="/healthz",
                handler=self.healthz,
                tag="operations",
                summary="Liveness",
            ),
            Route(
                method="GET",
                path="/readyz",
                handler=self.readyz,
                tag="operations",
                errors=(503,),
                summary="Readiness: backends open",
            ),
            Route(
                method="GET",
                path="/metrics",
                handler=self.metrics,
                tag="operations",
                content_type="text/plain",
                summary="Prometheus metrics",
            ),
            Route(
                method="GET",
                path="/openapi.json",
                handler=self.openapi,
                tag="operations",
                summary="This document",
            ),
            Route(
                method="GET",
                path="/docs",
                handler=self.docs,
                tag="operations",
                content_type="text/html",
                summary="Interactive API documentation",
            ),
        ]
        routes += sources.routes(self)
        routes += catalog.routes(self)
        routes += rank.routes(self)
        routes += decide.routes(self)
        routes += decisions.routes(self)
        routes += audit.routes(self)
        routes += consent.routes(self)
        routes += preferences.routes(self)
        routes += privacy_requests.routes(self)
        routes += ops_reports.routes(self)
        routes += reports.routes(self)
        routes += dashboard.routes(self)
        return routes

    # --- ASGI ---------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.start()
                except SegueError as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
                if self._on_started is not None:
                    self._on_started(self.runtime)
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        request = Request(scope, receive)
        route_label = "unmatched"
        route: Route | None = None
        try:
            if request.method == "OPTIONS":  # CORS preflight: browsers call collect and decide
                response = Response(204, b"", headers=list(_PREFLIGHT))
                await response.send(send)
                return
            if request.path.startswith("/docs/"):
                response = self._static(request.path[6:])
            else:
                route = self.router.match(request)
                route_label = route.path
                async with self.admission.budget(route.path):  # 503 + Retry-After when shed
                    self._authorize(route, request)
                    response = await route.handler(request)
        except SegueError as exc:
            response = problem(exc, bearer=route is not None and route.auth != "write")
        except Exception:
            _log.exception("unhandled_error", path=request.path, method=request.method)
            response = json_response(
                {"code": "internal_error", "message": "internal error; it was logged"}, 500
            )
        response.headers.append(_ALLOW_ORIGIN)
        audit.audit_request(self.runtime, route, request, response.status)
        await response.send(send)
        self.latency.labels(request.method, route_label, str(response.status)).observe(
            time.perf_counter() - start
        )

    def _authorize(self, route: Route, request: Request) -> None:
        if route.auth in ("admin", "publishable"):
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise Unauthorized("this endpoint needs Authorization: Bearer <admin key>")
            if route.auth == "admin" and not self.runtime.keyring.is_admin(token.strip()):
                raise Unauthorized("not an admin key")
            if route.auth == "publishable" and not (
                self.runtime.keyring.is_admin(token.strip())
                or self.runtime.keyring.is_publishable(token.strip())
            ):
                raise Unauthorized("not a publishable or admin key")

    # --- collection ---------------------------------------------------------------------
    async def collect(self, request: Request) -> Response:
        """Segment-compatible collection; 200 only once everything is durable."""
        ingest = self.runtime.ingest
        header = request.headers.get("authorization")
        user = basic_user(header) if header else None
        source: str | None = None
        if user is not None:  # a Basic header is the credential, and the body's is ignored
            if not user:
                raise Unauthorized("the HTTP Basic user name (the write key) is empty")
            source = self.runtime.keyring.source_for(user)
        body = await request.body(ingest.limits.max_request_bytes)
        try:
            parsed = ingest.parse(body, _COLLECT[request.path])
        except InvalidInput:
            if source is None:
                # only a sender with a key learns what is wrong with its body; a body that
                # cannot be read has no key that segue could check (401, docs/api.md)
                self._body_source(body_write_key(body))
            raise
        if source is None:
            source = self._body_source(parsed.write_key)
        gpc = request.headers.get("sec-gpc", "").strip() == "1"
        result = await ingest.collect(source, parsed, gpc=gpc)
        if not result.rejected:
            return Response(200, _SUCCESS)
        rejected = [
            {"index": r.index, "code": r.code, "message": r.message, "field": r.field}
            for r in result.rejected
        ]
        if result.offsets or len(rejected) < len(parsed.messages):
            return json_response({"success": True, "rejected": rejected})
        first = result.rejected[0]
        status = 413 if first.code == "payload_too_large" else 400
        body_out: dict[str, Any] = {"code": first.code, "message": first.message}
        if first.field is not None:
            body_out["field"] = first.field
        if _COLLECT[request.path] is None:  # a batch path
            body_out["rejected"] = rejected
        return json_response(body_out, status)

    def _body_source(self, key: object) -> str:
        """The source whose write key the body's ``writeKey`` is; 401 when it is none."""
        if key is not None and not isinstance(key, str):
            raise Unauthorized("writeKey must be a string, the source's write key")
        return self.runtime.keyring.source_for(key)

    # --- profiles -----------------------------------------------------------------------
    async def resolve_profile(self, request: Request) -> str:
        """The profile id of the ``{ref}`` path parameter (``type:value``); 404 if none."""
        try:
            identifier = Identifier.parse(request.params["ref"])
        except ValueError as exc:
            raise InvalidInput(str(exc), field="ref") from None
        found = await self.runtime.store.lookup([identifier])
        profile_id = found.get(identifier)
        if profile_id is None:
            raise NotFound(f"no profile for {identifier}")
        return profile_id

    async def get_profile(self, request: Request) -> Response:
        profile_id = await self.resolve_profile(request)
        profile = (await self.runtime.store.profiles([profile_id])).get(profile_id)
        if profile is None:  # merged away between the two reads: follow the redirect once
            survivor = await self.runtime.store.resolve(profile_id)
            found = await self.runtime.store.profiles([survivor]) if survivor else {}
            profile = found.get(survivor or "")
        if profile is None:
            raise NotFound(f"no profile for {request.params['ref']}")
        audit.note_profile_read(self.runtime, request, profile.profile_id)
        matches = await self.runtime.store.possible_matches(profile.profile_id, "open", 0, 100)
        features = await self.runtime.decisioning.profile_features(profile.profile_id)
        body = profile_body(profile, [_possible_out(m) for m in matches], features)
        body["consent"] = await consent.summary(self, profile)
        return json_response(body)

    async def unmerge(self, request: Request) -> Response:
        profile_id = await self.resolve_profile(request)
        body = await request.body(64 * 1024)
        try:
            wanted = _unmerge_decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise InvalidInput(str(exc), code="invalid_request") from None
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"body is not valid JSON: {exc}", code="invalid_json") from None
        profiles = await self.runtime.processor.unmerge(profile_id, wanted.profile_id)
        return json_response({"profiles": profiles})

    async def get_possible_matches(self, request: Request) -> Response:
        status = request.query.get("status") or "open"
        if status not in ("open", "accepted", "rejected", "dismissed", "all"):
            raise InvalidInput(
                "status must be open, accepted, rejected, dismissed or all", field="status"
            )
        after = _int_param(request, "after", 0, 0, 2**62)
        limit = _int_param(request, "limit", 100, 1, 1000)
        found = await self.runtime.store.possible_matches(
            None, None if status == "all" else status, after, limit
        )
        nxt = found[-1].id if len(found) == limit else None
        return json_response({"matches": [_possible_out(m) for m in found], "next": nxt})

    async def decide_possible_match(self, request: Request) -> Response:
        raw_id, decision = request.params["match_id"], request.params["decision"]
        if not raw_id.isdigit():
            raise InvalidInput("match id must be a number", field="match_id")
        if decision not in ("accept", "reject"):
            raise SegueError("use .../accept or .../reject", code="not_found")
        decided = await self.runtime.processor.decide_match(int(raw_id), decision == "accept")
        return json_response(_possible_out(decided))

    async def get_events(self, request: Request) -> Response:
        profile_id = await self.resolve_profile(request)
        audit.note_profile_read(self.runtime, request, profile_id)
        limit = _int_param(request, "limit", 100, 1, 1000)
        after = _int_param(request, "cursor", 0, 0, 2**62)
        offsets = await self.runtime.store.timeline(profile_id, after, limit + 1)
        more = len(offsets) > limit
        offsets = offsets[:limit]
        records = await self.runtime.log.get(offsets)
        next_cursor = msgspec.json.encode(str(offsets[-1])) if more and offsets else b"null"
        body = b'{"events":[' + b",".join(r.body for r in records) + b'],"next_cursor":'
        return Response(200, body + next_cursor + b"}")

    # --- operations ---------------------------------------------------------------------
    async def get_stats(self, request: Request) -> Response:
        return json_response(await self.runtime.stats())

    async def get_log(self, request: Request) -> Response:
        after = _int_param(request, "after", 0, 0, 2**62)
        limit = _int_param(request, "limit", 500, 1, 5000)
        records = await self.runtime.log.read(after, limit)
        out = [
            {
                "offset": r.offset,
                "source": r.source,
                "message_id": r.message_id,
                "received_at": r.received_at,
                "message": msgspec.Raw(r.body),
            }
            for r in records
        ]
        nxt = records[-1].offset if len(records) == limit else None
        return json_response({"records": out, "next": nxt})

    async def get_quarantine(self, request: Request) -> Response:
        after = _int_param(request, "after", 0, 0, 2**62)
        limit = _int_param(request, "limit", 100, 1, 1000)
        source = request.query.get("source") or None
        entries = await self.runtime.quarantine.list(source, after, limit)
        out = []
        for e in entries:
            try:
                message: Any = msgspec.json.decode(e.body)
            except msgspec.DecodeError:
                message = e.body.decode("utf-8", "replace")
            out.append(
                {
                    "id": e.id,
                    "source": e.source,
                    "received_at": e.received_at,
                    "reason": e.reason,
                    "field": e.field,
                    "message": message,
                }
            )
        nxt = entries[-1].id if len(entries) == limit else None
        return json_response({"entries": out, "next": nxt})

    async def replay(self, request: Request) -> Response:
        raw_id = request.params["entry_id"]
        if not raw_id.isdigit():
            raise InvalidInput("entry id must be a number", field="entry_id")
        body = await request.body(self.runtime.ingest.limits.max_request_bytes)
        replacement: bytes | None = None
        if body.strip():
            try:
                parsed = _replay_decoder.decode(body)
            except msgspec.ValidationError as exc:
                text, _, path = str(exc).partition(" - at `")
                raise InvalidInput(
                    text, field=path.rstrip("`") or "$", code="invalid_request"
                ) from None
            except msgspec.DecodeError as exc:
                raise InvalidInput(f"body is not valid JSON: {exc}", code="invalid_json") from None
            if parsed.message is not None:
                replacement = msgspec.json.encode(parsed.message)
        done = await self.runtime.ingest.replay(int(raw_id), replacement)
        return json_response(
            {"replayed": True, "offset": done.offset, "suppressed": done.suppressed}
        )

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        if not self.runtime.ready:
            return json_response({"code": "not_ready", "message": "starting or stopping"}, 503)
        return json_response({"status": "ready"})

    async def metrics(self, request: Request) -> Response:
        self.stats_collector.snapshot = await self.runtime.stats()
        body = generate_latest(self.registry)
        if self.shared_metrics:  # every API process's latency, summed
            shared = CollectorRegistry()
            multiprocess.MultiProcessCollector(shared)  # type: ignore[no-untyped-call]
            body = generate_latest(shared) + body
        return Response(200, body, "text/plain; version=0.0.4")

    async def openapi(self, request: Request) -> Response:
        return Response(200, self.spec)

    async def docs(self, request: Request) -> Response:
        return Response(200, _DOCS_HTML, "text/html; charset=utf-8")

    def _static(self, name: str) -> Response:
        import swagger_ui_bundle

        allowed = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript"}
        if name not in allowed:
            raise SegueError(f"no asset {name}", code="not_found")
        path = Path(swagger_ui_bundle.swagger_ui_path) / name
        return Response(
            200, path.read_bytes(), allowed[name], [(b"cache-control", b"public, max-age=86400")]
        )


_DOCS_HTML = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>segue API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="ui"></div><script src="/docs/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>"""


def create_app(runtime: Runtime, on_started: Callable[[Runtime], None] | None = None) -> SegueApp:
    """Build the ASGI app for a (not yet started) runtime; lifespan starts and stops it."""
    return SegueApp(runtime, on_started)
