"""The aiohttp application factory. Domain errors become problem responses here, at the edge, and nowhere else."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiohttp import web
from aiohttp_remotes import XForwardedStrict

from .. import web as web_ui
from ..clock import Clock
from ..db import database_unavailable
from ..errors import ConsentCamError, Forbidden, ServiceUnavailable, TooManyRequests, Unauthorized
from ..platform import Platform, open_platform
from ..services.accounts import authenticate
from ..services.apikeys import KEY_PREFIX, authenticate_key
from ..settings import Settings
from .api import Api, _dumps
from .keys import API, PLATFORM, PRINCIPAL, SESSION_COOKIE

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(self)",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def problem_response(error: ConsentCamError) -> web.Response:
    headers = {}
    if isinstance(error, TooManyRequests) or isinstance(error, ServiceUnavailable):
        headers["Retry-After"] = str(max(1, int(getattr(error, "retry_after", None) or error.extra.get("retry_after", 1))))
    body = error.problem()
    body.pop("retry_after", None)
    return web.Response(
        status=error.status, text=_dumps(body), content_type="application/problem+json", headers=headers
    )


_HTTP_TITLES = {404: ("not-found", "Not found"), 405: ("method-not-allowed", "Method not allowed"),
                413: ("payload-too-large", "Payload too large")}


@web.middleware
async def problems(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ConsentCamError as error:
        return problem_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        slug, title = _HTTP_TITLES.get(exc.status, ("http-error", exc.reason))
        error = ConsentCamError(exc.text if exc.text and not exc.text.startswith(str(exc.status)) else title)
        error.status, error.slug, error.title = exc.status, slug, title  # type: ignore[misc]
        response = problem_response(error)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception as exc:  # never a stack trace to the caller; the log has it
        if database_unavailable(exc):
            # A read (or the caller's token lookup) while the database restarts: retryable, like a failed write.
            log.warning("database unavailable on %s %s: %s", request.method, request.path, type(exc).__name__)
            return problem_response(ServiceUnavailable(
                "The database is not reachable right now; nothing was changed. Try again shortly.", retry_after=5))
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(ConsentCamError("the server failed; the error was logged"))


@web.middleware
async def principal(request: web.Request, handler: Any) -> web.StreamResponse:
    """Resolve the caller from a bearer token or the browser's session cookie; CSRF-check cookie writes."""
    if not request.path.startswith("/api/"):  # pages and their files are static shells: they read no credential
        return await handler(request)
    platform: Platform = request.app[PLATFORM]
    header = request.headers.get("Authorization", "")
    secret = None
    if header.lower().startswith("bearer "):
        secret = header[7:].strip()
    elif SESSION_COOKIE in request.cookies:
        secret = request.cookies[SESSION_COOKIE]
    if secret:
        try:
            if secret.startswith(KEY_PREFIX):
                who = await authenticate_key(platform, secret)
            else:
                who = await authenticate(platform, secret)
        except Unauthorized:
            who = None
        if who is not None:
            if who.token_kind == "cookie" and request.method not in SAFE_METHODS:
                sent = request.headers.get("X-CSRF-Token", "")
                from ..security import same

                if not who.csrf_token or not same(sent, who.csrf_token):
                    raise Forbidden("missing or wrong X-CSRF-Token for this session")
            request[PRINCIPAL] = who
    return await handler(request)


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response = await handler(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/"):
        response.headers.setdefault("Content-Security-Policy", API_CSP)
        response.headers.setdefault("Cache-Control", "no-store")
    platform = request.app.get(PLATFORM)
    if request.secure or (platform is not None and platform.settings.https):
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def build_api() -> Api:
    from .. import __version__
    from . import routes, routes_keys, routes_requests, routes_vault

    api = Api("ConsentCam", __version__)
    for register in [*routes.REGISTRARS, routes_requests.request_routes, routes_requests.transparency_routes,
                     routes_keys.key_routes, routes_vault.vault_routes, *web_ui.REGISTRARS]:
        register(api)
    from .routes_geocode import geocode_routes

    geocode_routes(api)
    from .routes_accounts import linked_account_routes

    linked_account_routes(api)
    from ..live.routes import live_routes

    live_routes(api)
    return api


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    extra_plugins: Iterable[object] = (),
    platform: Platform | None = None,
    run_jobs: bool | None = None,
) -> web.Application:
    """Build the application; the platform (database, plugins, keys) opens and closes with it."""
    middlewares: list[Any] = [security_headers, web_ui.page_errors, problems, principal]
    if settings.proxy_hops:
        # First of all: what follows sees the client's address and scheme, as the trusted proxy reported them.
        # The health check is exempt, so that a supervisor or load balancer may ask the process directly.
        middlewares.insert(0, XForwardedStrict(settings.proxy_hops, white_paths=("/api/v1/health",)).middleware)
    app = web.Application(middlewares=middlewares, client_max_size=settings.json_body_limit)
    api = build_api()
    api.mount(app)
    app[API] = api
    web_ui.add_pages(app, settings)
    openapi_doc = api.openapi()

    async def openapi(_request: web.Request) -> web.Response:
        return web.json_response(openapi_doc, dumps=_dumps)

    app.router.add_get("/api/v1/openapi.json", openapi, name="openapi")

    async def _platform(app: web.Application) -> AsyncIterator[None]:
        opened = platform or await open_platform(settings, clock=clock, extra_plugins=extra_plugins)
        app[PLATFORM] = opened
        worker = None
        if run_jobs if run_jobs is not None else settings.run_jobs_in_process:
            from ..workflows import make_worker

            worker = make_worker(opened, name="in-process")
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            from ..vault.core import close_vault

            await close_vault(opened)  # its client belongs to this loop, which is ending
            if platform is None:
                await opened.db.dispose()

    app.cleanup_ctx.append(_platform)
    from ..live.hub import setup_hub

    setup_hub(app)  # the edge relay hub, after the platform opened
    from .routes_vault import startup as vault_startup

    app.on_startup.append(vault_startup)  # after the platform opened: recover the vault from a crash
    return app
