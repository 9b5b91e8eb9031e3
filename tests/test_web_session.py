"""The web interface without a browser: the cookie session (flags, CSRF on every write, sign-out), the strict
Content-Security-Policy and markup rules of every page, errors as pages, the tile setting, the public jurisdiction
outlines, and that ``pip install`` ships the built files."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
import zipfile
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from consentcam.settings import Settings
from consentcam.testing.world import PASSWORD
from consentcam.web.pages import PAGES, content_security_policy, tile_source

from .conftest import ok, problem

pytestmark = pytest.mark.usefixtures("fast_passwords")

PAGE_PATHS = [p.replace("{token}", "up_some-token") for p in PAGES]
CAMERA = {"label": "Porch", "location": {"lat": 41.88, "lon": -87.63}, "retention_days": 7}


def cookies_of(response: Any) -> dict[str, Any]:
    jar: dict[str, Any] = {}
    for header in response.headers.getall("Set-Cookie", []):
        cookie = SimpleCookie()
        cookie.load(header)
        for name, morsel in cookie.items():
            jar[name] = (morsel, header)
    return jar


@pytest.fixture
async def web_client(consentcam_settings: Settings, consentcam_platform: Any, aiohttp_client: Any) -> Any:
    """A client for pages: their errors are HTML pages, which the API's contract-checking client would refuse."""
    from consentcam.http.app import create_app

    return await aiohttp_client(create_app(consentcam_settings, platform=consentcam_platform, run_jobs=False))


async def sign_in(api: Any, email: str, password: str = PASSWORD) -> Any:
    return await api.post("/api/v1/auth/session", json={"email": email, "password": password})


# --- the session cookie -----------------------------------------------------------------------------------


async def test_sign_in_sets_an_httponly_strict_cookie_and_returns_the_csrf_token(api: Any, consentcam_world: Any) -> None:
    owner = await consentcam_world.owner(login=False)
    response = await sign_in(api, owner.email)
    body = await ok(response)
    assert body["user"]["role"] == "owner" and body["user"]["id"] == owner.id
    assert len(body["csrf_token"]) >= 24 and "token" not in body  # the session secret never reaches a script
    cookies = cookies_of(response)
    session, raw = cookies["consentcam_session"]
    assert session.value.startswith("cc_") and session.value != body["csrf_token"]
    assert session["httponly"] is True
    assert session["samesite"] == "Strict"
    assert session["path"] == "/"
    assert not session["secure"], "plain HTTP: a Secure cookie would never come back"
    assert 0 < int(session["max-age"]) <= 12 * 3600
    csrf, raw_csrf = cookies["consentcam_csrf"]
    assert csrf.value == body["csrf_token"] and not csrf["httponly"] and csrf["samesite"] == "Strict"
    assert "HttpOnly" in raw and "HttpOnly" not in raw_csrf

    me = await ok(await api.get("/api/v1/auth/session"))  # the cookie alone signs the browser in
    assert me["user"]["id"] == owner.id and me["csrf_token"] == body["csrf_token"]


async def test_cookie_is_secure_over_https(consentcam_settings: Settings, consentcam_platform: Any,
                                           consentcam_world: Any, aiohttp_client: Any) -> None:
    from consentcam.http.app import create_app

    @web.middleware
    async def behind_tls(request: web.Request, handler: Any) -> web.StreamResponse:
        return await handler(request.clone(scheme="https"))

    app = create_app(consentcam_settings, platform=consentcam_platform, run_jobs=False)
    app.middlewares.insert(0, behind_tls)
    client = await aiohttp_client(app)
    owner = await consentcam_world.owner(login=False)
    response = await client.post("/api/v1/auth/session", json={"email": owner.email, "password": PASSWORD})
    assert response.status == 200
    for name in ("consentcam_session", "consentcam_csrf"):
        assert cookies_of(response)[name][0]["secure"] is True, name
    page = await client.get("/owner")
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")


