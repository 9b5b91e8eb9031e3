"""Benchmark of issue 3: matching a fence over a metro's cameras, fan-out of a large request, SMTP delivery.

    .venv/bin/python bench/match_bench.py --cameras 1000000 --backends sqlite,postgresql --repeat 50
    .venv/bin/python bench/match_bench.py --cameras 20000          # quick smoke run (< 1 min)

Every figure is compared with baselines measured in the same run, on the same data, through the same driver, so
that the ratios mean something on a shared, noisy machine. See bench/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import math
import os
import platform as host
import pstats
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Point

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import (  # noqa: E402
    BENCH_NOW,
    BENCH_SECRET,
    CACHE_DIR,
    CAMERA_COLUMNS,
    FANOUT_CAMERAS,
    FANOUT_FENCE_M,
    FANOUT_LAT,
    FANOUT_LON,
    META_DDL,
    PG_ADMIN_DSN,
    RESULTS_DIR,
    USER_COLUMNS,
    FenceSpec,
    summary,
)

TARGET_MATCH_OVER_INDEX = 1.5
TARGET_SCAN_OVER_MATCH = 10.0
TARGET_FANOUT_S = 1.0
TARGET_SMTP_PER_S = 500.0
EARTH_R = 6_371_008.8
QUICK_BELOW = 200_000  # fewer cameras than this: quick mode
log_t0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - log_t0:7.1f}s] {msg}", flush=True)


# --- building (or reusing) the databases ---------------------------------------------------------------


def _settings(url: str, data_dir: Path) -> Any:
    from consentcam.settings import Settings

    return Settings(_env_file=None, data_dir=data_dir, database_url=url, secret_key=BENCH_SECRET,  # type: ignore[call-arg]
                    public_url="http://consentcam.bench", load_entry_point_plugins=False, run_jobs_in_process=False)


async def _open(url: str) -> Any:
    from consentcam.clock import FakeClock
    from consentcam.platform import open_platform

    return await open_platform(_settings(url, CACHE_DIR / "data"), clock=FakeClock(BENCH_NOW))


async def _seed_services(url: str) -> dict[str, Any]:
    """The agency and its investigator, made through the real services (audit events included)."""
    from consentcam.audit import Actor
    from consentcam.schemas import AgencyCreate
    from consentcam.services import accounts

    p = await _open(url)
    try:
        actor = Actor.system("bench")
        agency_id = await accounts.create_agency(p, actor, AgencyCreate(
            name="Metro Police Department", jurisdiction=common.jurisdiction(), require_approval=False,
            max_window_hours=24.0, max_area_km2=2.0))
        user_id, _ = await accounts.create_agency_user(p, actor, agency_id, "investigator@metro-pd.example.org",
                                                       "investigator", "Investigator One")
        from sqlalchemy import text

        async with p.db.sessions() as session:
            base = (await session.execute(text("SELECT coalesce(max(seq), 0) FROM audit_events"))).scalar_one()
    finally:
        await p.db.dispose()
    return {"agency_id": agency_id, "investigator_id": user_id, "audit_base_seq": int(base)}


def migration_heads(url: str) -> list[str]:
    from alembic.script import ScriptDirectory
    from consentcam.db.migrate import alembic_config

    return sorted(ScriptDirectory.from_config(alembic_config(url)).get_heads())


async def migrate(url: str) -> None:
    """To every head: the tree may carry parallel branches of migrations while they are being written."""
    from consentcam.db.migrate import upgrade

    await asyncio.to_thread(upgrade, url, "heads")


async def bring_up_to_date(url: str) -> None:
    """A cached database whose schema is behind: stamp it if the migrations it ran are exactly those up to the
    current heads (only their order changed, e.g. two branches made linear), otherwise run the missing ones."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from consentcam.db.migrate import alembic_config
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            current = [r[0] for r in (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()]
    finally:
        await engine.dispose()
    config = alembic_config(url)
    script = ScriptDirectory.from_config(config)

    def ancestry(revisions: list[str]) -> set[str]:
        seen: set[str] = set()
        stack = list(revisions)
        while stack:
            rev = stack.pop()
            if rev is None or rev in seen:
                continue
            seen.add(rev)
            down = script.get_revision(rev).down_revision
            stack.extend(down if isinstance(down, tuple | list) else [down])
        return seen

    if ancestry(current) == ancestry(list(script.get_heads())):
        await asyncio.to_thread(command.stamp, config, "heads", purge=True)
    else:
        await migrate(url)


def _write_meta_sqlite(path: Path, meta: dict[str, Any]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(META_DDL)
        conn.executemany("INSERT OR REPLACE INTO bench_meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
    finally:
        conn.close()


async def _write_meta_pg(name: str, meta: dict[str, Any]) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}")
    try:
        await conn.execute(META_DDL)
        await conn.executemany("INSERT INTO bench_meta VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                               [(k, json.dumps(v)) for k, v in meta.items()])
    finally:
        await conn.close()


async def build_sqlite(cameras: int, seed: int, regenerate: bool) -> tuple[str, dict[str, Any]]:
    from consentcam.db.spatial import SQLITE_RTREE

    path = common.sqlite_path(cameras, seed)
    meta = None if regenerate else common.read_meta_sqlite(path)
    if meta is not None:
        log(f"sqlite: reusing {path} ({meta['cameras_total']} cameras, built in {meta['build_s']:.0f} s)")
        heads = migration_heads(common.sqlite_url(path))
        if meta.get("heads") != heads:
            log(f"sqlite: schema moved on ({meta.get('heads')} -> {heads}); migrating the cached database")
            try:
                await bring_up_to_date(common.sqlite_url(path))
            except Exception as exc:  # noqa: BLE001 - a cache that cannot follow the schema is rebuilt
                log(f"sqlite: cannot migrate the cached database ({type(exc).__name__}: {exc}); rebuilding it")
                meta = None
            else:
                meta["heads"] = heads
                _write_meta_sqlite(path, meta)
    if meta is not None:
        return common.sqlite_url(path), meta
    t0 = time.perf_counter()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    await migrate(common.sqlite_url(path))
    log(f"sqlite: generating {cameras:,} metro cameras + {FANOUT_CAMERAS:,} fan-out cluster")
    city = common.make_city(cameras, seed)
    users, cams = common.user_rows(city, for_sqlite=True), common.camera_rows(city, for_sqlite=True)
    log(f"sqlite: loading {len(users):,} owners and {len(cams):,} cameras")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-1000000", "temp_store=MEMORY"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute("BEGIN")
        indexes = conn.execute("SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name IN ('cameras','users') "
                               "AND sql IS NOT NULL").fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.execute("DROP TRIGGER IF EXISTS cameras_rtree_insert")
        conn.executemany(f"INSERT INTO users ({','.join(USER_COLUMNS)}) VALUES ({','.join('?' * len(USER_COLUMNS))})", users)
        conn.executemany(f"INSERT INTO cameras ({','.join(CAMERA_COLUMNS)}) VALUES ({','.join('?' * len(CAMERA_COLUMNS))})", cams)
        for _, sql in indexes:
            conn.execute(sql)
        for statement in SQLITE_RTREE:  # triggers back, and the R*Tree filled from the table in one pass
            conn.execute(statement)
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    del users, cams, city
    meta = await _seed_services(common.sqlite_url(path))
    meta.update(heads=migration_heads(common.sqlite_url(path)), cameras_metro=cameras, cameras_total=cameras + FANOUT_CAMERAS, seed=seed, gen=common.GEN_VERSION,
                build_s=time.perf_counter() - t0, complete=True)
    _write_meta_sqlite(path, meta)
    log(f"sqlite: built in {meta['build_s']:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")
    return common.sqlite_url(path), meta


async def build_postgres(cameras: int, seed: int, regenerate: bool) -> tuple[str, dict[str, Any]]:
    import asyncpg

    name = common.db_name(cameras, seed)
    url = common.pg_url(name)
    meta = None if regenerate else await common.read_meta_pg(name)
    if meta is not None:
        log(f"postgresql: reusing database {name} ({meta['cameras_total']} cameras, built in {meta['build_s']:.0f} s)")
        heads = migration_heads(url)
        if meta.get("heads") != heads:
            log(f"postgresql: schema moved on ({meta.get('heads')} -> {heads}); migrating the cached database")
            try:
                await bring_up_to_date(url)
            except Exception as exc:  # noqa: BLE001 - a cache that cannot follow the schema is rebuilt
                log(f"postgresql: cannot migrate the cached database ({type(exc).__name__}: {exc}); rebuilding it")
                meta = None
            else:
                meta["heads"] = heads
                await _write_meta_pg(name, meta)
    if meta is not None:
        return url, meta
    t0 = time.perf_counter()
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    await migrate(url)
    log(f"postgresql: generating {cameras:,} metro cameras + {FANOUT_CAMERAS:,} fan-out cluster")
    city = common.make_city(cameras, seed)
    users, cams = common.user_rows(city, for_sqlite=False), common.camera_rows(city, for_sqlite=False)
    log(f"postgresql: loading {len(users):,} owners and {len(cams):,} cameras (COPY)")
    conn = await asyncpg.connect(PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}")
    try:
        async with conn.transaction():
            indexes = await conn.fetch(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename IN ('cameras', 'users') "
                "AND i.schemaname = current_schema() AND NOT EXISTS "
                "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)")
            for row in indexes:
                await conn.execute(f'DROP INDEX "{row["indexname"]}"')
            await conn.copy_records_to_table("users", records=users, columns=USER_COLUMNS)
            await conn.copy_records_to_table("cameras", records=cams, columns=CAMERA_COLUMNS)
            for row in indexes:
                await conn.execute(row["indexdef"])
            await conn.execute("SELECT setval(pg_get_serial_sequence('cameras', 'seq'), (SELECT max(seq) FROM cameras))")
        await conn.execute("VACUUM ANALYZE cameras")
        await conn.execute("VACUUM ANALYZE users")
    finally:
        await conn.close()
    del users, cams, city
    meta = await _seed_services(url)
    meta.update(heads=migration_heads(url), cameras_metro=cameras, cameras_total=cameras + FANOUT_CAMERAS, seed=seed,
                gen=common.GEN_VERSION, build_s=time.perf_counter() - t0, complete=True)
    await _write_meta_pg(name, meta)
    log(f"postgresql: built in {meta['build_s']:.1f} s")
    return url, meta


async def reset_state(p: Any, meta: dict[str, Any]) -> None:
    """Remove whatever a previous (possibly interrupted) run added: requests, items, jobs, their audit events."""
    from sqlalchemy import text

    base = int(meta["audit_base_seq"])
    async with p.db.transaction() as session:
        for statement in ("DELETE FROM request_items", "DELETE FROM jobs", "DELETE FROM footage_requests",
                          f"DELETE FROM audit_event_cameras WHERE seq > {base}", f"DELETE FROM audit_events WHERE seq > {base}"):
            await session.execute(text(statement))
    if not p.db.is_sqlite:  # every fan-out starts from the same clean tables, not from ever more dead tuples
        async with p.db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM request_items, jobs, footage_requests, audit_event_cameras, audit_events")


# --- the in-memory peer --------------------------------------------------------------------------------


class Scan:
    """All cameras in numpy arrays: the vectorised in-memory scan an application could keep (the smart naive peer)."""

    def __init__(self, ids: np.ndarray, lat: np.ndarray, lon: np.ndarray, active: np.ndarray, grant: np.ndarray,
                 expires: np.ndarray, retention: np.ndarray) -> None:
        self.ids, self.lat, self.lon = ids, lat, lon
        self.active, self.grant, self.expires, self.retention = active, grant, expires, retention
        self.lat_r, self.lon_r = np.radians(lat), np.radians(lon)
        self.cos_lat = np.cos(self.lat_r)

    def match(self, fence: Any, spec: FenceSpec, now: datetime) -> np.ndarray:
        need = max(0.0, (now - spec.window_start).total_seconds() / 86400)
        if fence.is_circle:  # haversine, compared in "hav" space: no arcsin, no sqrt
            lon0, lat0 = map(math.radians, fence.center)
            h = np.sin((self.lat_r - lat0) * 0.5) ** 2 + math.cos(lat0) * self.cos_lat * np.sin((self.lon_r - lon0) * 0.5) ** 2
            mask = h <= math.sin(fence.radius_m / (2 * EARTH_R)) ** 2
        else:
            mask = shapely.contains_xy(fence.polygon, self.lon, self.lat)
        mask &= self.active
        mask &= self.grant
        mask &= self.expires > now.timestamp()
        mask &= self.retention >= need
        return self.ids[np.flatnonzero(mask)]


async def load_scan(p: Any) -> Scan:
    from sqlalchemy import text

    if p.db.is_sqlite:
        sql = ("SELECT id, lat, lon, status = 'active', grant_requests, "
               "coalesce((julianday(grant_expires_at) - 2440587.5) * 86400.0, 1e300), retention_days FROM cameras ORDER BY seq")
    else:
        sql = ("SELECT id, lat, lon, status = 'active', grant_requests, "
               "coalesce(extract(epoch from grant_expires_at)::float8, 1e300), retention_days FROM cameras ORDER BY seq")
    async with p.db.engine.connect() as conn:
        rows = (await conn.execute(text(sql))).all()
    cols = list(zip(*rows, strict=True))
    return Scan(np.array(cols[0], dtype=object), np.array(cols[1], dtype=float), np.array(cols[2], dtype=float),
                np.array(cols[3], dtype=bool), np.array(cols[4], dtype=bool), np.array(cols[5], dtype=float),
                np.array(cols[6], dtype=float))


# --- the bare index queries ----------------------------------------------------------------------------

SQLITE_RTREE_ONLY = ("SELECT seq FROM camera_rtree WHERE max_lon >= :min_lon AND min_lon <= :max_lon "
                     "AND max_lat >= :min_lat AND min_lat <= :max_lat")
SQLITE_RTREE_IDS = ("SELECT c.id FROM camera_rtree r JOIN cameras c ON c.seq = r.seq WHERE r.max_lon >= :min_lon "
                    "AND r.min_lon <= :max_lon AND r.max_lat >= :min_lat AND r.min_lat <= :max_lat")
PG_DWITHIN = ("SELECT id FROM cameras WHERE geom && ST_MakeEnvelope(:min_lon, :min_lat, :max_lon, :max_lat, 4326) "
              "AND ST_DWithin(geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, :r)")
# The polygon is parsed once, in an InitPlan: written inline, PostgreSQL's generic plan for the prepared statement
# (used after five executions) evaluates ST_GeomFromGeoJSON($n) again for every candidate row.
PG_INTERSECTS = "SELECT id FROM cameras WHERE ST_Intersects(geom, (SELECT ST_SetSRID(ST_GeomFromGeoJSON(:g), 4326)))"
PG_ENVELOPE = "SELECT seq FROM cameras WHERE geom && ST_MakeEnvelope(:min_lon, :min_lat, :max_lon, :max_lat, 4326)"


def index_queries(p: Any, fence: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    min_lon, min_lat, max_lon, max_lat = fence.bbox()
    box = {"min_lon": min_lon, "min_lat": min_lat, "max_lon": max_lon, "max_lat": max_lat}
    if p.db.is_sqlite:
        return {"index": (SQLITE_RTREE_IDS, box), "index_rtree_only": (SQLITE_RTREE_ONLY, box)}
    if fence.is_circle:
        lon, lat = fence.center
        exact = (PG_DWITHIN, {**box, "lon": lon, "lat": lat, "r": fence.radius_m})
    else:
        exact = (PG_INTERSECTS, {"g": json.dumps(fence.as_geojson())})
    return {"index": exact, "index_bbox_only": (PG_ENVELOPE, box)}


# --- one backend's matching measures -------------------------------------------------------------------


@dataclass
class Sample:
    kind: str
    measure: str
    seconds: float
    rows: int
    cpu: float  # this process's CPU time (client side; on SQLite the query too, in aiosqlite's thread)


def reads(p: Any) -> Any:
    """The engine behind ``p.db.sessions()`` (on SQLite a separate, deferred-transaction engine for reads)."""
    return getattr(p.db, "read_engine", p.db.engine)


async def timed_match(p: Any, agency: Any, fence: Any, spec: FenceSpec, now: datetime) -> tuple[float, Any]:
    from consentcam.services.requests import match_cameras

    async with p.db.sessions() as session:
        await session.connection()  # in use the match runs inside the request's open transaction
        t0 = time.perf_counter()
        matches = await match_cameras(p, session, agency, fence, spec.window_start, now)
        return time.perf_counter() - t0, matches


_DIRECT: dict[str, Any] = {}


async def timed_sql(p: Any, sql: str, params: dict[str, Any], through_session: bool = False) -> tuple[float, list[Any]]:
    """A bare query, timed on a connection already checked out. By default sent as the match sends its own (one
    driver call, ``consentcam.db.direct``): the practical limit. ``through_session``: through SQLAlchemy's
    ``session.execute``, to show what that layer costs."""
    from consentcam.db.direct import DirectQuery
    from sqlalchemy import text

    query = _DIRECT.get(sql) or _DIRECT.setdefault(sql, DirectQuery(text(sql)))
    async with p.db.sessions() as session:
        conn = await session.connection()
        t0 = time.perf_counter()
        if through_session:
            rows = (await session.execute(text(sql), params)).scalars().all()
        else:
            rows = [row[0] for row in await query.rows_on(conn, params)]
        return time.perf_counter() - t0, rows


def williams_orders(n: int) -> list[list[int]]:
    """Orders of n measures balanced for what runs just before each (a Williams design): every measure runs in
    every position equally often and directly follows every other measure equally often (once each over n orders
    when n is even, twice over 2n when n is odd)."""
    first, low, high = [0], 1, n - 1
    while len(first) < n:
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    orders = [[(x + r) % n for x in first] for r in range(n)]
    return orders + [order[::-1] for order in orders] if n % 2 else orders


MEASURES = ["match", "index", "index_2", "index_session", "scan"]
ORDERS = williams_orders(len(MEASURES))


def edge_tolerant(spec_fence: Any, a: set[str], b: set[str], scan: Scan, tol_m: float = 3.0) -> int:
    """Cameras in one set and not the other that are not within tol_m of a circle's edge (should be 0)."""
    diff = a ^ b
    if not diff:
        return 0
    if not spec_fence.is_circle:
        return len(diff)
    from consentcam.geo import geodesic_distance_m

    where = np.isin(scan.ids, np.array(sorted(diff), dtype=object))
    d = geodesic_distance_m(spec_fence.center[0], spec_fence.center[1], scan.lon[where], scan.lat[where])
    return int(np.sum(np.abs(d - spec_fence.radius_m) > tol_m))


async def explain_pg(p: Any, agency: Any, fence: Any, spec: FenceSpec, now: datetime) -> dict[str, float]:
    """Server-side execution time (EXPLAIN ANALYZE) of the match's own SQL, as it is sent, and of the bare query."""
    from consentcam.services.requests import match_sql
    from sqlalchemy import text

    statement, arguments = match_sql(p, fence, spec.window_start, now)
    await timed_match(p, agency, fence, spec, now)  # the fence's pages into the caches, for both plans alike
    out = {}
    async with reads(p).connect() as conn:
        plan = (await conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, tuple(arguments))).scalar_one()
        plan = json.loads(plan) if isinstance(plan, str) else plan
        out["match_sql_exec_ms"] = plan[0]["Execution Time"]
        out["match_sql_plan"] = plan[0]["Plan"]["Node Type"] + " / " + plan[0]["Plan"].get("Plans", [{}])[0].get("Node Type", "")
        sql, params = index_queries(p, fence)["index"]
        plan = (await conn.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql), params)).scalar_one()
        plan = json.loads(plan) if isinstance(plan, str) else plan
        out["index_sql_exec_ms"] = plan[0]["Execution Time"]
    return out


async def sqlite_plan(p: Any, agency: Any, fence: Any, spec: FenceSpec, now: datetime) -> list[str]:
    from consentcam.services.requests import match_sql

    statement, arguments = match_sql(p, fence, spec.window_start, now)
    async with reads(p).connect() as conn:
        rows = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, tuple(arguments))).all()
    return [r[-1] for r in rows]


