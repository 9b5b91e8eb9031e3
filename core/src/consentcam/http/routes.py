"""Handlers of the public API, thin: validate (done by the operation), call a service, shape the answer."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from .. import __version__
from ..audit import verify_chain
from ..errors import Forbidden, NotFound
from ..schemas import (
    AccessLog,
    AccessLogQuery,
    AgencyCreate,
    AgencyOut,
    AgencyUserCreate,
    AgencyUserCreated,
    CameraCreate,
    CameraOut,
    CameraUpdate,
    ChainReport,
    Created,
    FeatureCollection,
    GrantIn,
    GrantOut,
    Health,
    Login,
    LoginResult,
    MapQuery,
    NotificationPrefs,
    NotificationPrefsIn,
    OwnerCreated,
    OwnerRegistration,
    PluginList,
    ProbeOut,
    UserSummary,
)
from ..services import accounts, consent
from ..services.map import map_read, parse_bbox
from .api import ANY_USER, PUBLIC, Api, Call

OWNER = {"owner"}
AGENCY_USERS = {"investigator", "supervisor", "auditor", "admin"}


def accounts_routes(api: Api) -> None:
    @api.route("GET", "/api/v1/health", summary="Liveness and what backs this server", roles=PUBLIC, response=Health,
               tags=("operations",))
    async def health(call: Call) -> Health:
        p = call.platform
        return Health(status="ok", database=p.db.dialect, spatial_index=p.db.spatial, version=__version__)

    @api.route("POST", "/api/v1/auth/owners", summary="Register as a camera owner", roles=PUBLIC,
               body=OwnerRegistration, response=OwnerCreated, status=201, errors=(409,), tags=("accounts",))
    async def register_owner(call: Call) -> OwnerCreated:
        p, key = call.platform, f"register:{call.request.remote or 'unknown'}"
        await accounts.check_rate(p, key, "sign-ups")
        await accounts.note_rate(p, key, p.settings.registrations_per_address)
        owner_id, webhook_secret = await accounts.register_owner_with_secret(p, call.body)
        return OwnerCreated(id=owner_id, webhook_secret=webhook_secret)

    @api.route("GET", "/api/v1/me/notifications", summary="How you are told of requests (never the webhook secret)",
               roles=OWNER, response=NotificationPrefs, tags=("accounts",))
    async def get_notifications(call: Call) -> NotificationPrefs:
        return NotificationPrefs.model_validate(await accounts.notification_prefs(call.platform, call.user))

    @api.route("PUT", "/api/v1/me/notifications", summary="Choose email, SMS and a webhook; a new webhook secret is "
               "shown once", roles=OWNER, body=NotificationPrefsIn, response=NotificationPrefs, tags=("accounts",))
    async def put_notifications(call: Call) -> NotificationPrefs:
        b = call.body
        return NotificationPrefs.model_validate(await accounts.set_notification_prefs(
            call.platform, call.user, b.email, b.sms, b.webhook_url, b.rotate_webhook_secret))

    @api.route("POST", "/api/v1/auth/login", summary="Sign in; returns a bearer token", roles=PUBLIC, body=Login,
               response=LoginResult, errors=(401,), tags=("accounts",))
    async def login(call: Call) -> LoginResult:
        secret, token, user = await accounts.login(call.platform, call.body.email, call.body.password,
                                                   call.request.remote or "unknown")
        return LoginResult(token=secret, expires_at=token.expires_at,
                           user=UserSummary(id=user.id, role=user.role, agency_id=user.agency_id, name=user.name))

    @api.route("POST", "/api/v1/auth/logout", summary="Revoke the token used for this call", status=204,
               tags=("accounts",))
    async def logout(call: Call) -> web.Response:
        header = call.request.headers.get("Authorization", "")
        secret = header[7:].strip() if header.lower().startswith("bearer ") else call.request.cookies.get("consentcam_session")
        if secret:
            await accounts.logout(call.platform, secret)
        return web.Response(status=204)

    @api.route("GET", "/api/v1/me", summary="Who am I", response=UserSummary, tags=("accounts",))
    async def me(call: Call) -> UserSummary:
        u = call.user
        return UserSummary(id=u.user_id, role=u.role, agency_id=u.agency_id, name=u.name)  # type: ignore[arg-type]

    @api.route("POST", "/api/v1/agencies", summary="Create an agency (platform admin)", roles={"admin"},
               body=AgencyCreate, response=Created, status=201, errors=(409,), tags=("agencies",))
    async def create_agency(call: Call) -> Created:
        if not call.user.is_platform_admin:
            raise Forbidden("only the city's platform administrator creates agencies")
        return Created(id=await accounts.create_agency(call.platform, call.user.actor, call.body))

    @api.route("GET", "/api/v1/agencies/{agency_id}", summary="An agency (its own users, or the platform admin)",
               response=AgencyOut, errors=(404,), tags=("agencies",))
    async def get_agency(call: Call) -> AgencyOut:
        agency_id = call.param("agency_id")
        if not (call.user.is_platform_admin or call.user.agency_id == agency_id):
            raise NotFound("no such agency")
        return AgencyOut.model_validate(await accounts.get_agency(call.platform, agency_id))

    @api.route("POST", "/api/v1/agencies/{agency_id}/users", summary="Create an agency user (admin)",
               roles={"admin"}, body=AgencyUserCreate, response=AgencyUserCreated, status=201, errors=(404, 409),
               tags=("agencies",))
    async def create_agency_user(call: Call) -> AgencyUserCreated:
        agency_id = call.param("agency_id")
        if not (call.user.is_platform_admin or call.user.agency_id == agency_id):
            raise Forbidden("an agency admin creates users of their own agency only")
        user_id, password = await accounts.create_agency_user(
            call.platform, call.user.actor, agency_id, call.body.email, call.body.role, call.body.name
        )
        return AgencyUserCreated(id=user_id, password=password)

    @api.route("POST", "/api/v1/agencies/{agency_id}/suspend", summary="Kill switch: suspend an agency's access",
               roles={"admin"}, response=Created, errors=(404,), tags=("agencies",))
    async def suspend_agency(call: Call) -> Created:
        if not call.user.is_platform_admin:
            raise Forbidden("only the city's platform administrator suspends agencies")
        await accounts.set_suspended(call.platform, call.user.actor, call.param("agency_id"), True)
        return Created(id=call.param("agency_id"))

    @api.route("POST", "/api/v1/agencies/{agency_id}/resume", summary="Resume a suspended agency",
               roles={"admin"}, response=Created, errors=(404,), tags=("agencies",))
    async def resume_agency(call: Call) -> Created:
        if not call.user.is_platform_admin:
            raise Forbidden("only the city's platform administrator resumes agencies")
        await accounts.set_suspended(call.platform, call.user.actor, call.param("agency_id"), False)
        return Created(id=call.param("agency_id"))


def camera_routes(api: Api) -> None:
    @api.route("POST", "/api/v1/cameras", summary="Register a camera", roles=OWNER, body=CameraCreate,
               response=CameraOut, status=201, tags=("cameras",))
    async def create_camera(call: Call) -> CameraOut:
        return await consent.create_camera(call.platform, call.user.actor, call.body)

    @api.route("GET", "/api/v1/cameras", summary="Your cameras", roles=OWNER, response=None, tags=("cameras",))
    async def list_cameras(call: Call) -> list[dict]:
        return [c.model_dump(mode="json") for c in await consent.list_cameras(call.platform, call.user.user_id)]

    @api.route("GET", "/api/v1/cameras/{camera_id}", summary="One of your cameras", roles=OWNER, response=CameraOut,
               errors=(404,), tags=("cameras",))
    async def get_camera(call: Call) -> CameraOut:
        return await consent.get_camera(call.platform, call.user.user_id, call.param("camera_id"))

    @api.route("PATCH", "/api/v1/cameras/{camera_id}", summary="Change a camera's details", roles=OWNER,
               body=CameraUpdate, response=CameraOut, errors=(404,), tags=("cameras",))
    async def update_camera(call: Call) -> CameraOut:
        return await consent.update_camera(call.platform, call.user.actor, call.param("camera_id"), call.body)

    @api.route("DELETE", "/api/v1/cameras/{camera_id}", summary="Remove a camera (revokes everything first)",
               roles=OWNER, status=204, errors=(404,), tags=("cameras",))
    async def remove_camera(call: Call) -> web.Response:
        await consent.remove_camera(call.platform, call.user.actor, call.param("camera_id"))
        return web.Response(status=204)

    @api.route("PUT", "/api/v1/cameras/{camera_id}/grants", summary="Set what agencies may do (a new version)",
               roles=OWNER, body=GrantIn, response=GrantOut, errors=(404,), tags=("consent",))
    async def set_grant(call: Call) -> GrantOut:
        return await consent.set_grant(call.platform, call.user.actor, call.param("camera_id"), call.body)

    @api.route("GET", "/api/v1/cameras/{camera_id}/grants", summary="The grant in force", roles=OWNER,
               response=GrantOut, errors=(404,), tags=("consent",))
    async def get_grant(call: Call) -> GrantOut:
        return (await consent.get_camera(call.platform, call.user.user_id, call.param("camera_id"))).grant

    @api.route("DELETE", "/api/v1/cameras/{camera_id}/grants", summary="Revoke everything at once", roles=OWNER,
               response=GrantOut, errors=(404,), tags=("consent",))
    async def revoke_grants(call: Call) -> GrantOut:
        return await consent.revoke_all(call.platform, call.user.actor, call.param("camera_id"))

    @api.route("GET", "/api/v1/cameras/{camera_id}/grants/history", summary="Every version of the grant",
               roles=OWNER, errors=(404,), tags=("consent",))
    async def grant_history(call: Call) -> list[dict]:
        versions = await consent.grant_history(call.platform, call.user.user_id, call.param("camera_id"))
        return [
            {"version": v.version, "map": v.map, "requests": v.requests, "direct_fetch": v.direct_fetch, "live": v.live,
             "share_with": v.share_with, "expires_at": v.expires_at, "revoked": v.revoked, "created_at": v.created_at}
            for v in versions
        ]

    @api.route("POST", "/api/v1/cameras/{camera_id}/probe",
               summary="Read the device behind the camera's connection through its plugin; keep its capabilities",
               roles=OWNER, response=ProbeOut, errors=(403, 404, 422, 502), tags=("consent",))
    async def probe_camera(call: Call) -> ProbeOut:
        from ..services.probe import probe_camera as probe

        return ProbeOut.model_validate(await probe(call.platform, call.user, call.param("camera_id")))

    @api.route("GET", "/api/v1/cameras/{camera_id}/access-log", summary="Every audit event about this camera",
               roles=OWNER, query=AccessLogQuery, response=AccessLog, errors=(404,), tags=("consent",))
    async def access_log(call: Call) -> AccessLog:
        camera_id = call.param("camera_id")
        events = await consent.access_log(call.platform, call.user.user_id, camera_id, before=call.query.before)
        return AccessLog.model_validate({"camera_id": camera_id, "events": events})


def map_routes(api: Api) -> None:
    @api.route("GET", "/api/v1/map/cameras", summary="Cameras granted to your agency's map (GeoJSON)",
               roles=AGENCY_USERS, query=MapQuery, response=FeatureCollection, tags=("map",), scope="map:read")
    async def map_cameras(call: Call) -> dict:
        return await map_read(call.platform, call.user, parse_bbox(call.query.bbox))


def oversight_routes(api: Api) -> None:
    @api.route("GET", "/api/v1/audit/verify", summary="Check the audit hash chain end to end",
               roles={"auditor", "admin"}, response=ChainReport, tags=("oversight",), scope="audit:read")
    async def audit_verify(call: Call) -> ChainReport:
        check = await verify_chain(call.platform.db)
        return ChainReport(ok=check.ok, events=check.events, head=check.head, broken_at=check.broken_at, reason=check.reason)

    @api.route("GET", "/api/v1/plugins", summary="Loaded plugins with versions and declared capabilities",
               roles={"admin"}, response=PluginList, tags=("operations",))
    async def list_plugins(call: Call) -> PluginList:
        host = call.platform.plugins
        return PluginList.model_validate({
            "plugins": [{"name": p.info.name, "version": p.info.version, "capabilities": list(p.info.capabilities),
                         "source": p.source, "description": p.info.description} for p in host.loaded],
            "refused": [{"name": n, "reason": r} for n, r in host.refused],
        })


REGISTRARS: list[Callable[[Api], None]] = [accounts_routes, camera_routes, map_routes, oversight_routes]
_ = ANY_USER
