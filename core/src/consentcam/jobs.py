"""The outbox: jobs written in the same transaction as their cause, claimed by workers, retried with backoff.

Claiming is one UPDATE ... RETURNING over a sub-select: on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` so that
several ``consentcam worker`` processes never take the same job; on SQLite the write lock taken at BEGIN
serialises claimers. A claimed job carries a lease; a worker that dies leaves it to be claimed again after the
lease, so delivery is at least once and handlers use the job's idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .db.bulk import insert_rows, random_ids
from .db.models import Job
from .errors import ServiceUnavailable
from .platform import Platform

log = logging.getLogger(__name__)

JobHandler = Callable[[Platform, Job], Awaitable[dict[str, Any] | None]]
HANDLERS: dict[str, JobHandler] = {}


class RetryLater(Exception):
    """The job could not be done now; try again with backoff."""


class PermanentFailure(Exception):
    """The job can never succeed; record why and stop retrying."""


def job_handler(kind: str) -> Callable[[JobHandler], JobHandler]:
    def register(fn: JobHandler) -> JobHandler:
        HANDLERS[kind] = fn
        return fn

    return register


async def enqueue(
    session: AsyncSession, now: datetime, kind: str, payload: dict[str, Any], *, key: str | None = None,
    run_after: datetime | None = None, max_attempts: int = 8,
) -> Job | None:
    """Add a job to the caller's transaction. With ``key``, a job already written under it is not written twice."""
    if key is not None:
        existing = (await session.execute(select(Job.id).where(Job.idempotency_key == key))).first()
        if existing:
            return None
    job = Job(kind=kind, payload=payload, idempotency_key=key, status="pending", attempts=0, max_attempts=max_attempts,
              run_after=run_after or now, created_at=now)
    session.add(job)
    return job


async def enqueue_many(
    session: AsyncSession, now: datetime, kind: str, jobs: Iterable[tuple[dict[str, Any], str | None]], *,
    run_after: datetime | None = None, max_attempts: int = 8,
) -> int:
    """``enqueue`` for many jobs of one kind, as (payload, key) pairs: the same rows, and the same rule that a key
    already written (before, or earlier in this batch) is not written twice, in one INSERT ... SELECT that skips
    taken keys (``ON CONFLICT DO NOTHING``) instead of a SELECT and a flushed INSERT per job. Returns how many
    jobs were written."""
    payloads: list[dict[str, Any]] = []
    keys: list[str | None] = []
    seen: set[str] = set()
    for payload, key in jobs:
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        payloads.append(payload)
        keys.append(key)
    if not payloads:
        return 0
    return await insert_rows(
        session, Job.__table__, {"id": random_ids(len(payloads)), "payload": payloads, "idempotency_key": keys},
        {"kind": kind, "status": "pending", "attempts": 0, "max_attempts": max_attempts, "run_after": run_after or now,
         "created_at": now},
        skip_conflicts_on="idempotency_key",
    )


def backoff_seconds(attempts: int) -> float:
    return min(3600.0, 2.0 ** attempts) * random.uniform(0.8, 1.2)


