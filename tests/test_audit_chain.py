"""The audit chain over real HTTP: one event per access or change, the owner's view of it, and verification that
notices tampering."""

from __future__ import annotations

import asyncio
import json

import pytest
from consentcam.db.models import AuditEvent, AuditEventCamera
from sqlalchemy import delete, select, update

from .conftest import count, ok, problem

pytestmark = pytest.mark.usefixtures("fast_passwords")

INSIDE = (41.8812345, -87.6298765)


async def events(platform) -> list[AuditEvent]:
    async with platform.db.sessions() as session:
        return list((await session.execute(select(AuditEvent).order_by(AuditEvent.seq))).scalars())


async def test_a_grant_change_is_exactly_one_event(api, consentcam_world, consentcam_platform):
    owner = await consentcam_world.owner()
    camera = await consentcam_world.camera(owner, *INSIDE)
    for method, body, action in (("PUT", {"map": True}, "grant.changed"), ("PUT", {"requests": True}, "grant.changed"),
                                 ("DELETE", None, "grant.revoked")):
        before = await events(consentcam_platform)
        await ok(await api.request(method, f"/api/v1/cameras/{camera}/grants", headers=owner.headers, json=body))
        new = (await events(consentcam_platform))[len(before):]
        assert [(e.action, e.camera_ids, e.actor_id) for e in new] == [(action, [camera], owner.id)]
    # Reads by the owner are not events.
    before = await count(consentcam_platform, AuditEvent)
    await ok(await api.get(f"/api/v1/cameras/{camera}/grants/history", headers=owner.headers))
    await ok(await api.get(f"/api/v1/cameras/{camera}", headers=owner.headers))
    assert await count(consentcam_platform, AuditEvent) == before


async def test_a_map_read_is_one_event_naming_every_camera_it_revealed(api, consentcam_world, consentcam_platform):
    w = consentcam_world
    agency = await w.agency()
    owner, neighbour = await w.owner(), await w.owner()
    exact = await w.camera(owner, *INSIDE, precision="exact", grant={"map": True})
    block = await w.camera(neighbour, INSIDE[0] + 0.001, INSIDE[1], precision="block", grant={"map": True})
    third = await w.camera(neighbour, INSIDE[0] - 0.001, INSIDE[1], precision="block", grant={"map": True})
    hidden = await w.camera(neighbour, *INSIDE, grant={"map": False})
    investigator = await w.staff(agency, "investigator")

    before = await count(consentcam_platform, AuditEvent)
    body = await ok(await api.get("/api/v1/map/cameras", headers=investigator.headers))
    assert len(body["features"]) == 3
    new = (await events(consentcam_platform))[before:]
    assert len(new) == 1
    (event,) = new
    assert event.action == "map.read" and event.actor_id == investigator.id and event.actor_agency_id == agency
    assert sorted(event.camera_ids) == sorted([exact, block, third]) and hidden not in event.camera_ids
    async with consentcam_platform.db.sessions() as session:
        indexed = (await session.execute(select(AuditEventCamera.camera_id).where(AuditEventCamera.seq == event.seq))).scalars()
        assert sorted(indexed) == sorted([exact, block, third])

    # A read that reveals nothing reveals no location: no event.
    empty = await ok(await api.get("/api/v1/map/cameras", headers=investigator.headers, params={"bbox": "0,0,1,1"}))
    assert empty["features"] == [] and await count(consentcam_platform, AuditEvent) == before + 1

    # Each owner sees the read, whether their precise location was revealed, and nothing of other cameras.
    def map_reads(log):
        return [e for e in log["events"] if e["action"] == "map.read"]

    mine = await ok(await api.get(f"/api/v1/cameras/{exact}/access-log", headers=owner.headers))
    theirs = await ok(await api.get(f"/api/v1/cameras/{block}/access-log", headers=neighbour.headers))
    (read_exact,), (read_block,) = map_reads(mine), map_reads(theirs)
    assert read_exact["detail"]["precise_location_revealed"] is True
    assert read_block["detail"]["precise_location_revealed"] is False
    assert read_exact["agency"] == "Agency 1" and read_exact["actor"].startswith("Investigator ")
    text = json.dumps(mine)
    assert block not in text and third not in text and investigator.id not in text
    assert map_reads(await ok(await api.get(f"/api/v1/cameras/{hidden}/access-log", headers=neighbour.headers))) == []


