"""Shared pieces of the benchmarks: the synthetic metro area, its cameras, the fences, the cached databases,
and small statistics helpers. Nothing here is imported by the application.

Data model of the synthetic city (seeded, deterministic):
- a 50 km x 50 km square centred on Chicago (41.88, -87.63); owners' homes drawn from a mixture of a dense
  downtown, ~40 neighbourhood centres and a uniform background; 1-5 cameras per owner (mean ~1.5) a few metres
  around the owner's home;
- ~96% active, ~3.5% paused, ~0.5% removed; ~60% grant ``requests``, ~30% of grants carry an expiry, about a
  third of which has passed; retention from {3, 7, 14, 30, 60} days;
- plus a separate fan-out cluster of exactly FANOUT_CAMERAS consenting cameras outside the square (but inside
  the agency's jurisdiction), used only by the fan-out measure, so no metro fence ever touches it.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import Geod
from shapely.geometry import Polygon

GEN_VERSION = 1  # bump when the generator changes: cached databases are keyed by it
BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

GEOD = Geod(ellps="WGS84")
CENTRE_LAT, CENTRE_LON = 41.88, -87.63
HALF_M = 25_000.0  # the metro square is 2 * HALF_M on a side
JURISDICTION_HALF_M = 32_000.0
M_PER_DEG_LAT = 111_132.0
M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(CENTRE_LAT))
HALF_LAT = HALF_M / M_PER_DEG_LAT
HALF_LON = HALF_M / M_PER_DEG_LON

# The fan-out cluster: 10,000 consenting cameras within 300 m of a point 28.5 km west of the centre.
FANOUT_CAMERAS = 10_000
FANOUT_LAT, FANOUT_LON = CENTRE_LAT, CENTRE_LON - 28_500.0 / M_PER_DEG_LON
FANOUT_SPREAD_M = 300.0
FANOUT_FENCE_M = 350.0

# Every measurement runs at this instant (a FakeClock), so expiries keep their meaning in a cached database.
BENCH_NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
RETENTIONS = np.array([3, 7, 14, 30, 60])
RETENTION_WEIGHTS = np.array([0.10, 0.30, 0.20, 0.30, 0.10])
BENCH_SECRET = "bench-deployment-key-not-for-production"
PASSWORD_PLACEHOLDER = "!bench-owner-no-login"


# --- the synthetic city -------------------------------------------------------------------------------


def _uuid(rng: np.random.Generator, count: int) -> list[str]:
    raw = rng.bytes(16 * count)
    return [str(uuid.UUID(bytes=raw[i * 16:(i + 1) * 16], version=4)) for i in range(count)]


def _metro_points(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) drawn from the metro's density, inside the square."""
    n_hoods = 40
    hood_x = rng.uniform(-0.8, 0.8, n_hoods) * HALF_M
    hood_y = rng.uniform(-0.8, 0.8, n_hoods) * HALF_M
    hood_sigma = rng.uniform(800.0, 2_500.0, n_hoods)
    hood_weight = rng.pareto(1.5, n_hoods) + 0.2
    hood_weight /= hood_weight.sum()
    xs, ys = [], []
    have = 0
    while have < count:
        k = int((count - have) * 1.25) + 16
        kind = rng.choice(3, size=k, p=[0.22, 0.50, 0.28])  # downtown, neighbourhoods, background
        x = np.empty(k)
        y = np.empty(k)
        d = kind == 0
        x[d] = rng.normal(0.0, 2_500.0, d.sum())
        y[d] = rng.normal(0.0, 3_500.0, d.sum())
        h = kind == 1
        which = rng.choice(n_hoods, size=h.sum(), p=hood_weight)
        x[h] = rng.normal(hood_x[which], hood_sigma[which])
        y[h] = rng.normal(hood_y[which], hood_sigma[which])
        b = kind == 2
        x[b] = rng.uniform(-HALF_M, HALF_M, b.sum())
        y[b] = rng.uniform(-HALF_M, HALF_M, b.sum())
        keep = (np.abs(x) < HALF_M) & (np.abs(y) < HALF_M)
        xs.append(x[keep])
        ys.append(y[keep])
        have += int(keep.sum())
    x = np.concatenate(xs)[:count]
    y = np.concatenate(ys)[:count]
    return CENTRE_LAT + y / M_PER_DEG_LAT, CENTRE_LON + x / M_PER_DEG_LON


