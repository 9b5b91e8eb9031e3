"""Footage requests: the fence and window, matching, approval, request items with their upload capabilities,
the owner's inbox, declines, closing, and the checks behind every upload link.

Matching is one function with one meaning on every backend: a camera matches when it is active, inside the
fence (its true location, whatever its public precision; on the edge counts), its grant in force gives this
agency ``requests``, and its retention still covers the window's start at the moment of matching. The index
narrows the candidates (R*Tree, PostGIS GiST or a point GiST). PostGIS decides the fence in SQL; elsewhere the
exact test is ``Fence.contains``, which SQL spares for every point a circle's flat stand-in (``geo.FlatCircle``)
places clearly inside.
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import compress
from typing import Any

import numpy as np
from sqlalchemy import Float, String, and_, bindparam, case, func, literal, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .. import audit
from ..db.bulk import insert_rows, random_ids
from ..db.direct import DirectQuery
from ..db.models import Agency, Camera, Evidence, FootageRequest, RequestItem, User
from ..errors import FieldError, Forbidden, Gone, InvalidInput, NotFound
from ..geo import Fence, check_lat_lon, parse_area_geojson
from ..jobs import enqueue_many
from ..platform import Platform
from ..security import digest
from .accounts import Principal
from .consent import OPEN_ITEM_STATES, Consent, in_force, jurisdiction_shape, shares_of
from .spatial import rtree_driven

MAX_RADIUS_M = 50_000.0
FETCHABLE_KINDS = frozenset({"onvif", "rtsp", "ring", "edge"})  # connection kinds a plugin may pull from
CLOCK_SKEW = timedelta(seconds=60)
INVESTIGATORS = ("investigator", "supervisor")


# --- the fence and the window -------------------------------------------------------------------------


def parse_area(raw: Any) -> Fence:
    """A GeoJSON Polygon (holes allowed) or ``{center: {lat, lon}, radius_m}``; errors name the field."""
    loc = ("body", "area")
    if not isinstance(raw, dict):
        raise InvalidInput.at(loc, "area is a GeoJSON Polygon or {center: {lat, lon}, radius_m}")
    if "center" in raw or "radius_m" in raw:
        extra = set(raw) - {"center", "radius_m"}
        if extra:
            raise InvalidInput.at((*loc, sorted(extra)[0]), "unknown field in a circle area")
        center, radius = raw.get("center"), raw.get("radius_m")
        if not isinstance(center, dict) or not {"lat", "lon"} <= set(center):
            raise InvalidInput.at((*loc, "center"), "center is {lat, lon}")
        lat, lon = center["lat"], center["lon"]
        if isinstance(lat, bool) or isinstance(lon, bool):
            raise InvalidInput.at((*loc, "center"), "center is {lat, lon} in degrees")
        check_lat_lon(lat, lon, (*loc, "center"))
        if isinstance(radius, bool) or not isinstance(radius, int | float) or not math.isfinite(radius) or radius <= 0:
            raise InvalidInput.at((*loc, "radius_m"), "radius_m is a positive number of metres")
        if radius > MAX_RADIUS_M:
            raise InvalidInput.at((*loc, "radius_m"), f"radius_m is at most {MAX_RADIUS_M:.0f} m")
        return Fence.circle(float(lat), float(lon), float(radius))
    polygon = parse_area_geojson(raw, loc)
    return Fence.of_polygon(polygon)


def check_fence(fence: Fence, agency: Agency) -> None:
    area = fence.area_km2()
    if area > agency.max_area_km2:
        raise InvalidInput.at(("body", "area"), f"the area is {area:.2f} km², over this agency's limit of {agency.max_area_km2:g} km²")
    if not jurisdiction_shape(agency).covers(fence.as_polygon()):
        raise InvalidInput.at(("body", "area"), "the area reaches outside your agency's jurisdiction")


def check_window(start: datetime, end: datetime, agency: Agency, now: datetime) -> None:
    errors = []
    if end <= start:
        errors.append(FieldError(("body", "window", "end"), "the window must end after it starts"))
    if end > now + CLOCK_SKEW:
        errors.append(FieldError(("body", "window", "end"), "the window cannot end in the future"))
    hours = (end - start).total_seconds() / 3600
    if hours > agency.max_window_hours:
        errors.append(FieldError(("body", "window"), f"the window is {hours:.1f} h, over this agency's limit of {agency.max_window_hours:g} h"))
    if errors:
        raise InvalidInput("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors), errors=errors)


# --- matching -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matches:
    """The cameras to ask, as columns: a request may ask ten thousand, and what the caller does with them (insert
    items, enqueue jobs, name them in the audit) takes columns, so no object is made per camera."""

    camera_ids: list[str]
    owner_ids: list[str]
    fetchable: list[bool]  # direct_fetch granted and a connection a plugin can pull from

    def __len__(self) -> int:
        return len(self.camera_ids)

    def owners(self) -> list[str]:
        return sorted(set(self.owner_ids))


NO_MATCHES = Matches([], [], [])
_MATCH_QUERIES: dict[tuple[str, bool], DirectQuery] = {}
# SQLite circles come back as one row of group_concat strings (see _match_query). Ids are UUIDs made here, so the
# unit separator never occurs in one; the lengths are checked all the same.
_SEP = "\x1f"


def _match_query(spatial: str, circle: bool) -> DirectQuery:
    """The match query, built once per (index kind, fence shape) with bind parameters, sent in one driver call.

    Only what the caller uses comes back (a camera's id, its owner, whether a plugin may pull from it), plus the
    position where the exact fence test runs here rather than in SQL. On PostgreSQL the rows come back as one row of
    arrays, which the driver decodes in C: at a thousand matches that halves the client's cost. SQLite circles come
    back as one row of strings (``group_concat``), and only the stand-in's band brings its positions, by a second
    query; SQLite polygons need every candidate's position, and return a row per camera."""
    key = (spatial, circle)
    if key in _MATCH_QUERIES:
        return _MATCH_QUERIES[key]
    c = Camera.__table__.c
    box = {k: bindparam(k, type_=Float) for k in ("min_lon", "min_lat", "max_lon", "max_lat")}
    # The kinds as SQL literals (fixed names), not an "expanding" parameter re-rendered at every execution.
    assert all(kind.isalnum() for kind in FETCHABLE_KINDS)
    fetchable = and_(c.grant_direct_fetch, c.connection_kind.in_([literal_column(f"'{kind}'") for kind in sorted(FETCHABLE_KINDS)]))
    columns: list[Any] = [c.id, c.owner_id, fetchable]
    near: list[Any] = []
    if spatial != "postgis":  # the exact test runs in Python: it needs the position
        if circle:  # the flat stand-in (geo.FlatCircle) drops the box's corners and decides all but a thin band
            east = (c.lon - bindparam("lon0", type_=Float)) * bindparam("kx", type_=Float)
            north = (c.lat - bindparam("lat0", type_=Float)) * bindparam("ky", type_=Float)
            flat2 = east * east + north * north
            inner = flat2 <= bindparam("inner2", type_=Float)
            near.append(flat2 <= bindparam("outer2", type_=Float))
        if circle and spatial == "rtree":
            # One row of strings instead of a row per camera: at a hundred matches, stepping and building a Python
            # row for each cost SQLite a third more than the query itself (measured: 0.45 against 0.35 ms). Each
            # camera's flags are one digit (2: a plugin may pull from it, 1: the stand-in placed it inside). The
            # band's positions come from a second query by seq (usually there is none): as text they would lose
            # digits.
            flags = case((fetchable, 2), else_=0) + case((inner, 1), else_=0)
            columns = [func.group_concat(c.id, literal(_SEP)), func.group_concat(c.owner_id, literal(_SEP)),
                       func.group_concat(flags, literal("")), func.group_concat(case((~inner, c.seq)), literal(","))]
        else:
            columns += [c.lon, c.lat] + ([inner] if circle else [])
    if spatial != "rtree":
        columns = [func.array_agg(column) for column in columns]
    stmt = select(*columns).where(
        *in_force("requests", bindparam("now", type_=c.grant_expires_at.type)),
        c.retention_days >= bindparam("need", type_=Float),
        *near,
    )
    if spatial == "rtree":  # the overlap of the fence's box; the exact test follows in Python
        stmt = rtree_driven(stmt, box["min_lon"], box["min_lat"], box["max_lon"], box["max_lat"])
    elif spatial == "postgis":
        geom = literal_column("cameras.geom")
        if circle:  # the GiST index is on geometry, so the geography test needs the box to use it
            envelope = func.ST_MakeEnvelope(box["min_lon"], box["min_lat"], box["max_lon"], box["max_lat"], 4326)
            stmt = stmt.where(geom.op("&&")(envelope))
            centre = func.ST_SetSRID(func.ST_MakePoint(bindparam("lon", type_=Float), bindparam("lat", type_=Float)), 4326)
            stmt = stmt.where(func.ST_DWithin(func.geography(geom), func.geography(centre), bindparam("radius", type_=Float)))
        else:
            # ST_Intersects brings its own index condition (geom && shape), so no box. A scalar subquery is parsed once
            # per query; inline, a generic plan re-parsed it for every candidate row.
            shape = select(func.ST_SetSRID(func.ST_GeomFromGeoJSON(bindparam("geojson", type_=String)), 4326)).scalar_subquery()
            stmt = stmt.where(func.ST_Intersects(geom, shape))
    else:  # plain PostgreSQL: GiST on the built-in point type
        area = func.box(func.point(box["min_lon"], box["min_lat"]), func.point(box["max_lon"], box["max_lat"]))
        stmt = stmt.where(func.point(c.lon, c.lat).op("<@")(area))
    _MATCH_QUERIES[key] = DirectQuery(stmt)
    return _MATCH_QUERIES[key]


_band = func.json_each(bindparam("seqs", type_=String)).table_valued("value")
_BAND_POSITIONS = DirectQuery(select(Camera.__table__.c.seq, Camera.__table__.c.lon, Camera.__table__.c.lat)
                              .where(Camera.__table__.c.seq.in_(select(_band.c.value))))


def _match_params(p: Platform, fence: Fence, window_start: datetime, now: datetime) -> dict[str, Any]:
    params: dict[str, Any] = {"now": now, "need": max(0.0, (now - window_start).total_seconds() / 86400)}
    if p.db.spatial != "postgis" or fence.is_circle:
        params.update(zip(("min_lon", "min_lat", "max_lon", "max_lat"), fence.bbox(), strict=True))
    if p.db.spatial == "postgis":
        if fence.is_circle:
            assert fence.center is not None
            params.update(lon=fence.center[0], lat=fence.center[1], radius=fence.radius_m)
        else:
            params["geojson"] = json.dumps(fence.as_geojson())
    elif fence.is_circle:
        flat = fence.flat
        if flat is not None:
            params.update(lon0=flat.lon0, lat0=flat.lat0, kx=flat.kx, ky=flat.ky, inner2=flat.inner2, outer2=flat.outer2)
        else:  # no stand-in: every point in the box takes the geodesic test
            params.update(lon0=0.0, lat0=0.0, kx=0.0, ky=0.0, inner2=-1.0, outer2=1.0)
    return params


def match_sql(p: Platform, fence: Fence, window_start: datetime, now: datetime) -> tuple[str, list[Any]]:
    """The SQL and driver arguments ``match_cameras`` sends for this fence (for EXPLAIN, in bench/match_bench.py)."""
    compiled, values = _match_query(p.db.spatial, fence.is_circle).arguments(
        p.db.engine.dialect, _match_params(p, fence, window_start, now))
    return compiled.sql, values


async def match_cameras(p: Platform, session: AsyncSession, agency: Agency, fence: Fence, window_start: datetime,
                        now: datetime) -> Matches:
    """The cameras to ask. The fence was checked to lie inside the agency's jurisdiction, so every camera inside it
    receives the agency's grant; ``share_with`` cannot add any (a request never reaches outside the jurisdiction).

    One meaning on every backend: a camera matches when ``fence.contains`` holds for its true position (PostGIS
    decides that in SQL, with the same geodesic circle and boundary-inclusive polygon), it is active, its grant
    includes ``requests`` and has not lapsed, and its retention reaches back to the window's start."""
    if agency.suspended:
        return NO_MATCHES
    params = _match_params(p, fence, window_start, now)
    rows = await _match_query(p.db.spatial, fence.is_circle).rows(session, params)
    if p.db.spatial == "rtree" and fence.is_circle:
        return await _concatenated_circle(session, fence, rows[0])
    if p.db.spatial == "rtree":
        columns = list(zip(*rows, strict=True)) if rows else []
    else:
        columns = [column or () for column in rows[0]]
    if not columns or not columns[0]:
        return NO_MATCHES
    if p.db.spatial == "postgis":
        return Matches(list(columns[0]), list(columns[1]), list(columns[2]))
    ids, owners, fetchable, lons, lats = columns[:5]
    if len(columns) > 5:  # a circle: only the points the flat stand-in left undecided take the geodesic test
        inside = list(columns[5])
        check = [i for i, decided in enumerate(inside) if not decided]
        if check:
            _settle(fence, inside, check, [lons[i] for i in check], [lats[i] for i in check])
    else:
        inside = fence.contains(np.array(lons, dtype=float), np.array(lats, dtype=float)).tolist()
    return _kept(ids, owners, fetchable, inside)


def _settle(fence: Fence, inside: list[Any], undecided: list[int], lons: list[float], lats: list[float]) -> None:
    """Decide the ``undecided`` entries of ``inside`` with the exact fence test (their positions, in that order)."""
    exact = fence.contains(np.array(lons, dtype=float), np.array(lats, dtype=float))
    for i, within in zip(undecided, exact.tolist(), strict=True):
        inside[i] = within


def _kept(ids: Any, owners: Any, fetchable: Any, inside: list[Any]) -> Matches:
    # SQLite answers 0/1 for the fetchable flag
    return Matches(list(compress(ids, inside)), list(compress(owners, inside)), list(map(bool, compress(fetchable, inside))))


async def _concatenated_circle(session: AsyncSession, fence: Fence, row: Any) -> Matches:
    """A SQLite circle's one row: ids, owners, one flag digit per camera, and the seqs the stand-in left undecided."""
    ids_text, owners_text, flags, band = row
    if not ids_text:
        return NO_MATCHES
    ids, owners = ids_text.split(_SEP), owners_text.split(_SEP)
    if not len(ids) == len(owners) == len(flags):
        raise RuntimeError("a camera or owner id holds the match's separator")
    fetchable = [flag >= "2" for flag in flags]
    if not band:
        return Matches(ids, owners, fetchable)
    # The exact positions of the few cameras in the stand-in's band, read in the same transaction.
    seqs = [int(seq) for seq in band.split(",")]
    at = {seq: (lon, lat) for seq, lon, lat in await _BAND_POSITIONS.rows(session, {"seqs": f"[{band}]"})}
    inside = [True] * len(ids)
    _settle(fence, inside, [i for i, flag in enumerate(flags) if flag in "02"], [at[seq][0] for seq in seqs],
            [at[seq][1] for seq in seqs])
    return _kept(ids, owners, fetchable, inside)


# --- capabilities -------------------------------------------------------------------------------------


def item_token(p: Platform, item_id: str, salt: str) -> str:
    """The item's upload capability: 256 bits from the deployment key and a random per-item salt. Only its
    digest is stored, so the database alone never yields a working link; the notifier re-derives it."""
    return "up_" + p.keyring.hmac(b"upload-capability", f"{item_id}:{salt}".encode())


def upload_url(p: Platform, token: str) -> str:
    return f"{p.settings.public_url}/api/v1/uploads/{token}"


def page_url(p: Platform, token: str) -> str:
    return f"{p.settings.public_url}/u/{token}"


# --- lifecycle ----------------------------------------------------------------------------------------


async def _agency_of(session: AsyncSession, principal: Principal) -> Agency:
    if principal.agency_id is None:
        raise Forbidden("footage requests belong to an agency")
    agency = await session.get(Agency, principal.agency_id)
    assert agency is not None
    return agency


async def preview(p: Platform, principal: Principal, area: Any, start: datetime, end: datetime) -> dict[str, Any]:
    """How many cameras a request would ask, before sending (the console's live count). Reveals no location."""
    now = p.now()
    fence = parse_area(area)
    async with p.db.sessions() as session:
        agency = await _agency_of(session, principal)
        check_window(start, end, agency, now)
        check_fence(fence, agency)
        matches = await match_cameras(p, session, agency, fence, start, now)
    return {"matched": len(matches), "owners": len(matches.owners()), "area_km2": round(fence.area_km2(), 4)}


async def _open(p: Platform, session: AsyncSession, request: FootageRequest, agency: Agency, actor: audit.Actor,
                now: datetime) -> int:
    """Match now, write one item per camera and one notification job per owner, all in this transaction."""
    fence = parse_area(request.area)
    matches = await match_cameras(p, session, agency, fence, request.window_start, now)
    expires = now + timedelta(days=agency.upload_link_days)
    # One INSERT ... SELECT for every item, not ORM objects nor an executemany: a request may ask ten thousand
    # cameras (issue 3), and what the items share (request, status, times) is bound once.
    item_ids = random_ids(len(matches))
    salts = secrets.token_hex(16 * len(matches))
    salts_of = [salts[32 * i:32 * i + 32] for i in range(len(matches))]
    await insert_rows(session, RequestItem.__table__, {
        "id": item_ids,
        "camera_id": matches.camera_ids,
        "owner_id": matches.owner_ids,
        "token_salt": salts_of,
        "token_hash": [digest(item_token(p, i, salt)) for i, salt in zip(item_ids, salts_of, strict=True)],
    }, {"request_id": request.id, "status": "notified", "token_expires_at": expires, "created_at": now, "updated_at": now})
    request.status, request.matched = "open", len(item_ids)
    await enqueue_many(session, now, "notify.request",
                       [({"request_id": request.id, "owner_id": owner_id}, f"notify.request:{request.id}:{owner_id}")
                        for owner_id in matches.owners()])
    # Queued now, decided when it runs: the job checks the grant again at that moment.
    await enqueue_many(session, now, "fetch.direct",
                       [({"item_id": item_id, "camera_id": camera_id, "agency_id": agency.id}, f"fetch.direct:{item_id}")
                        for item_id, camera_id, fetchable in zip(item_ids, matches.camera_ids, matches.fetchable, strict=True)
                        if fetchable])
    await session.flush()
    await audit.record(p.db, session, now, actor, "request.opened", subject_type="request", subject_id=request.id,
                       camera_ids=matches.camera_ids,
                       detail={"case_number": request.case_number, "request_id": request.id, "matched": len(item_ids)})
    return len(item_ids)


async def create_request(p: Platform, principal: Principal, spec: Any) -> FootageRequest:
    if principal.role not in INVESTIGATORS:
        raise Forbidden("footage requests are made by investigators")
    now = p.now()
    fence = parse_area(spec.area)
    async with p.db.transaction() as session:
        agency = await _agency_of(session, principal)
        check_window(spec.window.start, spec.window.end, agency, now)
        check_fence(fence, agency)
        request = FootageRequest(
            agency_id=agency.id, created_by=principal.user_id, case_number=spec.case_number, description=spec.description,
            area=fence.as_geojson(), window_start=spec.window.start, window_end=spec.window.end,
            status="pending_approval", category=spec.category, matched=0, created_at=now,
        )
        session.add(request)
        await session.flush()
        await audit.record(p.db, session, now, principal.actor, "request.created", subject_type="request",
                           subject_id=request.id, detail={"case_number": spec.case_number, "request_id": request.id})
        if agency.require_approval:
            request.matched = len(await match_cameras(p, session, agency, fence, spec.window.start, now))
        else:
            await _open(p, session, request, agency, principal.actor, now)
    return request


async def approve(p: Platform, principal: Principal, request_id: str) -> FootageRequest:
    if principal.role != "supervisor":
        raise Forbidden("a supervisor approves requests")
    now = p.now()
    async with p.db.transaction() as session:
        request = await _agency_request(session, principal, request_id, lock=True)
        if request.status != "pending_approval":
            raise InvalidInput.at("status", f"the request is {request.status}, not waiting for approval")
        agency = await session.get(Agency, request.agency_id)
        assert agency is not None
        request.approved_by, request.approved_at = principal.user_id, now
        await audit.record(p.db, session, now, principal.actor, "request.approved", subject_type="request",
                           subject_id=request.id, detail={"case_number": request.case_number, "request_id": request.id})
        # Consent is read again now: owners who revoked since the request was drafted are not asked.
        await _open(p, session, request, agency, principal.actor, now)
    return request


async def close(p: Platform, principal: Principal, request_id: str) -> FootageRequest:
    if principal.role not in INVESTIGATORS:
        raise Forbidden("investigators and supervisors close requests")
    now = p.now()
    async with p.db.transaction() as session:
        request = await _agency_request(session, principal, request_id, lock=True)
        if request.status == "closed":
            return request
        request.status, request.closed_at, request.closed_by = "closed", now, principal.user_id
        cancelled = (
            await session.execute(
                update(RequestItem)
                .where(RequestItem.request_id == request.id, RequestItem.status.in_(OPEN_ITEM_STATES))
                .values(status="cancelled", status_reason="the request was closed", updated_at=now)
                .returning(RequestItem.camera_id)
            )
        ).scalars().all()
        await audit.record(p.db, session, now, principal.actor, "request.closed", subject_type="request",
                           subject_id=request.id, camera_ids=list(cancelled),
                           detail={"case_number": request.case_number, "request_id": request.id,
                                   "reason": "the request was closed", "cancelled": len(cancelled)})
    return request


async def _agency_request(session: AsyncSession, principal: Principal, request_id: str, *, lock: bool = False) -> FootageRequest:
    """A request of the caller's agency; any other is "not found"."""
    stmt = select(FootageRequest).where(FootageRequest.id == request_id)
    if lock:
        stmt = stmt.with_for_update()
    request = (await session.execute(stmt)).scalar_one_or_none()
    if request is None or principal.agency_id is None or request.agency_id != principal.agency_id:
        raise NotFound("no such request")
    return request


async def get_request(p: Platform, principal: Principal, request_id: str) -> dict[str, Any]:
    now = p.now()
    async with p.db.sessions() as session:
        request = await _agency_request(session, principal, request_id)
        items = (await session.execute(select(RequestItem).where(RequestItem.request_id == request.id)
                                       .order_by(RequestItem.created_at, RequestItem.id))).scalars().all()
        evidence = await _evidence_by_item(session, [i.id for i in items])
    return request_out(request, items, evidence, now)


async def list_requests(p: Platform, principal: Principal, status: str | None = None, limit: int = 100,
                        offset: int = 0) -> list[dict[str, Any]]:
    now = p.now()
    async with p.db.sessions() as session:
        if principal.agency_id is None:
            raise Forbidden("footage requests belong to an agency")
        stmt = select(FootageRequest).where(FootageRequest.agency_id == principal.agency_id)
        if status:
            stmt = stmt.where(FootageRequest.status == status)
        requests = (await session.execute(stmt.order_by(FootageRequest.created_at.desc()).limit(limit).offset(offset))).scalars().all()
    return [request_out(r, None, {}, now) for r in requests]


async def _evidence_by_item(session: AsyncSession, item_ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if not item_ids:
        return out
    rows = await session.execute(select(Evidence.request_item_id, Evidence.id).where(Evidence.request_item_id.in_(item_ids))
                                 .order_by(Evidence.created_at))
    for item_id, evidence_id in rows:
        out.setdefault(item_id, []).append(evidence_id)
    return out


def item_status(item: RequestItem, now: datetime) -> str:
    if item.status in OPEN_ITEM_STATES and item.token_expires_at <= now:
        return "expired"
    return item.status


def request_out(request: FootageRequest, items: Any, evidence: dict[str, list[str]], now: datetime) -> dict[str, Any]:
    out = {
        "id": request.id, "agency_id": request.agency_id, "case_number": request.case_number,
        "description": request.description, "category": request.category, "area": request.area,
        "window": {"start": request.window_start, "end": request.window_end}, "status": request.status,
        "matched": request.matched, "created_at": request.created_at, "approved_at": request.approved_at,
        "closed_at": request.closed_at,
    }
    if items is not None:
        out["items"] = [
            {"id": i.id, "camera_id": i.camera_id, "status": item_status(i, now), "status_reason": i.status_reason,
             "link_expires_at": i.token_expires_at, "evidence_ids": evidence.get(i.id, [])}
            for i in items
        ]
    return out


# --- the owner's side ---------------------------------------------------------------------------------


async def inbox(p: Platform, principal: Principal) -> list[dict[str, Any]]:
    """The request items for the caller's cameras: what is asked, never anything about other owners."""
    now = p.now()
    async with p.db.sessions() as session:
        rows = (
            await session.execute(
                select(RequestItem, FootageRequest, Camera.label, Agency.name)
                .join(FootageRequest, FootageRequest.id == RequestItem.request_id)
                .join(Camera, Camera.id == RequestItem.camera_id)
                .join(Agency, Agency.id == FootageRequest.agency_id)
                .where(RequestItem.owner_id == principal.user_id)
                .order_by(RequestItem.created_at.desc())
            )
        ).all()
        evidence_rows = (
            await session.execute(
                select(Evidence.request_item_id, Evidence.id, Evidence.sha256, Evidence.size, Evidence.created_at)
                .where(Evidence.request_item_id.in_([r.RequestItem.id for r in rows]))
            )
        ).all() if rows else []
    receipts: dict[str, list[dict[str, Any]]] = {}
    for item_id, evidence_id, sha256, size, created_at in evidence_rows:
        receipts.setdefault(item_id, []).append({"evidence_id": evidence_id, "sha256": sha256, "size": size, "received_at": created_at})
    out = []
    for item, request, label, agency_name in rows:
        status = item_status(item, now)
        entry = {
            "id": item.id, "camera_id": item.camera_id, "camera_label": label, "status": status,
            "status_reason": item.status_reason, "agency": agency_name, "case_number": request.case_number,
            "description": request.description, "window": {"start": request.window_start, "end": request.window_end},
            "link_expires_at": item.token_expires_at, "receipts": receipts.get(item.id, []),
        }
        if status in OPEN_ITEM_STATES or status == "uploaded":
            token = item_token(p, item.id, item.token_salt)
            if status != "uploaded" or item.token_expires_at > now:
                entry["upload_url"] = upload_url(p, token)
        out.append(entry)
    return out


async def decline(p: Platform, principal: Principal | None, item_id: str | None = None, token: str | None = None,
                  reason: str | None = None) -> dict[str, Any]:
    """The owner says no (signed in, or through the item's link). Nothing is asked of them again for it."""
    now = p.now()
    async with p.db.transaction() as session:
        stmt = select(RequestItem).with_for_update()
        if token is not None:
            stmt = stmt.where(RequestItem.token_hash == digest(token))
        else:
            stmt = stmt.where(RequestItem.id == item_id)
        item = (await session.execute(stmt)).scalar_one_or_none()
        if item is None or (principal is not None and item.owner_id != principal.user_id):
            raise NotFound("no such request item")
        status = item_status(item, now)
        if status == "declined":
            return {"id": item.id, "status": "declined"}
        if status not in OPEN_ITEM_STATES:
            raise Gone(f"this request item is {status}; there is nothing to decline")
        item.status, item.status_reason, item.updated_at = "declined", (reason or "declined by the owner")[:500], now
        actor = principal.actor if principal else audit.Actor(kind="user", user_id=item.owner_id, role="owner")
        await audit.record(p.db, session, now, actor, "item.declined", subject_type="request_item", subject_id=item.id,
                           camera_ids=[item.camera_id], detail={"request_id": item.request_id, "reason": item.status_reason})
    return {"id": item.id, "status": "declined"}


# --- upload links -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadTarget:
    """Where an upload through a link goes: one item of one request, for one camera."""

    item_id: str
    request_id: str
    camera_id: str
    agency_id: str
    owner_id: str
    case_number: str
    window_start: datetime
    window_end: datetime


async def check_upload(p: Platform, session: AsyncSession, *, token: str | None = None, item_id: str | None = None,
                       lock: bool = False) -> UploadTarget:
    """Is this link still good, right now? Unknown: 404. Cancelled, declined, expired, closed or no longer covered
    by consent (revoked, lapsed, paused, agency suspended): 410, and a lapsed item is cancelled on the spot.
    The vault calls this again, locked, in the transaction that commits a clip, so a revocation racing an
    upload either comes first (nothing stored) or second (the clip was delivered before it)."""
    now = p.now()
    stmt = select(RequestItem, FootageRequest, Camera, Agency).join(
        FootageRequest, FootageRequest.id == RequestItem.request_id
    ).join(Camera, Camera.id == RequestItem.camera_id).join(Agency, Agency.id == FootageRequest.agency_id)
    stmt = stmt.where(RequestItem.token_hash == digest(token)) if token is not None else stmt.where(RequestItem.id == item_id)
    if lock:
        stmt = stmt.with_for_update(of=RequestItem)
    row = (await session.execute(stmt)).first()
    if row is None:
        raise NotFound("this upload link is not known")
    item, request, camera, agency = row
    status = item_status(item, now)
    if status not in ("notified", "uploaded"):
        raise Gone(f"this upload link no longer works: the request item is {status}"
                   + (f" ({item.status_reason})" if item.status_reason else ""))
    if item.token_expires_at <= now:
        raise Gone("this upload link has expired")
    if request.status != "open":
        raise Gone(f"this upload link no longer works: the request is {request.status}")
    shares = (await shares_of(session, [camera.id]))[camera.id]
    if not Consent.of(camera, shares, now).allows("requests", agency, camera):
        if lock:
            item.status, item.status_reason, item.updated_at = "cancelled", "consent no longer covers this request", now
        raise Gone("this upload link no longer works: the camera's consent no longer covers this request")
    return UploadTarget(item.id, request.id, camera.id, agency.id, item.owner_id, request.case_number,
                        request.window_start, request.window_end)


async def item_for_upload(p: Platform, token: str) -> UploadTarget:
    async with p.db.sessions() as session:
        return await check_upload(p, session, token=token)


async def mark_uploaded(p: Platform, session: AsyncSession, target: UploadTarget, now: datetime) -> None:
    await session.execute(
        update(RequestItem).where(RequestItem.id == target.item_id, RequestItem.status == "notified")
        .values(status="uploaded", updated_at=now)
    )


# --- upkeep -------------------------------------------------------------------------------------------


async def sweep(p: Platform) -> dict[str, int]:
    """Record what time did by itself: links that expired, and items whose grant lapsed (expires_at)."""
    now = p.now()
    async with p.db.transaction() as session:
        expired = (
            await session.execute(
                update(RequestItem).where(RequestItem.status.in_(OPEN_ITEM_STATES), RequestItem.token_expires_at <= now)
                .values(status="expired", status_reason="the upload link expired", updated_at=now)
                .returning(RequestItem.id, RequestItem.camera_id)
            )
        ).all()
        lapsed_cameras = (
            await session.execute(
                select(Camera).join(RequestItem, RequestItem.camera_id == Camera.id)
                .where(RequestItem.status.in_(OPEN_ITEM_STATES), Camera.grant_expires_at.is_not(None),
                       Camera.grant_expires_at <= now).distinct()
            )
        ).scalars().all()
        cancelled = 0
        from .consent import reconcile_items

        for camera in lapsed_cameras:
            shares = (await shares_of(session, [camera.id]))[camera.id]
            cancelled += len(await reconcile_items(p, session, camera, shares, audit.Actor.system("sweep"), now,
                                                   reason="the owner's grant expired"))
        if expired:
            await audit.record(p.db, session, now, audit.Actor.system("sweep"), "items.expired", subject_type="request_item",
                               subject_id=None, camera_ids=[c for _, c in expired],
                               detail={"items": sorted(i for i, _ in expired), "reason": "the upload link expired"})
    return {"expired": len(expired), "cancelled": cancelled}


async def owner_of(session: AsyncSession, owner_id: str) -> User:
    owner = await session.get(User, owner_id)
    if owner is None:
        raise NotFound("no such owner")
    return owner
