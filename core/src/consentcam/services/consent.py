"""Cameras and the owner's consent: registration, grants with versions, expiry, revocation and its effects.

The rule for every agency read and action is ``Consent.allows``: the camera is active, its current grant is in
force (not expired, not revoked), the scope is granted, and the agency receives the grant (its jurisdiction
holds the camera, or the owner shared it). Revocation is writing a new version; its effects happen in the
same transaction: open request items are cancelled, so their upload links fail at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import numpy as np
import shapely
from shapely.geometry import shape
from sqlalchemy import delete, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .. import audit
from ..audit import Actor
from ..db.models import Agency, AuditEvent, AuditEventCamera, Camera, CameraShare, FootageRequest, GrantVersion, RequestItem, User
from ..errors import InvalidInput, NotFound
from ..geo import check_lat_lon, point_in
from ..platform import Platform
from ..schemas import CameraCreate, CameraOut, CameraUpdate, Connection, GrantIn, GrantOut

SECRET_FIELDS = frozenset({"password", "token", "refresh_token", "api_key", "secret"})
OPEN_ITEM_STATES = ("matched", "notified")


# --- the rule -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Consent:
    """The grant in force for one camera at one instant."""

    active: bool
    version: int
    map: bool
    requests: bool
    direct_fetch: bool
    live: str
    share_with: frozenset[str]
    expires_at: datetime | None

    @classmethod
    def of(cls, camera: Camera, shares: Iterable[str], now: datetime) -> Consent:
        lapsed = camera.grant_expires_at is not None and camera.grant_expires_at <= now
        active = camera.status == "active" and camera.grant_version > 0 and not lapsed
        return cls(
            active=active,
            version=camera.grant_version,
            map=active and camera.grant_map,
            requests=active and camera.grant_requests,
            direct_fetch=active and camera.grant_direct_fetch,
            live=camera.grant_live if active else "never",
            share_with=frozenset(shares),
            expires_at=camera.grant_expires_at,
        )

    def reaches(self, agency: Agency, camera: Camera) -> bool:
        return agency.id in self.share_with or in_jurisdiction(agency, camera.lat, camera.lon)

    def allows(self, scope: str, agency: Agency, camera: Camera) -> bool:
        if agency.suspended or not self.active or not self.reaches(agency, camera):
            return False
        if scope == "live":
            return self.live != "never"
        return bool(getattr(self, scope))


_JURISDICTIONS: dict[str, tuple[str, Any]] = {}


def jurisdiction_shape(agency: Agency) -> Any:
    """The agency's jurisdiction as a prepared shapely geometry, cached per process while unchanged."""
    key = repr(agency.jurisdiction)
    cached = _JURISDICTIONS.get(agency.id)
    if cached is None or cached[0] != key:
        import shapely

        geometry = shape(agency.jurisdiction)
        shapely.prepare(geometry)
        cached = (key, geometry)
        _JURISDICTIONS[agency.id] = cached
    return cached[1]


def in_jurisdiction(agency: Agency, lat: float, lon: float) -> bool:
    if not (agency.min_lat <= lat <= agency.max_lat and agency.min_lon <= lon <= agency.max_lon):
        return False
    return point_in(jurisdiction_shape(agency), lat, lon)


# --- the rule over many cameras at once ----------------------------------------------------------------
#
# ``Consent.of(camera, shares, now).allows(scope, agency, camera)`` split where it is cheapest to decide for many
# cameras: what one camera's row says (``in_force``, as SQL conditions) and where the camera is (``reached``, over
# arrays). The consent state machine checks every agency read made this way against its model.


def in_force(scope: str, now: Any) -> list[Any]:
    """SQL conditions on ``cameras``: the current grant is in force (active camera, granted at least once, not
    lapsed at ``now``, a datetime or a bind parameter) and includes ``scope``. The agency's suspension and its
    reach are the caller's to apply."""
    c = Camera.__table__.c
    granted = {"map": c.grant_map, "requests": c.grant_requests, "direct_fetch": c.grant_direct_fetch,
               "live": c.grant_live != "never"}[scope]
    return [c.status == "active", c.grant_version > 0, or_(c.grant_expires_at.is_(None), c.grant_expires_at > now),
            granted.is_(True) if scope != "live" else granted]


def shared_with(agency_id: str) -> Any:
    """A column: the owner shared this camera with the agency (the grant's ``share_with``)."""
    return exists().where(CameraShare.camera_id == Camera.__table__.c.id, CameraShare.agency_id == agency_id)