@dataclass
class City:
    """Column arrays of every owner and camera, in insertion order (camera seq = index + 1)."""

    owner_ids: list[str]
    owner_emails: list[str]
    camera_ids: list[str]
    camera_owner: np.ndarray  # index into owner_ids
    lat: np.ndarray
    lon: np.ndarray
    status: np.ndarray  # str
    retention: np.ndarray
    precision: np.ndarray  # str
    grant_version: np.ndarray
    grant_map: np.ndarray
    grant_requests: np.ndarray
    grant_expires: np.ndarray  # epoch seconds, NaN = no expiry
    metro_cameras: int

    @property
    def cameras(self) -> int:
        return len(self.camera_ids)


def _cameras_per_owner(rng: np.random.Generator, cameras: int) -> np.ndarray:
    counts = rng.choice([1, 2, 3, 4, 5], size=int(cameras / 1.3) + 64, p=[0.70, 0.18, 0.07, 0.03, 0.02])
    total = np.cumsum(counts)
    owners = int(np.searchsorted(total, cameras)) + 1
    counts = counts[:owners].copy()
    counts[-1] -= int(total[owners - 1] - cameras)
    return counts[counts > 0]


def make_city(metro_cameras: int, seed: int) -> City:
    rng = np.random.default_rng(seed)
    now_ts = BENCH_NOW.timestamp()
    # metro owners and their cameras, a few metres around each home
    counts = _cameras_per_owner(rng, metro_cameras)
    home_lat, home_lon = _metro_points(rng, len(counts))
    owner_of = np.repeat(np.arange(len(counts)), counts)
    lat = home_lat[owner_of] + rng.normal(0, 12.0, metro_cameras) / M_PER_DEG_LAT
    lon = home_lon[owner_of] + rng.normal(0, 12.0, metro_cameras) / M_PER_DEG_LON
    # the fan-out cluster: its own owners, every camera consenting with 30 days' retention
    f_counts = _cameras_per_owner(rng, FANOUT_CAMERAS)
    r = FANOUT_SPREAD_M * np.sqrt(rng.uniform(0, 1, len(f_counts)))
    a = rng.uniform(0, 2 * math.pi, len(f_counts))
    f_home_lat = FANOUT_LAT + r * np.sin(a) / M_PER_DEG_LAT
    f_home_lon = FANOUT_LON + r * np.cos(a) / M_PER_DEG_LON
    f_owner_of = np.repeat(np.arange(len(f_counts)), f_counts)
    f_jitter = np.clip(rng.normal(0, 5.0, (2, FANOUT_CAMERAS)), -15, 15)  # stays inside the 350 m fence
    f_lat = f_home_lat[f_owner_of] + f_jitter[0] / M_PER_DEG_LAT
    f_lon = f_home_lon[f_owner_of] + f_jitter[1] / M_PER_DEG_LON

    n_owners = len(counts) + len(f_counts)
    n = metro_cameras + FANOUT_CAMERAS
    status = rng.choice(np.array(["active", "paused", "removed"]), size=n, p=[0.96, 0.035, 0.005])
    retention = rng.choice(RETENTIONS, size=n, p=RETENTION_WEIGHTS)
    precision = rng.choice(np.array(["block", "exact"]), size=n, p=[0.7, 0.3])
    granted = rng.uniform(size=n) < 0.85
    grant_version = np.where(granted, rng.integers(1, 4, n), 0)
    grant_requests = granted & (rng.uniform(size=n) < 0.60 / 0.85)
    grant_map = granted & (rng.uniform(size=n) < 0.8)
    has_expiry = granted & (rng.uniform(size=n) < 0.30)
    grant_expires = np.where(has_expiry, now_ts + rng.uniform(-180, 365, n) * 86400.0, np.nan)
    # the cluster consents, without expiry, and remembers long enough for any window
    c = slice(metro_cameras, n)
    status[c], retention[c], grant_version[c] = "active", 30, 1
    grant_requests[c], grant_map[c], grant_expires[c] = True, True, np.nan

    owner_ids = _uuid(rng, n_owners)
    camera_ids = _uuid(rng, n)
    return City(
        owner_ids=owner_ids,
        owner_emails=[f"owner{i}@bench.example.org" for i in range(n_owners)],
        camera_ids=camera_ids,
        camera_owner=np.concatenate([owner_of, f_owner_of + len(counts)]),
        lat=np.concatenate([lat, f_lat]),
        lon=np.concatenate([lon, f_lon]),
        status=status,
        retention=retention,
        precision=precision,
        grant_version=grant_version,
        grant_map=grant_map,
        grant_requests=grant_requests,
        grant_expires=grant_expires,
        metro_cameras=metro_cameras,
    )