async def bench_matching(p: Any, meta: dict[str, Any], fences: list[FenceSpec], warmup: int) -> dict[str, Any]:
    from consentcam.db.models import Agency
    from consentcam.services.requests import parse_area

    now = p.now()
    async with p.db.sessions() as session:
        agency = await session.get(Agency, meta["agency_id"])
    log(f"{p.db.dialect}: loading every camera into memory for the scan baseline")
    scan = await load_scan(p)
    built = [(spec, parse_area(spec.area)) for spec in fences]
    samples: list[Sample] = []
    mismatches = {"match_vs_scan": 0, "match_not_in_index": 0}
    log(f"{p.db.dialect}: {len(built)} fences ({warmup} warm-up per shape not counted), measures interleaved")
    for i, (spec, fence) in enumerate(built):
        record = i >= 2 * warmup
        queries = index_queries(p, fence)
        second = [k for k in queries if k != "index"][0]
        # A balanced order: over every len(ORDERS) fences each measure runs first equally often and follows every
        # other measure equally often. The scan's 30-50 ms of numpy work leaves the CPU caches cold for whatever
        # runs next; in a plain rotation that was always the match (4 fences in 5), which made it look 1.3-2x slower.
        order = [MEASURES[j] for j in ORDERS[i % len(ORDERS)]]
        # Whichever query touches a fence's pages first pays for reading them into the caches (SQLite's are per
        # connection): in rotation, the measure after the scan went first on cold pages half the time. So every
        # database measure runs once untimed first, and the timed ones compare steady-state costs.
        await timed_match(p, agency, fence, spec, now)
        for sql, params in queries.values():
            await timed_sql(p, sql, params)
        await timed_sql(p, *queries["index"], through_session=True)
        result: dict[str, Any] = {}
        for m in order:
            c0 = time.process_time()
            if m == "match":
                dt, rows = await timed_match(p, agency, fence, spec, now)
                cpu = time.process_time() - c0
                result["match"] = set(rows.camera_ids)
                name = "match"
            elif m == "index":
                dt, rows = await timed_sql(p, *queries["index"])
                cpu = time.process_time() - c0
                result["index"] = rows
                name = "index"
            elif m == "index_2":
                dt, rows = await timed_sql(p, *queries[second])
                cpu = time.process_time() - c0
                name = second
            elif m == "index_session":
                dt, rows = await timed_sql(p, *queries["index"], through_session=True)
                cpu = time.process_time() - c0
                name = m
            else:
                t0 = time.perf_counter()
                rows = scan.match(fence, spec, now)
                dt = time.perf_counter() - t0
                cpu = time.process_time() - c0
                result["scan"] = set(rows.tolist())
                name = "scan"
            if record:
                samples.append(Sample(spec.kind, name, dt, len(rows), cpu))
        mismatches["match_vs_scan"] += edge_tolerant(fence, result["match"], result["scan"], scan)
        mismatches["match_not_in_index"] += len(result["match"] - set(result["index"]))
    out: dict[str, Any] = {"mismatches": mismatches, "shapes": {}}
    for kind in ("circle", "polygon"):
        shape: dict[str, Any] = {}
        for name in sorted({s.measure for s in samples if s.kind == kind}):
            chosen = [s for s in samples if s.kind == kind and s.measure == name]
            shape[name] = summary([s.seconds for s in chosen])
            shape[name]["rows_median"] = statistics.median([s.rows for s in chosen])
            shape[name]["rows_p95"] = common.p95([s.rows for s in chosen])
            shape[name]["cpu_median_ms"] = statistics.median([s.cpu for s in chosen]) * 1e3
        m, ix, sc = shape["match"]["median_ms"], shape["index"]["median_ms"], shape["scan"]["median_ms"]
        shape["ratios"] = {
            "match_over_index_median": m / ix,
            "match_over_index_p95": shape["match"]["p95_ms"] / shape["index"]["p95_ms"],
            "scan_over_match_median": sc / m,
            "scan_over_match_p95": shape["scan"]["p95_ms"] / shape["match"]["p95_ms"],
        }
        second = "index_rtree_only" if p.db.is_sqlite else "index_bbox_only"
        shape["ratios"][f"match_over_{second}_median"] = m / shape[second]["median_ms"]
        out["shapes"][kind] = shape
    # Where the time goes on the server (PostgreSQL) / which plan SQLite picks.
    firsts = {k: [(s, f) for s, f in built[2 * warmup:] if s.kind == k][:10] for k in ("circle", "polygon")}
    if not p.db.is_sqlite:
        for kind, chosen in firsts.items():
            ex = [await explain_pg(p, agency, f, s, now) for s, f in chosen]
            out["shapes"][kind]["server_exec_ms"] = {
                "match_sql_median": statistics.median(e["match_sql_exec_ms"] for e in ex),
                "index_sql_median": statistics.median(e["index_sql_exec_ms"] for e in ex),
                "match_sql_top_nodes": ex[0]["match_sql_plan"], "fences": len(ex),
            }
    else:
        for kind, chosen in firsts.items():
            s, f = chosen[0]
            out["shapes"][kind]["query_plan"] = await sqlite_plan(p, agency, f, s, now)
    return out


