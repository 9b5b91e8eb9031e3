"""Geometry with one meaning everywhere: GeoJSON in WGS84, geodesic distances and areas on the WGS84 ellipsoid.

A fence contains a point when the point is inside it or on its edge (``intersects``), for polygons as for
circles; PostGIS is asked exactly the same question (``ST_Intersects`` / geodesic ``ST_DWithin``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import shapely
from pyproj import Geod
from shapely.geometry import MultiPolygon, Point, Polygon, mapping

from .errors import FieldError, InvalidInput

GEOD = Geod(ellps="WGS84")
BLOCK_STEP_DEG = 0.001  # about 111 m of latitude: the coarsest public position of a "block" camera
Loc = tuple[str | int, ...]


def check_lat_lon(lat: float, lon: float, loc: Loc = ("location",)) -> None:
    errors = []
    if not (isinstance(lat, int | float) and math.isfinite(lat) and -90 <= lat <= 90):
        errors.append(FieldError((*loc, "lat"), "latitude must be a number from -90 to 90"))
    if not (isinstance(lon, int | float) and math.isfinite(lon) and -180 <= lon <= 180):
        errors.append(FieldError((*loc, "lon"), "longitude must be a number from -180 to 180"))
    if errors:
        raise InvalidInput("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors), errors=errors)


def _ring(raw: Any, loc: Loc) -> list[tuple[float, float]]:
    if not isinstance(raw, list) or len(raw) < 4:
        raise InvalidInput.at(loc, "a linear ring needs at least four positions")
    ring = []
    for i, position in enumerate(raw):
        if not isinstance(position, list | tuple) or len(position) < 2:
            raise InvalidInput.at((*loc, i), "a position is [longitude, latitude]")
        lon, lat = position[0], position[1]
        if isinstance(lon, bool) or isinstance(lat, bool):
            raise InvalidInput.at((*loc, i), "a position is [longitude, latitude]")
        check_lat_lon(lat, lon, (*loc, i))
        ring.append((float(lon), float(lat)))
    if ring[0] != ring[-1]:
        raise InvalidInput.at(loc, "a linear ring must end where it starts")
    return ring


def _polygon(coordinates: Any, loc: Loc) -> Polygon:
    if not isinstance(coordinates, list) or not coordinates:
        raise InvalidInput.at(loc, "a Polygon's coordinates are a list of linear rings")
    rings = [_ring(r, (*loc, i)) for i, r in enumerate(coordinates)]
    polygon = Polygon(rings[0], rings[1:])
    reason = shapely.is_valid_reason(polygon)
    if reason != "Valid Geometry":
        raise InvalidInput.at(loc, _explain(reason))
    return polygon


def _explain(reason: str) -> str:
    match = re.match(r"([A-Za-z -]+)\[([-\d.e+]+) ([-\d.e+]+)\]", reason)
    if not match:
        return f"invalid polygon: {reason}"
    what, lon, lat = match.group(1).strip(), float(match.group(2)), float(match.group(3))
    if what.lower() == "self-intersection":
        return f"the polygon's edges cross each other at longitude {lon:.6f}, latitude {lat:.6f}"
    return f"invalid polygon ({what.lower()}) at longitude {lon:.6f}, latitude {lat:.6f}"


def parse_area_geojson(raw: Any, loc: Loc = ("area",), *, allow_multi: bool = False) -> Polygon | MultiPolygon:
    """A GeoJSON Polygon (or MultiPolygon), bare, as a Feature, or as a FeatureCollection of one."""
    if not isinstance(raw, dict):
        raise InvalidInput.at(loc, "expected a GeoJSON object")
    kind = raw.get("type")
    if kind == "FeatureCollection":
        features = raw.get("features")
        if not isinstance(features, list) or len(features) != 1:
            raise InvalidInput.at(loc, "a FeatureCollection must hold exactly one feature")
        return parse_area_geojson(features[0], (*loc, "features", 0), allow_multi=allow_multi)
    if kind == "Feature":
        return parse_area_geojson(raw.get("geometry"), (*loc, "geometry"), allow_multi=allow_multi)
    if kind == "Polygon":
        return _polygon(raw.get("coordinates"), (*loc, "coordinates"))
    if kind == "MultiPolygon" and allow_multi:
        parts = raw.get("coordinates")
        if not isinstance(parts, list) or not parts:
            raise InvalidInput.at((*loc, "coordinates"), "a MultiPolygon needs at least one polygon")
        polygons = [_polygon(p, (*loc, "coordinates", i)) for i, p in enumerate(parts)]
        multi = MultiPolygon(polygons)
        reason = shapely.is_valid_reason(multi)
        if reason != "Valid Geometry":
            raise InvalidInput.at(loc, _explain(reason))
        return multi
    allowed = "Polygon or MultiPolygon" if allow_multi else "Polygon"
    raise InvalidInput.at((*loc, "type"), f"expected a GeoJSON {allowed}, got {kind!r}")


def geodesic_area_km2(geometry: Polygon | MultiPolygon) -> float:
    area, _ = GEOD.geometry_area_perimeter(geometry)
    return abs(area) / 1e6


def geodesic_distance_m(lon0: float, lat0: float, lons: np.ndarray, lats: np.ndarray) -> np.ndarray:
    if len(lons) == 0:
        return np.zeros(0)
    _, _, dist = GEOD.inv(np.full(len(lons), lon0), np.full(len(lats), lat0), lons, lats)
    return np.asarray(dist)


WGS84_A = 6_378_137.0
WGS84_E2 = 6.694379990141317e-3


@dataclass(frozen=True)
class FlatCircle:
    """A geodesic circle's flat stand-in near its centre, for deciding most points with arithmetic alone.

    Metres east and north of the centre at the centre's scales (the ellipsoid's radii of curvature there):
    ``x = (lon - lon0) * kx``, ``y = (lat - lat0) * ky``. Out to the circle's reach the flat distance is within a
    factor ``1 ± band`` of the geodesic one: using the centre's east-west scale at a point up to ``d`` metres north
    or south is off by at most ``tan|lat0| * d / M`` (M, the smallest radius of curvature, at the equator), and the
    earth's curvature adds less than ``d / M`` more. So a point whose flat distance squared is at most ``inner2`` is
    inside, one beyond ``outer2`` is outside, and only those between need the geodesic test (tests/test_geo_flat.py
    checks the bound against pyproj). SQLite's match applies it in SQL. Near the poles there is no stand-in."""

    lon0: float
    lat0: float
    kx: float
    ky: float
    band: float
    inner2: float
    outer2: float

    MAX_LAT = 80.0
    MAX_BAND = 0.1
    REACH = 1.05  # the bound holds out to this multiple of the radius, past the widest point of the fence's box
    M_MIN = 6_335_439.0  # the meridian's radius of curvature at the equator, the smallest anywhere (metres)

    @classmethod
    def of(cls, lon0: float, lat0: float, radius_m: float) -> FlatCircle | None:
        if abs(lat0) > cls.MAX_LAT:
            return None
        phi = math.radians(lat0)
        band = (abs(math.tan(phi)) + 1.0) * radius_m * cls.REACH / cls.M_MIN + 1e-6
        if band > cls.MAX_BAND:
            return None
        w = math.sqrt(1.0 - WGS84_E2 * math.sin(phi) ** 2)
        ky = math.radians(WGS84_A * (1.0 - WGS84_E2) / w**3)  # metres per degree of latitude
        kx = math.radians(WGS84_A / w * math.cos(phi))  # metres per degree of longitude
        if abs(lon0) + radius_m * cls.REACH * (1.0 + band) / kx >= 180.0:
            return None  # the circle reaches across the antimeridian, where longitudes wrap
        return cls(lon0, lat0, kx, ky, band, (radius_m * (1.0 - band)) ** 2, (radius_m * (1.0 + band)) ** 2)

    def distance2(self, lons: np.ndarray, lats: np.ndarray) -> np.ndarray:
        return ((np.asarray(lons) - self.lon0) * self.kx) ** 2 + ((np.asarray(lats) - self.lat0) * self.ky) ** 2


