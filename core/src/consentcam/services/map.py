"""The agency map: cameras whose owners granted ``map`` to the caller's agency, one audit event per read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from .. import audit
from ..db.models import Agency, Camera, CameraShare
from ..errors import Forbidden
from ..geo import coarsen
from ..platform import Platform
from .accounts import Principal
from .consent import Consent, shares_of
from .spatial import BBox, in_bbox

MAX_FEATURES = 10_000
AGENCY_ROLES = ("investigator", "supervisor", "auditor", "admin", "api_key")


def parse_bbox(raw: str | None) -> BBox | None:
    if raw is None:
        return None
    a, b, c, d = (float(x) for x in raw.split(","))
    return (a, b, c, d)


async def visible_cameras(p: Platform, agency: Agency, bbox: BBox | None, scope: str = "map") -> list[Camera]:
    """Cameras the agency may see now: index candidates, then the one consent rule on each."""
    now = p.now()
    base = select(Camera).where(
        Camera.status == "active",
        Camera.grant_map.is_(True) if scope == "map" else Camera.grant_requests.is_(True),
        or_(Camera.grant_expires_at.is_(None), Camera.grant_expires_at > now),
    )
    async with p.db.sessions() as session:
        if bbox is None:
            own = in_bbox(p.db, base, (agency.min_lon, agency.min_lat, agency.max_lon, agency.max_lat))
            shared = base.join(CameraShare, CameraShare.camera_id == Camera.id).where(CameraShare.agency_id == agency.id)
            cameras = {c.id: c for c in (await session.execute(own)).scalars()}
            cameras.update({c.id: c for c in (await session.execute(shared)).scalars()})
            candidates = list(cameras.values())
        else:
            candidates = list((await session.execute(in_bbox(p.db, base, bbox))).scalars())
        shares = await shares_of(session, [c.id for c in candidates])
    return [c for c in candidates if Consent.of(c, shares[c.id], now).allows(scope, agency, c)]


def feature(camera: Camera) -> dict[str, Any]:
    exact = camera.precision == "exact"
    lat, lon = (camera.lat, camera.lon) if exact else coarsen(camera.lat, camera.lon)
    properties: dict[str, Any] = {
        "id": camera.id,
        "label": camera.label,
        "precision": camera.precision,
        "accuracy_m": 0 if exact else 111,
        "retention_days": camera.retention_days,
        "requests": camera.grant_requests,
        "direct_fetch": camera.grant_direct_fetch,
        "live": camera.grant_live,
        "connection_kind": camera.connection_kind,
    }
    if exact and camera.bearing_deg is not None:
        properties["view"] = {"bearing_deg": camera.bearing_deg, "fov_deg": camera.fov_deg, "range_m": camera.range_m}
    return {"type": "Feature", "id": camera.id, "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": properties}


async def map_read(p: Platform, principal: Principal, bbox: BBox | None) -> dict[str, Any]:
    if principal.agency_id is None or principal.role not in AGENCY_ROLES:
        raise Forbidden("the camera map is for agency users")
    async with p.db.sessions() as session:
        agency = await session.get(Agency, principal.agency_id)
    assert agency is not None
    cameras = sorted(await visible_cameras(p, agency, bbox), key=lambda c: c.seq)
    truncated = len(cameras) > MAX_FEATURES
    cameras = cameras[:MAX_FEATURES]
    if cameras:
        async with p.db.transaction() as session:
            await audit.record(
                p.db, session, p.now(), principal.actor, "map.read", subject_type="agency", subject_id=agency.id,
                camera_ids=[c.id for c in cameras],
                detail={"bbox": list(bbox) if bbox else None, "count": len(cameras),
                        "precise": sorted(c.id for c in cameras if c.precision == "exact")},
            )
    return {"type": "FeatureCollection", "features": [feature(c) for c in cameras], "truncated": truncated}