def naive_loop(scan: Scan, specs: list[FenceSpec], sample: int = 20_000) -> dict[str, Any]:
    """The per-object shapely loop, on a sample of cameras, extrapolated to all of them (for scale only)."""
    from consentcam.services.requests import parse_area

    rng = np.random.default_rng(5)
    pick = rng.choice(len(scan.ids), size=min(sample, len(scan.ids)), replace=False)
    times = []
    for spec in [s for s in specs if s.kind == "polygon"][:3]:
        fence = parse_area(spec.area)
        poly = fence.polygon
        need = (BENCH_NOW - spec.window_start).total_seconds() / 86400
        now_ts = BENCH_NOW.timestamp()
        t0 = time.perf_counter()
        hits = [i for i in pick if scan.active[i] and scan.grant[i] and scan.expires[i] > now_ts and scan.retention[i] >= need
                and poly.contains(Point(scan.lon[i], scan.lat[i]))]
        times.append((time.perf_counter() - t0) * len(scan.ids) / len(pick))
        del hits
    return {"polygon_extrapolated_s": statistics.median(times), "sample": int(len(pick))}


# --- fan-out ---------------------------------------------------------------------------------------------


async def _principal(p: Any, meta: dict[str, Any]) -> Any:
    from consentcam.db.models import User
    from consentcam.services.accounts import Principal

    async with p.db.sessions() as session:
        user = await session.get(User, meta["investigator_id"])
    return Principal(user_id=user.id, role=user.role, agency_id=user.agency_id, badge=user.badge, name=user.name)