class Worker:
    def __init__(self, platform: Platform, name: str | None = None, *, batch: int = 20, lease_s: float = 120.0,
                 poll_s: float = 0.25, kinds: tuple[str, ...] | None = None,
                 maintenance: Callable[[Platform], Awaitable[Any]] | None = None, maintenance_every_s: float = 30.0,
                 concurrency: int | None = None) -> None:
        self.p = platform
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.batch = batch
        # Jobs of one claimed batch run this many at a time (most wait on the network: SMTP, webhooks, cameras).
        self.concurrency = max(1, concurrency if concurrency is not None else platform.settings.worker_concurrency)
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.kinds = kinds
        self.maintenance = maintenance
        self.maintenance_every_s = maintenance_every_s
        self._last_maintenance = 0.0
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def claim(self) -> list[Job]:
        now = self.p.now()
        ready = or_(
            and_(Job.status == "pending", Job.run_after <= now),
            and_(Job.status == "running", Job.locked_until < now),
        )
        pick = select(Job.id).where(ready).order_by(Job.run_after).limit(self.batch)
        if self.kinds:
            pick = pick.where(Job.kind.in_(self.kinds))
        if not self.p.db.is_sqlite:
            pick = pick.with_for_update(skip_locked=True)
        stmt = (
            update(Job)
            .where(Job.id.in_(pick.scalar_subquery()))
            .values(status="running", locked_by=self.name, locked_until=now + timedelta(seconds=self.lease_s),
                    attempts=Job.attempts + 1)
            .returning(Job)
            .execution_options(synchronize_session=False)
        )
        async with self.p.db.transaction() as session:
            return list((await session.execute(stmt)).scalars().all())

    async def _finish(self, job: Job, **values: Any) -> None:
        async with self.p.db.transaction() as session:
            # Only the holder of the lease records the outcome; a job re-claimed after a lost lease is not overwritten.
            await session.execute(
                update(Job).where(Job.id == job.id, Job.locked_by == self.name, Job.status == "running").values(**values)
            )

    async def _heartbeat(self, job: Job) -> None:
        """Keep the lease while the handler runs (a recorder plays a long window back in real time)."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                async with self.p.db.transaction() as session:
                    await session.execute(
                        update(Job).where(Job.id == job.id, Job.locked_by == self.name, Job.status == "running")
                        .values(locked_until=self.p.now() + timedelta(seconds=self.lease_s))
                    )
            except ServiceUnavailable:
                continue

    async def run_job(self, job: Job) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(job), name=f"lease {job.id}")
        try:
            await self._run_job(job)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _run_job(self, job: Job) -> None:
        handler = HANDLERS.get(job.kind)
        now = self.p.now()
        if handler is None:
            await self._finish(job, status="failed", last_error=f"no handler for job kind {job.kind!r}", finished_at=now,
                               locked_until=None)
            return
        try:
            result = await handler(self.p, job)
        except PermanentFailure as exc:
            log.warning("job %s (%s) failed for good: %s", job.id, job.kind, exc)
            await self._finish(job, status="failed", last_error=str(exc), finished_at=self.p.now(), locked_until=None)
        except (RetryLater, ServiceUnavailable, Exception) as exc:  # noqa: BLE001 - every failure is recorded
            if not isinstance(exc, RetryLater | ServiceUnavailable):
                log.exception("job %s (%s) raised", job.id, job.kind)
            message = f"{type(exc).__name__}: {exc}"
            if job.attempts >= job.max_attempts:
                await self._finish(job, status="failed", last_error=message, finished_at=self.p.now(), locked_until=None)
            else:
                await self._finish(job, status="pending", last_error=message, locked_until=None, locked_by=None,
                                   run_after=self.p.now() + timedelta(seconds=backoff_seconds(job.attempts)))
        else:
            await self._finish(job, status="done", result=result or {}, finished_at=self.p.now(), locked_until=None,
                               last_error=None)

    async def run_once(self) -> int:
        """Claim a batch and run it, ``concurrency`` jobs at a time. Each job's lease is kept from its claim, so one
        that waits for a free slot is not taken by another worker meanwhile; each outcome is recorded by the job
        itself, under its own lease, as soon as it ends."""
        jobs = await self.claim()
        if self.concurrency == 1 or len(jobs) <= 1:
            for job in jobs:
                await self.run_job(job)
            return len(jobs)
        slots = asyncio.Semaphore(self.concurrency)

        async def one(job: Job, heartbeat: asyncio.Task[None]) -> None:
            try:
                async with slots:
                    await self._run_job(job)
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat

        runs = [one(job, asyncio.create_task(self._heartbeat(job), name=f"lease {job.id}")) for job in jobs]
        outcomes = await asyncio.gather(*runs, return_exceptions=True)
        # Every job had its turn; a failure to record an outcome (the database went away) reaches the loop as before.
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return len(jobs)

    async def drain(self, max_rounds: int = 1000) -> int:
        """Run until no job is ready (tests and ``consentcam worker --once``)."""
        total = 0
        for _ in range(max_rounds):
            done = await self.run_once()
            total += done
            if done == 0:
                break
        return total

    async def _maintain(self) -> None:
        loop = asyncio.get_running_loop()
        if self.maintenance is None or loop.time() - self._last_maintenance < self.maintenance_every_s:
            return
        self._last_maintenance = loop.time()
        await self.maintenance(self.p)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._maintain()
                done = await self.run_once()
            except ServiceUnavailable:
                done = 0
                await asyncio.sleep(2.0)
            except Exception:  # keep the worker alive; the log says why
                log.exception("worker %s: claim failed", self.name)
                done = 0
                await asyncio.sleep(1.0)
            if done == 0:
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=self.poll_s)
                except TimeoutError:
                    pass

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"worker {self.name}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
