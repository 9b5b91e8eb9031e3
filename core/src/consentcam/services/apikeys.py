"""API keys for an agency's machine clients. A key carries scopes, not a role: it can call exactly the
operations that declare one of its scopes, is shown once, stored as a digest, revocable, and audited like a
user (actor kind ``api_key``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from .. import audit
from ..db.models import Agency, ApiKey
from ..errors import AgencySuspended, Forbidden, InvalidInput, NotFound, Unauthorized
from ..platform import Platform
from ..security import digest, new_secret
from .accounts import Principal

KEY_PREFIX = "cck_"
SCOPES = {
    "map:read": "read the agency's camera map (GeoJSON)",
    "requests:read": "read the agency's requests and their items",
    "evidence:read": "search and read evidence metadata and bytes",
    "evidence:export": "build and download export packages",
    "audit:read": "verify the audit chain",
}


def _may_manage(principal: Principal, agency_id: str) -> None:
    if principal.role != "admin" or not (principal.is_platform_admin or principal.agency_id == agency_id):
        raise Forbidden("an agency's admin manages its API keys")


async def create_key(p: Platform, principal: Principal, agency_id: str, label: str, scopes: list[str],
                     expires_at: datetime | None) -> tuple[ApiKey, str]:
    _may_manage(principal, agency_id)
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidInput.at(("body", "scopes"), f"scopes are some of: {', '.join(sorted(SCOPES))}"
                              + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    now = p.now()
    if expires_at is not None and expires_at <= now:
        raise InvalidInput.at(("body", "expires_at"), "expires_at must be in the future")
    secret = new_secret(KEY_PREFIX)
    async with p.db.transaction() as session:
        if await session.get(Agency, agency_id) is None:
            raise NotFound("no such agency")
        key = ApiKey(agency_id=agency_id, label=label, scopes=sorted(set(scopes)), key_hash=digest(secret),
                     created_by=principal.user_id, created_at=now, expires_at=expires_at)
        session.add(key)
        await session.flush()
        await audit.record(p.db, session, now, principal.actor, "api_key.created", subject_type="api_key", subject_id=key.id,
                           detail={"label": label, "scopes": key.scopes, "agency_id": agency_id})
    return key, secret


async def list_keys(p: Platform, principal: Principal, agency_id: str) -> list[ApiKey]:
    _may_manage(principal, agency_id)
    async with p.db.sessions() as session:
        return list((await session.execute(select(ApiKey).where(ApiKey.agency_id == agency_id)
                                           .order_by(ApiKey.created_at))).scalars())


async def revoke_key(p: Platform, principal: Principal, agency_id: str, key_id: str) -> None:
    _may_manage(principal, agency_id)
    now = p.now()
    async with p.db.transaction() as session:
        key = await session.get(ApiKey, key_id)
        if key is None or key.agency_id != agency_id:
            raise NotFound("no such API key")
        if key.revoked_at is None:
            key.revoked_at = now
            await audit.record(p.db, session, now, principal.actor, "api_key.revoked", subject_type="api_key",
                               subject_id=key.id, detail={"label": key.label})


async def authenticate_key(p: Platform, secret: str) -> Principal:
    now = p.now()
    async with p.db.sessions() as session:
        row = (await session.execute(select(ApiKey, Agency).join(Agency, Agency.id == ApiKey.agency_id)
                                     .where(ApiKey.key_hash == digest(secret)))).first()
    if row is None:
        raise Unauthorized("the API key is unknown")
    key, agency = row
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        raise Unauthorized("the API key was revoked or has expired")
    if agency.suspended:
        raise AgencySuspended(f"access for {agency.name} is suspended by the city", agency_id=agency.id)
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        async with p.db.transaction() as session:  # coarse, so that heavy clients do not write on every call
            await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    return Principal(user_id=key.id, role="api_key", agency_id=key.agency_id, badge=0, name=key.label,
                     token_kind="api_key", scopes=frozenset(key.scopes))


def key_out(key: ApiKey, now: datetime) -> dict[str, Any]:
    return {"id": key.id, "label": key.label, "scopes": key.scopes, "created_at": key.created_at,
            "expires_at": key.expires_at, "revoked": key.revoked_at is not None,
            "active": key.revoked_at is None and (key.expires_at is None or key.expires_at > now),
            "last_used_at": key.last_used_at}
