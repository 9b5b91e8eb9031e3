"""Operations of the JSON API: each declared once with its models and roles; the same declaration validates
requests, authorises callers and generates the OpenAPI 3.1 document."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from ..errors import FieldError, Forbidden, InvalidInput, MalformedBody, NotFound, Unauthorized
from ..services.accounts import Principal
from .keys import PLATFORM, PRINCIPAL

PUBLIC = "public"
ANY_USER = "any user"


@dataclass
class Call:
    """What a handler gets: the request, the platform, the caller and the validated inputs."""

    request: web.Request
    principal: Principal | None
    body: Any = None
    query: Any = None

    @property
    def platform(self):  # noqa: ANN201
        return self.request.app[PLATFORM]

    def param(self, name: str) -> str:
        return self.request.match_info[name]

    @property
    def user(self) -> Principal:
        assert self.principal is not None
        return self.principal


Handler = Callable[[Call], Awaitable[Any]]


@dataclass
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    roles: str | frozenset[str]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    raw_body: str | None = None  # content type of a streamed body (uploads), not JSON
    raw_response: str | None = None  # content type of a streamed response
    extra_responses: dict[int, str] = field(default_factory=dict)
    body_required: bool = True
    scope: str | None = None  # the API-key scope that also grants this operation
    extra_models: dict[int, type[BaseModel]] = field(default_factory=dict)  # JSON bodies of extra_responses

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


def _loc(prefix: str, loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    return (prefix, *[p for p in loc if p not in ("function-after", "function-before")])


def validation_problem(prefix: str, exc: ValidationError) -> InvalidInput:
    errors = [FieldError(_loc(prefix, tuple(e["loc"])), e["msg"]) for e in exc.errors(include_url=False)]
    summary = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors[:5])
    return InvalidInput(summary, errors=errors)


class Api:
    def __init__(self, title: str, version: str) -> None:
        self.title = title
        self.version = version
        self.operations: list[Operation] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        roles: str | set[str] | frozenset[str] = ANY_USER,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
        tags: tuple[str, ...] = (),
        raw_body: str | None = None,
        raw_response: str | None = None,
        extra_responses: dict[int, str] | None = None,
        body_required: bool = True,
        scope: str | None = None,
        extra_models: dict[int, type[BaseModel]] | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.operations.append(
                Operation(method, path, handler, summary,
                          roles if isinstance(roles, str) else frozenset(roles),
                          body, query, response, status, errors, tags, raw_body, raw_response, extra_responses or {},
                          body_required, scope, extra_models or {})
            )
            return handler

        return register

    # --- serving ------------------------------------------------------------------------------------

    def mount(self, app: web.Application) -> None:
        for op in self.operations:
            app.router.add_route(op.method, op.path, self._wrap(op), name=op.operation_id)

    def _wrap(self, op: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            principal: Principal | None = request.get(PRINCIPAL)
            if op.roles != PUBLIC:
                if principal is None:
                    raise Unauthorized("sign in first: send 'Authorization: Bearer <token>'")
                if principal.role == "api_key":
                    if op.scope is None or op.scope not in (principal.scopes or ()):
                        raise Forbidden(f"this API key may not call {op.method} {op.path}"
                                        + (f"; it needs the scope {op.scope}" if op.scope else "; no API key may"))
                elif isinstance(op.roles, frozenset) and principal.role not in op.roles:
                    raise Forbidden(f"this needs the role {' or '.join(sorted(op.roles))}; you are {principal.role}")
            call = Call(request, principal)
            _refuse_nul(request)
            if op.query is not None:
                try:
                    call.query = op.query.model_validate(dict(request.query))
                except ValidationError as exc:
                    raise validation_problem("query", exc) from exc
            if op.body is not None:
                _refuse_simple_types(request)
                raw = await request.read()
                if not raw and not op.body_required:
                    raw = b"{}"
                if not raw:
                    raise MalformedBody("a JSON body is required", errors=[FieldError(("body",), "a JSON body is required")])
                try:
                    call.body = op.body.model_validate_json(raw)
                except ValidationError as exc:
                    invalid = [e["msg"] for e in exc.errors(include_url=False) if e["type"] == "json_invalid"]
                    if invalid:
                        raise MalformedBody(f"the body is not valid JSON: {invalid[0]}",
                                            errors=[FieldError(("body",), invalid[0])]) from exc
                    raise validation_problem("body", exc) from exc
                where = _nul_at(call.body.model_dump(), ("body",))
                if where is not None:
                    raise InvalidInput.at(where, NUL_MESSAGE)
            result = await op.handler(call)
            if isinstance(result, web.StreamResponse):
                return result
            if isinstance(result, BaseModel):
                payload = result.model_dump(mode="json")
            else:
                payload = result
            return web.json_response(payload, status=op.status, dumps=_dumps)

        handle.__name__ = op.operation_id
        return handle

    # --- OpenAPI ------------------------------------------------------------------------------------

    def openapi(self) -> dict[str, Any]:
        models: list[tuple[type[BaseModel], str]] = []
        for op in self.operations:
            for model, mode in ((op.body, "validation"), (op.query, "validation"), (op.response, "serialization"),
                                *((extra, "serialization") for extra in op.extra_models.values())):
                if model is not None and (model, mode) not in models:
                    models.append((model, mode))
        keys, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
        schemas: dict[str, Any] = dict(defs.get("$defs", {}))
        schemas["Problem"] = PROBLEM_SCHEMA
        paths: dict[str, Any] = {}
        for op in self.operations:
            item: dict[str, Any] = {
                **({"x-api-key-scope": op.scope} if op.scope else {}),
                "operationId": op.operation_id,
                "summary": op.summary,
                "tags": list(op.tags),
                "responses": {},
            }
            params = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in _path_params(op.path)
            ]
            if op.query is not None:
                query_schema = schemas.get(op.query.__name__) or keys[(op.query, "validation")]
                for name, prop in query_schema.get("properties", {}).items():
                    params.append({"name": name, "in": "query", "required": name in query_schema.get("required", []),
                                   "schema": prop})
            if params:
                item["parameters"] = params
            if op.body is not None:
                item["requestBody"] = {"required": op.body_required,
                                       "content": {"application/json": {"schema": keys[(op.body, "validation")]}}}
            elif op.raw_body:
                item["requestBody"] = {"required": True, "content": {op.raw_body: {"schema": {"type": "string", "format": "binary"}}}}
            if op.response is not None:
                item["responses"][str(op.status)] = {
                    "description": op.summary,
                    "content": {"application/json": {"schema": keys[(op.response, "serialization")]}},
                }
            elif op.raw_response:
                item["responses"][str(op.status)] = {
                    "description": op.summary,
                    "content": {op.raw_response: {"schema": {"type": "string", "format": "binary"}}},
                }
            else:
                item["responses"][str(op.status)] = {"description": op.summary}
            for status, description in op.extra_responses.items():
                extra = op.extra_models.get(status)
                item["responses"].setdefault(str(status), {"description": description} if extra is None else {
                    "description": description,
                    "content": {"application/json": {"schema": keys[(extra, "serialization")]}},
                })
            problems = set(op.errors)
            if op.roles != PUBLIC:
                problems |= {401, 403}
                item["security"] = [{"bearer": []}, {"cookie": []}]
            else:
                problems.add(403)  # a credential of a suspended agency is refused even here
            if _path_params(op.path):
                problems.add(404)  # an id that names nothing
            problems |= {400, 422}  # any call can carry a malformed query string
            if op.body is not None or op.raw_body:
                problems.add(413)  # over the body limit, refused before any handler runs
            problems |= {429, 503}
            for status in sorted(problems):
                item["responses"].setdefault(str(status), {
                    "description": PROBLEM_DESCRIPTIONS.get(status, "Problem"),
                    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
                })
            paths.setdefault(op.path, {})[op.method.lower()] = item
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version,
                     "description": "ConsentCam public HTTP API, version 1. Errors are RFC 9457 problem documents."},
            "servers": [{"url": "/"}],
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "cookie": {"type": "apiKey", "in": "cookie", "name": "consentcam_session"},
                },
            },
        }


NUL_MESSAGE = "text must not contain NUL characters"


def _nul_at(value: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
    """Where a text holds a NUL character (PostgreSQL cannot store one; nobody needs one), or None."""
    if isinstance(value, str):
        return loc if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = _nul_at(key, (*loc, key)) or _nul_at(item, (*loc, key))
            if where is not None:
                return where
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            where = _nul_at(item, (*loc, i))
            if where is not None:
                return where
    return None


def _refuse_nul(request: web.Request) -> None:
    if any("\x00" in value for value in request.match_info.values()):
        raise NotFound("no such resource")
    for key, value in request.query.items():
        if "\x00" in key or "\x00" in value:
            raise InvalidInput.at(("query", key), NUL_MESSAGE)


# What a page on another site may send without a CORS preflight. A JSON body sent as one of these is how a forged
# cross-site request (a login CSRF against the cookie session) looks; no client of this API sends JSON that way.
SIMPLE_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})


def _refuse_simple_types(request: web.Request) -> None:
    if request.content_type in SIMPLE_TYPES:
        detail = f"send the body as application/json, not {request.content_type}"
        raise MalformedBody(detail, errors=[FieldError(("body",), detail)])


def _path_params(path: str) -> list[str]:
    import re

    return re.findall(r"{(\w+)}", path)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


PROBLEM_SCHEMA = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"loc": {"type": "array", "items": {"type": ["string", "integer"]}}, "msg": {"type": "string"}},
                "required": ["loc", "msg"],
            },
        },
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}

PROBLEM_DESCRIPTIONS = {
    400: "Malformed request", 401: "Not signed in", 403: "Forbidden", 404: "Not found", 409: "Conflict",
    410: "Gone", 413: "Payload too large", 415: "Unsupported media", 416: "Range not satisfiable",
    422: "Invalid input", 429: "Too many requests", 502: "Device or plugin failed", 503: "Service unavailable",
}
