"""The public transparency report: monthly counts per agency, and how often owners revoked. Aggregates only:
no camera, owner, case or location is ever named here."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ..db.models import Agency, AuditEvent, Evidence, FootageRequest, RequestItem
from ..platform import Platform

# Counted from the audit chain, so anything the platform did is counted the same way the auditors see it.
CHAIN_COUNTS = {"live_sessions": "live.opened", "emergencies": "emergency.declared"}


def _month(p: Platform, column: Any) -> Any:
    if p.db.is_sqlite:
        return func.strftime("%Y-%m", column)
    return func.to_char(column, "YYYY-MM")


async def report(p: Platform) -> dict[str, Any]:
    rows: dict[tuple[str, str], dict[str, int]] = {}

    def bump(agency_id: str, month: str, key: str, n: int) -> None:
        entry = rows.setdefault((agency_id, month), {"requests": 0, "cameras_asked": 0, "clips_received": 0,
                                                     "live_sessions": 0, "emergencies": 0})
        entry[key] += n

    async with p.db.sessions() as session:
        agencies = {a.id: a for a in (await session.execute(select(Agency))).scalars()}
        m = _month(p, FootageRequest.created_at)
        for agency_id, month, n in await session.execute(
            select(FootageRequest.agency_id, m, func.count()).group_by(FootageRequest.agency_id, m)
        ):
            bump(agency_id, month, "requests", n)
        m = _month(p, RequestItem.created_at)
        for agency_id, month, n in await session.execute(
            select(FootageRequest.agency_id, m, func.count()).join(FootageRequest, FootageRequest.id == RequestItem.request_id)
            .group_by(FootageRequest.agency_id, m)
        ):
            bump(agency_id, month, "cameras_asked", n)
        m = _month(p, Evidence.created_at)
        for agency_id, month, n in await session.execute(select(Evidence.agency_id, m, func.count()).group_by(Evidence.agency_id, m)):
            bump(agency_id, month, "clips_received", n)
        m = _month(p, AuditEvent.at)
        for key, action in CHAIN_COUNTS.items():
            for agency_id, month, n in await session.execute(
                select(AuditEvent.actor_agency_id, m, func.count()).where(AuditEvent.action == action)
                .group_by(AuditEvent.actor_agency_id, m)
            ):
                if agency_id:
                    bump(agency_id, month, key, n)
        revocations = {
            month: n for month, n in await session.execute(
                select(m, func.count()).where(AuditEvent.action == "grant.revoked").group_by(m)
            )
        }
    months = []
    for (agency_id, month), counts in sorted(rows.items(), key=lambda kv: (kv[0][1], agencies[kv[0][0]].name if kv[0][0] in agencies else "")):
        agency = agencies.get(agency_id)
        months.append({"month": month, "agency_id": agency_id, "agency": agency.name if agency else "unknown", **counts})
    return {
        "months": months,
        "revocations": [{"month": k, "count": v} for k, v in sorted(revocations.items())],
        "agencies": [{"id": a.id, "name": a.name, "policy_text": a.policy_text, "suspended": a.suspended,
                      "require_approval": a.require_approval, "max_window_hours": a.max_window_hours,
                      "max_area_km2": a.max_area_km2} for a in sorted(agencies.values(), key=lambda a: a.name)],
    }