def reached(agency: Agency, lons: np.ndarray, lats: np.ndarray, shared: np.ndarray) -> np.ndarray:
    """``Consent.reaches`` over arrays: shared with the agency, or inside its jurisdiction (boundary included)."""
    lons, lats = np.asarray(lons, dtype=float), np.asarray(lats, dtype=float)
    inside = (lats >= agency.min_lat) & (lats <= agency.max_lat) & (lons >= agency.min_lon) & (lons <= agency.max_lon)
    if inside.any():
        inside[inside] = shapely.intersects_xy(jurisdiction_shape(agency), lons[inside], lats[inside])
    return np.asarray(shared, dtype=bool) | inside


async def shares_of(session: AsyncSession, camera_ids: Sequence[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {c: set() for c in camera_ids}
    if not camera_ids:
        return out
    for chunk_start in range(0, len(camera_ids), 900):
        chunk = camera_ids[chunk_start : chunk_start + 900]
        rows = await session.execute(select(CameraShare.camera_id, CameraShare.agency_id).where(CameraShare.camera_id.in_(chunk)))
        for camera_id, agency_id in rows:
            out[camera_id].add(agency_id)
    return out


# --- presentation -------------------------------------------------------------------------------------


def grant_out(camera: Camera, shares: Iterable[str], now: datetime, created_at: datetime | None = None,
              revoked: bool = False) -> GrantOut:
    consent = Consent.of(camera, shares, now)
    return GrantOut(
        camera_id=camera.id,
        version=camera.grant_version,
        map=camera.grant_map,
        requests=camera.grant_requests,
        direct_fetch=camera.grant_direct_fetch,
        live=camera.grant_live,  # type: ignore[arg-type]
        share_with=sorted(shares),
        expires_at=camera.grant_expires_at,
        revoked=revoked,
        in_force=consent.active and not revoked,
        created_at=created_at,
    )


def public_connection(camera: Camera) -> dict[str, Any]:
    data = {"kind": camera.connection_kind, **camera.connection}
    data["has_credentials"] = bool(camera.connection_secret)
    return data


def camera_out(camera: Camera, shares: Iterable[str], now: datetime, latest: GrantVersion | None = None) -> CameraOut:
    view = None
    if camera.bearing_deg is not None:
        view = {"bearing_deg": camera.bearing_deg, "fov_deg": camera.fov_deg, "range_m": camera.range_m}
    return CameraOut(
        id=camera.id,
        label=camera.label,
        location={"lat": camera.lat, "lon": camera.lon},
        view=view,
        retention_days=camera.retention_days,
        precision=camera.precision,  # type: ignore[arg-type]
        status=camera.status,
        connection=public_connection(camera),
        capabilities=list(camera.capabilities or []),
        grant=grant_out(camera, shares, now, created_at=latest.created_at if latest else None,
                        revoked=bool(latest and latest.revoked)),
        created_at=camera.created_at,
    )


# --- connections --------------------------------------------------------------------------------------


def split_connection(p: Platform, connection: Connection | None) -> tuple[str, dict[str, Any], str | None]:
    """Separate write-only secrets (encrypted at rest) from the fields that may be shown back."""
    if connection is None:
        return "manual", {}, None
    raw = connection.model_dump(exclude_none=True)
    kind = raw.pop("kind", "manual")
    secret = {k: raw.pop(k) for k in list(raw) if k in SECRET_FIELDS}
    url = raw.get("url")
    if isinstance(url, str):
        raw["url"] = _strip_credentials(url, secret)
    if "username" in raw and secret:
        secret.setdefault("username", raw["username"])
    for key, value in raw.items():
        if not isinstance(value, str | int | float | bool | dict | list) or (isinstance(value, str) and len(value) > 2000):
            raise InvalidInput.at(("body", "connection", key), "connection fields are short strings, numbers or flags")
    return kind, raw, p.keyring.encrypt(_json(secret)) if secret else None


_QUERY_SECRETS = re.compile(r"(^|&)(user(name)?|pass(word|wd)?|pwd|token|auth|key|secret)=", re.I)


def _strip_credentials(url: str, secret: dict[str, Any]) -> str:
    """Move ``user:password@`` out of a URL into the secret; refuse URLs whose credentials cannot be split off
    safely, rather than store part of a password in a field that is shown back."""
    loc = ("body", "connection", "url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed host:port, e.g. a password with a raw "/" in it
    except ValueError:
        # The parser's own message can quote part of the password: never repeat it.
        raise InvalidInput.at(loc, "not a valid URL; percent-encode special characters in a password, "
                                   "or give username and password as separate fields") from None
    if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
        raise InvalidInput.at(loc, "the URL's credentials contain a character that must be percent-encoded ('/', '?' "
                                   "or '#'); percent-encode it, or give username and password as separate fields")
    if parts.query and _QUERY_SECRETS.search(parts.query):
        raise InvalidInput.at(loc, "credentials in the URL's query are not accepted; give username and password as "
                                   "separate fields, which are stored encrypted and never shown again")
    if "@" not in parts.netloc:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    secret.setdefault("username", unquote(user))
    if password:
        secret.setdefault("password", unquote(password))
    return urlunsplit(parts._replace(netloc=host))


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def connection_secret(p: Platform, camera: Camera) -> dict[str, Any]:
    import json

    return json.loads(p.keyring.decrypt(camera.connection_secret)) if camera.connection_secret else {}


# --- cameras ------------------------------------------------------------------------------------------


async def latest_versions(session: AsyncSession, cameras: Sequence[Camera]) -> dict[str, GrantVersion]:
    """The version in force of each camera's grant: whether it was a revocation, and when it was written."""
    wanted = {(c.id, c.grant_version) for c in cameras if c.grant_version > 0}
    if not wanted:
        return {}
    rows = await session.execute(select(GrantVersion).where(GrantVersion.camera_id.in_([c for c, _ in wanted])))
    return {v.camera_id: v for v in rows.scalars() if (v.camera_id, v.version) in wanted}


async def own_camera(session: AsyncSession, owner_id: str, camera_id: str, *, lock: bool = False) -> Camera:
    """The caller's camera; another owner's camera is "not found", as if it did not exist.

    With ``lock`` the row is locked for the transaction (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises
    writers), so that two concurrent changes cannot both read grant version N and both write N + 1.
    """
    stmt = select(Camera).where(Camera.id == camera_id, Camera.owner_id == owner_id, Camera.status != "removed")
    camera = (await session.execute(stmt.with_for_update() if lock else stmt)).scalar_one_or_none()
    if camera is None:
        raise NotFound("no such camera")
    return camera


async def create_camera(p: Platform, actor: Actor, spec: CameraCreate) -> CameraOut:
    check_lat_lon(spec.location.lat, spec.location.lon, ("body", "location"))
    kind, fields, secret = split_connection(p, spec.connection)
    now = p.now()
    camera = Camera(
        owner_id=actor.user_id,
        label=spec.label,
        lat=spec.location.lat,
        lon=spec.location.lon,
        bearing_deg=spec.view.bearing_deg if spec.view else None,
        fov_deg=spec.view.fov_deg if spec.view else None,
        range_m=spec.view.range_m if spec.view else None,
        retention_days=spec.retention_days,
        precision=spec.precision,
        connection_kind=kind,
        connection=fields,
        connection_secret=secret,
        capabilities=[],
        created_at=now,
        updated_at=now,
    )
    async with p.db.transaction() as session:
        session.add(camera)
        await session.flush()
        await audit.record(p.db, session, now, actor, "camera.registered", subject_type="camera", subject_id=camera.id,
                           camera_ids=[camera.id], detail={"precision": spec.precision, "connection": kind})
    return camera_out(camera, (), now)


async def list_cameras(p: Platform, owner_id: str) -> list[CameraOut]:
    now = p.now()
    async with p.db.sessions() as session:
        cameras = (
            await session.execute(
                select(Camera).where(Camera.owner_id == owner_id, Camera.status != "removed").order_by(Camera.created_at)
            )
        ).scalars().all()
        shares = await shares_of(session, [c.id for c in cameras])
        latest = await latest_versions(session, cameras)
    return [camera_out(c, shares[c.id], now, latest.get(c.id)) for c in cameras]


async def get_camera(p: Platform, owner_id: str, camera_id: str) -> CameraOut:
    now = p.now()
    async with p.db.sessions() as session:
        camera = await own_camera(session, owner_id, camera_id)
        shares = await shares_of(session, [camera.id])
        latest = await latest_versions(session, [camera])
    return camera_out(camera, shares[camera.id], now, latest.get(camera.id))


async def update_camera(p: Platform, actor: Actor, camera_id: str, spec: CameraUpdate) -> CameraOut:
    now = p.now()
    changes = spec.model_dump(exclude_unset=True)
    async with p.db.transaction() as session:
        camera = await own_camera(session, actor.user_id or "", camera_id, lock=True)
        if spec.location is not None:
            check_lat_lon(spec.location.lat, spec.location.lon, ("body", "location"))
            camera.lat, camera.lon = spec.location.lat, spec.location.lon
        if "view" in changes:
            v = spec.view
            camera.bearing_deg, camera.fov_deg, camera.range_m = (v.bearing_deg, v.fov_deg, v.range_m) if v else (None, None, None)
        for name in ("label", "retention_days", "precision", "status"):
            if changes.get(name) is not None:
                setattr(camera, name, changes[name])
        if "connection" in changes:
            camera.connection_kind, camera.connection, camera.connection_secret = split_connection(p, spec.connection)
        camera.updated_at = now
        shares = (await shares_of(session, [camera.id]))[camera.id]
        latest = (await latest_versions(session, [camera])).get(camera.id)
        await session.flush()
        await reconcile_items(p, session, camera, shares, actor, now, reason="camera changed by its owner")
        await audit.record(p.db, session, now, actor, "camera.updated", subject_type="camera", subject_id=camera.id,
                           camera_ids=[camera.id], detail={"fields": sorted(k for k in changes if k != "connection")
                                                           + (["connection"] if "connection" in changes else [])})
    return camera_out(camera, shares, now, latest)


async def remove_camera(p: Platform, actor: Actor, camera_id: str) -> None:
    """Take a camera off the registry: everything is revoked first; its history and evidence stay."""
    await revoke_all(p, actor, camera_id)
    now = p.now()
    async with p.db.transaction() as session:
        camera = await own_camera(session, actor.user_id or "", camera_id, lock=True)
        camera.status = "removed"
        camera.updated_at = now
        await audit.record(p.db, session, now, actor, "camera.removed", subject_type="camera", subject_id=camera.id,
                           camera_ids=[camera.id])


# --- grants -------------------------------------------------------------------------------------------


async def _check_shares(session: AsyncSession, share_with: Sequence[str]) -> list[str]:
    wanted = sorted(set(share_with))
    if not wanted:
        return []
    found = set((await session.execute(select(Agency.id).where(Agency.id.in_(wanted)))).scalars())
    missing = [a for a in wanted if a not in found]
    if missing:
        raise InvalidInput.at(("body", "share_with"), f"unknown agency id(s): {', '.join(missing)}")
    return wanted


async def _write_grant(
    p: Platform, session: AsyncSession, actor: Actor, camera: Camera, grant: GrantIn, *, revoked: bool, now: datetime
) -> GrantOut:
    share_with = await _check_shares(session, grant.share_with)
    before = {
        "version": camera.grant_version, "map": camera.grant_map, "requests": camera.grant_requests,
        "direct_fetch": camera.grant_direct_fetch, "live": camera.grant_live,
        "expires_at": camera.grant_expires_at.isoformat() if camera.grant_expires_at else None,
    }
    camera.grant_version += 1
    camera.grant_map, camera.grant_requests, camera.grant_direct_fetch = grant.map, grant.requests, grant.direct_fetch
    camera.grant_live = grant.live
    camera.grant_expires_at = grant.expires_at
    camera.updated_at = now
    session.add(
        GrantVersion(
            camera_id=camera.id, version=camera.grant_version, map=grant.map, requests=grant.requests,
            direct_fetch=grant.direct_fetch, live=grant.live, share_with=share_with, expires_at=grant.expires_at,
            revoked=revoked, created_at=now, created_by=actor.user_id,
        )
    )
    await session.execute(delete(CameraShare).where(CameraShare.camera_id == camera.id))
    if share_with:
        await session.execute(insert(CameraShare), [{"camera_id": camera.id, "agency_id": a} for a in share_with])
    await session.flush()
    await reconcile_items(p, session, camera, share_with, actor, now,
                          reason="the owner revoked consent" if revoked else "the owner changed consent")
    after = grant.model_dump(mode="json")
    after["share_with"] = share_with
    await audit.record(p.db, session, now, actor, "grant.revoked" if revoked else "grant.changed", subject_type="camera",
                       subject_id=camera.id, camera_ids=[camera.id],
                       detail={"version": camera.grant_version, "before": before, "after": after})
    return grant_out(camera, share_with, now, created_at=now, revoked=revoked)


async def set_grant(p: Platform, actor: Actor, camera_id: str, grant: GrantIn) -> GrantOut:
    now = p.now()
    if grant.expires_at is not None and grant.expires_at <= now:
        raise InvalidInput.at(("body", "expires_at"), "expires_at must be in the future")
    async with p.db.transaction() as session:
        camera = await own_camera(session, actor.user_id or "", camera_id, lock=True)
        return await _write_grant(p, session, actor, camera, grant, revoked=False, now=now)


async def revoke_all(p: Platform, actor: Actor, camera_id: str) -> GrantOut:
    now = p.now()
    async with p.db.transaction() as session:
        camera = await own_camera(session, actor.user_id or "", camera_id, lock=True)
        return await _write_grant(p, session, actor, camera, GrantIn(), revoked=True, now=now)


async def grant_history(p: Platform, owner_id: str, camera_id: str) -> list[GrantVersion]:
    async with p.db.sessions() as session:
        await own_camera(session, owner_id, camera_id)
        return list(
            (await session.execute(select(GrantVersion).where(GrantVersion.camera_id == camera_id).order_by(GrantVersion.version)))
            .scalars()
            .all()
        )


async def reconcile_items(
    p: Platform, session: AsyncSession, camera: Camera, shares: Iterable[str], actor: Actor, now: datetime, *, reason: str
) -> list[str]:
    """Cancel every open request item on this camera that its consent no longer covers (links die with them)."""
    rows = (
        await session.execute(
            select(RequestItem, Agency)
            .join(FootageRequest, FootageRequest.id == RequestItem.request_id)
            .join(Agency, Agency.id == FootageRequest.agency_id)
            .where(RequestItem.camera_id == camera.id, RequestItem.status.in_(OPEN_ITEM_STATES))
        )
    ).all()
    if not rows:
        return []
    consent = Consent.of(camera, shares, now)
    cancelled = [item.id for item, agency in rows if not consent.allows("requests", agency, camera)]
    if cancelled:
        await session.execute(
            update(RequestItem)
            .where(RequestItem.id.in_(cancelled), RequestItem.status.in_(OPEN_ITEM_STATES))
            .values(status="cancelled", status_reason=reason, updated_at=now)
        )
        await audit.record(p.db, session, now, actor, "items.cancelled", subject_type="camera", subject_id=camera.id,
                           camera_ids=[camera.id], detail={"items": sorted(cancelled), "reason": reason})
    return cancelled


# --- the owner's view of every access -----------------------------------------------------------------


OWNER_VISIBLE_DETAIL = frozenset({"version", "after", "reason", "request_id", "case_number", "evidence_id", "sha256",
                                  "fields", "scope", "live", "ends_at"})
ROLE_TITLES = {"investigator": "Investigator", "supervisor": "Supervisor", "auditor": "Auditor", "admin": "Administrator"}


async def access_log(p: Platform, owner_id: str, camera_id: str, *, before: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
    async with p.db.sessions() as session:
        await own_camera(session, owner_id, camera_id)
        stmt = (
            select(AuditEvent)
            .join(AuditEventCamera, AuditEventCamera.seq == AuditEvent.seq)
            .where(AuditEventCamera.camera_id == camera_id)
            .order_by(AuditEvent.seq.desc())
            .limit(limit)
        )
        if before is not None:
            stmt = stmt.where(AuditEvent.seq < before)
        events = (await session.execute(stmt)).scalars().all()
        agency_ids = {e.actor_agency_id for e in events if e.actor_agency_id}
        agencies = dict((await session.execute(select(Agency.id, Agency.name).where(Agency.id.in_(agency_ids)))).all()) if agency_ids else {}
        user_ids = {e.actor_id for e in events if e.actor_id and e.actor_agency_id}
        badges = dict((await session.execute(select(User.id, User.badge).where(User.id.in_(user_ids)))).all()) if user_ids else {}
    out = []
    for e in events:
        agency = agencies.get(e.actor_agency_id) if e.actor_agency_id else None
        if e.actor_id == owner_id:
            who = "You"
        elif agency:
            who = f"{ROLE_TITLES.get(e.actor_role or '', (e.actor_role or 'user').title())} {badges.get(e.actor_id, '?')}, {agency}"
        elif e.actor_role == "plugin":
            who = f"Plugin {e.detail.get('actor_name', '')}".strip()
        elif e.actor_role in (None, "system"):
            who = "ConsentCam"
        else:
            who = ROLE_TITLES.get(e.actor_role or "", "Someone")
        # Only what concerns this camera: a map read names many cameras, and the owner sees none of the others.
        detail = {k: v for k, v in e.detail.items() if k in OWNER_VISIBLE_DETAIL}
        if "precise" in e.detail:
            detail["precise_location_revealed"] = camera_id in e.detail["precise"]
        out.append({"seq": e.seq, "at": e.at, "action": e.action, "actor": who, "actor_role": e.actor_role,
                    "agency": agency, "detail": detail})
    return out
