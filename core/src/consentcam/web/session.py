"""The browser's session: the same login as the API, held in an HttpOnly cookie, with a CSRF token the pages send
back in ``X-CSRF-Token`` on every write (the principal middleware checks it). Also the public jurisdiction
outlines, which the maps draw when there are no street tiles."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import Field
from sqlalchemy import select

from ..db.models import Agency, AuthToken
from ..errors import Unauthorized
from ..http.api import ANY_USER, PUBLIC, Api, Call, _dumps
from ..http.keys import PLATFORM, SESSION_COOKIE
from ..schemas import FeatureCollection, Login, Output, UserSummary
from ..security import digest
from ..services import accounts

CSRF_COOKIE = "consentcam_csrf"  # readable by the page's scripts (same origin only); the session cookie is not


class SessionOut(Output):
    user: UserSummary
    expires_at: datetime
    csrf_token: str | None = Field(description="send it as X-CSRF-Token on every POST, PUT, PATCH and DELETE")


def _secure(request: web.Request) -> bool:
    # Secure when this hop is HTTPS, or when the deployment is public over HTTPS and TLS ends at a proxy in front.
    return request.secure or request.app[PLATFORM].settings.https


def _set_cookies(request: web.Request, response: web.StreamResponse, secret: str, csrf: str, max_age: int) -> None:
    common = {"path": "/", "samesite": "Strict", "secure": _secure(request), "max_age": max_age}
    response.set_cookie(SESSION_COOKIE, secret, httponly=True, **common)
    response.set_cookie(CSRF_COOKIE, csrf, httponly=False, **common)


def _clear_cookies(request: web.Request, response: web.StreamResponse) -> None:
    for name, httponly in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.set_cookie(name, "", path="/", samesite="Strict", secure=_secure(request), httponly=httponly, max_age=0,
                            expires="Thu, 01 Jan 1970 00:00:00 GMT")


def session_routes(api: Api) -> None:
    @api.route("POST", "/api/v1/auth/session", summary="Sign the browser in: an HttpOnly session cookie and a CSRF token",
               roles=PUBLIC, body=Login, response=SessionOut, errors=(401, 403), tags=("accounts",))
    async def create_session(call: Call) -> web.Response:
        p = call.platform
        secret, token, user = await accounts.login(p, call.body.email, call.body.password, call.request.remote or "unknown",
                                                   kind="cookie")
        assert token.csrf_token
        out = SessionOut(user=UserSummary(id=user.id, role=user.role, agency_id=user.agency_id, name=user.name),
                         expires_at=token.expires_at, csrf_token=token.csrf_token)
        response = web.json_response(out.model_dump(mode="json"), dumps=_dumps)
        max_age = max(1, int((token.expires_at - p.now()).total_seconds()))
        _set_cookies(call.request, response, secret, token.csrf_token, max_age)
        return response

    @api.route("GET", "/api/v1/auth/session", summary="Who this browser is signed in as, with its CSRF token",
               roles=ANY_USER, response=SessionOut, tags=("accounts",))
    async def get_session(call: Call) -> SessionOut:
        u = call.user
        secret = call.request.cookies.get(SESSION_COOKIE) if u.token_kind == "cookie" else None
        expires_at = await _expiry(call, secret)
        return SessionOut(user=UserSummary(id=u.user_id, role=u.role, agency_id=u.agency_id, name=u.name),  # type: ignore[arg-type]
                          expires_at=expires_at, csrf_token=u.csrf_token)

    @api.route("DELETE", "/api/v1/auth/session", summary="Sign the browser out: the session ends and its cookies are cleared",
               roles=PUBLIC, status=204, errors=(403,), tags=("accounts",))
    async def delete_session(call: Call) -> web.Response:
        secret = call.request.cookies.get(SESSION_COOKIE)
        # A live session reached here only with the right X-CSRF-Token (the principal middleware checked it).
        if secret and call.principal is not None and call.principal.token_kind == "cookie":
            await accounts.logout(call.platform, secret)
        response = web.Response(status=204)
        _clear_cookies(call.request, response)
        return response


async def _expiry(call: Call, secret: str | None) -> datetime:
    header = call.request.headers.get("Authorization", "")
    secret = secret or (header[7:].strip() if header.lower().startswith("bearer ") else None)
    if secret:
        async with call.platform.db.sessions() as session:
            token = (await session.execute(select(AuthToken).where(AuthToken.token_hash == digest(secret)))).scalar_one_or_none()
        if token is not None:
            return token.expires_at
    raise Unauthorized("this session is not known; sign in again")


def jurisdiction_routes(api: Api) -> None:
    @api.route("GET", "/api/v1/jurisdictions", summary="Every agency's jurisdiction outline (public, GeoJSON)",
               roles=PUBLIC, response=FeatureCollection, tags=("agencies",))
    async def jurisdictions(call: Call) -> dict:
        async with call.platform.db.sessions() as session:
            agencies = (await session.execute(select(Agency).order_by(Agency.name))).scalars().all()
        return {"type": "FeatureCollection", "features": [
            {"type": "Feature", "id": a.id, "geometry": a.jurisdiction,
             "properties": {"id": a.id, "name": a.name, "suspended": a.suspended}}
            for a in agencies
        ]}


REGISTRARS = [session_routes, jurisdiction_routes]
