"""The outbox: several workers never run one job twice at once, failures are retried then recorded, a dead
worker's lease runs out and its jobs are taken again, and nothing is ever lost."""

from __future__ import annotations

import asyncio
import collections

from consentcam.db.models import Job
from consentcam.jobs import PermanentFailure, RetryLater, Worker, enqueue, job_handler
from sqlalchemy import func, select

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


async def test_enqueue_many_skips_keys_taken_before_or_earlier_in_the_batch(consentcam_platform):
    """The bulk path (one INSERT ... SELECT, ON CONFLICT DO NOTHING) keeps enqueue's rule and its payloads."""
    from consentcam.jobs import enqueue_many

    p = consentcam_platform
    await _jobs(p, "test.count", 2)  # keys test.count:0 and test.count:1 are taken
    batch = [({"i": 0, "again": True}, "test.count:0"), ({"i": 2, "nested": {"a": [1, "b"]}}, "test.count:2"),
             ({"i": 2, "second": True}, "test.count:2"), ({"i": 3}, None), ({"i": 4, "text": "é ' \" \\"}, None)]
    async with p.db.transaction() as session:
        written = await enqueue_many(session, p.now(), "test.count", batch, max_attempts=3)
    assert written == 3
    async with p.db.sessions() as session:
        jobs = (await session.execute(select(Job).where(Job.kind == "test.count").order_by(Job.created_at))).scalars().all()
    by_key = {j.idempotency_key: j for j in jobs}
    assert len(jobs) == 5 and by_key["test.count:0"].payload == {"i": 0}, "a taken key was written over"
    assert by_key["test.count:2"].payload == {"i": 2, "nested": {"a": [1, "b"]}}, "the first of a batch's duplicates wins"
    unkeyed = sorted((j.payload for j in jobs if j.idempotency_key is None), key=lambda d: d["i"])
    assert unkeyed == [{"i": 3}, {"i": 4, "text": "é ' \" \\"}]
    new = [j for j in jobs if j.max_attempts == 3]
    assert len(new) == 3 and {(j.status, j.attempts, j.run_after) for j in new} == {("pending", 0, p.now())}
    assert len({j.id for j in jobs}) == 5


async def test_jobs_run_concurrently_and_keep_their_leases_while_waiting_for_a_slot(consentcam_platform):
    """Four slow jobs, two slots: the last two wait longer than a lease, yet no other worker takes them, each runs
    once, and each outcome is recorded by the worker that holds its lease (real clock, as the heartbeat's)."""
    from consentcam.clock import Clock

    p = consentcam_platform
    p.clock = Clock()
    RUNS.clear()
    CONCURRENT.update(now=0, max=0)
    async with p.db.transaction() as session:
        for i in range(4):
            await enqueue(session, p.now(), "test.slow_count", {"seconds": 0.8}, key=f"slow:{i}")
    busy = Worker(p, "busy", lease_s=0.6, batch=4, concurrency=2)
    other = Worker(p, "other")
    running = asyncio.create_task(busy.run_once())
    await asyncio.sleep(1.1)  # the waiting jobs' first leases (0.6 s) have run out by now, had they not been kept
    assert await other.run_once() == 0, "a claimed job waiting for a slot lost its lease"
    assert await running == 4
    assert CONCURRENT["max"] == 2, f"ran {CONCURRENT['max']} at once, the worker allows 2"
    assert len(RUNS) == 4 and set(RUNS.values()) == {1}
    async with p.db.sessions() as session:
        rows = (await session.execute(select(Job.status, Job.locked_by, Job.attempts).where(Job.kind == "test.slow_count"))).all()
    assert set(rows) == {("done", "busy", 1)}


@job_handler("test.slow_count")
async def _slow_count(p, job):
    CONCURRENT["now"] += 1
    CONCURRENT["max"] = max(CONCURRENT["max"], CONCURRENT["now"])
    try:
        await asyncio.sleep(job.payload["seconds"])
    finally:
        CONCURRENT["now"] -= 1
    RUNS[job.id] += 1
    return {"slept": job.payload["seconds"]}
