"""An owner probes their camera's connection through the plugin that knows its kind: device facts, media
profiles, stream URIs and what the device can do (recording, search, replay), kept on the camera.

The platform reaches only public addresses when it probes (as for webhooks): a camera on a home network is reached
by the owner's edge relay instead, and an owner cannot use the probe to make the server knock on the city's internal
hosts. The operator may allow networks (``probe_allowed_networks``), for example a business district's NVR segment.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .. import audit, outbound
from ..errors import ConsentCamError, Forbidden, InvalidInput, PluginError
from ..hooktypes import CameraConnection
from ..platform import Platform
from .accounts import Principal
from .consent import connection_secret, own_camera

NO_PROBE_KINDS = {"manual", "edge", "ring"}  # nothing the core itself connects to


def _host_of(fields: dict[str, Any]) -> str | None:
    if fields.get("host"):
        return str(fields["host"])
    url = fields.get("url")
    return urlsplit(str(url)).hostname if url else None


async def check_reachable_host(p: Platform, host: str) -> None:
    """Refuse a host that is, or resolves to, a non-public address outside the operator's allowed networks."""
    extra = outbound.networks(p.settings.probe_allowed_networks)
    try:
        await outbound.check_host(host, extra=extra)
    except outbound.RefusedDestination:
        raise Forbidden("the platform probes cameras at public addresses only; a camera on a private network is "
                        "probed by its edge relay (or the operator allows that network)") from None
    except OSError as exc:
        raise InvalidInput(f"the camera's host {host!r} does not resolve: {exc.strerror or exc}") from None


async def probe_camera(p: Platform, who: Principal, camera_id: str) -> dict[str, Any]:
    async with p.db.sessions() as session:
        camera = await own_camera(session, who.user_id, camera_id)
        kind, fields = camera.connection_kind, dict(camera.connection or {})
    if kind in NO_PROBE_KINDS:
        raise InvalidInput(f"a {kind!r} camera has nothing the platform can probe; give it an onvif or rtsp connection")
    host = _host_of(fields)
    if host:
        await check_reachable_host(p, host)
    connection = CameraConnection(kind=kind, fields=fields, secret=connection_secret(p, camera))
    try:
        result = await p.plugins.probe_camera(connection)
    except ConsentCamError:
        raise  # DeviceUnreachable (502), CredentialsRejected (422): the plugin said what went wrong
    except Exception as exc:  # a plugin's bug is a clean 502, without its message (it might carry the address)
        raise PluginError(f"the {kind} plugin failed while probing: {type(exc).__name__}") from exc
    if result is None:
        raise InvalidInput(f"no installed plugin probes {kind!r} cameras")
    capabilities = sorted({str(c) for c in result.capabilities})
    async with p.db.transaction() as session:
        camera = await own_camera(session, who.user_id, camera_id)
        camera.capabilities = capabilities
        camera.updated_at = p.now()
        await audit.record(p.db, session, p.now(), who.actor, "camera.probed", subject_type="camera",
                           subject_id=camera.id, camera_ids=[camera.id],
                           detail={"kind": kind, "capabilities": capabilities, "profiles": len(result.profiles)})
    return {"device": result.device, "profiles": result.profiles, "capabilities": capabilities}
