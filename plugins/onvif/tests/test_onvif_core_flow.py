"""End to end through the core: a request approved by a supervisor, a camera registered as ONVIF (the Profile G
test device, its password kept encrypted by the core) whose owner granted ``direct_fetch``, the outbox's
``fetch.direct`` job, the vault.

Done when: with no owner action, the approved item yields an evidence object whose duration matches the window
(within a second) and whose first and last frames show the asked times; and when ``direct_fetch`` is revoked
before the job runs, nothing is fetched (the device is not even asked) and the job records why.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from consentcam import hookimpl
from consentcam.db.models import AuditEvent, Camera, Evidence, Job
from consentcam.platform import open_platform
from consentcam.testing.rtsp_peer import PEER_PASSWORD, PEER_USERNAME
from consentcam_onvif.plugin import OnvifPlugin
from consentcam_rtsp.puller import PullOptions
from onvif_testkit import ProfileGDevice, read_clip, seconds_between
from sqlalchemy import select

pytestmark = pytest.mark.peer("rtsp")

CENTRE = (41.88, -87.63)  # inside the world's default agency square
FAST = PullOptions(open_timeout_s=3.0, read_timeout_s=3.0, attempts=3, backoff_s=0.2, backoff_max_s=0.5)


class CountingOnvifPlugin(OnvifPlugin):
    """The real plugin, counting the fetches the core asks of it."""

    def __init__(self) -> None:
        super().__init__(timeout_s=5, pull_options=FAST)
        self.fetches: list[str] = []

    @hookimpl
    async def consentcam_fetch_recording(self, camera, window, sink):
        self.fetches.append(camera.camera_id)
        return await super().consentcam_fetch_recording(camera, window, sink)


@pytest.fixture
async def platform_with_onvif(consentcam_settings, consentcam_clock, monkeypatch):
    from argon2 import PasswordHasher
    from consentcam import security

    # Argon2 at its cheapest: these tests make accounts, they do not test password hashing.
    monkeypatch.setattr(security, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    plugin = CountingOnvifPlugin()
    platform = await open_platform(consentcam_settings, clock=consentcam_clock, extra_plugins=[plugin])
    platform.onvif = plugin  # type: ignore[attr-defined]
    yield platform
    await platform.db.dispose()


@pytest.fixture
async def recorder(consentcam_rtsp_server, consentcam_rtsp_recording):
    async with ProfileGDevice(consentcam_rtsp_recording, consentcam_rtsp_server.url("auth", "/recording"),
                              PEER_USERNAME, PEER_PASSWORD) as device:
        yield device


async def approved_request(p, device, recording, window_s: tuple[int, int]):
    """Owner, ONVIF camera with its credentials and a ``direct_fetch`` grant, request drafted and approved."""
    from consentcam.schemas import RequestCreate
    from consentcam.services.accounts import authenticate
    from consentcam.services.requests import approve, create_request
    from consentcam.testing.world import World

    world = World(p)
    agency = await world.agency(require_approval=True)
    investigator, supervisor = await world.staff(agency, "investigator"), await world.staff(agency, "supervisor")
    owner = await world.owner()
    camera = await world.camera(owner, *CENTRE, grant={"requests": True, "direct_fetch": True}, connection={
        "kind": "onvif", "host": "127.0.0.1", "port": device.port, "username": PEER_USERNAME, "password": PEER_PASSWORD})
    spec = RequestCreate(case_number="ONVIF-1", description="direct fetch from an ONVIF recorder",
                         area={"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 50},
                         window={"start": recording.start + timedelta(seconds=window_s[0]),
                                 "end": recording.start + timedelta(seconds=window_s[1])})
    request = await create_request(p, await authenticate(p, investigator.token), spec)
    await approve(p, await authenticate(p, supervisor.token), request.id)
    return world, owner, camera, request


async def test_an_approved_direct_fetch_item_yields_the_asked_window(platform_with_onvif, recorder,
                                                                    consentcam_rtsp_recording, tmp_path):
    from consentcam.vault.core import vault_for
    from consentcam.workflows import make_worker

    p, recording = platform_with_onvif, consentcam_rtsp_recording
    _, _, camera, request = await approved_request(p, recorder, recording, (20, 23))
    await make_worker(p, kinds=("fetch.direct",)).drain()  # no owner action: the job alone
    assert p.onvif.fetches == [camera]
    async with p.db.sessions() as session:
        (clip,) = (await session.execute(select(Evidence))).scalars().all()
        job = (await session.execute(select(Job).where(Job.kind == "fetch.direct"))).scalar_one()
        completed = (await session.execute(select(AuditEvent).where(AuditEvent.action == "fetch.completed"))).scalar_one()
        custody = (await session.execute(select(AuditEvent).where(AuditEvent.subject_type == "evidence"))).scalars().all()
        stored = (await session.execute(select(Camera).where(Camera.id == camera))).scalar_one()
    assert job.status == "done" and job.result["fetched"] is True and job.result["missing"] == [], job.result
    assert clip.source == "plugin:onvif" and clip.camera_id == camera and clip.request_id == request.id
    assert clip.provenance["plugin"] == "onvif" and clip.provenance["recording_token"] == "rec-1"
    (received,) = [e for e in custody if e.action == "custody.received"]
    assert received.actor_role == "plugin" and received.detail["actor_name"] == "onvif"  # custody names the plugin
    assert completed.detail["evidence_ids"] == [clip.id]
    # The password is encrypted at rest and reached the device and the RTSP server only.
    assert "password" not in stored.connection and PEER_PASSWORD not in str(stored.connection_secret)
    for text in (json.dumps(clip.provenance), json.dumps(job.result), json.dumps(completed.detail),
                 *(json.dumps(e.detail) for e in custody)):
        assert PEER_PASSWORD not in text
    local = await vault_for(p).storage.fetch(clip.storage_key, tmp_path / "evidence.mp4")
    facts = read_clip(local, recording)
    first = seconds_between(facts.first_time, request.window_start)
    last = seconds_between(facts.last_time, request.window_end)
    asked = (request.window_end - request.window_start).total_seconds()
    print(f"\nACCURACY onvif end to end: asked {asked:.1f} s, clip {facts.duration_s:.3f} s; first frame {first:+.3f} s, "
          f"last frame {last:+.3f} s")
    assert abs(facts.duration_s - asked) <= 1.0
    assert abs(first) <= 1.0 and abs(last) <= 1.0


async def test_direct_fetch_revoked_before_the_job_runs_fetches_nothing(platform_with_onvif, recorder,
                                                                       consentcam_rtsp_recording):
    from consentcam.workflows import make_worker

    p = platform_with_onvif
    world, owner, camera, _ = await approved_request(p, recorder, consentcam_rtsp_recording, (20, 22))
    await world.grant(owner, camera, requests=True, direct_fetch=False)  # the owner changes their mind
    await make_worker(p, kinds=("fetch.direct",)).drain()
    assert p.onvif.fetches == [] and recorder.calls == []  # neither the plugin nor the device was asked
    async with p.db.sessions() as session:
        assert (await session.execute(select(Evidence))).scalars().all() == []
        job = (await session.execute(select(Job).where(Job.kind == "fetch.direct"))).scalar_one()
        refused = (await session.execute(select(AuditEvent).where(AuditEvent.action == "fetch.refused"))).scalar_one()
    assert job.result == {"fetched": False, "reason": refused.detail["reason"]}
    assert "direct fetch" in refused.detail["reason"] and refused.camera_ids == [camera]
