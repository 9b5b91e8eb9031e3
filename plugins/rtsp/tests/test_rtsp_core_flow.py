"""End to end through the core: a request approved by a supervisor, a camera whose owner granted ``direct_fetch``
on an RTSP recorder (the gst-rtsp-server peer, with credentials), the outbox's ``fetch.direct`` job, the vault.

Done when: the approved item yields a clip of the asked window whose first and last frames show the asked
times (within a second). And consent is read when the job runs: a grant revoked, narrowed, paused or lapsed
after the request opened means the plugin is never called.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from consentcam import hookimpl
from consentcam.db.models import AuditEvent, Evidence, Job
from consentcam.platform import open_platform
from consentcam.testing.rtsp_peer import PEER_PASSWORD, PEER_USERNAME
from consentcam_rtsp.plugin import RtspPlugin
from rtsp_testkit import FAST, read_clip
from sqlalchemy import select

pytestmark = pytest.mark.peer("rtsp")

CENTRE = (41.88, -87.63)  # inside the world's default agency square


class CountingRtspPlugin(RtspPlugin):
    """The real plugin, counting the fetches the core asks of it."""

    def __init__(self) -> None:
        super().__init__(options=FAST)
        self.fetches: list[str] = []

    @hookimpl
    async def consentcam_fetch_recording(self, camera, window, sink):
        self.fetches.append(camera.camera_id)
        return await super().consentcam_fetch_recording(camera, window, sink)


@pytest.fixture
async def platform_with_rtsp(consentcam_settings, consentcam_clock):
    plugin = CountingRtspPlugin()
    platform = await open_platform(consentcam_settings, clock=consentcam_clock, extra_plugins=[plugin])
    platform.rtsp = plugin  # type: ignore[attr-defined]
    yield platform
    await platform.db.dispose()


async def approved_request(p, server, recording, window_s: tuple[int, int], grant: dict, *, expires_in_s: float | None = None):
    """Owner, camera on the recorder (with its credentials), request drafted by an investigator, approved."""
    from consentcam.schemas import RequestCreate
    from consentcam.services.accounts import authenticate
    from consentcam.services.requests import approve, create_request
    from consentcam.testing.world import World

    world = World(p)
    agency = await world.agency(require_approval=True)
    investigator, supervisor = await world.staff(agency, "investigator"), await world.staff(agency, "supervisor")
    owner = await world.owner()
    if expires_in_s is not None:
        grant = {**grant, "expires_at": p.now() + timedelta(seconds=expires_in_s)}
    # Credentials as fields: the peer's password holds '/', '@' and '%' on purpose, which a URL's userinfo
    # would need percent-encoded.
    camera = await world.camera(owner, *CENTRE, grant=grant, connection={
        "kind": "rtsp", "url": server.url("auth", "/Streaming/Channels/101"), "username": PEER_USERNAME,
        "password": PEER_PASSWORD, "playback": {"family": "hikvision", "timezone": "UTC"}})
    start = recording.start + timedelta(seconds=window_s[0])
    end = recording.start + timedelta(seconds=window_s[1])
    spec = RequestCreate(case_number="RTSP-1", description="direct fetch from an RTSP recorder",
                         area={"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 50},
                         window={"start": start, "end": end})
    request = await create_request(p, await authenticate(p, investigator.token), spec)
    assert request.status == "pending_approval"
    await approve(p, await authenticate(p, supervisor.token), request.id)
    return world, owner, camera, request


async def test_an_approved_direct_fetch_item_yields_the_asked_window(platform_with_rtsp, consentcam_rtsp_server,
                                                                    consentcam_rtsp_recording, tmp_path):
    from consentcam.vault.core import vault_for
    from consentcam.workflows import make_worker

    p, recording = platform_with_rtsp, consentcam_rtsp_recording
    _, _, camera, request = await approved_request(p, consentcam_rtsp_server, recording, (70, 74),
                                                   {"requests": True, "direct_fetch": True})
    await make_worker(p, kinds=("fetch.direct",)).drain()  # the owner's notifications are not ours
    assert p.rtsp.fetches == [camera]
    async with p.db.sessions() as session:
        evidence = (await session.execute(select(Evidence))).scalars().all()
        job = (await session.execute(select(Job).where(Job.kind == "fetch.direct"))).scalar_one()
        completed = (await session.execute(select(AuditEvent).where(AuditEvent.action == "fetch.completed"))).scalar_one()
        custody = (await session.execute(select(AuditEvent).where(AuditEvent.subject_type == "evidence"))).scalars().all()
    assert job.status == "done" and job.result["fetched"] is True and job.result["missing"] == [], job.result
    assert len(evidence) == 1
    clip = evidence[0]
    assert clip.source == "plugin:rtsp" and clip.camera_id == camera and clip.request_id == request.id
    assert clip.provenance["plugin"] == "rtsp" and clip.provenance["transport"] == "tcp"
    assert completed.detail["evidence_ids"] == [clip.id] and completed.camera_ids == [camera]
    (received,) = [e for e in custody if e.action == "custody.received"]
    assert received.actor_role == "plugin" and received.detail["actor_name"] == "rtsp"  # custody names the plugin
    # The decrypted credentials reached the recorder (it requires them) and nowhere else.
    for text in (json.dumps(clip.provenance), json.dumps(job.result), json.dumps(completed.detail),
                 *(json.dumps(e.detail) for e in custody)):
        assert PEER_PASSWORD not in text and "s3cr%3A" not in text
    local = await vault_for(p).storage.fetch(clip.storage_key, tmp_path / "evidence.mp4")
    facts = read_clip(local, recording)
    window_start, window_end = request.window_start, request.window_end
    first, last = (facts.first_time - window_start).total_seconds(), (facts.last_time - window_end).total_seconds()
    print(f"\nACCURACY end to end: asked {(window_end - window_start).total_seconds():.1f} s, clip "
          f"{facts.container_duration_s:.3f} s; first frame {first:+.3f} s, last frame {last:+.3f} s")
    assert abs(first) <= 1.0 and abs(last) <= 1.0
    assert abs(facts.container_duration_s - (window_end - window_start).total_seconds()) <= recording.frame_interval_s


@pytest.mark.parametrize("change", ["revoke everything", "drop direct_fetch", "pause the camera", "let the grant lapse"])
async def test_consent_missing_when_the_job_runs_means_no_fetch(change, platform_with_rtsp, consentcam_rtsp_server,
                                                               consentcam_rtsp_recording, consentcam_clock):
    from consentcam.schemas import CameraUpdate
    from consentcam.services import consent
    from consentcam.workflows import make_worker

    p = platform_with_rtsp
    world, owner, camera, _ = await approved_request(p, consentcam_rtsp_server, consentcam_rtsp_recording, (70, 72),
                                                     {"requests": True, "direct_fetch": True}, expires_in_s=600)
    async with p.db.sessions() as session:
        assert (await session.execute(select(Job).where(Job.kind == "fetch.direct"))).scalar_one().status == "pending"
    if change == "revoke everything":
        await world.revoke(owner, camera)
    elif change == "drop direct_fetch":
        await world.grant(owner, camera, requests=True, direct_fetch=False)
    elif change == "pause the camera":
        await consent.update_camera(p, owner.actor, camera, CameraUpdate(status="paused"))
    else:
        consentcam_clock.advance(601)
    await make_worker(p, kinds=("fetch.direct",)).drain()  # the owner's notifications are not ours
    assert p.rtsp.fetches == []  # the plugin was never asked
    async with p.db.sessions() as session:
        assert (await session.execute(select(Evidence))).scalars().all() == []
        job = (await session.execute(select(Job).where(Job.kind == "fetch.direct"))).scalar_one()
    assert job.result is not None and job.result.get("fetched") is False, (job.status, job.result, job.last_error, job.attempts, job.run_after)
