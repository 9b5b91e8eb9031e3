"""The audit chain: every access to a camera's data and every consent change, hash-linked so tampering shows.

Each event stores the hash of the one before it; ``seq`` is gapless and handed out under the chain lock
(BEGIN IMMEDIATE on SQLite, a transaction advisory lock on PostgreSQL), so concurrent writers cannot fork it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .db import Database
from .db.bulk import insert_rows
from .db.models import AuditEvent, AuditEventCamera

GENESIS = "0" * 64


@dataclass(frozen=True)
class Actor:
    """Who did something: a user, a machine client, a plugin, or the platform itself."""

    kind: str  # user | api_key | plugin | system | public
    user_id: str | None = None
    role: str | None = None
    agency_id: str | None = None
    badge: int | None = None
    name: str | None = None  # plugin name or API key label

    @classmethod
    def system(cls, name: str = "consentcam") -> Actor:
        return cls(kind="system", role="system", name=name)

    @classmethod
    def plugin(cls, name: str) -> Actor:
        return cls(kind="plugin", role="plugin", name=name)

    @property
    def is_agency(self) -> bool:
        return self.agency_id is not None


def _canonical(event: dict[str, Any]) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def event_hash(prev_hash: str, *, seq: int, at: datetime, actor_id: str | None, actor_role: str | None,
               actor_agency_id: str | None, action: str, subject_type: str | None, subject_id: str | None,
               detail: dict[str, Any], camera_ids: Sequence[str]) -> str:
    body = {
        "seq": seq,
        "at": _stamp(at),
        "actor_id": actor_id,
        "actor_role": actor_role,
        "actor_agency_id": actor_agency_id,
        "action": action,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "detail": detail,
        "camera_ids": list(camera_ids),
    }
    return hashlib.sha256(prev_hash.encode() + b"\n" + _canonical(body)).hexdigest()


@dataclass(frozen=True)
class Pending:
    """An event not yet in the chain: what ``record`` is given."""

    at: datetime
    actor: Actor
    action: str
    subject_type: str | None = None
    subject_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    camera_ids: Sequence[str] = ()


async def record(
    db: Database,
    session: AsyncSession,
    at: datetime,
    actor: Actor,
    action: str,
    *,
    subject_type: str | None = None,
    subject_id: str | None = None,
    detail: dict[str, Any] | None = None,
    camera_ids: Iterable[str] = (),
) -> AuditEvent:
    """Append one event in the caller's transaction. Call it last in the unit of work: it holds the chain lock."""
    pending = Pending(at, actor, action, subject_type, subject_id, dict(detail or {}), tuple(camera_ids))
    return (await record_many(db, session, [pending]))[0]


async def record_many(db: Database, session: AsyncSession, events: Sequence[Pending]) -> list[AuditEvent]:
    """Append events in order in the caller's transaction: one chain lock, one read of the head, one insert of
    the events and one of the cameras they name, however many there are."""
    await db.lock_audit_chain(session)
    head = (await session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1))).first()
    seq, prev = (head.seq, head.hash) if head else (0, GENESIS)
    out: list[AuditEvent] = []
    named: dict[str, list[Any]] = {"camera_id": [], "seq": []}
    for pending in events:
        seq += 1
        cameras = sorted(set(pending.camera_ids))
        detail = dict(pending.detail)
        if pending.actor.name and "actor_name" not in detail:
            detail["actor_name"] = pending.actor.name
        fields = dict(
            seq=seq,
            at=pending.at,
            actor_id=pending.actor.user_id,
            actor_role=pending.actor.role,
            actor_agency_id=pending.actor.agency_id,
            action=pending.action,
            subject_type=pending.subject_type,
            subject_id=pending.subject_id,
            detail=detail,
            camera_ids=cameras,
        )
        link = event_hash(prev, **fields)  # type: ignore[arg-type]
        out.append(AuditEvent(**fields, prev_hash=prev, hash=link))
        prev = link
        named["camera_id"] += cameras
        named["seq"] += [seq] * len(cameras)
    session.add_all(out)
    await session.flush()
    if named["seq"]:
        # One statement however many cameras the events name (a request may ask ten thousand).
        await insert_rows(session, AuditEventCamera.__table__, named)
    return out


class Appender:
    """Group commit for events that stand alone (an agency's read of the map, of a clip): each caller waits until
    its event is durably in the chain, and events arriving while a batch commits go together in the next one.

    One transaction takes the chain lock, reads the head, inserts the batch and commits (one fsync) instead of one
    per event: under concurrent reads the chain's throughput grows with the batch instead of being bounded by one
    commit per event. A caller whose batch fails gets the error: nothing is shown that was not recorded."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.queue: list[tuple[Pending, asyncio.Future[None]]] = []
        self.writer: asyncio.Task[None] | None = None
        self.batches = 0  # for tests and measurement

    async def append(self, event: Pending) -> None:
        done = asyncio.get_running_loop().create_future()
        self.queue.append((event, done))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._write(), name="audit-appender")
        await asyncio.shield(done)  # a caller that goes away does not take its event out of the batch

    async def _write(self) -> None:
        while self.queue:
            batch, self.queue = self.queue, []
            try:
                async with self.db.transaction() as session:
                    await record_many(self.db, session, [event for event, _ in batch])
            except BaseException as exc:  # every caller of the batch fails closed
                stopped = not isinstance(exc, Exception)  # cancelled at shutdown: fail the queued callers too
                failed = batch + (self.queue if stopped else [])
                for _, done in failed:
                    if not done.done():
                        done.set_exception(exc if not stopped else RuntimeError("the audit writer stopped"))
                if stopped:
                    self.queue = []
                    raise
            else:
                self.batches += 1
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)


_APPENDERS: weakref.WeakKeyDictionary[Database, Appender] = weakref.WeakKeyDictionary()


async def record_alone(db: Database, event: Pending) -> None:
    """Record an event that is the whole unit of work (a read), grouped with others made at the same moment."""
    appender = _APPENDERS.get(db)
    if appender is None:
        appender = _APPENDERS[db] = Appender(db)
    await appender.append(event)


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    events: int
    head: str
    broken_at: int | None = None
    reason: str | None = None


async def verify_chain(db: Database, batch: int = 5000) -> ChainCheck:
    """Recompute every link from the genesis; stops at the first event that does not verify."""
    prev, expected_seq, count = GENESIS, 1, 0
    async with db.sessions() as session:
        last_seq = 0
        while True:
            rows = (
                await session.execute(
                    select(AuditEvent).where(AuditEvent.seq > last_seq).order_by(AuditEvent.seq).limit(batch)
                )
            ).scalars().all()
            if not rows:
                break
            for e in rows:
                if e.seq != expected_seq:
                    return ChainCheck(False, count, prev, e.seq, f"sequence jumps from {expected_seq - 1} to {e.seq}")
                if e.prev_hash != prev:
                    return ChainCheck(False, count, prev, e.seq, "link to the previous event is broken")
                recomputed = event_hash(
                    prev, seq=e.seq, at=e.at, actor_id=e.actor_id, actor_role=e.actor_role,
                    actor_agency_id=e.actor_agency_id, action=e.action, subject_type=e.subject_type,
                    subject_id=e.subject_id, detail=e.detail, camera_ids=e.camera_ids,
                )
                if recomputed != e.hash:
                    return ChainCheck(False, count, prev, e.seq, "event content does not match its hash")
                prev, expected_seq, count = e.hash, e.seq + 1, count + 1
            last_seq = rows[-1].seq
            session.expunge_all()
    return ChainCheck(True, count, prev)
