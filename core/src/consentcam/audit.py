"""The audit chain: every access to a camera's data and every consent change, hash-linked so tampering shows.

Each event stores the hash of the one before it; ``seq`` is gapless and handed out under the chain lock
(BEGIN IMMEDIATE on SQLite, a transaction advisory lock on PostgreSQL), so concurrent writers cannot fork it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
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
    def system(cls, name: str = "consentcam") -> "Actor":
        return cls(kind="system", role="system", name=name)

    @classmethod
    def plugin(cls, name: str) -> "Actor":
        return cls(kind="plugin", role="plugin", name=name)

    @property
    def is_agency(self) -> bool:
        return self.agency_id is not None


def _canonical(event: dict[str, Any]) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _stamp(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")


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
    cameras = sorted(set(camera_ids))
    detail = dict(detail or {})
    if actor.name and "actor_name" not in detail:
        detail["actor_name"] = actor.name
    await db.lock_audit_chain(session)
    head = (await session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1))).first()
    seq, prev = (head.seq + 1, head.hash) if head else (1, GENESIS)
    fields = dict(
        seq=seq,
        at=at,
        actor_id=actor.user_id,
        actor_role=actor.role,
        actor_agency_id=actor.agency_id,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        detail=detail,
        camera_ids=cameras,
    )
    event = AuditEvent(**fields, prev_hash=prev, hash=event_hash(prev, **fields))
    session.add(event)
    await session.flush()
    if cameras:
        # One statement however many cameras an event names (a request may ask ten thousand).
        await insert_rows(session, AuditEventCamera.__table__, {"camera_id": cameras}, {"seq": seq})
    return event


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
