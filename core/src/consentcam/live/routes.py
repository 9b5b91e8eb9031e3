"""Live-feed routes: emergencies (supervisor), live sessions and their HLS playlist (investigator), edge devices
(owner) and the edge agents' pairing and socket."""

from __future__ import annotations

from aiohttp import web

from ..errors import Gone, InvalidInput, NotFound
from ..http.api import PUBLIC, Api, Call
from . import service
from .hub import HUB
from .schemas import (
    EdgeDeviceList,
    EdgeDeviceUpdate,
    EmergencyCreate,
    EmergencyCreated,
    EmergencyList,
    EmergencyOut,
    LiveSessionCreate,
    LiveSessionCreated,
    LiveSessionOut,
    LiveSessionRenew,
    Paired,
    PairIn,
    PairingCode,
)

INVESTIGATORS = {"investigator", "supervisor"}
OWNER = {"owner"}
HLS = "application/vnd.apple.mpegurl"


def live_routes(api: Api) -> None:
    # --- emergencies ---------------------------------------------------------------------------------

    @api.route("POST", "/api/v1/emergencies", summary="Declare an emergency for an area and a time limit",
               roles={"supervisor"}, body=EmergencyCreate, response=EmergencyCreated, status=201, tags=("live",))
    async def declare_emergency(call: Call) -> EmergencyCreated:
        emergency = await service.declare_emergency(call.platform, call.user, call.body)
        call.request.app[HUB].wake()
        return EmergencyCreated(id=emergency.id, ends_at=emergency.ends_at)

    @api.route("GET", "/api/v1/emergencies", summary="Your agency's active emergencies (?all=1: recent ones too)",
               roles={"investigator", "supervisor", "auditor", "admin"}, response=EmergencyList, tags=("live",))
    async def list_emergencies(call: Call) -> EmergencyList:
        p = call.platform
        found = await service.list_emergencies(p, call.user, all_=call.request.query.get("all") in ("1", "true"))
        return EmergencyList.model_validate({"emergencies": [service.emergency_out(e, p.now()) for e in found]})

    @api.route("DELETE", "/api/v1/emergencies/{emergency_id}", summary="End an emergency now; its live views close",
               roles={"supervisor"}, response=EmergencyOut, errors=(404,), tags=("live",))
    async def end_emergency(call: Call) -> EmergencyOut:
        p = call.platform
        emergency = await service.end_emergency(p, call.user, call.param("emergency_id"))
        hub = call.request.app[HUB]
        hub.wake()
        return EmergencyOut.model_validate(service.emergency_out(emergency, p.now()))

    # --- live sessions --------------------------------------------------------------------------------

    @api.route("POST", "/api/v1/live-sessions", summary="Open a live view, if the owner's live policy allows it now",
               roles=INVESTIGATORS, body=LiveSessionCreate, response=LiveSessionCreated, status=201,
               errors=(404, 409), tags=("live",))
    async def open_live_session(call: Call) -> LiveSessionCreated:
        p, hub = call.platform, call.request.app[HUB]
        live = await service.open_session(p, call.user, call.body.camera_id, call.body.reason, connected=hub.is_connected)

        async with p.db.sessions() as session:
            camera = await service.camera_by_id(session, live.camera_id)
        await hub.start_relay(live, service.device_of(camera)[1] or "")  # type: ignore[arg-type]
        return LiveSessionCreated(id=live.id, playlist_url=service.playlist_url(p.settings.public_url, live.id),
                                  ends_at=live.ends_at)

    @api.route("GET", "/api/v1/live-sessions/{session_id}", summary="A live session you opened",
               roles=INVESTIGATORS, response=LiveSessionOut, errors=(404,), tags=("live",))
    async def get_live_session(call: Call) -> LiveSessionOut:
        p = call.platform
        live = await service.get_session(p, call.user, call.param("session_id"))
        return LiveSessionOut.model_validate(service.session_out(live, p.now(), public_url=p.settings.public_url))

    @api.route("DELETE", "/api/v1/live-sessions/{session_id}", summary="End a live view now",
               roles=INVESTIGATORS, response=LiveSessionOut, errors=(404,), tags=("live",))
    async def end_live_session(call: Call) -> LiveSessionOut:
        p, hub = call.platform, call.request.app[HUB]
        live = await service.end_session(p, call.user, call.param("session_id"))
        await hub.stop_relay(live.id, live.end_reason or "ended")
        return LiveSessionOut.model_validate(service.session_out(live, p.now()))

    @api.route("POST", "/api/v1/live-sessions/{session_id}/renew", summary="A new hard end from now, with a reason",
               roles=INVESTIGATORS, body=LiveSessionRenew, response=LiveSessionOut, errors=(404, 409, 410),
               tags=("live",))
    async def renew_live_session(call: Call) -> LiveSessionOut:
        p, hub = call.platform, call.request.app[HUB]
        live = await service.renew_session(p, call.user, call.param("session_id"), call.body.reason)

        async with p.db.sessions() as session:
            camera = await service.camera_by_id(session, live.camera_id)
        await hub.send(live.device_id, {"t": "renew", "session": live.id, "ends_at": live.ends_at.timestamp(),
                                        "camera_ref": service.device_of(camera)[1]})  # type: ignore[arg-type]
        return LiveSessionOut.model_validate(service.session_out(live, p.now(), public_url=p.settings.public_url))

    async def _viewable(call: Call) -> str:
        """The session id, if the caller opened it and it is allowed at this instant (the rule is asked again)."""
        p = call.platform
        session_id = call.param("session_id")
        async with p.db.sessions() as session:
            live = await session.get(service.LiveSession, session_id)
            if live is None or live.user_id != call.user.user_id:
                raise NotFound("no such live session")
            refusal = await service.why_not_now(session, live, p.now())
        if refusal is not None:
            raise Gone(f"this live session has ended: {live.end_reason or refusal.detail}")
        return session_id

    @api.route("GET", "/api/v1/live-sessions/{session_id}/playlist.m3u8", summary="The live HLS playlist (hls.js)",
               roles=INVESTIGATORS, raw_response=HLS, errors=(404, 410), tags=("live",))
    async def live_playlist(call: Call) -> web.Response:
        session_id = await _viewable(call)
        hub = call.request.app[HUB]
        await hub.first_segment(session_id, 10.0)
        session_id = await _viewable(call)  # asked again: the wait may have outlived the session
        text = await hub.playlist(session_id)
        if text is None:
            raise Gone("this live session is not being relayed")
        return web.Response(text=text, content_type=HLS)

    @api.route("GET", "/api/v1/live-sessions/{session_id}/segments/{segment}", summary="One HLS segment (MPEG-TS)",
               roles=INVESTIGATORS, raw_response="video/mp2t", errors=(404, 410), tags=("live",))
    async def live_segment(call: Call) -> web.Response:
        session_id = await _viewable(call)
        name = call.param("segment")
        if not name.endswith(".ts") or not name[:-3].isdigit():
            raise NotFound("no such segment")
        data = await call.request.app[HUB].segment(session_id, int(name[:-3]))
        if data is None:
            raise NotFound("no such segment (segments are kept for a few seconds only)")
        return web.Response(body=data, content_type="video/mp2t")

    # --- edge devices ---------------------------------------------------------------------------------

    @api.route("POST", "/api/v1/edge/pairing-codes", summary="A one-time code that pairs an edge relay (expires)",
               roles=OWNER, response=PairingCode, status=201, tags=("edge",))
    async def create_pairing_code(call: Call) -> PairingCode:
        code, expires_at = await service.create_pairing_code(call.platform, call.user)
        return PairingCode(code=code, expires_at=expires_at)

    @api.route("POST", "/api/v1/edge/pair", summary="Exchange a pairing code for a device key (the agent calls it)",
               roles=PUBLIC, body=PairIn, response=Paired, status=201, errors=(401, 410), tags=("edge",))
    async def pair_edge_device(call: Call) -> Paired:
        p = call.platform
        device, key = await service.pair(p, call.body.code, call.body.label)
        return Paired(device_id=device.id, device_key=key, core_public_key=service.public_key_b64(p))

    @api.route("GET", "/api/v1/edge/devices", summary="Your edge relays, their cameras and every live session",
               roles=OWNER, response=EdgeDeviceList, tags=("edge",))
    async def list_edge_devices(call: Call) -> EdgeDeviceList:
        hub = call.request.app[HUB]
        devices = await service.list_devices(call.platform, call.user, lambda device_id: hub.is_connected(device_id, strict=False))
        return EdgeDeviceList.model_validate({"devices": devices})

    @api.route("PATCH", "/api/v1/edge/devices/{device_id}", summary="Pause all live access through a relay, or rename it",
               roles=OWNER, body=EdgeDeviceUpdate, status=204, errors=(404,), tags=("edge",))
    async def update_edge_device(call: Call) -> web.Response:
        if call.body.live_paused is None and call.body.label is None:
            raise InvalidInput.at(("body",), "give live_paused or label")
        await service.update_device(call.platform, call.user, call.param("device_id"), call.body.live_paused, call.body.label)
        call.request.app[HUB].wake()
        return web.Response(status=204)

    @api.route("DELETE", "/api/v1/edge/devices/{device_id}", summary="Unpair a relay: its key stops working at once",
               roles=OWNER, status=204, errors=(404,), tags=("edge",))
    async def unpair_edge_device(call: Call) -> web.Response:
        device_id = call.param("device_id")
        await service.unpair(call.platform, call.user, device_id)
        hub = call.request.app[HUB]
        await hub.disconnect(device_id)
        hub.wake()
        return web.Response(status=204)

    @api.route("GET", "/api/v1/edge/connect", summary="The edge agent's WebSocket (device key as bearer token)",
               roles=PUBLIC, status=101, errors=(401,), tags=("edge",))
    async def edge_connect(call: Call) -> web.WebSocketResponse:
        return await call.request.app[HUB].handle(call.request)
