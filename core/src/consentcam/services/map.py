"""The agency map: cameras whose owners granted ``map`` to the caller's agency, one audit event per read."""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from .. import audit
from ..db.models import Agency, Camera, CameraShare
from ..errors import Forbidden
from ..geo import coarsen
from ..platform import Platform
from .accounts import Principal
from .consent import in_force, reached, shared_with
from .spatial import BBox, in_bbox

MAX_FEATURES = 10_000
AGENCY_ROLES = ("investigator", "supervisor", "auditor", "admin", "api_key")


def parse_bbox(raw: str | None) -> BBox | None:
    if raw is None:
        return None
    a, b, c, d = (float(x) for x in raw.split(","))
    return (a, b, c, d)


_COLUMNS = ("id", "seq", "label", "precision", "lat", "lon", "retention_days", "grant_requests", "grant_direct_fetch",
            "grant_live", "connection_kind", "bearing_deg", "fov_deg", "range_m")


async def visible_cameras(p: Platform, agency: Agency, bbox: BBox | None, scope: str = "map",
                          session: AsyncSession | None = None) -> list[Row[Any]]:
    """Cameras the agency may see now, as rows of what the map shows: the consent rule's own conditions and the
    spatial index in SQL, then its reach (shared, or inside the jurisdiction) over all candidates at once."""
    if agency.suspended:
        return []
    c = Camera.__table__.c
    base = select(*(c[name] for name in _COLUMNS), shared_with(agency.id).label("shared")).where(*in_force(scope, p.now()))
    async with contextlib.nullcontext(session) if session is not None else p.db.sessions() as session:
        if bbox is None:
            own = in_bbox(p.db, base, (agency.min_lon, agency.min_lat, agency.max_lon, agency.max_lat))
            shared = base.where(c.id.in_(select(CameraShare.camera_id).where(CameraShare.agency_id == agency.id)))
            rows = {row.id: row for row in (await session.execute(own)).all()}
            rows.update({row.id: row for row in (await session.execute(shared)).all()})
            candidates = list(rows.values())
        else:
            candidates = list((await session.execute(in_bbox(p.db, base, bbox))).all())
    if not candidates:
        return []
    mask = reached(agency, [r.lon for r in candidates], [r.lat for r in candidates], [bool(r.shared) for r in candidates])
    return [row for row, ok in zip(candidates, mask.tolist(), strict=True) if ok]


def feature(camera: Any) -> dict[str, Any]:
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
        cameras = sorted(await visible_cameras(p, agency, bbox, session=session), key=lambda c: c.seq)
    truncated = len(cameras) > MAX_FEATURES
    cameras = cameras[:MAX_FEATURES]
    if cameras:  # recorded before anything is shown
        await audit.record_alone(p.db, audit.Pending(
            p.now(), principal.actor, "map.read", subject_type="agency", subject_id=agency.id,
            camera_ids=[c.id for c in cameras],
            detail={"bbox": list(bbox) if bbox else None, "count": len(cameras),
                    "precise": sorted(c.id for c in cameras if c.precision == "exact")},
        ))
    return {"type": "FeatureCollection", "features": [feature(c) for c in cameras], "truncated": truncated}
