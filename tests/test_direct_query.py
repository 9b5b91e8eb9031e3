"""DirectQuery: the same rows as ``session.execute``, in one driver call, never outside the caller's transaction."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from consentcam.db.direct import DirectQuery
from consentcam.db.models import Camera
from consentcam.testing.world import World
from sqlalchemy import Float, and_, bindparam, event, func, literal_column, select

C = Camera.__table__.c
BY_EXPIRY = DirectQuery(
    select(C.id, C.grant_expires_at.is_(None) | (C.grant_expires_at > bindparam("now", type_=C.grant_expires_at.type)),
           and_(C.grant_requests, C.connection_kind.in_([literal_column("'onvif'"), literal_column("'rtsp'")])))
    .where(C.status == "active", C.retention_days >= bindparam("need", type_=Float))
    .order_by(C.id)
)


async def _cameras(platform, clock, n: int = 6) -> None:
    world = World(platform)
    owner = await world.owner(login=False)
    for i in range(n):
        await world.camera(owner, retention_days=3 + i, grant={
            "map": True, "requests": i % 2 == 0,
            "expires_at": (clock.now() + timedelta(hours=i)).isoformat() if i % 3 else None})


def _driver_statements(platform) -> list[str]:
    seen: list[str] = []
    for engine in {platform.db.engine.sync_engine, platform.db.read_engine.sync_engine}:
        event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


async def test_the_same_rows_as_session_execute(consentcam_platform, consentcam_clock) -> None:
    p = consentcam_platform
    await _cameras(p, consentcam_clock)
    now = consentcam_clock.now()
    # now + 1 h is the second camera's expiry to the microsecond: "> now" must exclude it, which only holds when the
    # datetime reaches SQLite in the column's own text form (the bind processors), not Python's default adaptation.
    for at, need in [(now, 0.0), (now + timedelta(hours=1), 0.0), (now + timedelta(hours=2, minutes=30), 4.0),
                     (now + timedelta(days=2), 7.5)]:
        async with p.db.sessions() as session:
            expected = [tuple(r) for r in (await session.execute(BY_EXPIRY.statement, {"now": at, "need": need})).all()]
            got = [tuple(r) for r in await BY_EXPIRY.rows(session, {"now": at, "need": need})]
        # Booleans as the driver gives them (SQLite: 0/1); the values are the same.
        assert [(i, bool(a), bool(b)) for i, a, b in got] == expected
        assert expected, "the data must give the comparison something to compare"


async def test_one_driver_call_without_sqlalchemy_in_between(consentcam_platform, consentcam_clock) -> None:
    p = consentcam_platform
    await _cameras(p, consentcam_clock)
    async with p.db.sessions() as session:
        await session.connection()
        seen = _driver_statements(p)
        rows = await BY_EXPIRY.rows(session, {"now": consentcam_clock.now(), "need": 0.0})
    assert rows and seen == []  # the read path (SQLite, or PostgreSQL in autocommit) went straight to the driver


async def test_refuses_unknown_and_missing_parameters(consentcam_platform) -> None:
    async with consentcam_platform.db.sessions() as session:
        with pytest.raises(TypeError, match="missing parameter 'need'"):
            await BY_EXPIRY.rows(session, {"now": datetime.now(UTC)})
        with pytest.raises(TypeError, match="unknown parameters"):
            await BY_EXPIRY.rows(session, {"now": datetime.now(UTC), "need": 1.0, "radius": 5.0})


async def test_never_outside_the_callers_transaction(consentcam_platform) -> None:
    """First statement of a writer's transaction: on PostgreSQL the asyncpg adapter has not sent BEGIN yet, so the
    query must go through SQLAlchemy, which sends it. Had it run alone, ``now()`` (the transaction's start) would
    differ from the next statement's. On SQLite BEGIN IMMEDIATE went out when the connection was taken."""
    p = consentcam_platform
    started = DirectQuery(select(func.count()).select_from(Camera) if p.db.is_sqlite else select(func.now()))
    async with p.db.transaction() as session:
        first = (await started.rows(session, {}))[0][0]
        await asyncio.sleep(0.02)
        if p.db.is_sqlite:
            assert await _write_lock_held(p)
            return
        assert (await session.execute(select(func.now()))).scalar_one() == first
        again = (await started.rows(session, {}))[0][0]  # BEGIN sent: now straight to the driver, same transaction
        assert again == first


async def _write_lock_held(p) -> bool:
    import sqlite3

    other = sqlite3.connect(p.db.url.split("///", 1)[1], timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc)
    finally:
        other.close()