def _fanout_spec(n: int) -> Any:
    from consentcam.schemas import RequestCreate, Window

    end = BENCH_NOW - timedelta(hours=3)
    return RequestCreate(case_number=f"BENCH-{n:04d}", description="Fan-out benchmark: a block party gone wrong",
                         area={"center": {"lat": FANOUT_LAT, "lon": FANOUT_LON}, "radius_m": FANOUT_FENCE_M},
                         window=Window(start=end - timedelta(hours=2), end=end))


async def _counts(p: Any, request_id: str) -> tuple[int, int]:
    from consentcam.db.models import Job, RequestItem
    from sqlalchemy import func, select

    async with p.db.sessions() as session:
        items = (await session.execute(select(func.count()).select_from(RequestItem).where(RequestItem.request_id == request_id))).scalar_one()
        jobs = (await session.execute(select(func.count()).select_from(Job).where(Job.kind == "notify.request"))).scalar_one()
    return int(items), int(jobs)


async def raw_write_floor(p: Any, meta: dict[str, Any]) -> float:
    """The same rows as one fan-out (request, 10,000 items, a job per owner, the audit event and its camera index),
    prepared beforehand and written in one transaction with the raw driver (asyncpg COPY; SQLite executemany):
    what durably writing them costs on this machine right now, without any application code."""
    import secrets
    import uuid

    now = BENCH_NOW
    async with p.db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        sqlite = p.db.is_sqlite
        ts: Any = common.sqlite_stamp(now.timestamp()) if sqlite else now
        cams = await (_sqlite_fetch(raw, f"SELECT id, owner_id FROM cameras WHERE seq > {meta['cameras_metro']}") if sqlite
                      else raw.fetch(f"SELECT id, owner_id FROM cameras WHERE seq > {meta['cameras_metro']}"))
        cams = [tuple(c) for c in cams]
        rid = str(uuid.uuid4())
        seq = int(meta["audit_base_seq"]) + 1
        request = (rid, meta["agency_id"], meta["investigator_id"], "FLOOR", "raw write floor", json.dumps({"center": {}}),
                   ts, ts, "open", "general", len(cams), ts)
        items = [(str(uuid.uuid4()), rid, c, o, "notified", secrets.token_hex(16), secrets.token_hex(32), ts, ts, ts)
                 for c, o in cams]
        owners = sorted({o for _, o in cams})
        jobs = [(str(uuid.uuid4()), "notify.request", json.dumps({"request_id": rid, "owner_id": o}), f"notify.request:{rid}:{o}",
                 "pending", 0, 8, ts, ts) for o in owners]
        event = (seq, ts, meta["investigator_id"], "investigator", meta["agency_id"], "request.opened", "request", rid,
                 json.dumps({"request_id": rid}), json.dumps(sorted(c for c, _ in cams)), "0" * 64, secrets.token_hex(32))
        aec = [(c, seq) for c, _ in cams]
        cols_r = "id, agency_id, created_by, case_number, description, area, window_start, window_end, status, category, matched, created_at"
        cols_i = ["id", "request_id", "camera_id", "owner_id", "status", "token_salt", "token_hash", "token_expires_at",
                  "created_at", "updated_at"]
        cols_j = ["id", "kind", "payload", "idempotency_key", "status", "attempts", "max_attempts", "run_after", "created_at"]
        cols_e = "seq, at, actor_id, actor_role, actor_agency_id, action, subject_type, subject_id, detail, camera_ids, prev_hash, hash"

        def ph(n: int) -> str:
            return ",".join("?" * n) if sqlite else ",".join(f"${i + 1}" for i in range(n))

        t0 = time.perf_counter()
        if sqlite:
            await raw.execute("BEGIN IMMEDIATE")
            await raw.execute(f"INSERT INTO footage_requests ({cols_r}) VALUES ({ph(12)})", request)
            await raw.executemany(f"INSERT INTO request_items ({','.join(cols_i)}) VALUES ({ph(10)})", items)
            await raw.executemany(f"INSERT INTO jobs ({','.join(cols_j)}) VALUES ({ph(9)})", jobs)
            await raw.execute(f"INSERT INTO audit_events ({cols_e}) VALUES ({ph(12)})", event)
            await raw.executemany("INSERT INTO audit_event_cameras (camera_id, seq) VALUES (?, ?)", aec)
            await raw.execute("COMMIT")
        else:
            async with raw.transaction():
                await raw.execute(f"INSERT INTO footage_requests ({cols_r}) VALUES ({ph(12)})", *request)
                await raw.copy_records_to_table("request_items", records=items, columns=cols_i)
                await raw.copy_records_to_table("jobs", records=jobs, columns=cols_j)
                await raw.execute(f"INSERT INTO audit_events ({cols_e}) VALUES ({ph(12)})", *event)
                await raw.copy_records_to_table("audit_event_cameras", records=aec, columns=["camera_id", "seq"])
        dt = time.perf_counter() - t0
    return dt


