"""Group commit for events that stand alone (agency reads): concurrent events share commits, the chain stays
gapless and verifiable, each caller returns only once its event is in the chain, and a failed batch fails every
caller in it, so nothing is shown that was not recorded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from consentcam import audit
from consentcam.audit import Actor, Pending
from consentcam.db.models import AuditEvent, AuditEventCamera
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from .conftest import ok, problem

pytestmark = pytest.mark.usefixtures("fast_passwords")


async def chain_length(platform: Any) -> int:
    async with platform.db.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(AuditEvent))).scalar_one())


async def test_concurrent_events_share_commits_and_the_chain_verifies(consentcam_platform: Any) -> None:
    p = consentcam_platform
    before = await chain_length(p)
    actor = Actor(kind="user", user_id="u1", role="investigator", agency_id="a1")

    async def read(i: int) -> int:
        await audit.record_alone(p.db, Pending(p.now(), actor, "map.read", subject_type="agency", subject_id="a1",
                                               camera_ids=[f"cam-{i}", f"cam-{i + 1}"], detail={"i": i}))
        # Returned: the event is committed, so a fresh session sees it.
        async with p.db.sessions() as session:
            return int((await session.execute(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.action == "map.read", AuditEvent.detail["i"].as_integer() == i))).scalar_one())

    seen = await asyncio.gather(*(read(i) for i in range(40)))
    assert seen == [1] * 40
    assert await chain_length(p) == before + 40
    appender = audit._APPENDERS[p.db]
    assert appender.batches < 40, "events arriving together were committed together"
    check = await audit.verify_chain(p.db)
    assert check.ok, check
    async with p.db.sessions() as session:
        named = (await session.execute(select(func.count()).select_from(AuditEventCamera).where(
            AuditEventCamera.camera_id.like("cam-%")))).scalar_one()
        seqs = list((await session.execute(select(AuditEvent.seq).order_by(AuditEvent.seq))).scalars())
    assert named == 80  # each event's cameras are indexed for their owners
    assert seqs == list(range(1, len(seqs) + 1))


async def test_a_failed_batch_fails_every_caller_and_records_nothing(consentcam_platform: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    p = consentcam_platform
    before = await chain_length(p)
    actor = Actor.system("test")
    real = audit.record_many

    async def broken(db: Any, session: Any, events: Any) -> Any:
        await real(db, session, events)
        raise RuntimeError("disk full")  # after the rows were written: the transaction must roll them back

    monkeypatch.setattr(audit, "record_many", broken)
    results = await asyncio.gather(*(audit.record_alone(p.db, Pending(p.now(), actor, "map.read")) for _ in range(5)),
                                   return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results), results
    assert await chain_length(p) == before
    monkeypatch.setattr(audit, "record_many", real)
    await audit.record_alone(p.db, Pending(p.now(), actor, "map.read"))  # the appender carries on
    assert await chain_length(p) == before + 1
    assert (await audit.verify_chain(p.db)).ok


async def test_the_map_is_not_shown_when_its_read_cannot_be_recorded(api: Any, consentcam_world: Any,
                                                                    consentcam_platform: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    agency = await consentcam_world.agency()
    investigator = await consentcam_world.staff(agency, "investigator")
    owner = await consentcam_world.owner()
    await consentcam_world.camera(owner, grant={"map": True})
    body = await ok(await api.get("/api/v1/map/cameras", headers=investigator.headers))
    assert len(body["features"]) == 1

    async def unreachable(*_args: Any, **_kwargs: Any) -> Any:  # the database went away between read and record
        raise OperationalError("INSERT INTO audit_events", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(audit, "record_many", unreachable)
    response = await api.get("/api/v1/map/cameras", headers=investigator.headers)
    body = await problem(response, 503)
    assert "features" not in body and "not reachable" in body["detail"]
