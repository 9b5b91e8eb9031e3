"""Direct fetch: with `direct_fetch` granted, an approved item is pulled into the vault by the camera's plugin
with no owner action; revoked before the job runs, nothing is fetched and the reason is recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from consentcam.db.models import AuditEvent, Evidence, Job
from consentcam.platform import open_platform
from consentcam.workflows import make_worker
from sqlalchemy import select

from .plugins.fake_recorder import FakeRecorder

CENTRE = (41.88, -87.63)
RTSP = {"kind": "rtsp", "url": "rtsp://rec:secret-pw@127.0.0.1:1/Streaming/tracks/101"}


@pytest.fixture
async def fetch_platform(consentcam_settings, consentcam_clock):
    recorder = FakeRecorder()
    platform = await open_platform(consentcam_settings, clock=consentcam_clock, extra_plugins=[recorder])
    platform.recorder = recorder  # type: ignore[attr-defined]
    yield platform
    await platform.db.dispose()


async def _open_request(p, clock, grant):
    from consentcam.schemas import RequestCreate
    from consentcam.services.accounts import authenticate
    from consentcam.services.requests import create_request
    from consentcam.testing.world import World

    world = World(p)
    agency = await world.agency(require_approval=False)
    investigator = await world.staff(agency, "investigator")
    owner = await world.owner()
    camera = await world.camera(owner, *CENTRE, grant=grant, connection=RTSP)
    end = clock.now() - timedelta(hours=1)
    spec = RequestCreate(case_number="DF-1", description="d", area={"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 50},
                         window={"start": end - timedelta(minutes=10), "end": end})
    request = await create_request(p, await authenticate(p, investigator.token), spec)
    return world, owner, camera, request


async def test_granted_direct_fetch_lands_in_the_vault_naming_the_plugin(fetch_platform, consentcam_clock):
    p = fetch_platform
    world, owner, camera, request = await _open_request(p, consentcam_clock, {"requests": True, "direct_fetch": True})
    await make_worker(p).drain()
    assert [c for c, _ in p.recorder.calls] == [camera]
    assert p.recorder.calls[0][1].start == request.window_start
    async with p.db.sessions() as session:
        evidence = (await session.execute(select(Evidence))).scalars().all()
        job = (await session.execute(select(Job).where(Job.kind == "fetch.direct"))).scalar_one()
        events = (await session.execute(select(AuditEvent).where(AuditEvent.action == "fetch.completed"))).scalars().all()
    assert len(evidence) == 1 and evidence[0].source == "plugin:fake-recorder" and evidence[0].camera_id == camera
    assert evidence[0].provenance["plugin"] == "fake-recorder" and evidence[0].provenance["secret_seen"] is True
    assert "secret-pw" not in str(evidence[0].provenance)
    assert job.status == "done" and job.result["fetched"] is True and job.result["missing"], job.result
    assert events and events[0].camera_ids == [camera] and events[0].detail["evidence_ids"] == [evidence[0].id]


async def test_revoked_before_the_job_runs_fetches_nothing_and_says_why(fetch_platform, consentcam_clock):
    p = fetch_platform
    world, owner, camera, request = await _open_request(p, consentcam_clock, {"requests": True, "direct_fetch": True})
    await world.grant(owner, camera, requests=True, direct_fetch=False)
    await make_worker(p).drain()
    assert p.recorder.calls == []
    async with p.db.sessions() as session:
        assert (await session.execute(select(Evidence))).scalars().all() == []
        job = (await session.execute(select(Job).where(Job.kind == "fetch.direct"))).scalar_one()
        refused = (await session.execute(select(AuditEvent).where(AuditEvent.action == "fetch.refused"))).scalar_one()
    assert job.status == "done" and job.result == {"fetched": False, "reason": refused.detail["reason"]}
    assert "direct fetch" in refused.detail["reason"] and refused.camera_ids == [camera]


async def test_no_direct_fetch_grant_queues_no_fetch(fetch_platform, consentcam_clock):
    p = fetch_platform
    await _open_request(p, consentcam_clock, {"requests": True, "direct_fetch": False})
    async with p.db.sessions() as session:
        assert (await session.execute(select(Job).where(Job.kind == "fetch.direct"))).scalars().all() == []
