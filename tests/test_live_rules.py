"""The live-feed rules over real HTTP on both backends, without an agent: which rule refuses a live view, that
emergencies end by themselves, the owner's pause, hard ends and renewals, single-use pairing codes, the audit.

The relay itself (agent, WebSocket, HLS, PyAV) is proven in ``plugins/fusus_edge/tests``.
"""

from __future__ import annotations

import asyncio

import pytest
from consentcam.audit import verify_chain
from consentcam.db.models import AuditEvent, Job, LiveSession
from consentcam.live import service
from consentcam.schemas import Connection
from consentcam.services.accounts import authenticate
from sqlalchemy import select

CENTRE = (41.88, -87.63)
pytestmark = pytest.mark.usefixtures("fast_passwords")  # each test registers several accounts
HERE = {"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 300}


async def setup(client, world):
    agency = await world.agency()
    supervisor = await world.staff(agency, "supervisor")
    investigator = await world.staff(agency, "investigator")
    owner = await world.owner()
    r = await client.post("/api/v1/edge/pairing-codes", headers=owner.headers)
    assert r.status == 201
    code = (await r.json())["code"]
    r = await client.post("/api/v1/edge/pair", json={"code": code, "label": "Porch box"})
    assert r.status == 201, await r.text()
    device_id = (await r.json())["device_id"]
    cameras = {}
    for mode in ("always", "emergency_only", "never"):
        cameras[mode] = await world.camera(owner, *CENTRE, connection=Connection(kind="edge", device_id=device_id,  # type: ignore[call-arg]
                                                                                  camera_ref=mode),
                                           grant={"map": True, "live": mode})
    cameras["manual"] = await world.camera(owner, *CENTRE, grant={"map": True, "live": "always"})
    return agency, supervisor, investigator, owner, device_id, cameras, code


async def open_(client, who, camera_id):
    r = await client.post("/api/v1/live-sessions", headers=who.headers, json={"camera_id": camera_id, "reason": "robbery"})
    return r.status, await r.json()


async def test_each_rule_refuses_by_name_and_emergencies_end_by_themselves(consentcam_client, consentcam_world,
                                                                          consentcam_clock, consentcam_platform):
    client, world = consentcam_client, consentcam_world
    agency, supervisor, investigator, owner, device_id, cameras, _ = await setup(client, world)

    status, body = await open_(client, investigator, cameras["never"])
    assert (status, body["rule"]) == (403, "live_never")
    assert body["type"].endswith("/consent-refused")
    status, body = await open_(client, investigator, cameras["emergency_only"])
    assert (status, body["rule"]) == (403, "live_emergency_only")
    status, body = await open_(client, investigator, cameras["manual"])
    assert (status, body["rule"]) == (409, "no_edge_device")
    status, body = await open_(client, investigator, cameras["always"])
    assert (status, body["rule"]) == (409, "edge_offline")  # allowed by the owner, but the relay is not connected
    other = await world.staff(await world.agency(lon=-87.0, lat=41.5), "investigator")
    status, _ = await open_(client, other, cameras["always"])
    assert status == 404  # outside that agency's reach: as if the camera did not exist

    r = await client.post("/api/v1/emergencies", headers=supervisor.headers, json={"area": HERE, "reason": "active shooter"})
    assert r.status == 201, await r.text()
    emergency = await r.json()
    status, body = await open_(client, investigator, cameras["emergency_only"])
    assert (status, body["rule"]) == (409, "edge_offline")  # the rule passed: only the relay is missing
    r = await client.get("/api/v1/emergencies", headers=investigator.headers)
    assert [e["id"] for e in (await r.json())["emergencies"]] == [emergency["id"]]

    consentcam_clock.advance(61 * 60)  # default 60 minutes: it ends by itself
    r = await client.get("/api/v1/emergencies", headers=supervisor.headers)
    assert (await r.json())["emergencies"] == []
    status, body = await open_(client, investigator, cameras["emergency_only"])
    assert (status, body["rule"]) == (403, "live_emergency_only")

    # The owner's switch pauses all live access through the relay.
    r = await client.patch(f"/api/v1/edge/devices/{device_id}", headers=owner.headers, json={"live_paused": True})
    assert r.status == 204
    status, body = await open_(client, investigator, cameras["always"])
    assert (status, body["rule"]) == (403, "owner_paused")

    async with consentcam_platform.db.sessions() as session:
        refused = (await session.execute(select(AuditEvent).where(AuditEvent.action == "live.refused")
                                         .order_by(AuditEvent.seq))).scalars().all()
    assert [e.detail["rule"] for e in refused] == ["live_never", "live_emergency_only", "no_edge_device",
                                                   "live_emergency_only", "owner_paused"]
    assert (await verify_chain(consentcam_platform.db)).ok


async def test_hard_end_renewal_notifications_and_owner_view(consentcam_client, consentcam_world, consentcam_clock,
                                                             consentcam_platform, consentcam_smtp):
    client, world, p = consentcam_client, consentcam_world, consentcam_platform
    p.settings.smtp_host, p.settings.smtp_port = consentcam_smtp.host, consentcam_smtp.port
    agency, supervisor, investigator, owner, device_id, cameras, _ = await setup(client, world)
    r = await client.post("/api/v1/emergencies", headers=supervisor.headers,
                          json={"area": HERE, "reason": "hostage situation", "minutes": 45})
    assert r.status == 201
    who = await authenticate(p, investigator.token)
    live = await service.open_session(p, who, cameras["emergency_only"], "hostage situation", connected={device_id})
    assert (live.ends_at - live.started_at).total_seconds() == 15 * 60

    consentcam_clock.advance(14 * 60)
    r = await client.post(f"/api/v1/live-sessions/{live.id}/renew", headers=investigator.headers, json={"reason": "still ongoing"})
    assert r.status == 200, await r.text()
    renewed = await r.json()
    assert renewed["renewals"] == 1 and renewed["active"]
    r = await client.post(f"/api/v1/live-sessions/{live.id}/renew", headers=investigator.headers, json={})
    assert r.status == 422  # a renewal needs its reason

    consentcam_clock.advance(15 * 60 + 1)  # past the renewed hard end (and the emergency's end)
    ended = await service.sweep(p)
    assert [s.id for s in ended] == [live.id]
    async with p.db.sessions() as session:
        row = await session.get(LiveSession, live.id)
        jobs = (await session.execute(select(Job).where(Job.kind == "notify.live"))).scalars().all()
    assert row.end_reason in ("the session reached its hard end", "the emergency ended")
    assert sorted(j.payload["kind"] for j in jobs) == ["live_closed", "live_opened"]

    r = await client.get("/api/v1/edge/devices", headers=owner.headers)
    (device,) = (await r.json())["devices"]
    (seen,) = device["live_sessions"]
    assert seen["reason"] == "hostage situation" and seen["renewals"] == 1 and not seen["active"]
    assert seen["who"].startswith("Investigator") and seen["agency"]
    r = await client.get(f"/api/v1/cameras/{cameras['emergency_only']}/access-log", headers=owner.headers)
    actions = [e["action"] for e in (await r.json())["events"]]
    assert {"live.opened", "live.renewed", "live.closed"} <= set(actions)

    # The owner is told by email (the channel they chose) when the emergency feed opened and when it closed.
    from consentcam.workflows import make_worker

    worker = make_worker(p, name="test")
    await worker.drain()
    async with p.db.sessions() as session:
        jobs = (await session.execute(select(Job).where(Job.kind == "notify.live"))).scalars().all()
    assert {j.status for j in jobs} == {"done"}
    subjects = sorted(m["Subject"] for m in consentcam_smtp.to(owner.email))
    assert [s.split(":")[0] for s in subjects] == ["Live view closed", "Live view opened"]
    opened = next(m for m in consentcam_smtp.to(owner.email) if m["Subject"].startswith("Live view opened"))
    assert "hostage situation" in consentcam_smtp.body(opened)


async def test_a_pairing_code_pairs_once_even_when_raced(consentcam_client, consentcam_world, consentcam_clock):
    client, world = consentcam_client, consentcam_world
    owner = await world.owner()
    codes = []
    for _ in range(2):
        r = await client.post("/api/v1/edge/pairing-codes", headers=owner.headers)
        codes.append((await r.json())["code"])
    results = await asyncio.gather(*[client.post("/api/v1/edge/pair", json={"code": codes[0]}) for _ in range(4)])
    assert sorted(r.status for r in results) == [201, 410, 410, 410]
    consentcam_clock.advance(16 * 60)
    r = await client.post("/api/v1/edge/pair", json={"code": codes[1]})
    assert r.status == 410 and "expired" in (await r.json())["detail"]
    r = await client.get("/api/v1/openapi.json")
    paths = (await r.json())["paths"]
    for path in ("/api/v1/emergencies", "/api/v1/live-sessions", "/api/v1/live-sessions/{session_id}",
                 "/api/v1/edge/pairing-codes", "/api/v1/edge/devices", "/api/v1/edge/connect"):
        assert path in paths
