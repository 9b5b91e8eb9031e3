"""Reading the vault: one clip's record, its bytes (with ranges), and search. Only users of the agency that asked
for a clip read it; to anyone else it does not exist (404). Every read is a custody event, recorded before any
byte leaves. (Sharing a case with another agency is not built yet: clips are visible to the requesting agency.)"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from .. import audit
from ..db.models import Evidence, EvidenceLabel, FootageRequest
from ..errors import Forbidden, Gone, InvalidInput, NotFound, RangeNotSatisfiable
from ..platform import Platform
from ..services.accounts import Principal
from . import custody, labels

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


async def readable(session: AsyncSession, principal: Principal, evidence_id: str, *, lock: bool = False) -> Evidence:
    stmt = select(Evidence).where(Evidence.id == evidence_id)
    if lock:
        stmt = stmt.with_for_update()
    evidence = (await session.execute(stmt)).scalar_one_or_none()
    if evidence is None or principal.agency_id is None or evidence.agency_id != principal.agency_id:
        raise NotFound("no such evidence")
    return evidence


def evidence_out(evidence: Evidence, events: list[Any] | None, case_number: str | None,
                 found: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The wire shape of a clip; with ``events``, its custody chain too; ``found`` are its analysis labels."""
    out = {
        "id": evidence.id, "sha256": evidence.sha256, "size": evidence.size, "agency_id": evidence.agency_id,
        "request_id": evidence.request_id, "request_item_id": evidence.request_item_id, "case_number": case_number,
        "camera_id": evidence.camera_id, "source": evidence.source, "uploaded_by": evidence.uploaded_by,
        "media": evidence.media, "provenance": evidence.provenance, "recorded_start": evidence.recorded_start,
        "recorded_end": evidence.recorded_end, "received_at": evidence.created_at, "on_hold": evidence.on_hold,
        "disposed_at": evidence.disposed_at, "labels": found or [],
    }
    if events is not None:
        out["custody"] = [custody.event_out(e) for e in events]
    return out


async def _case_number(session: AsyncSession, request_id: str | None) -> str | None:
    if request_id is None:
        return None
    return (await session.execute(select(FootageRequest.case_number).where(FootageRequest.id == request_id))).scalar()


async def get(p: Platform, principal: Principal, evidence_id: str) -> dict[str, Any]:
    now = p.now()
    async with p.db.transaction() as session:
        evidence = await readable(session, principal, evidence_id)
        case_number = await _case_number(session, evidence.request_id)
        await custody.record(p, session, now, principal.actor, custody.VIEWED, evidence)
        events = (await custody.events_of(session, [evidence.id]))[evidence.id]
        found = (await labels.labels_of(session, [evidence.id]))[evidence.id]
    return evidence_out(evidence, events, case_number, found)


# --- bytes --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slice:
    evidence: Evidence
    start: int
    end: int  # exclusive
    partial: bool


def parse_range(header: str | None, size: int) -> tuple[int, int, bool]:
    """One byte range (RFC 9110); several ranges, or a header we do not understand, serve the whole clip."""
    if not header:
        return 0, size, False
    found = _RANGE.match(header.strip())
    if not found or (not found.group(1) and not found.group(2)):
        return 0, size, False
    first, last = found.groups()
    if first == "":  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(f"the clip has {size} bytes", size=size)
        return max(0, size - suffix), size, True
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable(f"the clip has {size} bytes; bytes {first}-{last} are not in it", size=size)
    return start, end, True


async def open_content(p: Platform, principal: Principal, evidence_id: str, range_header: str | None) -> Slice:
    now = p.now()
    async with p.db.transaction() as session:
        evidence = await readable(session, principal, evidence_id)
        if evidence.disposed_at is not None:
            raise Gone(f"this clip was disposed of at {evidence.disposed_at.isoformat()}; its custody record remains")
        start, end, partial = parse_range(range_header, evidence.size)
        await custody.record(p, session, now, principal.actor, custody.DOWNLOADED, evidence,
                             range=f"{start}-{end - 1}" if partial else "all")
    return Slice(evidence, start, end, partial)


# --- search -------------------------------------------------------------------------------------------


def _cursor(created_at: datetime, evidence_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at.isoformat(), evidence_id]).encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, evidence_id = json.loads(raw)
        return datetime.fromisoformat(at), str(evidence_id)
    except (ValueError, TypeError) as exc:
        raise InvalidInput.at(("query", "cursor"), "not a cursor this server gave out") from exc


async def search(p: Platform, principal: Principal, q: Any) -> dict[str, Any]:
    """The agency's clips, newest first, by request, camera, the time the footage covers, and label.

    ``from``/``to`` match clips whose recording overlaps the interval: the file's own times when it carries
    them, else the request's window. With a ``label``, only clips an analyser labelled so, and ``from``/``to``
    also bound the labelled span itself where the clip's start time is known: "a bus between 02:00 and 04:00"."""
    if principal.agency_id is None:
        raise Forbidden("evidence belongs to an agency; search it as one of its users")
    now = p.now()
    stmt = (select(Evidence, FootageRequest.case_number)
            .outerjoin(FootageRequest, FootageRequest.id == Evidence.request_id)
            .where(Evidence.agency_id == principal.agency_id))
    if q.request_id:
        stmt = stmt.where(Evidence.request_id == q.request_id)
    if q.camera_id:
        stmt = stmt.where(Evidence.camera_id == q.camera_id)
    if q.from_:
        stmt = stmt.where(func.coalesce(Evidence.recorded_end, Evidence.recorded_start, FootageRequest.window_end) >= q.from_)
    if q.to:
        stmt = stmt.where(func.coalesce(Evidence.recorded_start, FootageRequest.window_start) <= q.to)
    if q.cursor:
        at, last_id = _uncursor(q.cursor)
        stmt = stmt.where(or_(Evidence.created_at < at, and_(Evidence.created_at == at, Evidence.id < last_id)))
    if q.label:
        spans = select(EvidenceLabel.evidence_id).where(EvidenceLabel.label == labels.normalise(q.label))
        if q.from_:
            spans = spans.where(or_(EvidenceLabel.end_at.is_(None), EvidenceLabel.end_at >= q.from_))
        if q.to:
            spans = spans.where(or_(EvidenceLabel.start_at.is_(None), EvidenceLabel.start_at <= q.to))
        stmt = stmt.where(Evidence.id.in_(spans))
    async with p.db.sessions() as session:
        rows = list((await session.execute(stmt.order_by(Evidence.created_at.desc(), Evidence.id.desc())
                                           .limit(q.limit + 1))).all())
        more = len(rows) > q.limit
        rows = rows[: q.limit]
        found = await labels.labels_of(session, [e.id for e, _ in rows])
    items = [evidence_out(e, None, case_number, found[e.id]) for e, case_number in rows]
    async with p.db.transaction() as session:
        await audit.record(p.db, session, now, principal.actor, "evidence.searched", subject_type="evidence",
                           subject_id=None, camera_ids=[e.camera_id for e, _ in rows if e.camera_id],
                           detail={"query": q.model_dump(mode="json", by_alias=True, exclude_none=True),
                                   "evidence_ids": [e.id for e, _ in rows]})
    last = rows[-1][0] if rows else None
    return {"items": items, "next_cursor": _cursor(last.created_at, last.id) if more and last else None}