async def _sqlite_fetch(raw: Any, sql: str) -> list[Any]:
    cursor = await raw.execute(sql)
    try:
        return list(await cursor.fetchall())
    finally:
        await cursor.close()


async def fanout_phases(p: Any, principal: Any) -> dict[str, float]:
    """One more fan-out with timers around the pieces of services.requests (bench-only wrappers): where time goes."""
    from consentcam import audit
    from consentcam.services import requests

    spent: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = f"{name} {args[4]}" if name == "audit.record" else name
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - t0
        return wrapper

    saved = (requests.match_cameras, requests.enqueue_many, audit.record, requests._open)
    requests.match_cameras = timed("match_cameras", saved[0])
    requests.enqueue_many = timed("jobs: enqueue_many", saved[1])
    audit.record = timed("audit.record", saved[2])
    requests._open = timed("_open", saved[3])
    try:
        t0 = time.perf_counter()
        await requests.create_request(p, principal, _fanout_spec(77))
        total = time.perf_counter() - t0
    finally:
        requests.match_cameras, requests.enqueue_many, audit.record, requests._open = saved
    opened = spent.pop("_open")
    out = {"match_cameras": spent["match_cameras"],
           "items: rows, tokens, insert": opened - spent["match_cameras"] - spent["jobs: enqueue_many"]
           - spent["audit.record request.opened"],
           "jobs: enqueue_many": spent["jobs: enqueue_many"],
           "audit.record(request.opened)": spent["audit.record request.opened"],
           "request row, audit of its creation, checks, commit": total - opened}
    out["total"] = total
    return out