async def test_behind_a_trusted_proxy_the_forwarded_scheme_and_client_are_believed(
        consentcam_settings: Settings, consentcam_platform: Any, consentcam_world: Any, aiohttp_client: Any) -> None:
    """nginx terminates TLS and forwards plain HTTP: cookies must still be Secure and the throttle must see the
    client, not nginx. With a proxy configured, a connection that does not come through it is refused."""
    from consentcam.http.app import create_app

    behind = consentcam_settings.model_copy(update={"trusted_proxies": "127.0.0.1"})
    client = await aiohttp_client(create_app(behind, platform=consentcam_platform, run_jobs=False))
    owner = await consentcam_world.owner(login=False)
    forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    response = await client.post("/api/v1/auth/session", json={"email": owner.email, "password": PASSWORD},
                                 headers=forwarded)
    assert response.status == 200
    for name in ("consentcam_session", "consentcam_csrf"):
        assert cookies_of(response)[name][0]["secure"] is True, name
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    # Two protocols for one hop is a forged or broken chain: refused, not guessed at.
    bad = await client.get("/api/v1/auth/session", headers={"X-Forwarded-Proto": "https, http"})
    assert bad.status == 400

    untrusted = consentcam_settings.model_copy(update={"trusted_proxies": "10.9.8.7"})
    direct = await aiohttp_client(create_app(untrusted, platform=consentcam_platform, run_jobs=False))
    response = await direct.post("/api/v1/auth/session", json={"email": owner.email, "password": PASSWORD},
                                 headers=forwarded)
    assert response.status == 400, "a stranger claiming to be the proxy is not believed"
    assert "Set-Cookie" not in response.headers