def jurisdiction() -> dict[str, Any]:
    dlat, dlon = JURISDICTION_HALF_M / M_PER_DEG_LAT, JURISDICTION_HALF_M / M_PER_DEG_LON
    a, b, c, d = CENTRE_LON - dlon, CENTRE_LAT - dlat, CENTRE_LON + dlon, CENTRE_LAT + dlat
    return {"type": "Polygon", "coordinates": [[[a, b], [c, b], [c, d], [a, d], [a, b]]]}


# --- fences --------------------------------------------------------------------------------------------


@dataclass
class FenceSpec:
    kind: str  # circle | polygon
    area: dict[str, Any]  # as a request carries it
    window_start: datetime
    lat: float
    lon: float


def _fence_centres(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Where investigators draw: where people (and cameras) are, kept 2 km inside the square."""
    lat, lon = _metro_points(rng, count * 3)
    inner = (np.abs(lat - CENTRE_LAT) * M_PER_DEG_LAT < HALF_M - 2000) & (np.abs(lon - CENTRE_LON) * M_PER_DEG_LON < HALF_M - 2000)
    return lat[inner][:count], lon[inner][:count]


def _window_start(rng: np.random.Generator) -> datetime:
    hours_ago = min(float(rng.exponential(48.0)) + 1.0, 20 * 24.0)
    return BENCH_NOW - timedelta(hours=hours_ago)


def pentagon(rng: np.random.Generator, lat: float, lon: float, area_km2: float = 1.95) -> dict[str, Any]:
    """An irregular pentagon of the given geodesic area around (lat, lon), randomly rotated."""
    angles = np.sort(rng.uniform(0, 2 * math.pi / 5, 5) * 0.5 + np.arange(5) * 2 * math.pi / 5) + rng.uniform(0, 2 * math.pi)
    radii = rng.uniform(0.75, 1.25, 5)
    x, y = radii * np.cos(angles), radii * np.sin(angles)
    unit = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))  # shoelace, in unit^2
    scale = math.sqrt(area_km2 * 1e6 / unit)
    lons = lon + x * scale / M_PER_DEG_LON
    lats = lat + y * scale / M_PER_DEG_LAT
    ring = [[float(a), float(b)] for a, b in zip(lons, lats, strict=True)]
    ring.append(ring[0])
    poly = Polygon(ring)
    true_area = abs(GEOD.geometry_area_perimeter(poly)[0]) / 1e6  # correct the local-plane approximation
    k = math.sqrt(area_km2 / true_area)
    ring = [[lon + (a - lon) * k, lat + (b - lat) * k] for a, b in ring]
    return {"type": "Polygon", "coordinates": [ring]}


def make_fences(seed: int, count: int, radius_m: float = 500.0, poly_km2: float = 1.95) -> list[FenceSpec]:
    """``count`` circles and ``count`` polygons, interleaved (circle, polygon, circle, ...)."""
    rng = np.random.default_rng(seed + 7919)
    lats, lons = _fence_centres(rng, count * 2)
    out = []
    for i in range(count):
        la, lo = float(lats[2 * i]), float(lons[2 * i])
        out.append(FenceSpec("circle", {"center": {"lat": la, "lon": lo}, "radius_m": radius_m}, _window_start(rng), la, lo))
        la, lo = float(lats[2 * i + 1]), float(lons[2 * i + 1])
        out.append(FenceSpec("polygon", pentagon(rng, la, lo, poly_km2), _window_start(rng), la, lo))
    return out


# --- statistics ----------------------------------------------------------------------------------------


def p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return float(np.percentile(values, 95))


def summary(values: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(values) * 1e3, "p95_ms": p95(values) * 1e3, "n": len(values)}


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        elapsed, self.start = now - self.start, now
        return elapsed


# --- SMTP ----------------------------------------------------------------------------------------------


async def smtp_reused_connections(host: str, port: int, messages: Sequence[EmailMessage], connections: int) -> float:
    """Seconds for ``connections`` raw connections, each kept open, to send ``messages`` back to back between them:
    the ceiling connection reuse gives, with no channel at all."""
    import aiosmtplib

    queue: asyncio.Queue[EmailMessage] = asyncio.Queue()
    for m in messages:
        queue.put_nowait(m)

    async def sender() -> None:
        client = aiosmtplib.SMTP(hostname=host, port=port, timeout=20)
        await client.connect()
        try:
            while True:
                try:
                    m = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await client.send_message(m)
        finally:
            await client.quit()

    t0 = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(connections)))
    return time.perf_counter() - t0


# --- database rows -------------------------------------------------------------------------------------


def sqlite_stamp(ts: float) -> str:
    """What SQLAlchemy's SQLite DateTime stores for a UTC instant (naive, microseconds, lexically ordered)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def camera_rows(city: City, *, for_sqlite: bool) -> list[tuple[Any, ...]]:
    created = BENCH_NOW - timedelta(days=200)
    created_v: Any = sqlite_stamp(created.timestamp()) if for_sqlite else created
    owners = city.owner_ids
    rows = []
    expires = city.grant_expires
    for i in range(city.cameras):
        e = expires[i]
        if math.isnan(e):
            exp: Any = None
        elif for_sqlite:
            exp = sqlite_stamp(float(e))
        else:
            exp = datetime.fromtimestamp(float(e), UTC)
        rows.append((
            i + 1, city.camera_ids[i], owners[city.camera_owner[i]], f"Camera {i + 1}", float(city.lat[i]), float(city.lon[i]),
            None, None, None, int(city.retention[i]), str(city.precision[i]), str(city.status[i]), "manual",
            "{}", None, "[]", created_v, created_v, int(city.grant_version[i]), bool(city.grant_map[i]),
            bool(city.grant_requests[i]), False, "never", exp,
        ))
    return rows


CAMERA_COLUMNS = [
    "seq", "id", "owner_id", "label", "lat", "lon", "bearing_deg", "fov_deg", "range_m", "retention_days", "precision",
    "status", "connection_kind", "connection", "connection_secret", "capabilities", "created_at", "updated_at",
    "grant_version", "grant_map", "grant_requests", "grant_direct_fetch", "grant_live", "grant_expires_at",
]
USER_COLUMNS = [
    "id", "email", "name", "phone", "password_hash", "role", "agency_id", "badge", "notify_email", "notify_sms",
    "webhook_url", "webhook_secret", "must_change_password", "created_at",
]


def user_rows(city: City, *, for_sqlite: bool) -> list[tuple[Any, ...]]:
    created = BENCH_NOW - timedelta(days=300)
    created_v: Any = sqlite_stamp(created.timestamp()) if for_sqlite else created
    return [
        (oid, email, f"Owner {i}", None, PASSWORD_PLACEHOLDER, "owner", None, 0, True, False, None, None, False, created_v)
        for i, (oid, email) in enumerate(zip(city.owner_ids, city.owner_emails, strict=True))
    ]


# --- cached databases ----------------------------------------------------------------------------------


def db_name(cameras: int, seed: int) -> str:
    return f"ccbench_{cameras}_{seed}_g{GEN_VERSION}"


def sqlite_path(cameras: int, seed: int) -> Path:
    return CACHE_DIR / f"{db_name(cameras, seed)}.sqlite3"


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def pg_url(name: str) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


META_DDL = "CREATE TABLE IF NOT EXISTS bench_meta (key VARCHAR(100) PRIMARY KEY, value TEXT NOT NULL)"


def read_meta_sqlite(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute("SELECT key, value FROM bench_meta").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    meta = {k: json.loads(v) for k, v in rows}
    return meta if meta.get("complete") else None


async def read_meta_pg(name: str) -> dict[str, Any] | None:
    import asyncpg

    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    finally:
        await admin.close()
    if not exists:
        return None
    conn = await asyncpg.connect(PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}")
    try:
        has = await conn.fetchval("SELECT to_regclass('bench_meta') IS NOT NULL")
        if not has:
            return None
        rows = await conn.fetch("SELECT key, value FROM bench_meta")
    finally:
        await conn.close()
    meta = {r["key"]: json.loads(r["value"]) for r in rows}
    return meta if meta.get("complete") else None