async def bench_fanout(p: Any, meta: dict[str, Any], repeat: int, profile: str, out_prefix: Path) -> dict[str, Any]:
    from consentcam.services.requests import create_request

    principal = await _principal(p, meta)
    times, floors, items, jobs = [], [], 0, 0
    for n in range(repeat):
        await reset_state(p, meta)
        t0 = time.perf_counter()
        request = await create_request(p, principal, _fanout_spec(n))
        dt = time.perf_counter() - t0
        items, jobs = await _counts(p, request.id)
        assert request.status == "open" and request.matched == items == FANOUT_CAMERAS, (request.status, request.matched, items)
        times.append(dt)
        await reset_state(p, meta)
        floors.append(await raw_write_floor(p, meta))
        log(f"{p.db.dialect}: fan-out #{n + 1}: {items:,} items + {jobs:,} jobs committed in {dt:.3f} s "
            f"(the same rows through the raw driver: {floors[-1]:.3f} s)")
    result: dict[str, Any] = {"seconds": times, "median_s": statistics.median(times), "items": items, "jobs": jobs,
                              "items_per_s": items / statistics.median(times), "raw_floor_seconds": floors,
                              "raw_floor_median_s": statistics.median(floors),
                              "over_raw_floor": statistics.median(times) / statistics.median(floors)}
    await reset_state(p, meta)
    result["phases_s"] = await fanout_phases(p, principal)
    if profile == "always" or (profile == "auto" and result["median_s"] > TARGET_FANOUT_S):
        await reset_state(p, meta)
        prof = cProfile.Profile()
        prof.enable()
        t0 = time.perf_counter()
        await create_request(p, principal, _fanout_spec(99))
        prof.disable()
        result["profiled_s"] = time.perf_counter() - t0
        path = Path(f"{out_prefix}-fanout-{p.db.dialect}.prof")
        prof.dump_stats(path)
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.sort_stats("tottime").print_stats(14)
        result["profile_file"] = str(path)
        result["profile_top_tottime"] = _trim_pstats(buf.getvalue())
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats("consentcam|sqlalchemy/orm/session|jobs", 18)
        result["profile_top_cumulative"] = _trim_pstats(buf.getvalue())
    await reset_state(p, meta)
    return result


