"""The OpenAPI 3.1 document, generated from the routes and their msgspec DTOs."""

from __future__ import annotations

from typing import Any

import msgspec

from segue.api.http import Route
from segue.api.schemas import Problem

__all__ = ["build_spec"]

_STATUS_TEXT = {
    400: "invalid input",
    401: "missing or wrong key",
    404: "not found",
    413: "payload too large",
    415: "unsupported content encoding",
    503: "backend unavailable",
}


def build_spec(routes: list[Route], version: str) -> dict[str, Any]:
    types = {r.request for r in routes if r.request is not None}
    types |= {r.response for r in routes if r.response is not None}
    types.add(Problem)
    ordered = sorted(types, key=lambda t: getattr(t, "__name__", str(t)))
    schemas, components = msgspec.json.schema_components(
        ordered, ref_template="#/components/schemas/{name}"
    )
    refs = dict(zip(ordered, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        op: dict[str, Any] = {
            "summary": route.summary,
            "tags": [route.tag],
            "operationId": route.handler.__name__
            + "_"
            + route.method.lower()
            + route.path.replace("/", "_").replace("{", "").replace("}", ""),
        }
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_params(route.path)
        ]
        params += [
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": text,
            }
            for name, text in route.query.items()
        ]
        if params:
            op["parameters"] = params
        if route.request is not None:
            op["requestBody"] = {
                "required": route.method != "POST" or "replay" not in route.path,
                "content": {"application/json": {"schema": refs[route.request]}},
            }
        ok: dict[str, Any] = {"description": "OK"}
        if route.response is not None:
            ok["content"] = {"application/json": {"schema": refs[route.response]}}
        elif route.content_type != "application/json":
            ok["content"] = {route.content_type: {"schema": {"type": "string"}}}
        responses: dict[str, Any] = {"200": ok}
        for status in route.errors:
            responses[str(status)] = {
                "description": _STATUS_TEXT.get(status, "error"),
                "content": {"application/json": {"schema": refs[Problem]}},
            }
        op["responses"] = responses
        if route.auth == "write":
            op["security"] = [{"writeKey": []}]
        elif route.auth in ("admin", "publishable"):
            op["security"] = [{"bearer": []}]
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "segue",
            "version": version,
            "description": "Real-time personalization engine with its own customer data platform.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "writeKey": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "the source's write key as user name, empty password",
                },
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "admin key (or publishable key where allowed)",
                },
            },
        },
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]
