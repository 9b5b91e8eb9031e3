"""Fences and matching: clear refusals, geodesic distances, holes, and one meaning on every backend, checked
against a brute-force oracle (shapely and pyproj, one object at a time) on the same random data."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest
from consentcam.clock import FakeClock
from consentcam.db.models import Agency
from consentcam.errors import InvalidInput
from consentcam.geo import Fence
from consentcam.platform import open_platform
from consentcam.services.requests import match_cameras, parse_area
from consentcam.settings import Settings
from consentcam.testing.databases import PostgresDatabases, SqliteDatabases
from consentcam.testing.world import World
from pyproj import Geod
from shapely.geometry import Point, Polygon

GEOD = Geod(ellps="WGS84")
CENTRE = (41.88, -87.63)


def _window(clock, hours_ago=2):
    end = clock.now() - timedelta(hours=hours_ago)
    return {"start": (end - timedelta(hours=1)).isoformat(), "end": end.isoformat()}


async def _post(client, person, area, window):
    return await client.post("/api/v1/requests", headers=person.headers,
                             json={"case_number": "C-1", "description": "d", "area": area, "window": window})


async def test_request_validation_names_the_problem(consentcam_client, consentcam_world, consentcam_clock, consentcam_platform):
    from consentcam.db.models import FootageRequest
    from sqlalchemy import func, select

    agency = await consentcam_world.agency(max_area_km2=2.0)
    inv = await consentcam_world.staff(agency, "investigator")
    lat, lon = CENTRE
    ok_circle = {"center": {"lat": lat, "lon": lon}, "radius_m": 200}
    w = _window(consentcam_clock)
    now = consentcam_clock.now()
    cases = [
        # self-intersecting bow-tie: the message gives the crossing point
        ({"type": "Polygon", "coordinates": [[[lon - .002, lat - .002], [lon + .002, lat + .002], [lon + .002, lat - .002],
                                               [lon - .002, lat + .002], [lon - .002, lat - .002]]]}, w,
         ("body", "area", "coordinates"), f"cross each other at longitude {lon:.6f}, latitude {lat:.6f}"),
        ({"type": "Polygon", "coordinates": [[[lon, lat], [lon + .001, lat], [lon, lat + .001]]]}, w,
         ("body", "area", "coordinates", 0), "at least four positions"),
        ({"type": "Polygon", "coordinates": [[[lon, lat], [lon + .001, lat], [lon, lat + .001], [lon, lat + .002]]]}, w,
         ("body", "area", "coordinates", 0), "end where it starts"),
        ({"type": "LineString", "coordinates": [[lon, lat], [lon + .001, lat]]}, w, ("body", "area", "type"), "Polygon"),
        ({"center": {"lat": 91, "lon": lon}, "radius_m": 100}, w, ("body", "area", "center", "lat"), "latitude"),
        ({"center": {"lat": lat, "lon": lon}, "radius_m": -5}, w, ("body", "area", "radius_m"), "positive"),
        ({"center": {"lat": lat, "lon": lon}, "radius_m": 1200}, w, ("body", "area"), "over this agency's limit"),
        ({"center": {"lat": lat + 0.019, "lon": lon}, "radius_m": 400}, w, ("body", "area"), "outside your agency"),
        (ok_circle, {"start": w["end"], "end": w["start"]}, ("body", "window", "end"), "end after it starts"),
        (ok_circle, {"start": (now - timedelta(hours=1)).isoformat(), "end": (now + timedelta(hours=2)).isoformat()},
         ("body", "window", "end"), "future"),
        (ok_circle, {"start": (now - timedelta(hours=30)).isoformat(), "end": (now - timedelta(hours=1)).isoformat()},
         ("body", "window"), "limit of 24 h"),
        (ok_circle, {"start": "2026-05-01T00:00:00", "end": "2026-05-01T01:00:00"}, ("body", "window", "start"), "timezone"),
    ]
    for area, window, loc, words in cases:
        r = await _post(consentcam_client, inv, area, window)
        assert r.status == 422, (area, await r.text())
        assert r.content_type == "application/problem+json"
        problem = await r.json()
        assert any(tuple(e["loc"]) == loc for e in problem["errors"]), (loc, problem)
        assert words.lower() in (problem["detail"] + str(problem["errors"])).lower(), (words, problem)
    async with consentcam_platform.db.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(FootageRequest))).scalar_one() == 0
    owner = await consentcam_world.owner()
    assert (await _post(consentcam_client, owner, ok_circle, w)).status == 403
    assert (await _post(consentcam_client, inv, ok_circle, w)).status == 201


async def test_radius_is_geodesic_at_any_latitude(consentcam_platform, consentcam_world, consentcam_clock):
    """500 m is 500 m on the ground: near the pole a degree of longitude is short, and the fence knows it.

    Two centimetres either side of the edge too: inside the band where SQLite's flat stand-in (geo.FlatCircle)
    cannot decide and the geodesic test must; at 85 degrees there is no stand-in and every point takes that test."""
    p = consentcam_platform
    for lat, lon in ((60.17, 24.94), (-33.87, 151.21), (0.0, 0.0), (85.0, 10.0)):
        agency_id = await consentcam_world.agency(lat=lat, lon=lon, half_deg=0.2)
        owner = await consentcam_world.owner(login=False)
        placed = {}
        for azimuth in (0, 45, 90, 135, 180, 270):
            for distance in (490.0, 499.98, 500.02, 510.0):
                lon2, lat2, _ = GEOD.fwd(lon, lat, azimuth, distance)
                placed[await consentcam_world.camera(owner, lat2, lon2, grant={"requests": True})] = distance
        async with p.db.sessions() as session:
            agency = await session.get(Agency, agency_id)
            found = set((await match_cameras(p, session, agency, Fence.circle(lat, lon, 500),
                                             consentcam_clock.now() - timedelta(hours=1), consentcam_clock.now())).camera_ids)
        assert found == {c for c, d in placed.items() if d < 500}, (lat, lon)


async def test_polygon_holes_are_outside(consentcam_platform, consentcam_world, consentcam_clock):
    p = consentcam_platform
    lat, lon = CENTRE
    agency_id = await consentcam_world.agency()
    owner = await consentcam_world.owner(login=False)
    in_ring = await consentcam_world.camera(owner, lat + 0.003, lon, grant={"requests": True})
    in_hole = await consentcam_world.camera(owner, lat, lon, grant={"requests": True})
    on_edge = await consentcam_world.camera(owner, lat - 0.004, lon, grant={"requests": True})
    area = {"type": "Polygon", "coordinates": [
        [[lon - .004, lat - .004], [lon + .004, lat - .004], [lon + .004, lat + .004], [lon - .004, lat + .004], [lon - .004, lat - .004]],
        [[lon - .001, lat - .001], [lon - .001, lat + .001], [lon + .001, lat + .001], [lon + .001, lat - .001], [lon - .001, lat - .001]],
    ]}
    async with p.db.sessions() as session:
        agency = await session.get(Agency, agency_id)
        found = set((await match_cameras(p, session, agency, parse_area(area),
                                         consentcam_clock.now() - timedelta(hours=1), consentcam_clock.now())).camera_ids)
    assert found == {in_ring, on_edge}
    assert in_hole not in found


def test_area_parser_refuses_non_numbers():
    for bad in ({"center": {"lat": True, "lon": 1}, "radius_m": 5}, {"center": {"lat": 1, "lon": 1}, "radius_m": "5"},
                {"center": {"lat": 1, "lon": 1}, "radius_m": float("nan")}, {"center": [1, 2], "radius_m": 5},
                {"type": "Polygon", "coordinates": [[["a", 1], [1, 1], [1, 2], ["a", 1]]]}, [], "x"):
        with pytest.raises(InvalidInput):
            parse_area(bad)


@pytest.fixture
def both_backends(tmp_path: Path):
    """Fresh databases (SQLite, PostgreSQL with PostGIS, and one to run without it) to compare on the same data."""
    pg = PostgresDatabases()
    try:
        yield SqliteDatabases(tmp_path / "tpl").new(tmp_path / "sqlite"), pg.new(), pg.new()
    finally:
        pg.drop_all()


@pytest.mark.parametrize("seed", [1, 2])
async def test_backends_agree_with_the_oracle_on_the_same_random_data(tmp_path: Path, both_backends, seed: int):
    """The same random cameras, grants, retention and fences on SQLite and PostgreSQL: both answer exactly what a
    one-object-at-a-time shapely/pyproj oracle answers."""
    rng = random.Random(seed)
    lat0, lon0 = CENTRE
    cameras = []
    for _ in range(250):
        cameras.append({
            "lat": lat0 + rng.uniform(-0.012, 0.012), "lon": lon0 + rng.uniform(-0.016, 0.016),
            "requests": rng.random() < 0.7, "retention": rng.choice([0, 1, 3, 7, 30]),
            "paused": rng.random() < 0.05, "expires_in_h": rng.choice([None, None, None, 1, 48]),
        })
    fences = []
    for _ in range(12):
        clat, clon = lat0 + rng.uniform(-0.008, 0.008), lon0 + rng.uniform(-0.01, 0.01)
        if rng.random() < 0.5:
            fences.append({"center": {"lat": clat, "lon": clon}, "radius_m": rng.uniform(100, 700)})
        else:
            pts = []
            for k in range(rng.randint(3, 7)):
                az = k * 360 / 7 + rng.uniform(0, 30)
                lon2, lat2, _ = GEOD.fwd(clon, clat, az, rng.uniform(200, 700))
                pts.append([lon2, lat2])
            pts.append(pts[0])
            fences.append({"type": "Polygon", "coordinates": [pts]})
    # Cameras two centimetres either side of each circle's edge: inside the band that SQLite's and plain
    # PostgreSQL's flat stand-in leaves to the geodesic test.
    for raw in fences:
        if "center" in raw:
            for _ in range(3):
                azimuth = rng.uniform(0, 360)
                for distance in (raw["radius_m"] - 0.02, raw["radius_m"] + 0.02):
                    lon2, lat2, _ = GEOD.fwd(raw["center"]["lon"], raw["center"]["lat"], azimuth, distance)
                    cameras.append({"lat": lat2, "lon": lon2, "requests": True, "retention": 30, "paused": False,
                                    "expires_in_h": None})
    window_start_hours_ago = [rng.choice([2, 30, 100, 400]) for _ in fences]

    start = FakeClock().now()

    def oracle(i: int, fence_raw: dict) -> set[int]:
        now = start + timedelta(hours=3)
        ws = now - timedelta(hours=window_start_hours_ago[i])
        need_days = (now - ws).total_seconds() / 86400
        out = set()
        for n, c in enumerate(cameras):
            if not c["requests"] or c["paused"] or c["retention"] < need_days:
                continue
            if c["expires_in_h"] is not None and c["expires_in_h"] <= 3:
                continue
            if "center" in fence_raw:
                _, _, d = GEOD.inv(fence_raw["center"]["lon"], fence_raw["center"]["lat"], c["lon"], c["lat"])
                inside = d <= fence_raw["radius_m"]
            else:
                inside = Polygon(fence_raw["coordinates"][0]).intersects(Point(c["lon"], c["lat"]))
            if inside:
                out.add(n)
        return out

    async def run(url: str, *, without_postgis: bool = False) -> list[set[int]]:
        clock = FakeClock(start)
        settings = Settings(_env_file=None, data_dir=tmp_path / url.rsplit("/", 1)[-1][:12], database_url=url,
                            secret_key="k", load_entry_point_plugins=False, run_jobs_in_process=False)
        p = await open_platform(settings, clock=clock)
        if without_postgis:
            # What a city without the PostGIS package gets from the migration: a GiST index on the point type.
            from sqlalchemy import text

            async with p.db.engine.begin() as conn:
                await conn.execute(text("DROP INDEX ix_cameras_geom"))
                await conn.execute(text("ALTER TABLE cameras DROP COLUMN geom"))
                await conn.execute(text("CREATE INDEX ix_cameras_point ON cameras USING gist (point(lon, lat))"))
            assert await p.db.detect_spatial() == "pg_point"
        elif not p.db.is_sqlite:
            assert p.db.spatial == "postgis"
        try:
            world = World(p)
            agency_id = await world.agency(half_deg=0.03)
            owner = await world.owner(login=False)
            index = {}
            from consentcam.schemas import CameraUpdate
            from consentcam.services.consent import update_camera

            for n, c in enumerate(cameras):
                grant = {"requests": c["requests"]}
                if c["expires_in_h"] is not None:
                    grant["expires_at"] = start + timedelta(hours=c["expires_in_h"])
                camera_id = await world.camera(owner, c["lat"], c["lon"], retention_days=c["retention"], grant=grant)
                if c["paused"]:
                    await update_camera(p, owner.actor, camera_id, CameraUpdate(status="paused"))
                index[camera_id] = n
            clock.advance(3 * 3600)
            results = []
            async with p.db.sessions() as session:
                agency = await session.get(Agency, agency_id)
                for i, raw in enumerate(fences):
                    ws = clock.now() - timedelta(hours=window_start_hours_ago[i])
                    matches = await match_cameras(p, session, agency, parse_area(raw), ws, clock.now())
                    results.append({index[camera_id] for camera_id in matches.camera_ids})
            return results
        finally:
            await p.db.dispose()

    sqlite_url, pg_url, plain_pg_url = both_backends
    by_sqlite = await run(sqlite_url)
    by_pg = await run(pg_url)
    by_plain_pg = await run(plain_pg_url, without_postgis=True)
    expected = [oracle(i, f) for i, f in enumerate(fences)]
    assert sum(len(e) for e in expected) > 20, "the random data must actually match something"
    assert by_sqlite == expected
    assert by_pg == expected
    assert by_plain_pg == expected
