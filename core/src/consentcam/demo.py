"""The demo city: Chicago's Loop, an agency for it, its staff, and a few hundred owners whose cameras face real
streets, with a realistic mix of grants, precisions and retention. Deterministic (seeded) so demos repeat."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from .audit import Actor
from .db.models import Agency, User
from .errors import Conflict
from .platform import Platform
from .schemas import AgencyCreate, CameraCreate, GrantIn, LatLon, View
from .security import hash_password
from .services import accounts, consent

# Centre lines of the Loop's streets (WGS84). North-south streets by longitude, east-west by latitude.
NORTH_SOUTH = {
    "Michigan Ave": -87.62440, "Wabash Ave": -87.62610, "State St": -87.62780, "Dearborn St": -87.62940,
    "Clark St": -87.63090, "LaSalle St": -87.63240, "Wells St": -87.63390, "Franklin St": -87.63550,
    "Wacker Dr": -87.63700,
}
EAST_WEST = {
    "Lake St": 41.88570, "Randolph St": 41.88440, "Washington St": 41.88330, "Madison St": 41.88190,
    "Monroe St": 41.88060, "Adams St": 41.87940, "Jackson Blvd": 41.87810, "Van Buren St": 41.87680,
    "Congress Pkwy": 41.87560, "Harrison St": 41.87420,
}
JURISDICTION = {
    "type": "Polygon",
    "coordinates": [[
        [-87.6395, 41.8880], [-87.6160, 41.8880], [-87.6160, 41.8720], [-87.6395, 41.8720], [-87.6395, 41.8880],
    ]],
}
NEIGHBOUR_JURISDICTION = {  # the Near South Side, so the map shows what another agency does not see
    "type": "Polygon",
    "coordinates": [[[-87.6395, 41.8720], [-87.6160, 41.8720], [-87.6160, 41.8600], [-87.6395, 41.8600], [-87.6395, 41.8720]]],
}
DEMO_PASSWORD = "demo-password"  # printed by `consentcam demo`; demo data only
KINDS = ["Doorbell", "Storefront", "Garage", "Lobby", "Alley", "Parking lot", "Loading dock", "Entrance"]
METRES_PER_DEG_LAT = 111_320.0


def _street_point(rng: random.Random) -> tuple[str, float, float, float]:
    """A point on a random block face, set back from the centre line, with the bearing facing the street."""
    import math

    if rng.random() < 0.5:
        street, lon = rng.choice(list(NORTH_SOUTH.items()))
        lats = sorted(EAST_WEST.values())
        i = rng.randrange(len(lats) - 1)
        lat = rng.uniform(lats[i] + 0.0002, lats[i + 1] - 0.0002)
        side = rng.choice([-1, 1])
        lon += side * rng.uniform(12, 18) / (METRES_PER_DEG_LAT * math.cos(math.radians(lat)))
        bearing = 270.0 if side > 0 else 90.0
    else:
        street, lat = rng.choice(list(EAST_WEST.items()))
        lons = sorted(NORTH_SOUTH.values())
        i = rng.randrange(len(lons) - 1)
        lon = rng.uniform(lons[i] + 0.0002, lons[i + 1] - 0.0002)
        side = rng.choice([-1, 1])
        lat += side * rng.uniform(12, 18) / METRES_PER_DEG_LAT
        bearing = 180.0 if side > 0 else 0.0
    return street, round(lat, 6), round(lon, 6), bearing


# Chicago's address grid: numbers count from State Street (east/west) and Madison Street (north/south), 800 to the
# mile; even numbers on the west and north sides.
GRID_ORIGIN = (41.88190, -87.62780)
METRES_PER_MILE = 1609.344


def write_address_points(path: Path, step: int = 20) -> int:
    """The demo city's address points (CSV: address, lat, lon) along the Loop's streets, for address search in the
    owner portal through the consentcam-address-points plugin. Returns how many were written."""
    import csv
    import math

    lat_range, lon_range = (41.8725, 41.8875), (-87.6390, -87.6165)
    setback = 15.0  # metres from the centre line, where the doors are
    rows: list[tuple[str, float, float]] = []

    for street, lon in NORTH_SOUTH.items():
        for n in range(0, 2000, step):
            for sign, prefix in ((1, "N"), (-1, "S")):
                lat = GRID_ORIGIN[0] + sign * n / 800 * METRES_PER_MILE / METRES_PER_DEG_LAT
                if not lat_range[0] <= lat <= lat_range[1]:
                    continue
                for number, side in ((n, -1), (n + 1, 1)):  # even: west side
                    dlon = side * setback / (METRES_PER_DEG_LAT * math.cos(math.radians(lat)))
                    rows.append((f"{number} {prefix} {street}", round(lat, 6), round(lon + dlon, 6)))
    for street, lat in EAST_WEST.items():
        per_deg_lon = METRES_PER_DEG_LAT * math.cos(math.radians(lat))
        for n in range(0, 2000, step):
            for sign, prefix in ((1, "E"), (-1, "W")):
                lon = GRID_ORIGIN[1] + sign * n / 800 * METRES_PER_MILE / per_deg_lon
                if not lon_range[0] <= lon <= lon_range[1]:
                    continue
                for number, side in ((n, 1), (n + 1, -1)):  # even: north side
                    rows.append((f"{number} {prefix} {street}", round(lat + side * setback / METRES_PER_DEG_LAT, 6), round(lon, 6)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["address", "lat", "lon"])
        writer.writerows(sorted(set(rows)))
    return len(set(rows))


def _grant(rng: random.Random) -> GrantIn:
    live = rng.choices(["never", "emergency_only", "always"], weights=[80, 15, 5])[0]
    requests = rng.random() < 0.6
    return GrantIn(
        map=rng.random() < 0.75,
        requests=requests,
        direct_fetch=requests and rng.random() < 0.2,
        live=live,  # type: ignore[arg-type]
    )


async def load_demo(
    p: Platform, *, owners: int = 300, seed: int = 20260601, only_if_empty: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    async with p.db.sessions() as session:
        existing = (await session.execute(select(Agency).where(Agency.name == "Chicago PD, 1st District (demo)"))).scalar_one_or_none()
        owners_present = (await session.execute(select(func.count()).select_from(User).where(User.role == "owner"))).scalar_one()
    if existing is not None:
        if only_if_empty:
            return {"agency_id": existing.id, "owners": owners_present, "note": "demo already loaded"}
        raise Conflict("the demo city is already loaded in this database")
    rng = random.Random(seed)
    system = Actor.system("demo")
    agency_id = await accounts.create_agency(p, system, AgencyCreate(
        name="Chicago PD, 1st District (demo)", jurisdiction=JURISDICTION, max_area_km2=2.0,
        policy_text="We ask owners for footage only for a specific incident, never use facial recognition, and "
                    "keep clips only as long as the case needs them.",
    ))
    neighbour_id = await accounts.create_agency(p, system, AgencyCreate(
        name="Near South Side PD (demo)", jurisdiction=NEIGHBOUR_JURISDICTION,
    ))
    staff = {}
    for email, role in (("supervisor@demo.consentcam.org", "supervisor"), ("investigator1@demo.consentcam.org", "investigator"),
                        ("investigator2@demo.consentcam.org", "investigator"), ("auditor@demo.consentcam.org", "auditor"),
                        ("agency-admin@demo.consentcam.org", "admin")):
        staff[email], _ = await accounts.create_agency_user(p, system, agency_id, email, role)
    staff["admin@demo.consentcam.org"], _ = await accounts.create_agency_user(
        p, system, "", "admin@demo.consentcam.org", "admin", "City IT", platform_admin=True)
    await accounts.create_agency_user(p, system, neighbour_id, "investigator@southside.demo.consentcam.org", "investigator")
    shared_hash = hash_password(DEMO_PASSWORD)
    async with p.db.transaction() as session:
        for u in (await session.execute(select(User))).scalars():
            u.password_hash, u.must_change_password = shared_hash, False

    cameras = 0
    now = p.now()
    for n in range(owners):
        async with p.db.transaction() as session:
            owner = User(email=f"owner{n + 1:03d}@demo.consentcam.org", name=f"Demo owner {n + 1}", password_hash=shared_hash,
                         role="owner", notify_email=True, created_at=now)
            session.add(owner)
        actor = Actor(kind="user", user_id=owner.id, role="owner")
        for _ in range(1 if rng.random() < 0.7 else 2):
            street, lat, lon, bearing = _street_point(rng)
            kind = rng.choice(KINDS)
            camera = await consent.create_camera(p, actor, CameraCreate(
                label=f"{kind}, {street}", location=LatLon(lat=lat, lon=lon),
                view=View(bearing_deg=bearing, fov_deg=rng.choice([90.0, 110.0, 130.0]), range_m=rng.choice([15.0, 25.0, 40.0])),
                retention_days=rng.choice([3, 7, 14, 30, 30, 60]),
                precision=rng.choices(["exact", "block"], weights=[40, 60])[0],  # type: ignore[arg-type]
            ))
            await consent.set_grant(p, actor, camera.id, _grant(rng))
            cameras += 1
        if progress:
            progress("demo owners", n + 1, owners)
    return {
        "agency_id": agency_id,
        "neighbour_agency_id": neighbour_id,
        "owners": owners,
        "cameras": cameras,
        "password": DEMO_PASSWORD,
        "accounts": sorted(staff) + ["owner001@demo.consentcam.org …"],
    }
