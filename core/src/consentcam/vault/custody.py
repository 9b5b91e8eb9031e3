"""The chain of custody of a clip: events in the core's audit chain about one evidence item, each naming who,
when, and the clip's SHA-256, so the custody record verifies with the rest of the chain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .. import audit
from ..audit import Actor
from ..db.models import AuditEvent, Evidence
from ..platform import Platform

RECEIVED, VERIFIED, VIEWED, DOWNLOADED = "custody.received", "custody.verified", "custody.viewed", "custody.downloaded"
EXPORTED, HELD, RELEASED, DISPOSED = "custody.exported", "custody.held", "custody.released", "custody.disposed"
ACTIONS = (RECEIVED, VERIFIED, VIEWED, DOWNLOADED, EXPORTED, HELD, RELEASED, DISPOSED)


async def record(p: Platform, session: AsyncSession, now: datetime, actor: Actor, action: str, evidence: Evidence,
                 **detail: Any) -> AuditEvent:
    """Append one custody event in the caller's transaction (last in the unit of work: it takes the chain lock)."""
    assert action in ACTIONS, action
    return await audit.record(
        p.db, session, now, actor, action, subject_type="evidence", subject_id=evidence.id,
        camera_ids=[evidence.camera_id] if evidence.camera_id else [],
        detail={"sha256": evidence.sha256, "size": evidence.size, "request_id": evidence.request_id, **detail},
    )


async def events_of(session: AsyncSession, evidence_ids: Sequence[str]) -> dict[str, list[AuditEvent]]:
    out: dict[str, list[AuditEvent]] = {e: [] for e in evidence_ids}
    if not evidence_ids:
        return out
    rows = (await session.execute(
        select(AuditEvent).where(AuditEvent.subject_type == "evidence", AuditEvent.subject_id.in_(list(evidence_ids)))
        .order_by(AuditEvent.seq)
    )).scalars().all()
    for event in rows:
        out[event.subject_id or ""].append(event)
    return out


def event_out(event: AuditEvent) -> dict[str, Any]:
    """Every field the event's hash covers, plus the hashes: enough to recompute the link outside the platform."""
    return {
        "seq": event.seq, "at": event.at.isoformat(), "action": event.action, "actor_id": event.actor_id,
        "actor_role": event.actor_role, "actor_agency_id": event.actor_agency_id, "subject_type": event.subject_type,
        "subject_id": event.subject_id, "detail": event.detail, "camera_ids": list(event.camera_ids),
        "prev_hash": event.prev_hash, "hash": event.hash,
    }


def event_hash_ok(event: dict[str, Any]) -> bool:
    """Does an exported custody event still hash to its recorded link? Needs no database."""
    recomputed = audit.event_hash(
        event["prev_hash"], seq=event["seq"], at=datetime.fromisoformat(event["at"]), actor_id=event["actor_id"],
        actor_role=event["actor_role"], actor_agency_id=event["actor_agency_id"], action=event["action"],
        subject_type=event["subject_type"], subject_id=event["subject_id"], detail=event["detail"],
        camera_ids=event["camera_ids"],
    )
    return recomputed == event["hash"]
