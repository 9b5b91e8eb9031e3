"""The outbox: several workers never run one job twice at once, failures are retried then recorded, a dead
worker's lease runs out and its jobs are taken again, and nothing is ever lost."""

from __future__ import annotations

import asyncio
import collections

from sqlalchemy import func, select

from consentcam.db.models import Job
from consentcam.jobs import PermanentFailure, RetryLater, Worker, enqueue, job_handler

RUNS: collections.Counter[str] = collections.Counter()
CONCURRENT = {"now": 0, "max": 0}


@job_handler("test.count")
async def _count(p, job):
    CONCURRENT["now"] += 1
    CONCURRENT["max"] = max(CONCURRENT["max"], CONCURRENT["now"])
    await asyncio.sleep(0.001)
    RUNS[job.id] += 1
    CONCURRENT["now"] -= 1
    return {"ok": True}


@job_handler("test.flaky")
async def _flaky(p, job):
    RUNS[job.id] += 1
    if RUNS[job.id] < job.payload["succeed_on"]:
        raise RetryLater("not yet")
    return {"attempt": RUNS[job.id]}


@job_handler("test.doomed")
async def _doomed(p, job):
    raise PermanentFailure("this can never work")


async def _jobs(p, kind, n, **payload):
    async with p.db.transaction() as session:
        for i in range(n):
            await enqueue(session, p.now(), kind, {"i": i, **payload}, key=f"{kind}:{i}")


async def test_concurrent_workers_run_each_job_exactly_once(consentcam_platform):
    p = consentcam_platform
    RUNS.clear()
    await _jobs(p, "test.count", 120)
    workers = [Worker(p, f"w{i}", batch=7) for i in range(4)]

    async def drain(w):
        while await w.run_once():
            pass

    await asyncio.gather(*(drain(w) for w in workers))
    async with p.db.sessions() as session:
        rows = (await session.execute(select(Job.status, Job.locked_by).where(Job.kind == "test.count"))).all()
    assert len(rows) == 120 and {s for s, _ in rows} == {"done"}
    assert len(RUNS) == 120 and set(RUNS.values()) == {1}, "a job ran twice"
    if not p.db.is_sqlite:
        assert len({w for _, w in rows}) > 1, "on PostgreSQL the workers should share the work (SKIP LOCKED)"


async def test_idempotency_key_writes_a_job_once(consentcam_platform):
    p = consentcam_platform
    await _jobs(p, "test.count", 3)
    await _jobs(p, "test.count", 3)
    async with p.db.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Job))).scalar_one() == 3


async def test_retries_back_off_then_succeed_or_are_recorded_as_failed(consentcam_platform, consentcam_clock):
    p = consentcam_platform
    RUNS.clear()
    async with p.db.transaction() as session:
        flaky = await enqueue(session, p.now(), "test.flaky", {"succeed_on": 3})
        doomed = await enqueue(session, p.now(), "test.doomed", {})
        hopeless = await enqueue(session, p.now(), "test.flaky", {"succeed_on": 99}, max_attempts=2)
    worker = Worker(p, "w")
    for _ in range(6):
        await worker.drain()
        consentcam_clock.advance(3600)
    async with p.db.sessions() as session:
        jobs = {j.id: j for j in (await session.execute(select(Job))).scalars()}
    assert jobs[flaky.id].status == "done" and jobs[flaky.id].attempts == 3 and jobs[flaky.id].result == {"attempt": 3}
    assert jobs[doomed.id].status == "failed" and "never work" in jobs[doomed.id].last_error
    assert jobs[hopeless.id].status == "failed" and jobs[hopeless.id].attempts == 2 and "not yet" in jobs[hopeless.id].last_error


async def test_a_dead_workers_lease_runs_out_and_the_job_is_taken_again(consentcam_platform, consentcam_clock):
    p = consentcam_platform
    RUNS.clear()
    await _jobs(p, "test.count", 1)
    dead = Worker(p, "dead", lease_s=60)
    claimed = await dead.claim()  # claimed, then the process "dies" without recording an outcome
    assert len(claimed) == 1
    alive = Worker(p, "alive")
    assert await alive.drain() == 0, "a leased job is not taken before its lease ends"
    consentcam_clock.advance(61)
    assert await alive.drain() == 1
    await dead.run_job(claimed[0])  # the dead worker coming back must not overwrite the outcome
    async with p.db.sessions() as session:
        job = (await session.execute(select(Job))).scalar_one()
    assert job.status == "done" and job.locked_by == "alive" and job.attempts == 2


@job_handler("test.slow")
async def _slow(p, job):
    await asyncio.sleep(job.payload["seconds"])
    return {"slept": job.payload["seconds"]}


async def test_a_long_job_keeps_its_lease_so_no_other_worker_takes_it(consentcam_platform):
    """The lease is renewed while the handler runs: a second worker finds nothing to take even after the
    original lease would have run out (real clock here: the heartbeat uses the platform's clock)."""
    from consentcam.clock import Clock

    p = consentcam_platform
    p.clock = Clock()
    async with p.db.transaction() as session:
        await enqueue(session, p.now(), "test.slow", {"seconds": 1.5})
    slow = Worker(p, "slow", lease_s=0.6)
    other = Worker(p, "other")
    running = asyncio.create_task(slow.run_once())
    await asyncio.sleep(1.0)  # past the first lease of 0.6 s
    assert await other.run_once() == 0, "a running job's lease must be renewed"
    assert await running == 1
    async with p.db.sessions() as session:
        job = (await session.execute(select(Job).where(Job.kind == "test.slow"))).scalar_one()
    assert job.status == "done" and job.locked_by == "slow" and job.attempts == 1
