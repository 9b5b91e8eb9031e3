"""Retention and legal hold: each agency keeps evidence of a case category for a number of days from receipt
(category ``default`` covers the others; no policy at all means keep until told). A clip under legal hold is
never disposed. Disposal is a custody event first, then the bytes go (an outbox job), and the record stays."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from .. import audit
from ..audit import Actor
from ..db.models import Evidence, Export, FootageRequest, RetentionPolicy, Upload
from ..errors import Conflict, Forbidden, NotFound
from ..jobs import enqueue
from ..platform import Platform
from ..services.accounts import Principal
from . import custody
from .core import vault_for
from .storage import key_for

DEFAULT_CATEGORY = "default"
POLICY_ROLES = ("supervisor", "admin")


async def policy_days(session: AsyncSession, agency_id: str, category: str | None) -> int | None:
    rows = dict((await session.execute(
        select(RetentionPolicy.category, RetentionPolicy.days)
        .where(RetentionPolicy.agency_id == agency_id, RetentionPolicy.category.in_([category or DEFAULT_CATEGORY,
                                                                                      DEFAULT_CATEGORY]))
    )).all())
    return rows.get(category or DEFAULT_CATEGORY, rows.get(DEFAULT_CATEGORY))


async def retain_until(p: Platform, agency_id: str, request_id: str | None, received_at: datetime) -> datetime | None:
    """The end of the clip's retention as the policy stands now (used for the store's own object lock)."""
    async with p.db.sessions() as session:
        category = None
        if request_id:
            category = (await session.execute(select(FootageRequest.category).where(FootageRequest.id == request_id))).scalar()
        days = await policy_days(session, agency_id, category)
    return received_at + timedelta(days=days) if days else None


# --- policies -------------------------------------------------------------------------------------------


def _policy_agency(principal: Principal) -> str:
    if principal.agency_id is None:
        raise Forbidden("retention policies belong to an agency")
    return principal.agency_id


async def list_policies(p: Platform, principal: Principal) -> list[dict[str, Any]]:
    agency_id = _policy_agency(principal)
    async with p.db.sessions() as session:
        rows = (await session.execute(select(RetentionPolicy).where(RetentionPolicy.agency_id == agency_id)
                                      .order_by(RetentionPolicy.category))).scalars().all()
    return [{"category": r.category, "days": r.days, "updated_at": r.updated_at} for r in rows]


async def set_policy(p: Platform, principal: Principal, category: str, days: int | None) -> dict[str, Any] | None:
    if principal.role not in POLICY_ROLES:
        raise Forbidden("a supervisor or the agency's admin sets retention")
    agency_id = _policy_agency(principal)
    now = p.now()
    async with p.db.transaction() as session:
        row = await session.get(RetentionPolicy, (agency_id, category))
        if days is None:
            if row is None:
                raise NotFound("no retention policy for this category")
            await session.delete(row)
        elif row is None:
            session.add(RetentionPolicy(agency_id=agency_id, category=category, days=days, updated_at=now,
                                        updated_by=principal.user_id))
        else:
            row.days, row.updated_at, row.updated_by = days, now, principal.user_id
        await session.flush()
        await audit.record(p.db, session, now, principal.actor, "retention.set", subject_type="agency", subject_id=agency_id,
                           detail={"category": category, "days": days})
    return None if days is None else {"category": category, "days": days, "updated_at": now}


# --- hold -----------------------------------------------------------------------------------------------


async def set_hold(p: Platform, principal: Principal, evidence_id: str, on: bool, reason: str | None) -> Evidence:
    from .evidence import readable

    if principal.role not in POLICY_ROLES:
        raise Forbidden("a supervisor or the agency's admin places and lifts legal holds")
    now = p.now()
    async with p.db.transaction() as session:
        evidence = await readable(session, principal, evidence_id, lock=True)
        if evidence.disposed_at is not None:
            raise Conflict("this clip was disposed of; only its custody record remains")
        if evidence.on_hold == on:
            return evidence
        evidence.on_hold = on
        await enqueue(session, now, "vault.legal_hold", {"evidence_id": evidence.id})
        await custody.record(p, session, now, principal.actor, custody.HELD if on else custody.RELEASED, evidence,
                             reason=(reason or "")[:500])
    return evidence


# --- disposal -------------------------------------------------------------------------------------------


async def due(p: Platform, now: datetime, limit: int = 500) -> list[tuple[str, str, int]]:
    """Clips past their retention and not held: (evidence id, category, days), policy by policy."""
    out: list[tuple[str, str, int]] = []
    async with p.db.sessions() as session:
        policies = (await session.execute(select(RetentionPolicy.agency_id, RetentionPolicy.category,
                                                 RetentionPolicy.days))).all()
        named: dict[str, list[str]] = {}
        for agency_id, category, _ in policies:
            named.setdefault(agency_id, []).append(category)
        for agency_id, category, days in sorted(policies):
            stmt = (select(Evidence.id)
                    .outerjoin(FootageRequest, FootageRequest.id == Evidence.request_id)
                    .where(Evidence.agency_id == agency_id, Evidence.disposed_at.is_(None), Evidence.on_hold.is_(False),
                           Evidence.created_at <= now - timedelta(days=days)))
            if category == DEFAULT_CATEGORY:  # every category of this agency without a policy of its own
                others = [c for c in named[agency_id] if c != DEFAULT_CATEGORY]
                if others:
                    stmt = stmt.where(or_(FootageRequest.category.is_(None), FootageRequest.category.not_in(others)))
            else:
                stmt = stmt.where(FootageRequest.category == category)
            for evidence_id in (await session.execute(stmt.order_by(Evidence.created_at).limit(limit - len(out)))).scalars():
                out.append((evidence_id, category, days))
            if len(out) >= limit:
                break
    return out


async def dispose(p: Platform, evidence_id: str, reason: str, actor: Actor | None = None) -> bool:
    """Record the disposal and queue the deletion of the bytes; the row and its custody chain stay."""
    now = p.now()
    async with p.db.transaction() as session:
        evidence = (await session.execute(select(Evidence).where(Evidence.id == evidence_id).with_for_update())).scalar_one_or_none()
        if evidence is None or evidence.disposed_at is not None or evidence.on_hold:
            return False
        evidence.disposed_at = now
        await enqueue(session, now, "vault.delete_bytes", {"evidence_id": evidence.id}, key=f"vault.delete_bytes:{evidence.id}")
        await custody.record(p, session, now, actor or Actor.system("retention"), custody.DISPOSED, evidence, reason=reason)
    return True


async def dispose_due(p: Platform) -> int:
    """Periodic upkeep: dispose of every clip past its agency's retention for its case category."""
    done = 0
    for evidence_id, category, days in await due(p, p.now()):
        if await dispose(p, evidence_id, f"retention: {days} days for category {category!r}"):
            done += 1
    return done