async def test_auditor_verifies_the_chain(api, consentcam_world, consentcam_platform):
    agency = await consentcam_world.agency()
    auditor = await consentcam_world.staff(agency, "auditor")
    owner = await consentcam_world.owner()
    camera = await consentcam_world.camera(owner, *INSIDE, grant={"map": True})
    await ok(await api.get("/api/v1/map/cameras", headers=auditor.headers))
    report = await ok(await api.get("/api/v1/audit/verify", headers=auditor.headers))
    chain = await events(consentcam_platform)
    assert report == {"ok": True, "events": len(chain), "head": chain[-1].hash, "broken_at": None, "reason": None}
    assert len(chain) >= 5 and camera in chain[-1].camera_ids

    for who in (await consentcam_world.staff(agency, "investigator"), await consentcam_world.staff(agency, "supervisor"),
                owner):
        await problem(await api.get("/api/v1/audit/verify", headers=who.headers), 403)


@pytest.mark.parametrize("tamper", ["detail", "delete"])
async def test_tampering_is_found(api, consentcam_world, consentcam_platform, tamper):
    agency = await consentcam_world.agency()
    auditor = await consentcam_world.staff(agency, "auditor")
    owner = await consentcam_world.owner()
    camera = await consentcam_world.camera(owner, *INSIDE)
    await ok(await api.put(f"/api/v1/cameras/{camera}/grants", headers=owner.headers, json={"map": True}))
    await ok(await api.delete(f"/api/v1/cameras/{camera}/grants", headers=owner.headers))
    chain = await events(consentcam_platform)
    victim = next(e for e in chain if e.action == "grant.changed")
    assert victim.seq < chain[-1].seq
    async with consentcam_platform.db.transaction() as session:
        if tamper == "detail":  # someone quietly rewrites what was granted
            forged = {**victim.detail, "after": {**victim.detail["after"], "map": False}}
            await session.execute(update(AuditEvent).where(AuditEvent.seq == victim.seq).values(detail=forged))
        else:  # someone removes the event altogether
            await session.execute(delete(AuditEventCamera).where(AuditEventCamera.seq == victim.seq))
            await session.execute(delete(AuditEvent).where(AuditEvent.seq == victim.seq))
    report = await ok(await api.get("/api/v1/audit/verify", headers=auditor.headers))
    assert report["ok"] is False and report["reason"]
    assert report["broken_at"] == (victim.seq if tamper == "detail" else victim.seq + 1)
    assert report["events"] == victim.seq - 1


async def test_concurrent_writers_keep_one_gapless_chain(api, consentcam_world, consentcam_platform):
    owners = [await consentcam_world.owner() for _ in range(3)]
    cameras = [(o, await consentcam_world.camera(o, *INSIDE)) for o in owners for _ in range(2)]
    before = await count(consentcam_platform, AuditEvent)
    responses = await asyncio.gather(*[
        api.put(f"/api/v1/cameras/{camera}/grants", headers=owner.headers, json={"map": bool(i % 2), "requests": True})
        for i in range(3) for owner, camera in cameras
    ])
    assert [r.status for r in responses] == [200] * len(responses)
    chain = await events(consentcam_platform)
    assert len(chain) == before + len(responses)
    assert [e.seq for e in chain] == list(range(1, len(chain) + 1))
    auditor = await consentcam_world.staff(await consentcam_world.agency(), "auditor")
    report = await ok(await api.get("/api/v1/audit/verify", headers=auditor.headers))
    assert report["ok"] is True and report["events"] == len(chain) + 2  # + agency.created, user.created
