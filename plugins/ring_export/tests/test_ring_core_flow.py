"""End to end through the core, on SQLite and PostgreSQL: an owner links a Ring account over the HTTP API (the
fake asks for a two-factor code first), registers the doorbell, grants ``direct_fetch``; an investigator's
request opens; the outbox's ``fetch.direct`` job runs the plugin against the Ring fake; the clips land in the
vault. The refresh token is kept encrypted, rotated on each fetch, never in a response or a log, and deleted
when the owner unlinks. Consent is read when the job runs: ``direct_fetch`` revoked first means nothing fetched.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from consentcam.db.models import AuditEvent, Evidence, Job, LinkedAccount
from consentcam.http.app import create_app
from consentcam.http.keys import PLATFORM
from consentcam.schemas import RequestCreate
from consentcam.services.accounts import authenticate
from consentcam.services.requests import create_request
from consentcam.testing.world import World
from consentcam.workflows import make_worker
from consentcam_ring_export.plugin import RingExportPlugin
from ring_testkit import (
    BASE,
    CODE,
    DOORBELL_ID,
    EMAIL,
    LIBRARY_WARNINGS,
    PASSWORD,
    event_id,
    sha256,
)
from sqlalchemy import select

pytestmark = LIBRARY_WARNINGS

CENTRE = (41.88, -87.63)  # inside the world's default agency square


def at(minutes: float):  # noqa: ANN201
    return BASE + timedelta(minutes=minutes)


class Recorder:
    """Every response body the test saw, to search for secrets afterwards."""

    def __init__(self, client) -> None:  # noqa: ANN001
        self.client, self.bodies = client, []

    async def call(self, method: str, path: str, **kwargs):  # noqa: ANN003, ANN201
        response = await self.client.request(method, path, **kwargs)
        self.bodies.append(await response.text())
        return response


@pytest.fixture
async def ring_core(ring_fake, consentcam_settings, consentcam_clock, aiohttp_client, tmp_path, monkeypatch):
    from argon2 import PasswordHasher
    from consentcam import security

    # Argon2 at its cheapest, as the conformance kit does: these tests make accounts, they do not test hashing.
    monkeypatch.setattr(security, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    consentcam_clock.set(BASE + timedelta(hours=3))
    plugin = RingExportPlugin(session_factory=ring_fake.client_session, work_dir=tmp_path, page_size=2)
    client = await aiohttp_client(create_app(consentcam_settings, clock=consentcam_clock, extra_plugins=[plugin],
                                             run_jobs=False))
    p = client.server.app[PLATFORM]
    world = World(p)
    agency = await world.agency(require_approval=False)
    return p, client, world, agency


async def ask(p, world, agency, camera_window: tuple[float, float], case: str):  # noqa: ANN001, ANN201
    p.clock.advance(60)  # jobs of successive requests, told apart by their creation times
    investigator = await world.staff(agency, "investigator")
    spec = RequestCreate(case_number=case, description="Ring direct fetch",
                         area={"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 50},
                         window={"start": at(camera_window[0]), "end": at(camera_window[1])})
    return await create_request(p, await authenticate(p, investigator.token), spec)


async def link_over_http(api: Recorder, owner) -> dict:  # noqa: ANN001
    first = await api.call("POST", "/api/v1/linked-accounts/ring", headers=owner.headers,
                           json={"email": EMAIL, "password": PASSWORD})
    assert first.status == 200, await first.text()
    assert (await first.json())["code_required"] is True
    done = await api.call("POST", "/api/v1/linked-accounts/ring", headers=owner.headers,
                          json={"email": EMAIL, "password": PASSWORD, "code": CODE})
    assert done.status == 200, await done.text()
    return await done.json()


async def kept_secret(p, owner_id: str) -> tuple[str, dict]:  # noqa: ANN001
    async with p.db.sessions() as session:
        row = (await session.execute(select(LinkedAccount).where(LinkedAccount.owner_id == owner_id))).scalar_one()
    return row.secret, json.loads(p.keyring.decrypt(row.secret))


async def test_link_fetch_two_of_five_then_none_then_unlink(ring_core, ring_fake, ring_media, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="aiosqlite")  # its SQL echo is noise here
    p, client, world, agency = ring_core
    api = Recorder(client)
    owner = await world.owner()
    linked = await link_over_http(api, owner)
    assert linked["linked"] is True and {d["device_id"] for d in linked["devices"]} >= {str(DOORBELL_ID)}
    sealed, secret = await kept_secret(p, owner.id)
    assert secret["refresh_token"] == ring_fake.issued_refresh_tokens[-1] and secret["refresh_token"] not in sealed
    listed = await (await api.call("GET", "/api/v1/linked-accounts", headers=owner.headers)).json()
    assert [a["provider"] for a in listed["accounts"]] == ["ring"]

    camera = await world.camera(owner, *CENTRE, grant={"requests": True, "direct_fetch": True},
                                connection={"kind": "ring", "device_id": DOORBELL_ID})
    request = await ask(p, world, agency, (9, 20), "RING-1")
    await make_worker(p, kinds=("fetch.direct",)).drain()
    async with p.db.sessions() as session:
        evidence = (await session.execute(select(Evidence).order_by(Evidence.created_at))).scalars().all()
        job = (await session.execute(select(Job).where(Job.kind == "fetch.direct"))).scalar_one()
    assert job.status == "done" and job.result["fetched"] is True, (job.status, job.result, job.last_error)
    assert len(evidence) == 2 and {e.request_id for e in evidence} == {request.id}
    by_event = {e.provenance["ring_event"]["event_id"]: e for e in evidence}
    assert set(by_event) == {str(event_id(1)), str(event_id(2))}
    for ring_id, clip in by_event.items():
        assert clip.sha256 == sha256(ring_media[int(ring_id)]) and clip.source == "plugin:ring_export"
        assert clip.camera_id == camera and clip.provenance["plugin"] == "ring_export"
    assert by_event[str(event_id(1))].provenance["ring_event"]["created_at"] == at(10).isoformat()
    assert job.result["missing"][0] == {"start": at(9).isoformat(), "end": at(10).isoformat()}
    assert [e["event_id"] for e in job.result["provenance"]["events_in_window"]] == [str(event_id(1)), str(event_id(2))]
    # Each fetch refreshed the token; the core saved the new one, encrypted.
    _, secret = await kept_secret(p, owner.id)
    assert secret["refresh_token"] == ring_fake.issued_refresh_tokens[-1]

    await ask(p, world, agency, (35, 45), "RING-2")
    await make_worker(p, kinds=("fetch.direct",)).drain()
    async with p.db.sessions() as session:
        jobs = (await session.execute(select(Job).where(Job.kind == "fetch.direct").order_by(Job.created_at))).scalars().all()
        assert len((await session.execute(select(Evidence))).scalars().all()) == 2
    none = jobs[-1].result
    assert none["fetched"] is False and none["missing"] == [{"start": at(35).isoformat(), "end": at(45).isoformat()}]
    assert none["note"].startswith("no Ring event starts inside the window")

    gone = await api.call("DELETE", "/api/v1/linked-accounts/ring", headers=owner.headers)
    assert gone.status == 204
    async with p.db.sessions() as session:
        assert (await session.execute(select(LinkedAccount))).scalars().all() == []
        audit = (await session.execute(select(AuditEvent).where(AuditEvent.action.in_(
            ["account.linked", "account.unlinked"])).order_by(AuditEvent.seq))).scalars().all()
    assert [(e.action, e.actor_id) for e in audit] == [("account.linked", owner.id), ("account.unlinked", owner.id)]
    assert audit[1].camera_ids == [camera]  # the owner's access log shows it beside the camera
    log = await (await api.call("GET", f"/api/v1/cameras/{camera}/access-log", headers=owner.headers)).text()
    assert "account.unlinked" in log
    assert (await api.call("DELETE", "/api/v1/linked-accounts/ring", headers=owner.headers)).status == 404

    calls_before = len(ring_fake.calls)
    await ask(p, world, agency, (9, 20), "RING-3")
    await make_worker(p, kinds=("fetch.direct",)).drain()
    async with p.db.sessions() as session:
        last = (await session.execute(select(Job).where(Job.kind == "fetch.direct").order_by(Job.created_at.desc())
                                      .limit(1))).scalar_one()
    assert last.result["fetched"] is False and "no linked Ring account" in last.result["note"]
    assert len(ring_fake.calls) == calls_before  # unlinked: Ring is not even asked

    secrets = (PASSWORD, CODE, *ring_fake.issued_refresh_tokens, *ring_fake.access_tokens)
    for text in (*api.bodies, caplog.text, json.dumps([j.result for j in jobs]),
                 json.dumps([e.provenance for e in evidence], default=str)):
        for leaked in secrets:
            assert leaked not in text


async def test_direct_fetch_revoked_before_the_job_runs_fetches_nothing(ring_core, ring_fake):
    p, client, world, agency = ring_core
    owner = await world.owner()
    await link_over_http(Recorder(client), owner)
    camera = await world.camera(owner, *CENTRE, grant={"requests": True, "direct_fetch": True},
                                connection={"kind": "ring", "device_id": DOORBELL_ID})
    await ask(p, world, agency, (9, 20), "RING-4")
    await world.grant(owner, camera, requests=True, direct_fetch=False)
    calls_before = len(ring_fake.calls)
    await make_worker(p, kinds=("fetch.direct",)).drain()
    async with p.db.sessions() as session:
        assert (await session.execute(select(Evidence))).scalars().all() == []
        job = (await session.execute(select(Job).where(Job.kind == "fetch.direct"))).scalar_one()
    assert job.result["fetched"] is False and "direct fetch" in job.result["reason"]
    assert ring_fake.calls[calls_before:] == []  # not a token refresh, not a history page


async def test_linking_answers_with_clear_problems(ring_core, ring_fake):
    p, client, world, agency = ring_core
    owner, investigator = await world.owner(), await world.staff(agency, "investigator")
    path = "/api/v1/linked-accounts/ring"
    body = {"email": EMAIL, "password": "wrong password"}
    refused = await client.post(path, headers=owner.headers, json=body)
    problem = await refused.json()
    assert refused.status == 422 and problem["title"] == "Credentials rejected by the device"
    assert "email or password" in problem["detail"] and "wrong password" not in json.dumps(problem)
    assert (await client.post(path, headers=investigator.headers, json=body)).status == 403
    assert (await client.post(path, json=body)).status == 401
    assert (await client.post(path, headers=owner.headers, json={"email": EMAIL})).status == 422
    nobody = await client.post("/api/v1/linked-accounts/nest", headers=owner.headers, json=body)
    assert nobody.status == 404 and "no plugin links 'nest'" in (await nobody.json())["detail"]
    assert (await client.post("/api/v1/linked-accounts/Ring!", headers=owner.headers, json=body)).status == 422
    assert (await client.get("/api/v1/linked-accounts", headers=owner.headers)).status == 200
    async with p.db.sessions() as session:
        assert (await session.execute(select(LinkedAccount))).scalars().all() == []
