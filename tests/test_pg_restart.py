"""A real PostgreSQL restart and a real outage, on a private server this test starts (the shared one on 5432 is
never touched): while the database is away every call, read or write, answers a 503 problem with Retry-After and
changes nothing; once it is back the same calls work with nothing restarted by hand. Pooled connections that died
in the restart are replaced by themselves (an idle one is pinged first; a busy one fails once and the pool is
renewed). bench/load.py --restart-postgres does the same to the whole city topology under load."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import consentcam.db as db_module
from consentcam.db.migrate import upgrade
from consentcam.testing.pg_cluster import PrivatePostgres

from .conftest import ok, problem

pytestmark = pytest.mark.usefixtures("fast_passwords")


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres().init()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def consentcam_database_url(private_pg: PrivatePostgres) -> str:
    """Overrides the kit's fixture: this module's platform lives on the private server."""
    upgrade(private_pg.url, "heads")
    return private_pg.url


async def answers_503(response: Any) -> None:
    body = await problem(response, 503)
    assert int(response.headers["Retry-After"]) >= 1
    assert "not reachable" in body["detail"] and "Traceback" not in body["detail"]


async def eventually_ok(call: Any, *, attempts: int = 10) -> Any:
    """A restart may cost the first call on a connection that died with it (503, retryable); never more."""
    statuses = []
    for _ in range(attempts):
        response = await call()
        statuses.append(response.status)
        if response.status != 503:
            break
        await answers_503(response)
        await asyncio.sleep(0.2)
    assert statuses[-1] < 500, statuses
    assert statuses.count(503) <= 1, f"more than one 503 after the server was back: {statuses}"
    return response


@pytest.mark.parametrize("idle_ping_s", [0.0, 3600.0], ids=["pinged", "busy"])
async def test_restart_and_outage_answer_503_then_recover_by_themselves(api: Any, consentcam_world: Any,
                                                                       private_pg: PrivatePostgres, idle_ping_s: float,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # "pinged": every pooled connection counts as idle, so a dead one is replaced before use;
    # "busy": none does, so a dead one fails its first statement (here often the live hub's sweep, which runs
    # several times a second) and the pool is renewed.
    monkeypatch.setattr(db_module, "IDLE_PING_S", idle_ping_s)
    owner = await consentcam_world.owner()
    camera = {"label": "Porch", "location": {"lat": 41.88, "lon": -87.63}, "retention_days": 14}
    await ok(await api.post("/api/v1/cameras", headers=owner.headers, json=camera), 201)
    await ok(await api.get("/api/v1/cameras", headers=owner.headers))

    # A restart between two calls: the pooled connections are dead.
    await asyncio.to_thread(private_pg.restart)
    await ok(await eventually_ok(lambda: api.get("/api/v1/cameras", headers=owner.headers)))
    await ok(await eventually_ok(lambda: api.post("/api/v1/cameras", headers=owner.headers, json=camera)), 201)

    # The server is down: reads, writes and token lookups answer 503 and change nothing.
    await asyncio.to_thread(private_pg.stop)
    await answers_503(await api.get("/api/v1/cameras", headers=owner.headers))
    await answers_503(await api.post("/api/v1/cameras", headers=owner.headers, json=camera))
    await answers_503(await api.get("/api/v1/me", headers=owner.headers))

    # Back: the same calls work, and the write refused during the outage was not half made.
    await asyncio.to_thread(private_pg.start)
    cameras = await ok(await eventually_ok(lambda: api.get("/api/v1/cameras", headers=owner.headers)))
    assert len(cameras) == 2
    await ok(await eventually_ok(lambda: api.post("/api/v1/cameras", headers=owner.headers, json=camera)), 201)
    assert len(await ok(await api.get("/api/v1/cameras", headers=owner.headers))) == 3