async def unreferenced(session: AsyncSession, sha256: str, *, except_upload: str | None = None) -> bool:
    """No live clip and no upload being placed uses these bytes, so the stored object may go."""
    live = (await session.execute(select(func.count()).select_from(Evidence).where(
        Evidence.storage_key == key_for(sha256), Evidence.disposed_at.is_(None)))).scalar_one()
    stmt = select(func.count()).select_from(Upload).where(Upload.sha256 == sha256)
    if except_upload is not None:
        stmt = stmt.where(Upload.id != except_upload)
    placing = (await session.execute(stmt)).scalar_one()
    return live == 0 and placing == 0


async def delete_bytes(p: Platform, evidence_id: str) -> dict[str, Any]:
    """The outbox half of disposal: delete the object (unless other live clips share the bytes) and any export
    package that carries a copy."""
    vault = vault_for(p)
    async with p.db.sessions() as session:
        evidence = await session.get(Evidence, evidence_id)
        if evidence is None or evidence.disposed_at is None:
            return {"note": "not disposed; nothing deleted"}
        free = await unreferenced(session, evidence.sha256)
        exports = (await session.execute(select(Export).where(Export.request_id == evidence.request_id,
                                                              Export.status.in_(("ready", "failed"))))).scalars().all()
    purged = []
    for export in exports:
        if evidence_id in (export.evidence_ids or []):
            if export.file_name:
                (vault.export_dir / export.file_name).unlink(missing_ok=True)
            purged.append(export.id)
    if purged:
        async with p.db.transaction() as session:
            await session.execute(Export.__table__.update().where(Export.id.in_(purged)).values(status="purged"))
    if free:
        await vault.storage.delete(evidence.storage_key)
    return {"deleted": free, "shared": not free, "exports_purged": purged}
