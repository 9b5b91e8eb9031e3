"""The pages: static HTML shells, each with one ES module that talks to the public API like any other client.
A strict Content-Security-Policy on every page (no inline script or style, nothing from another origin but the
configured map tiles), and errors shown as pages, never as a stack trace or a JSON blob."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from .. import __version__
from ..settings import Settings

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
PROBLEM_TYPE = "application/problem+json"


@dataclass(frozen=True)
class Page:
    template: str
    title: str
    script: str
    nav: str = ""  # which navigation entry is the current page
    map: bool = False
    draw: bool = False
    hls: bool = False  # the page plays live feeds (vendored hls.js)


PAGES: dict[str, Page] = {
    "/": Page("index", "Consent-first access to private cameras", "index.js"),
    "/login": Page("login", "Sign in", "login.js", nav="/login"),
    "/register": Page("register", "Register as a camera owner", "register.js", nav="/owner"),
    "/owner": Page("owner", "Owner portal", "owner.js", nav="/owner", map=True),
    "/console": Page("console", "Investigator console", "console.js", nav="/console", map=True, draw=True),
    "/supervisor": Page("supervisor", "Supervisor", "supervisor.js", nav="/supervisor", map=True, draw=True),
    "/transparency": Page("transparency", "Transparency report", "transparency.js", nav="/transparency"),
    "/u/{token}": Page("upload", "Share a clip", "upload-page.js"),
    "/owner/devices": Page("owner-devices", "Edge relays and live views", "owner-devices.js", nav="/owner"),
    "/live": Page("live", "Live view", "live.js", nav="/console", hls=True),
}
NAV = [("/owner", "Camera owners"), ("/console", "Investigators"), ("/supervisor", "Supervisors"),
       ("/transparency", "Transparency")]

CONFIG: web.AppKey[dict[str, Any]] = web.AppKey("web_config")
CSP: web.AppKey[str] = web.AppKey("web_csp")


def tile_source(tile_url: str) -> str | None:
    """The CSP source that admits the tile server: scheme and host, ``{s}`` subdomains as a wildcard."""
    if not tile_url:
        return None
    parts = urlsplit(tile_url)
    host = parts.netloc
    if host.startswith("{s}."):
        host = "*." + host[4:]
    if not re.fullmatch(r"(\*\.)?[A-Za-z0-9.-]+(:[0-9]+)?", host):
        return f"{parts.scheme}:"  # a templated host other than {s}.: admit the scheme, still nothing inline
    return f"{parts.scheme}://{host}"


def content_security_policy(settings: Settings) -> str:
    images = ["'self'", "data:"]
    tiles = tile_source(settings.tile_url)
    if tiles:
        images.append(tiles)
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        f"img-src {' '.join(images)}",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ])


@cache
def _template(name: str) -> str:
    return (TEMPLATES / f"{name}.html").read_text(encoding="utf-8")


def _fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"{{(\w+)}}", lambda m: values[m.group(1)], template)


def page_config(request: web.Request) -> dict[str, Any]:
    from ..http.keys import PLATFORM

    config = dict(request.app[CONFIG])
    platform = request.app.get(PLATFORM)
    config["geocoder"] = bool(platform and "geocode" in platform.plugins.capabilities())
    return config


def render(page: Page, config: dict[str, Any], *, status: int = 200, main: str | None = None) -> web.Response:
    e = html.escape
    current = ' aria-current="page"'
    nav = "".join(f'<li><a href="{href}"{current if href == page.nav else ""}>{e(label)}</a></li>' for href, label in NAV)
    head = ['<link rel="stylesheet" href="/static/css/app.css">']
    scripts = []
    if page.map:
        head.insert(0, '<link rel="stylesheet" href="/static/vendor/leaflet/leaflet.css">')
        scripts.append('<script defer src="/static/vendor/leaflet/leaflet.js"></script>')
    if page.draw:
        head.insert(1, '<link rel="stylesheet" href="/static/vendor/leaflet-geoman/leaflet-geoman.css">')
        scripts.append('<script defer src="/static/vendor/leaflet-geoman/leaflet-geoman.min.js"></script>')
    if page.hls:
        scripts.append('<script defer src="/static/vendor/hls.js/hls.min.js"></script>')
    if page.script:
        scripts.append(f'<script type="module" src="/static/js/{e(page.script)}"></script>')
    body = _fill(_template("layout"), {
        "title": e(page.title),
        "config": e(json.dumps(config, separators=(",", ":")), quote=True),
        "head": "\n".join(head + scripts),
        "nav": nav,
        "main": main if main is not None else _template(page.template),
        "version": e(__version__),
    })
    return web.Response(status=status, text=body, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


def render_problem(request: web.Request, problem: dict[str, Any], status: int) -> web.Response:
    """An error as a page: what happened and what to do, in words; the details stay in the server's log."""
    e = html.escape
    title = str(problem.get("title") or "Something went wrong")
    detail = str(problem.get("detail") or "")
    if status == 404:
        title, detail = "Page not found", f"There is no page at {request.path}. Check the address, or start again from the home page."
    elif status >= 500:
        title = "The server ran into a problem"
        detail = "Nothing you did caused this. The error was logged for the people who run this server; please try again in a minute."
    main = (
        '<section class="error-page" aria-labelledby="error-title">'
        f'<p class="eyebrow">Error {status}</p><h1 id="error-title">{e(title)}</h1>'
        f'<p>{e(detail)}</p><p><a class="button" href="/">Go to the home page</a></p></section>'
    )
    page = Page("error", title, "")
    return render(page, page_config(request), status=status, main=main)


def page_handler(page: Page) -> Any:
    async def handle(request: web.Request) -> web.Response:
        return render(page, page_config(request))

    handle.__name__ = f"page_{page.template}"
    return handle


@web.middleware
async def page_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Outside the problem middleware: for anything that is not the API, a problem becomes an HTML page, and every
    such response carries the pages' Content-Security-Policy."""
    response = await handler(request)
    if request.path.startswith("/api/"):
        return response
    if response.status >= 400 and response.content_type == PROBLEM_TYPE and isinstance(response, web.Response):
        try:
            problem = json.loads(response.body or b"{}")  # type: ignore[arg-type]
        except ValueError:
            problem = {}
        allow = response.headers.get("Allow")
        response = render_problem(request, problem if isinstance(problem, dict) else {}, response.status)
        if allow:
            response.headers["Allow"] = allow
    if CSP in request.app:
        response.headers.setdefault("Content-Security-Policy", request.app[CSP])
    if request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-cache")
    return response


def add_pages(app: web.Application, settings: Settings) -> None:
    """Mount the pages and their static files on the core's application."""
    app[CONFIG] = {"tile_url": settings.tile_url, "tile_attribution": settings.tile_attribution, "version": __version__}
    app[CSP] = content_security_policy(settings)
    for path, page in PAGES.items():
        app.router.add_get(path, page_handler(page), name=f"page_{page.template}")
    app.router.add_static("/static/", STATIC, name="static", follow_symlinks=False)

    async def favicon(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "img" / "favicon.svg", headers={"Content-Type": "image/svg+xml"})

    app.router.add_get("/favicon.ico", favicon, name="favicon")