def _trim_pstats(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    return [line.replace(str(Path(sys.prefix)), "<venv>").replace(str(Path.cwd()), ".") for line in lines[start:] if line.strip()]


async def bench_drain(p: Any, meta: dict[str, Any], smtp: tuple[str, int], jobs: int, concurrency: int | None = None,
                      batch: int = 20) -> dict[str, Any]:
    """The platform's own delivery path: the outbox worker runs notify.request jobs and sends through EmailChannel
    (``concurrency`` jobs at a time; default: the platform's ``worker_concurrency``)."""
    from consentcam.services.requests import create_request
    from consentcam.workflows import make_worker

    await reset_state(p, meta)
    principal = await _principal(p, meta)
    await create_request(p, principal, _fanout_spec(500))
    p.settings.smtp_host, p.settings.smtp_port = smtp
    worker = make_worker(p, "bench-worker", batch=batch, concurrency=concurrency)
    done = 0
    t0 = time.perf_counter()
    while done < jobs:
        n = await worker.run_once()
        if n == 0:
            break
        done += n
    dt = time.perf_counter() - t0
    from consentcam.db.models import Job
    from sqlalchemy import func, select

    async with p.db.sessions() as session:
        ok = (await session.execute(select(func.count()).select_from(Job).where(Job.status == "done"))).scalar_one()
    for plugin in p.plugins.pm.get_plugins():  # the pooled SMTP connections of this loop
        if hasattr(plugin, "aclose"):
            await plugin.aclose()
    await reset_state(p, meta)
    return {"jobs": done, "done": int(ok), "seconds": dt, "jobs_per_s": done / dt, "concurrency": worker.concurrency}


# --- SMTP ---------------------------------------------------------------------------------------------

SMTP_CHILD = r"""
import sys, time
from consentcam.testing.smtp import SmtpServer
server = SmtpServer()
with server as box:
    print(box.port, flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            with box.lock:
                print(len(box.messages), flush=True)
        elif line.strip() == "stop":
            break
"""


class SmtpPeer:
    """consentcam.testing.smtp.SmtpServer (aiosmtpd) in its own process, so it does not share our GIL."""

    def __enter__(self) -> SmtpPeer:
        self.proc = subprocess.Popen([sys.executable, "-u", "-c", SMTP_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.host = "127.0.0.1"
        return self

    def count(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def __exit__(self, *exc: Any) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            self.proc.kill()


def _notification(i: int) -> Any:
    from consentcam.hooktypes import OwnerNotification

    links = "\n".join(f"Camera: Camera {i}-{k}\n  Send a clip in your browser: http://consentcam.bench/u/up_{'ab' * 32}\n"
                      f"  Or upload with any HTTP client: PUT http://consentcam.bench/api/v1/uploads/up_{'cd' * 32}\n"
                      f"  Decline: http://consentcam.bench/u/up_{'ab' * 32}?action=decline\n" for k in range(2))
    text = (f"Hello Owner {i},\n\nMetro Police Department is asking owners of cameras near an incident whether their cameras "
            f"recorded anything.\nCase BENCH-0001: a block party gone wrong\nTime asked about: 2026-03-02 07:00 UTC to "
            f"2026-03-02 09:00 UTC\n\n{links}\nYou can also see and answer this request in your ConsentCam inbox.\n")
    return OwnerNotification(owner_id=f"owner-{i}", email=f"owner{i}@bench.example.org", name=f"Owner {i}", phone=None,
                             channels={"email": True}, subject="Metro Police Department asks about footage: case BENCH-0001",
                             text=text, kind="request", data={}, idempotency_key=f"notify.request:bench:{i}")


async def _bounded(n: int, concurrency: int, one: Any) -> float:
    sem = asyncio.Semaphore(concurrency)
    failures = 0

    async def task(i: int) -> None:
        nonlocal failures
        async with sem:
            if not await one(i):
                failures += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(task(i) for i in range(n)))
    dt = time.perf_counter() - t0
    if failures:
        raise RuntimeError(f"{failures} of {n} messages failed")
    return dt


async def bench_smtp(peer: SmtpPeer, n: int, concurrency: int, rounds: int = 3) -> dict[str, Any]:
    import aiosmtplib
    from consentcam.channels import EmailChannel

    settings = _settings("sqlite+aiosqlite:///:memory:", CACHE_DIR / "data")
    settings.smtp_host, settings.smtp_port = peer.host, peer.port
    channel = EmailChannel(settings)
    notes = [_notification(i) for i in range(n)]

    def prebuilt(note: Any) -> EmailMessage:
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = settings.smtp_from, note.email, note.subject
        m["Message-ID"] = f"<{note.idempotency_key}@localhost>"
        m.set_content(note.text)
        return m

    messages = [prebuilt(note) for note in notes]

    async def via_channel(i: int) -> bool:
        result = await channel.consentcam_notify_owner(notes[i])
        return bool(result and result.delivered)

    async def raw(i: int) -> bool:
        await aiosmtplib.send(messages[i], hostname=peer.host, port=peer.port, timeout=20)
        return True

    before = peer.count()
    runs: dict[str, list[float]] = {"channel": [], "raw_send": [], "reused_connections": []}
    for r in range(rounds):  # interleaved, so a noisy moment hits every variant alike
        order = ["channel", "raw_send", "reused_connections"]
        order = order[r % 3:] + order[:r % 3]
        for name in order:
            if name == "channel":
                dt = await _bounded(n, concurrency, via_channel)
            elif name == "raw_send":
                dt = await _bounded(n, concurrency, raw)
            else:
                dt = await common.smtp_reused_connections(peer.host, peer.port, messages, concurrency)
            runs[name].append(n / dt)
    received = peer.count() - before
    out = {name: {"msgs_per_s_median": statistics.median(v), "msgs_per_s": v} for name, v in runs.items()}
    out.update(messages=n, concurrency=concurrency, rounds=rounds, received=received, expected=3 * n * rounds)
    out["channel_over_raw"] = out["channel"]["msgs_per_s_median"] / out["raw_send"]["msgs_per_s_median"]
    return out


# --- the run ------------------------------------------------------------------------------------------


async def run_backend(name: str, args: argparse.Namespace, fences: list[FenceSpec], peer: SmtpPeer | None,
                      out_prefix: Path) -> dict[str, Any]:
    if name == "sqlite":
        url, meta = await build_sqlite(args.cameras, args.seed, args.regenerate)
    else:
        url, meta = await build_postgres(args.cameras, args.seed, args.regenerate)
    p = await _open(url)
    try:
        await reset_state(p, meta)
        out: dict[str, Any] = {"spatial": p.db.spatial, "cameras_metro": meta["cameras_metro"],
                               "cameras_total": meta["cameras_total"], "build_s": meta["build_s"]}
        out["matching"] = await bench_matching(p, meta, fences, args.warmup)
        if args.fanout_repeat > 0:
            out["fanout"] = await bench_fanout(p, meta, args.fanout_repeat, args.profile, out_prefix)
        if peer is not None and args.drain_jobs > 0:
            log(f"{name}: outbox worker delivering notify.request jobs through EmailChannel")
            out["worker_drain"] = await bench_drain(p, meta, (peer.host, peer.port), args.drain_jobs)
    finally:
        await p.db.dispose()
    return out


def print_report(result: dict[str, Any]) -> None:
    lines = []
    w = lines.append
    cfg = result["config"]
    w("")
    w(f"ConsentCam match benchmark: {cfg['cameras']:,} metro cameras (+{FANOUT_CAMERAS:,} fan-out cluster), "
      f"{cfg['repeat']} fences per shape, seed {cfg['seed']}; load average at start {cfg['loadavg_start']}")
    w("times in ms (median / p95); rows = median rows returned")
    for backend, data in result["backends"].items():
        m = data["matching"]
        w("")
        w(f"== {backend} ({data['spatial']}) ==")
        w(f"{'measure':<38}{'circle 500 m':>24}{'polygon ~2 km²':>24}")
        names = [("match", "whole match (match_cameras)"),
                 ("index", "(a) bare index query, ids" if backend == "sqlite" else "(a) bare ST_DWithin / ST_Intersects"),
                 ("index_rtree_only" if backend == "sqlite" else "index_bbox_only",
                  "    R*Tree alone (seq)" if backend == "sqlite" else "    GiST && bbox alone (seq)"),
                 ("index_session", "    (a) via session.execute"),
                 ("scan", "(b) vectorised in-memory scan")]
        for key, label in names:
            cells = []
            for kind in ("circle", "polygon"):
                s = m["shapes"][kind][key]
                cells.append(f"{s['median_ms']:7.2f} / {s['p95_ms']:7.2f} ({s['rows_median']:>5.0f})")
            w(f"{label:<38}{cells[0]:>24}{cells[1]:>24}")
        for kind in ("circle", "polygon"):
            r = m["shapes"][kind]["ratios"]
            ok1 = "OK" if r["match_over_index_median"] <= TARGET_MATCH_OVER_INDEX else "MISSED"
            ok2 = "OK" if r["scan_over_match_median"] >= TARGET_SCAN_OVER_MATCH else "MISSED"
            w(f"  {kind:<8} match/index {r['match_over_index_median']:5.2f}x (p95 {r['match_over_index_p95']:4.2f}x; target <= "
              f"{TARGET_MATCH_OVER_INDEX}x: {ok1})   scan/match {r['scan_over_match_median']:6.1f}x (p95 "
              f"{r['scan_over_match_p95']:5.1f}x; target >= {TARGET_SCAN_OVER_MATCH:g}x: {ok2})")
            if "server_exec_ms" in m["shapes"][kind]:
                e = m["shapes"][kind]["server_exec_ms"]
                w(f"           server execution (EXPLAIN ANALYZE, median of {e['fences']}): match SQL "
                  f"{e['match_sql_median']:.2f} ms, bare index SQL {e['index_sql_median']:.2f} ms")
            if "query_plan" in m["shapes"][kind] and kind == "circle":
                w(f"           SQLite plan of the match: {' / '.join(m['shapes'][kind]['query_plan'])}")
        for kind in ("circle", "polygon"):
            sh = m["shapes"][kind]
            w(f"  {kind:<8} client CPU per query (median ms, robust to load): match {sh['match']['cpu_median_ms']:.2f}, "
              f"index {sh['index']['cpu_median_ms']:.2f}, scan {sh['scan']['cpu_median_ms']:.2f}")
        w(f"  result check: {m['mismatches']['match_vs_scan']} match/scan disagreements off the edge, "
          f"{m['mismatches']['match_not_in_index']} matches outside the index result")
        if "fanout" in data:
            f = data["fanout"]
            ok = "OK" if f["median_s"] <= TARGET_FANOUT_S else "MISSED"
            runs = ", ".join(f"{s:.2f}" for s in f["seconds"])
            w(f"  fan-out: {f['items']:,} items + {f['jobs']:,} jobs written and committed in {f['median_s']:.3f} s median "
              f"({runs}); {f['items_per_s']:,.0f} items/s; target <= {TARGET_FANOUT_S:g} s: {ok}")
            w(f"           the same rows written with the raw driver (floor): {f['raw_floor_median_s']:.3f} s median; "
              f"create_request / floor {f['over_raw_floor']:.2f}x")
            if "phases_s" in f:
                w("           one more, timed by piece: " + ", ".join(f"{k} {v:.3f}" for k, v in f["phases_s"].items()) + " s")
        if "worker_drain" in data:
            d = data["worker_drain"]
            w(f"  outbox worker: {d['jobs']} notify.request jobs sent in {d['seconds']:.2f} s = {d['jobs_per_s']:.0f} msgs/s "
              f"(one worker, {d.get('concurrency', 1)} jobs at a time)")
    if "naive_loop" in result:
        w("")
        w(f"per-object shapely loop over all cameras (polygon, extrapolated from {result['naive_loop']['sample']:,}): "
          f"{result['naive_loop']['polygon_extrapolated_s']:.1f} s per query")
    if "smtp" in result:
        s = result["smtp"]
        ok = "OK" if s["channel"]["msgs_per_s_median"] >= TARGET_SMTP_PER_S else "MISSED"
        w("")
        w(f"SMTP to a local aiosmtpd (own process), {s['messages']} messages x {s['rounds']} rounds, concurrency {s['concurrency']}:")
        w(f"  EmailChannel.consentcam_notify_owner  {s['channel']['msgs_per_s_median']:7.0f} msgs/s (target >= "
          f"{TARGET_SMTP_PER_S:g}: {ok})")
        w(f"  raw aiosmtplib.send (baseline)        {s['raw_send']['msgs_per_s_median']:7.0f} msgs/s   channel/raw "
          f"{s['channel_over_raw']:.2f}x")
        w(f"  {s['concurrency']} reused SMTP connections            {s['reused_connections']['msgs_per_s_median']:7.0f} msgs/s")
        w(f"  server received {s['received']} of {s['expected']}")
    w("")
    w(f"wall time {result['wall_s']:.0f} s; load average at end {result['loadavg_end']}; JSON: {result['json']}")
    print("\n".join(lines), flush=True)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    started = datetime.now(UTC)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out_prefix = RESULTS_DIR / f"match-{started.strftime('%Y%m%dT%H%M%SZ')}"
    fences = common.make_fences(args.seed, args.repeat + args.warmup)
    result: dict[str, Any] = {
        "config": {"cameras": args.cameras, "backends": args.backends, "repeat": args.repeat, "warmup": args.warmup,
                   "seed": args.seed, "fanout_repeat": args.fanout_repeat, "smtp_messages": args.smtp_messages,
                   "smtp_concurrency": args.smtp_concurrency, "smtp_rounds": args.smtp_rounds, "drain_jobs": args.drain_jobs,
                   "loadavg_start": [round(x, 2) for x in os.getloadavg()],
                   "cpus": os.cpu_count(), "python": sys.version.split()[0], "machine": host.platform()},
        "started": started.isoformat(), "backends": {},
    }
    peer = SmtpPeer().__enter__() if (args.smtp_messages > 0 or args.drain_jobs > 0) else None
    try:
        for backend in args.backends:
            log(f"=== {backend} ===")
            result["backends"][backend] = await run_backend(backend, args, fences, peer, out_prefix)
        if args.backends:
            # backend-independent: the same cameras on both
            first = args.backends[0]
            url = common.sqlite_url(common.sqlite_path(args.cameras, args.seed)) if first == "sqlite" else common.pg_url(
                common.db_name(args.cameras, args.seed))
            p = await _open(url)
            try:
                result["naive_loop"] = naive_loop(await load_scan(p), fences)
            finally:
                await p.db.dispose()
        if peer is not None and args.smtp_messages > 0:
            log(f"SMTP: {args.smtp_messages} messages per variant, concurrency {args.smtp_concurrency}")
            result["smtp"] = await bench_smtp(peer, args.smtp_messages, args.smtp_concurrency, args.smtp_rounds)
    finally:
        if peer is not None:
            peer.__exit__(None, None, None)
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["json"] = f"{out_prefix}.json"
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=1_000_000, help="metro cameras (the fan-out cluster adds 10,000)")
    ap.add_argument("--backends", default="sqlite,postgresql", type=lambda s: [b.strip() for b in s.split(",") if b.strip()])
    ap.add_argument("--repeat", type=int, default=None, help="fences per shape, each measured by every measure (default 50, quick 30)")
    ap.add_argument("--warmup", type=int, default=5, help="fences per shape run first and not counted")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fanout-repeat", type=int, default=None, help="fan-out runs per backend (0: skip; default 3, quick 1)")
    ap.add_argument("--profile", choices=["auto", "always", "never"], default=None,
                    help="cProfile one extra fan-out (auto: when the median misses the target; default auto, quick never)")
    ap.add_argument("--drain-jobs", type=int, default=None,
                    help="notify.request jobs run by the outbox worker (0: skip; default 300, quick 40)")
    ap.add_argument("--smtp-messages", type=int, default=None,
                    help="messages per SMTP variant and round (0: skip; default 2000, quick 300)")
    ap.add_argument("--smtp-rounds", type=int, default=None, help="interleaved rounds of the SMTP variants (default 3, quick 1)")
    ap.add_argument("--smtp-concurrency", type=int, default=20)
    ap.add_argument("--regenerate", action="store_true", help="rebuild the cached databases")
    ap.add_argument("--build-only", action="store_true", help="build (or check) the cached databases, measure nothing")
    args = ap.parse_args(argv)
    quick = args.cameras < QUICK_BELOW  # a smoke run: fewer repetitions of the slow parts
    for name, full, small in (("repeat", 50, 30), ("fanout_repeat", 3, 1), ("profile", "auto", "never"), ("drain_jobs", 300, 40),
                              ("smtp_messages", 2000, 300), ("smtp_rounds", 3, 1)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    unknown = set(args.backends) - {"sqlite", "postgresql"}
    if unknown:
        ap.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    return args


async def build_only(args: argparse.Namespace) -> None:
    for backend in args.backends:
        build = build_sqlite if backend == "sqlite" else build_postgres
        _, meta = await build(args.cameras, args.seed, args.regenerate)
        log(f"{backend}: ready, {meta['cameras_total']:,} cameras")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.build_only:
        asyncio.run(build_only(args))
        return
    t0 = time.perf_counter()
    result = asyncio.run(main_async(args))
    result["wall_s"] = time.perf_counter() - t0
    Path(result["json"]).write_text(json.dumps(result, indent=2, default=str))
    print_report(result)


if __name__ == "__main__":
    main()