async def test_an_https_public_address_makes_cookies_secure_whatever_hop_ends_tls(
        consentcam_settings: Settings, consentcam_platform: Any, consentcam_world: Any, aiohttp_client: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from consentcam.http.app import create_app

    public = consentcam_settings.model_copy(update={"public_url": "https://cams.example.gov"})
    monkeypatch.setattr(consentcam_platform, "settings", public)  # the running platform's settings are the ones read
    client = await aiohttp_client(create_app(public, platform=consentcam_platform, run_jobs=False))
    owner = await consentcam_world.owner(login=False)
    response = await client.post("/api/v1/auth/session", json={"email": owner.email, "password": PASSWORD})
    assert cookies_of(response)["consentcam_session"][0]["secure"] is True


def test_trusted_proxies_must_be_addresses() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        Settings(_env_file=None, trusted_proxies="127.0.0.1, nginx.local")  # type: ignore[call-arg]
    assert Settings(_env_file=None, trusted_proxies="127.0.0.1, 10.0.0.0/8").proxy_hops == [  # type: ignore[call-arg]
        ["127.0.0.1", "10.0.0.0/8"]]


async def test_a_wrong_password_sets_no_cookie(api: Any, consentcam_world: Any) -> None:
    owner = await consentcam_world.owner(login=False)
    response = await sign_in(api, owner.email, "not the password")
    body = await problem(response, 401)
    assert "wrong" in body["detail"]
    assert "Set-Cookie" not in response.headers
    await problem(await api.get("/api/v1/auth/session"), 401)


async def test_every_write_with_the_cookie_needs_the_csrf_header(api: Any, consentcam_world: Any) -> None:
    owner = await consentcam_world.owner(login=False)
    csrf = (await ok(await sign_in(api, owner.email)))["csrf_token"]

    refused = await problem(await api.post("/api/v1/cameras", json=CAMERA), 403)
    assert "X-CSRF-Token" in refused["detail"]
    await problem(await api.post("/api/v1/cameras", json=CAMERA, headers={"X-CSRF-Token": "forged"}), 403)
    assert await ok(await api.get("/api/v1/cameras")) == []  # nothing was created by the refused writes

    camera = await ok(await api.post("/api/v1/cameras", json=CAMERA, headers={"X-CSRF-Token": csrf}), 201)
    await problem(await api.put(f"/api/v1/cameras/{camera['id']}/grants", json={"map": True}), 403)
    await problem(await api.delete(f"/api/v1/cameras/{camera['id']}/grants"), 403)
    granted = await ok(await api.put(f"/api/v1/cameras/{camera['id']}/grants", json={"map": True}, headers={"X-CSRF-Token": csrf}))
    assert granted["map"] is True

    # A bearer token is not a browser session: no CSRF header needed (nothing sends it by itself).
    bearer = await consentcam_world.owner()
    api.session.cookie_jar.clear()
    await ok(await api.post("/api/v1/cameras", json=CAMERA, headers=bearer.headers), 201)


async def test_sign_out_ends_the_session_and_clears_the_cookies(api: Any, consentcam_world: Any) -> None:
    owner = await consentcam_world.owner(login=False)
    response = await sign_in(api, owner.email)
    csrf = (await ok(response))["csrf_token"]
    secret = cookies_of(response)["consentcam_session"][0].value

    await problem(await api.delete("/api/v1/auth/session"), 403)  # a cross-site page cannot sign you out either
    await ok(await api.get("/api/v1/me"))

    out = await api.delete("/api/v1/auth/session", headers={"X-CSRF-Token": csrf})
    assert out.status == 204
    cleared = cookies_of(out)
    for name in ("consentcam_session", "consentcam_csrf"):
        assert cleared[name][0].value == "" and cleared[name][0]["max-age"] == "0", name
    api.session.cookie_jar.clear()
    replayed = await api.get("/api/v1/me", headers={"Cookie": f"consentcam_session={secret}"})
    await problem(replayed, 401)  # the old cookie is dead on the server, not only forgotten by the browser

    again = await api.delete("/api/v1/auth/session")  # signing out twice, or with no session, is fine
    assert again.status == 204


async def test_session_operations_are_in_the_openapi_document(api: Any) -> None:
    doc = await ok(await api.get("/api/v1/openapi.json"))
    session = doc["paths"]["/api/v1/auth/session"]
    assert set(session) == {"get", "post", "delete"}
    assert session["post"]["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/SessionOut"}
    assert "csrf_token" in doc["components"]["schemas"]["SessionOut"]["properties"]
    assert "token" not in doc["components"]["schemas"]["SessionOut"]["properties"]
    assert "get" in doc["paths"]["/api/v1/jurisdictions"]


# --- pages ------------------------------------------------------------------------------------------------


def csp_directives(header: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in (p.strip() for p in header.split(";")) if part}


@pytest.mark.parametrize("path", PAGE_PATHS)
async def test_every_page_has_a_strict_csp_and_no_inline_code(api: Any, path: str) -> None:
    response = await api.get(path)
    assert response.status == 200, path
    assert response.content_type == "text/html"
    text = await response.text()
    csp = csp_directives(response.headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"] and csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"]
    assert csp["img-src"] == ["'self'", "data:", "https://tile.openstreetmap.org"]  # the default tile server only
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY" and response.headers["Cache-Control"] == "no-store"

    # No inline script or style anywhere (the CSP would block it, so it would be a silent bug).
    for tag in re.findall(r"<script\b[^>]*>", text):
        assert re.search(r'\bsrc="/static/[^"]+"', tag), tag
    assert not re.search(r"<script\b[^>]*>\s*[^<\s]", text), "inline script"
    assert "<style" not in text and not re.search(r"\sstyle=", text)
    assert not re.search(r"\son[a-z]+=", text), "inline event handler"
    assert not re.search(r'(src|href)="(https?:)?//', text), "nothing from another origin"
    assert '<html lang="en">' in text and "Skip to the content" in text

    for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', text):
        asset = await api.get(src)
        assert asset.status == 200, src


async def test_page_config_carries_the_tile_settings(api: Any) -> None:
    text = await (await api.get("/console")).text()
    meta = re.search(r'<meta name="consentcam-config" content="([^"]+)">', text)
    assert meta
    config = json.loads(html.unescape(meta.group(1)))
    assert config["tile_url"] == "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    assert "OpenStreetMap" in config["tile_attribution"] and config["geocoder"] is False


async def test_no_tiles_means_no_other_origin_at_all(consentcam_settings: Settings, consentcam_platform: Any,
                                                      aiohttp_client: Any) -> None:
    from consentcam.http.app import create_app

    settings = consentcam_settings.model_copy(update={"tile_url": ""})
    client = await aiohttp_client(create_app(settings, platform=consentcam_platform, run_jobs=False))
    response = await client.get("/owner")
    assert csp_directives(response.headers["Content-Security-Policy"])["img-src"] == ["'self'", "data:"]
    assert '&quot;tile_url&quot;:&quot;&quot;' in await response.text()


def test_tile_setting_is_checked_and_becomes_a_csp_source() -> None:
    assert tile_source("https://{s}.tile.example.org/{z}/{x}/{y}.png") == "https://*.tile.example.org"
    assert tile_source("http://tiles.city.local:8081/{z}/{x}/{y}.png") == "http://tiles.city.local:8081"
    assert tile_source("") is None
    for bad in ("javascript:alert(1)", "https://evil.example/x'; script-src *", "ftp://tiles.example/{z}/{x}/{y}"):
        with pytest.raises(ValueError):
            Settings(_env_file=None, tile_url=bad)  # type: ignore[call-arg]
    csp = content_security_policy(Settings(_env_file=None, tile_url="https://{s}.tile.example.org/{z}/{x}/{y}.png"))  # type: ignore[call-arg]
    assert "img-src 'self' data: https://*.tile.example.org;" in csp


async def test_errors_on_pages_are_pages_and_on_the_api_are_problems(web_client: Any) -> None:
    api = web_client
    missing = await api.get("/no/such/page")
    assert missing.status == 404 and missing.content_type == "text/html"
    text = await missing.text()
    assert "Page not found" in text and '"status"' not in text and "Traceback" not in text
    assert "Content-Security-Policy" in missing.headers
    await problem(await api.get("/api/v1/no/such/operation"), 404)  # the API keeps its problem documents
    await problem(await api.get("/api/v1/cameras"), 401)
    wrong_method = await api.post("/owner")
    assert wrong_method.status == 405 and wrong_method.content_type == "text/html"


async def test_pages_read_no_credentials(api: Any, consentcam_world: Any, consentcam_platform: Any) -> None:
    """A page is a static shell: even a suspended agency's user gets it (and then reads the reason from the API)."""
    from consentcam.audit import Actor
    from consentcam.services import accounts

    agency = await consentcam_world.agency()
    _, password = await accounts.create_agency_user(consentcam_platform, Actor.system("test"), agency,
                                                    "inv@agency.example.org", "investigator")
    await ok(await sign_in(api, "inv@agency.example.org", password))
    await accounts.set_suspended(consentcam_platform, Actor.system("test"), agency, True, "audit")
    page = await api.get("/console")
    assert page.status == 200 and page.content_type == "text/html"
    suspended = await problem(await api.get("/api/v1/auth/session"), 403)
    assert "suspended" in suspended["detail"]


async def test_jurisdictions_are_public_outlines(api: Any, consentcam_world: Any) -> None:
    agency = await consentcam_world.agency("Harbour PD")
    body = await ok(await api.get("/api/v1/jurisdictions"))
    assert body["type"] == "FeatureCollection"
    feature = next(f for f in body["features"] if f["id"] == agency)
    assert feature["geometry"]["type"] == "Polygon"
    assert feature["properties"] == {"id": agency, "name": "Harbour PD", "suspended": False}


async def test_vendored_libraries_are_served_with_their_licences(web_client: Any) -> None:
    api = web_client
    for path, kind in [("/static/vendor/leaflet/leaflet.js", "javascript"), ("/static/vendor/leaflet-geoman/leaflet-geoman.min.js", "javascript"),
                       ("/static/vendor/leaflet/leaflet.css", "css"), ("/static/js/owner.js", "javascript")]:
        response = await api.get(path)
        assert response.status == 200 and kind in response.content_type, path
    for licence in ("/static/vendor/leaflet/LICENSE", "/static/vendor/leaflet-geoman/LICENSE",
                    "/static/vendor/leaflet-geoman/THIRD-PARTY-LICENSES.txt"):
        assert "Permission" in await (await api.get(licence)).text() or "Redistribution" in await (await api.get(licence)).text()
    assert (await api.get("/static/%2e%2e/settings.py")).status in (403, 404)
    assert (await api.get("/static/")).status in (403, 404)  # no directory listing


@pytest.mark.slow
def test_the_wheel_ships_the_web_interface(tmp_path: Path) -> None:
    """``pip install ./core`` gives a working UI: templates, scripts, styles and vendored libraries are in the wheel."""
    import shutil

    core = Path(__file__).resolve().parents[1] / "core"
    source = tmp_path / "core"
    shutil.copytree(core, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True, timeout=600)
    wheel = next((tmp_path / "dist").glob("consentcam-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    web = core / "src" / "consentcam" / "web"
    expected = {f"consentcam/web/{p.relative_to(web).as_posix()}" for p in web.rglob("*")
                if p.is_file() and p.parts[len(web.parts)] in ("static", "templates")}
    assert expected and expected <= names, sorted(expected - names)
    assert "consentcam/web/static/vendor/leaflet-geoman/leaflet-geoman.min.js" in names
