"""Spatial candidate queries: the only place where the backends' indexes differ.

Each returns a SELECT of cameras whose location lies in a bounding box, through the backend's index
(SQLite R*Tree, PostGIS GiST, or PostgreSQL's built-in point GiST). Exact predicates are applied by the caller.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, Select, Table, func, literal_column, select

from ..db import Database
from ..db.models import Camera

# The R*Tree lives outside the ORM metadata (hand-written DDL in consentcam.db.spatial).
_rtree = Table(
    "camera_rtree",
    MetaData(),
    Column("seq", Integer, primary_key=True),
    Column("min_lon", Float),
    Column("max_lon", Float),
    Column("min_lat", Float),
    Column("max_lat", Float),
)

BBox = tuple[float, float, float, float]  # (min_lon, min_lat, max_lon, max_lat)


def rtree_candidates(min_lon: Any, min_lat: Any, max_lon: Any, max_lat: Any) -> Select:
    r = _rtree.c
    return select(r.seq).where(r.max_lon >= min_lon, r.min_lon <= max_lon, r.max_lat >= min_lat, r.min_lat <= max_lat)


def rtree_driven(stmt: Select, min_lon: Any, min_lat: Any, max_lon: Any, max_lat: Any) -> Select:
    """``stmt`` over cameras joined to the R*Tree overlap of the box, for callers that test the exact shape
    themselves. With no other condition on the position, SQLite's planner lets the R*Tree drive (measured at a
    million cameras: 0.17 ms, against 0.5 ms for ``seq IN (subquery)`` and 2.1 ms when a latitude range invited
    it to walk the lat/lon index instead)."""
    r = _rtree.c
    return stmt.select_from(_rtree.join(Camera.__table__, Camera.__table__.c.seq == r.seq)).where(
        r.max_lon >= min_lon, r.min_lon <= max_lon, r.max_lat >= min_lat, r.min_lat <= max_lat)


def in_bbox(db: Database, stmt: Select, bbox: BBox) -> Select:
    min_lon, min_lat, max_lon, max_lat = bbox
    exact = (Camera.lon >= min_lon, Camera.lon <= max_lon, Camera.lat >= min_lat, Camera.lat <= max_lat)
    if db.spatial == "rtree":
        # The R*Tree must drive: written as a join, SQLite's planner preferred scanning a latitude band of the
        # lat/lon btree across the whole city and probing the R*Tree per row (4-5x slower at a million cameras).
        # R*Tree stores 32-bit floats rounded outwards, so ask for overlap and keep the exact test on the real columns.
        return stmt.where(Camera.seq.in_(rtree_candidates(min_lon, min_lat, max_lon, max_lat)), *exact)
    if db.spatial == "postgis":
        envelope = func.ST_MakeEnvelope(min_lon, min_lat, max_lon, max_lat, 4326)
        return stmt.where(literal_column("cameras.geom").op("&&")(envelope))
    box = func.box(func.point(min_lon, min_lat), func.point(max_lon, max_lat))
    return stmt.where(func.point(Camera.lon, Camera.lat).op("<@")(box))
