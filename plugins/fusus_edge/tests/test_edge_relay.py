"""The live-feed tier end to end with real parts: the core on a real port, the real ``consentcam-edge`` agent as a
subprocess over a real WebSocket (through a TCP proxy the test can cut), gst-rtsp-server's live camera, FFmpeg
stream copy into 1-second HLS segments, fetched over HTTP and decoded with PyAV.

Done when: ``always`` opens and frames flow; ``emergency_only`` refuses outside an emergency and opens inside;
``never`` is refused by the core and, when the core is bypassed with a forged start, by the agent; revocation
stops segments within 2 seconds (measured and printed); socket loss closes everything at the statement's expiry
and the agent reconnects; a pairing code works once.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from consentcam.db.models import Job, LiveSession
from edge_testkit import CENTRE, STATEMENT_S, decode_frames, rig, run_cli, until
from sqlalchemy import select

pytestmark = pytest.mark.peer("rtsp")


@pytest.fixture
def database_url(request, tmp_path):
    return request.getfixturevalue("_consentcam_sqlite").new(tmp_path / "db")


@pytest.fixture
async def edge(database_url, tmp_path, consentcam_rtsp_server):
    async with rig(database_url, tmp_path, consentcam_rtsp_server.live_url) as r:
        yield r


async def jobs_of(p, kind: str) -> list[Job]:
    async with p.db.sessions() as session:
        return list((await session.execute(select(Job).where(Job.kind == kind))).scalars())


async def test_always_opens_and_frames_flow_to_the_sessions_user_only(edge):
    status, body = await edge.open("always")
    assert status == 201, body
    session_id = body["id"]
    assert body["playlist_url"].endswith(f"/api/v1/live-sessions/{session_id}/playlist.m3u8")
    found = await edge.wait_segments(session_id, 2)
    status, data = await edge.call("GET", f"/api/v1/live-sessions/{session_id}/segments/{found[-1]}.ts", edge.investigator)
    assert status == 200
    frames = decode_frames(data)
    assert frames, "the segment decodes to no frame"
    assert (frames[0].width, frames[0].height) == (320, 240)

    # Only the investigator who opened it: a colleague gets nothing, the owner's token is the wrong role.
    status, _ = await edge.call("GET", f"/api/v1/live-sessions/{session_id}/playlist.m3u8", edge.other_investigator)
    assert status == 404
    status, _ = await edge.call("GET", f"/api/v1/live-sessions/{session_id}/playlist.m3u8", edge.owner)
    assert status == 403

    # The owner sees the device, its cameras and the session: who, when, why, until when.
    status, body = await edge.call("GET", "/api/v1/edge/devices", edge.owner)
    assert status == 200
    (device,) = body["devices"]
    assert device["connected"] and device["label"] == "Shop relay"
    assert {c["camera_ref"] for c in device["cameras"]} == {"always", "emergency_only", "never"}
    (seen,) = device["live_sessions"]
    assert seen["id"] == session_id and seen["reason"] == "shots fired reported" and seen["active"]
    assert seen["who"].startswith("Investigator ") and seen["relay_started_at"]

    status, body = await edge.call("DELETE", f"/api/v1/live-sessions/{session_id}", edge.investigator)
    assert status == 200 and not body["active"]
    status, body = await edge.call("GET", f"/api/v1/live-sessions/{session_id}/playlist.m3u8", edge.investigator)
    assert status == 410, body
    await until(lambda: edge.agent_said("stopped", session_id), 5, "the agent did not stop")
    # An "always" camera's owner is not messaged for every view; the access log has it.
    assert await jobs_of(edge.p, "notify.live") == []


async def test_emergency_only_refuses_outside_an_emergency_and_opens_inside(edge):
    status, body = await edge.open("emergency_only")
    assert status == 403 and body["rule"] == "live_emergency_only", body

    # An emergency elsewhere in the jurisdiction does not cover the camera.
    status, body = await edge.call("POST", "/api/v1/emergencies", edge.supervisor, json={
        "area": {"center": {"lat": CENTRE[0] + 0.012, "lon": CENTRE[1] + 0.012}, "radius_m": 200},
        "minutes": 30, "reason": "fire at the depot"})
    assert status == 201, body
    status, body = await edge.open("emergency_only")
    assert status == 403 and body["rule"] == "live_emergency_only", body

    # An investigator cannot declare one; a supervisor cannot declare one beyond the limit.
    status, body = await edge.call("POST", "/api/v1/emergencies", edge.investigator, json={
        "area": {"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 300}, "reason": "x"})
    assert status == 403
    status, body = await edge.call("POST", "/api/v1/emergencies", edge.supervisor, json={
        "area": {"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 300}, "minutes": 600, "reason": "x"})
    assert status == 422 and body["errors"][0]["loc"] == ["body", "minutes"]

    status, body = await edge.call("POST", "/api/v1/emergencies", edge.supervisor, json={
        "area": {"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 300}, "reason": "active shooter"})
    assert status == 201, body
    emergency_id = body["id"]
    status, body = await edge.open("emergency_only")
    assert status == 201, body
    session_id = body["id"]
    data_ids = await edge.wait_segments(session_id, 1)
    assert data_ids
    opened = [j.payload for j in await jobs_of(edge.p, "notify.live")]
    assert opened == [{"session_id": session_id, "kind": "live_opened"}]

    status, _ = await edge.call("DELETE", f"/api/v1/emergencies/{emergency_id}", edge.supervisor)
    assert status == 200
    ended_at = time.monotonic()
    await until(lambda: edge.agent_said("stopped", session_id), 10, "the agent did not stop at the emergency's end")
    print(f"\nemergency end -> agent stopped: {time.monotonic() - ended_at:.2f} s")
    status, _ = await edge.call("GET", f"/api/v1/live-sessions/{session_id}/playlist.m3u8", edge.investigator)
    assert status == 410
    async with edge.p.db.sessions() as session:
        live = await session.get(LiveSession, session_id)
    assert live.end_reason == "the emergency ended" and live.relay_stopped_at is not None
    kinds = sorted(j.payload["kind"] for j in await jobs_of(edge.p, "notify.live"))
    assert kinds == ["live_closed", "live_opened"]
    # And after it ended, the camera refuses again.
    status, body = await edge.open("emergency_only")
    assert status == 403 and body["rule"] == "live_emergency_only"


async def test_never_is_refused_by_the_core_and_by_the_agent_when_the_core_is_bypassed(edge):
    from consentcam.live.hub import Relay

    status, body = await edge.open("never")
    assert status == 403 and body["rule"] == "live_never", body
    assert "never" in body["detail"]

    # A compromised or buggy core: a start sent straight down the socket, for a camera the owner set to never,
    # and for an emergency-only camera with an emergency the signed policy does not name.
    forged = {"never": "forged-never-session", "emergency_only": "forged-emergency-session"}
    for ref, session_id in forged.items():
        edge.hub.relays[session_id] = Relay(session_id, edge.device_id)  # the hub would accept its segments
        sent = await edge.hub.send(edge.device_id, {"t": "start", "session": {
            "id": session_id, "camera_ref": ref, "ends_at": time.time() + 600, "emergency_id": "made-up"}})
        assert sent
    for session_id in forged.values():
        await until(lambda sid=session_id: edge.agent_said("refused", sid), 5, "the agent did not refuse the forged start")
    refused = edge.agent_said("refused", forged["never"])
    assert "never" in refused["reason"]
    await asyncio.sleep(2.5)  # a relay would have produced segments by now
    for session_id in forged.values():
        assert edge.agent_said("started", session_id) is None
        relay = edge.hub.relays.get(session_id)
        assert relay is None or relay.received == 0
    assert "refused to start session forged-never-session" in edge.log()

    # A forged policy statement (not signed by the core's key) is ignored, so it cannot open "never" either.
    import json as _json

    statement = _json.dumps({"v": 1, "device_id": edge.device_id, "camera_ref": "never", "camera_id": None,
                             "live": "always", "emergencies": [], "issued_at": time.time() + 5,
                             "expires_at": time.time() + 600}, sort_keys=True, separators=(",", ":"))
    import base64

    await edge.hub.send(edge.device_id, {"t": "policy", "statement": statement,
                                         "signature": base64.b64encode(b"\x00" * 64).decode()})
    edge.hub.relays["forged-again"] = Relay("forged-again", edge.device_id)
    await edge.hub.send(edge.device_id, {"t": "start", "session": {"id": "forged-again", "camera_ref": "never",
                                                                    "ends_at": time.time() + 600}})
    await until(lambda: edge.agent_said("refused", "forged-again"), 5, "the agent did not refuse after a forged statement")
    assert "ignored a live policy statement" in edge.log()


async def test_revocation_mid_session_stops_segments_within_two_seconds(edge):
    status, body = await edge.open("always")
    assert status == 201, body
    session_id = body["id"]
    await edge.wait_segments(session_id, 2)

    started = time.monotonic()
    status, _ = await edge.call("DELETE", f"/api/v1/cameras/{edge.cameras['always']}/grants", edge.owner)
    assert status == 200
    revoked = time.monotonic()
    # At once for the viewer: the rule is asked again on every fetch.
    status, _ = await edge.call("GET", f"/api/v1/live-sessions/{session_id}/playlist.m3u8", edge.investigator)
    assert status == 410
    await until(lambda: edge.agent_said("stopped", session_id), 10, "the agent did not stop after the revocation")
    acknowledged = time.monotonic()
    took = acknowledged - started
    print(f"\nrevocation -> relay stopped on the agent: {took:.2f} s (API call {revoked - started:.2f} s)")
    assert session_id not in edge.hub.relays
    # Nothing after the acknowledgement: no segment is accepted or served for the session.
    await asyncio.sleep(1.5)
    assert session_id not in edge.hub.relays
    status, _ = await edge.call("GET", f"/api/v1/live-sessions/{session_id}/playlist.m3u8", edge.investigator)
    assert status == 410
    async with edge.p.db.sessions() as session:
        live = await session.get(LiveSession, session_id)
    assert "revoked" in live.end_reason
    assert (live.relay_stopped_at - live.ended_at).total_seconds() < 5  # generous; the figure is printed above
    status, body = await edge.open("always")
    assert status == 403 and body["rule"] == "live_never"  # revoking everything writes live: never


async def test_socket_loss_closes_everything_at_the_statements_expiry_and_the_agent_reconnects(edge):
    status, body = await edge.open("always")
    assert status == 201, body
    session_id = body["id"]
    await edge.wait_segments(session_id, 1)
    connections_before = edge.log().count("connected to ")

    await edge.proxy.cut()
    cut = time.monotonic()
    # With the socket down the agent hears nothing, so its signed policy expires and it stops by itself.
    await until(lambda: f"stopped session {session_id}: the signed live policy expired" in edge.log(),
                STATEMENT_S + 5, lambda: f"the agent kept relaying without a valid policy:\n{edge.log()}")
    print(f"\nsocket cut -> agent stopped by the statement's expiry: {time.monotonic() - cut:.2f} s "
          f"(statements last {STATEMENT_S:g} s)")

    # The core ends the session too once the device has been gone longer than a statement lasts.
    async def ended() -> bool:
        async with edge.p.db.sessions() as session:
            live = await session.get(LiveSession, session_id)
        return live.ended_at is not None

    await until(ended, STATEMENT_S + 5, "the core kept the session open with its relay gone")

    await edge.proxy.resume()
    await edge.wait_connected()
    assert edge.log().count("connected to ") > connections_before
    status, body = await edge.open("always")
    assert status == 201, body
    frames = []
    found = await edge.wait_segments(body["id"], 1)
    status, data = await edge.call("GET", f"/api/v1/live-sessions/{body['id']}/segments/{found[-1]}.ts", edge.investigator)
    frames = decode_frames(data)
    assert frames


async def test_pairing_code_works_once(edge):
    rc, _, err = await run_cli("pair", "--core", edge.url, "--code", edge.code, "--state", str(edge.state.parent / "again"))
    assert rc == 1 and "already used" in err
    status, body = await edge.call("POST", "/api/v1/edge/pair", json={"code": edge.code})
    assert status == 410 and "already used" in body["detail"]
    status, body = await edge.call("POST", "/api/v1/edge/pair", json={"code": "NOPE1-NOPE2-NOPE3-NOPE4"})
    assert status == 401
    # A device key that was never issued cannot connect.
    import aiohttp

    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with edge.http.ws_connect(edge.url + "/api/v1/edge/connect", headers={"Authorization": "Bearer cce_made_up"}):
            pass
    assert refused.value.status == 401

    # Unpairing: the key stops working at once and the agent is disconnected.
    status, _ = await edge.call("DELETE", f"/api/v1/edge/devices/{edge.device_id}", edge.owner)
    assert status == 204
    await until(lambda: edge.device_id not in edge.hub.connected, 5, "the unpaired agent stayed connected")
    await asyncio.sleep(2.5)  # its reconnections are refused
    assert edge.device_id not in edge.hub.connected
    assert "refused this device's key" in edge.log()


async def test_direct_fetch_through_the_edge_reaches_the_vault(database_url, tmp_path, consentcam_rtsp_server,
                                                              consentcam_rtsp_recording):
    """An approved request item on an ``edge`` camera with ``direct_fetch``: the core's job asks the agent, which
    pulls the window from the recorder on its own network (the RTSP plugin beside it) and sends the clip up its
    socket; the vault stores it through the owner-upload path, by hash, with custody naming the plugin."""
    import json as _json
    from datetime import timedelta

    import av
    from consentcam.db.models import AuditEvent, Evidence, Job
    from consentcam.vault.core import vault_for
    from consentcam.workflows import make_worker
    from consentcam_fusus_edge.plugin import FususEdgePlugin

    recording = consentcam_rtsp_recording
    recorder = {"url": consentcam_rtsp_server.url("main", "/Streaming/Channels/101"),
                "playback": {"family": "hikvision", "timezone": "UTC"}}
    async with rig(database_url, tmp_path, consentcam_rtsp_server.live_url, ("always",), plugins=(FususEdgePlugin(),),
                   agent_args=("--recorder", f"always={_json.dumps(recorder)}")) as r:
        camera_id = r.cameras["always"]
        status, _ = await r.call("PATCH", f"/api/v1/cameras/{camera_id}", r.owner, json={"retention_days": 3650})
        assert status == 200
        status, _ = await r.call("PUT", f"/api/v1/cameras/{camera_id}/grants", r.owner,
                                 json={"map": True, "requests": True, "direct_fetch": True, "live": "always"})
        assert status == 200
        start, end = recording.start + timedelta(seconds=70), recording.start + timedelta(seconds=74)
        status, body = await r.call("POST", "/api/v1/requests", r.investigator, json={
            "case_number": "EDGE-1", "description": "direct fetch through the edge relay",
            "area": {"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 50},
            "window": {"start": start.isoformat(), "end": end.isoformat()}})
        assert status == 201 and body["matched"] == 1, body
        request_id = body["id"]
        status, _ = await r.call("POST", f"/api/v1/requests/{request_id}/approve", r.supervisor)
        assert status == 200
        await make_worker(r.p, kinds=("fetch.direct",)).drain()
        async with r.p.db.sessions() as session:
            job = (await session.execute(select(Job).where(Job.kind == "fetch.direct"))).scalar_one()
            evidence = (await session.execute(select(Evidence))).scalars().all()
            received = (await session.execute(select(AuditEvent).where(AuditEvent.action == "custody.received"))).scalars().all()
        assert job.status == "done" and job.result["fetched"] is True, (job.result, job.last_error, r.log()[-2000:])
        (clip,) = evidence
        assert clip.source == "plugin:fusus_edge" and clip.camera_id == camera_id and clip.request_id == request_id
        assert clip.provenance["relay"] == "fusus_edge" and clip.provenance["relay_sha256"] == clip.sha256
        assert received[0].detail["actor_name"] == "fusus_edge"
        local = await vault_for(r.p).storage.fetch(clip.storage_key, tmp_path / "fetched.mp4")
        with av.open(str(local)) as container:
            first = next(container.decode(video=0))
        shown = recording.time_shown(first.to_ndarray(format="gray"))
        assert shown is not None and abs((shown - start).total_seconds()) <= 1.0, (shown, start)
        assert "fetch" in r.log() and "clip" in r.log()


async def test_a_sessions_hard_end_and_an_emergencys_own_end_close_the_view(database_url, tmp_path, consentcam_rtsp_server):
    """Short on purpose: sessions of 9 seconds, an emergency of 6; nobody ends either, time does. A renewal with
    a reason moves the hard end, and the agent (told over the socket) relays past the first one."""
    from datetime import datetime

    async def ended(session_id: str) -> LiveSession | None:
        async with r.p.db.sessions() as session:
            live = await session.get(LiveSession, session_id)
        return live if live.ended_at is not None else None

    async with rig(database_url, tmp_path, consentcam_rtsp_server.live_url, ("always", "emergency_only"),
                   live_session_minutes=0.15) as r:
        status, body = await r.open("always")
        assert status == 201, body
        always_id, first_end = body["id"], datetime.fromisoformat(body["ends_at"])
        status, body = await r.call("POST", "/api/v1/emergencies", r.supervisor, json={
            "area": {"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 300}, "minutes": 0.1,
            "reason": "gas leak, street evacuated"})
        assert status == 201, body
        emergency_ends = datetime.fromisoformat(body["ends_at"])
        status, body = await r.open("emergency_only")
        assert status == 201, body
        emergency_session = body["id"]
        await r.wait_segments(always_id, 1)
        status, renewed = await r.call("POST", f"/api/v1/live-sessions/{always_id}/renew", r.investigator,
                                       json={"reason": "suspect still on the street"})
        assert status == 200 and renewed["renewals"] == 1
        renewed_end = datetime.fromisoformat(renewed["ends_at"])
        assert renewed_end > first_end

        await until(lambda: r.agent_said("stopped", emergency_session), 20, "the emergency's end did not stop the relay")
        late = (datetime.now().astimezone() - emergency_ends).total_seconds()
        print(f"\nemergency's own end -> agent stopped: {late:+.2f} s")
        await until(lambda: ended(emergency_session), 5, "the core did not close the session at the emergency's end")
        assert (await ended(emergency_session)).end_reason == "the emergency ended"
        assert -0.5 < late < 5  # generous bound; the figure is printed

        await asyncio.sleep(max(0.0, (first_end - datetime.now().astimezone()).total_seconds()) + 0.7)
        assert r.agent_said("stopped", always_id) is None, "the agent stopped at the first hard end despite the renewal"
        status, _ = await r.call("GET", f"/api/v1/live-sessions/{always_id}/playlist.m3u8", r.investigator)
        assert status == 200

        await until(lambda: r.agent_said("stopped", always_id), 15, "the hard end did not stop the relay")
        late = (datetime.now().astimezone() - renewed_end).total_seconds()
        print(f"renewed hard end -> agent stopped: {late:+.2f} s")
        await until(lambda: ended(always_id), 5, "the core did not close the session at its hard end")
        assert (await ended(always_id)).end_reason == "the session reached its hard end"
        assert -0.5 < late < 5
        status, _ = await r.call("GET", f"/api/v1/live-sessions/{always_id}/playlist.m3u8", r.investigator)
        assert status == 410