@dataclass(frozen=True)
class Fence:
    """A geo-fence: a polygon (holes allowed) or a geodesic circle."""

    polygon: Polygon | None = None
    center: tuple[float, float] | None = None  # (lon, lat)
    radius_m: float | None = None
    _prepared: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def circle(cls, lat: float, lon: float, radius_m: float) -> Fence:
        return cls(center=(lon, lat), radius_m=radius_m)

    @classmethod
    def of_polygon(cls, polygon: Polygon) -> Fence:
        shapely.prepare(polygon)
        return cls(polygon=polygon)

    @property
    def is_circle(self) -> bool:
        return self.center is not None

    def bbox(self) -> tuple[float, float, float, float]:
        """Conservative bounding box (min_lon, min_lat, max_lon, max_lat)."""
        if self.polygon is not None:
            return tuple(self.polygon.bounds)  # type: ignore[return-value]
        assert self.center is not None and self.radius_m is not None
        lon0, lat0 = self.center
        flat = self.flat
        if flat is not None:  # every point of the circle is within sqrt(outer2) flat metres east-west and north-south
            reach_m = math.sqrt(flat.outer2)
            return (lon0 - reach_m / flat.kx, lat0 - reach_m / flat.ky, lon0 + reach_m / flat.kx, lat0 + reach_m / flat.ky)
        reach = self.radius_m * 1.01 + 1.0  # the geodesic circle's widest point is not exactly due east
        lons, lats, _ = GEOD.fwd([lon0] * 4, [lat0] * 4, [0, 90, 180, 270], [reach] * 4)
        return (min(lons), min(lats), max(lons), max(lats))

    @cached_property
    def flat(self) -> FlatCircle | None:
        """The circle's flat stand-in (None for polygons, and for circles near the poles)."""
        if self.center is None or self.radius_m is None:
            return None
        return FlatCircle.of(self.center[0], self.center[1], self.radius_m)

    def contains(self, lons: np.ndarray, lats: np.ndarray) -> np.ndarray:
        lons = np.asarray(lons, dtype=float)
        lats = np.asarray(lats, dtype=float)
        if self.polygon is not None:
            return shapely.intersects_xy(self.polygon, lons, lats)
        assert self.center is not None and self.radius_m is not None
        return geodesic_distance_m(self.center[0], self.center[1], lons, lats) <= self.radius_m

    def as_polygon(self, segments: int = 64) -> Polygon:
        """The fence as a polygon; a circle becomes its geodesic 64-gon (used for containment checks)."""
        if self.polygon is not None:
            return self.polygon
        assert self.center is not None and self.radius_m is not None
        azimuths = np.linspace(0, 360, segments, endpoint=False)
        lons, lats, _ = GEOD.fwd(
            np.full(segments, self.center[0]), np.full(segments, self.center[1]), azimuths, np.full(segments, self.radius_m)
        )
        return Polygon(list(zip(lons, lats, strict=True)))

    def area_km2(self) -> float:
        if self.polygon is not None:
            return geodesic_area_km2(self.polygon)
        assert self.radius_m is not None
        return math.pi * self.radius_m**2 / 1e6

    def as_geojson(self) -> dict[str, Any]:
        if self.polygon is not None:
            # Lists, as JSON has them: a request opened in the transaction that made it parses this again.
            shape = mapping(self.polygon)
            return {"type": shape["type"], "coordinates": [[list(point) for point in ring] for ring in shape["coordinates"]]}
        assert self.center is not None
        return {"center": {"lat": self.center[1], "lon": self.center[0]}, "radius_m": self.radius_m}


def coarsen(lat: float, lon: float) -> tuple[float, float]:
    """The public position of a block-precision camera: the centre of its ~111 m grid cell.

    Deterministic, so the same camera always lands on the same point and repeated reads reveal nothing more.
    """
    row = math.floor(lat / BLOCK_STEP_DEG)
    c_lat = (row + 0.5) * BLOCK_STEP_DEG
    lon_step = BLOCK_STEP_DEG / max(math.cos(math.radians(c_lat)), 1e-6)
    col = math.floor(lon / lon_step)
    c_lon = (col + 0.5) * lon_step
    return round(c_lat, 6), round(c_lon, 6)


def point_in(geometry: Polygon | MultiPolygon, lat: float, lon: float) -> bool:
    return bool(geometry.intersects(Point(lon, lat)))


def bounds_of(geometry: Polygon | MultiPolygon) -> tuple[float, float, float, float]:
    return tuple(geometry.bounds)  # type: ignore[return-value]


def to_geojson(geometry: Polygon | MultiPolygon) -> dict[str, Any]:
    return dict(shapely.geometry.mapping(geometry))
