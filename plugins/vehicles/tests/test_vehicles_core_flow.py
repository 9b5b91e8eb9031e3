"""Done when: a clip that shows a truck from second 10 to 20, uploaded by its owner through a request's link over
real HTTP, is analysed by the outbox's ``evidence.analyse`` job with the real model, and a label search for
``truck`` finds it with a span inside 9-21 s; the label set names the model's hash; the clip is untouched; and
only the requesting agency can search it. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest
from consentcam.db.models import AuditEvent, Evidence, Job
from consentcam.http.app import create_app
from consentcam.jobs import Worker
from consentcam.platform import open_platform
from consentcam.testing.world import World
from consentcam_vehicles.model import DEFAULT_SHA256
from sqlalchemy import select
from vehicles_testkit import CREATION_TIME

CENTRE = (41.88, -87.63)  # the World's default agency square is centred here


@pytest.fixture
async def vehicle_platform(consentcam_settings, consentcam_clock, vehicles_plugin):
    import consentcam.workflows  # noqa: F401 - registers the job handlers

    platform = await open_platform(consentcam_settings, clock=consentcam_clock,
                                   extra_plugins=[vehicles_plugin])
    yield platform
    await platform.db.dispose()


@pytest.fixture
async def client(consentcam_settings, vehicle_platform, aiohttp_client):
    return await aiohttp_client(create_app(consentcam_settings, platform=vehicle_platform, run_jobs=False))


async def ok(response, status: int = 200):
    assert response.status == status, await response.text()
    return await response.json()


async def open_case(client, world: World, now: datetime):
    agency = await world.agency()
    investigator = await world.staff(agency, "investigator")
    supervisor = await world.staff(agency, "supervisor")
    owner = await world.owner()
    camera = await world.camera(owner, *CENTRE, grant={"map": True, "requests": True})
    end = now - timedelta(hours=3)
    body = {"case_number": "2026-0808", "description": "Hit and run by a white pickup truck",
            "area": {"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 200},
            "window": {"start": (end - timedelta(hours=1)).isoformat(), "end": end.isoformat()}}
    request = await ok(await client.post("/api/v1/requests", json=body, headers=investigator.headers), 201)
    await ok(await client.post(f"/api/v1/requests/{request['id']}/approve", headers=supervisor.headers))
    inbox = await ok(await client.get("/api/v1/inbox", headers=owner.headers))
    item = next(i for i in inbox["items"] if i["camera_id"] == camera)
    return request["id"], investigator, urlsplit(item["upload_url"]).path


def search(client, person, **query):
    return client.get("/api/v1/evidence", params=query, headers=person.headers)


async def test_an_uploaded_clip_with_a_truck_is_found_by_a_label_search(client, vehicle_platform, consentcam_clock,
                                                                        truck_clip):
    p = vehicle_platform
    world = World(p)
    request_id, investigator, link = await open_case(client, world, consentcam_clock.now())

    data = truck_clip.read_bytes()
    receipt = await ok(await client.put(link, data=data, headers={"Content-Type": "video/mp4"}), 201)
    evidence_id = receipt["evidence_id"]
    async with p.db.sessions() as session:
        job = (await session.execute(select(Job).where(Job.kind == "evidence.analyse"))).scalar_one()
        before = await session.get(Evidence, evidence_id)
    assert job.payload == {"evidence_id": evidence_id} and job.idempotency_key == f"evidence.analyse:{evidence_id}"
    assert before is not None and before.recorded_start is not None

    # Nothing is labelled before the job runs.
    assert (await ok(await search(client, investigator, label="truck")))["items"] == []

    assert await Worker(p, kinds=("evidence.analyse",)).drain() == 1
    async with p.db.sessions() as session:
        job = await session.get(Job, job.id)
        after = await session.get(Evidence, evidence_id)
    assert job.status == "done", job.last_error
    assert job.result["label_sets"] == [{"analyser": "vehicles", "model_sha256": DEFAULT_SHA256,
                                         "labels": job.result["label_sets"][0]["labels"]}]

    found = await ok(await search(client, investigator, label="truck"))
    assert [item["id"] for item in found["items"]] == [evidence_id]
    trucks = [label for label in found["items"][0]["labels"] if label["label"] == "truck"]
    assert trucks, found["items"][0]["labels"]
    for truck in trucks:
        assert 9 <= truck["start_s"] <= truck["end_s"] <= 21, truck
        assert truck["model_sha256"] == DEFAULT_SHA256 and truck["analyser"] == "vehicles"
        assert "YOLOX-Nano" in truck["model_name"]
        assert truck["colour"] == "white"
    assert max(t["end_s"] - t["start_s"] for t in trucks) >= 8  # one span, not ten one-second ones
    # Every label of the set names the model, whatever its class.
    assert {label["model_sha256"] for label in found["items"][0]["labels"]} == {DEFAULT_SHA256}

    # The clip is untouched: its row, and its bytes as served.
    assert (after.sha256, after.size, after.media, after.provenance, after.recorded_start) == (
        before.sha256, before.size, before.media, before.provenance, before.recorded_start)
    response = await client.get(f"/api/v1/evidence/{evidence_id}/content", headers=investigator.headers)
    assert hashlib.sha256(await response.read()).hexdigest() == receipt["sha256"] == hashlib.sha256(data).hexdigest()

    # The span in wall-clock time: inside a request, "a truck between :12 and :14" finds it, ":25 to :29" not.
    start = datetime.fromisoformat(CREATION_TIME.replace("Z", "+00:00"))
    during = {"from": (start + timedelta(seconds=12)).isoformat(), "to": (start + timedelta(seconds=14)).isoformat()}
    after_it = {"from": (start + timedelta(seconds=25)).isoformat(), "to": (start + timedelta(seconds=29)).isoformat()}
    assert len((await ok(await search(client, investigator, request_id=request_id, label="truck", **during)))["items"]) == 1
    assert (await ok(await search(client, investigator, request_id=request_id, label="truck", **after_it)))["items"] == []
    assert (await ok(await search(client, investigator, label="bus")))["items"] == []

    # One record with its labels; another agency finds nothing, and cannot read it.
    record = await ok(await client.get(f"/api/v1/evidence/{evidence_id}", headers=investigator.headers))
    assert any(label["label"] == "truck" for label in record["labels"])
    stranger = await world.staff(await world.agency(), "investigator")
    assert (await ok(await search(client, stranger, label="truck")))["items"] == []
    assert (await client.get(f"/api/v1/evidence/{evidence_id}", headers=stranger.headers)).status == 404

    # The plugin's read of the clip is in the custody chain; each search is audited with its query.
    async with p.db.sessions() as session:
        events = (await session.execute(select(AuditEvent).where(AuditEvent.subject_id == evidence_id)
                                        .order_by(AuditEvent.seq))).scalars().all()
        searches = (await session.execute(select(AuditEvent).where(AuditEvent.action == "evidence.searched")
                                          .order_by(AuditEvent.seq))).scalars().all()
    analysed = [e for e in events if e.action == "custody.downloaded" and e.actor_role == "plugin"]
    assert len(analysed) == 1 and analysed[0].detail["purpose"] == "analysis"
    assert analysed[0].detail["analysers"] == ["vehicles"]
    labelled = [e for e in searches if e.detail["query"].get("label") == "truck" and e.actor_id == investigator.id]
    assert [e.detail["evidence_ids"] for e in labelled][:2] == [[], [evidence_id]]
