"""Builders for test worlds: agencies, staff, owners, cameras and grants, all made through the real services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..audit import Actor
from ..schemas import AgencyCreate, CameraCreate, GrantIn, LatLon, OwnerRegistration
from ..services import accounts, consent

PASSWORD = "correct horse battery"


def square(lon: float, lat: float, half_deg: float) -> dict[str, Any]:
    """A GeoJSON Polygon: a lon/lat square centred on (lon, lat)."""
    a, b, c, d = lon - half_deg, lat - half_deg, lon + half_deg, lat + half_deg
    return {"type": "Polygon", "coordinates": [[[a, b], [c, b], [c, d], [a, d], [a, b]]]}


@dataclass
class Person:
    id: str
    email: str
    role: str
    agency_id: str | None
    actor: Actor
    token: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        assert self.token, "log in first (World.login)"
        return {"Authorization": f"Bearer {self.token}"}


class World:
    def __init__(self, platform: Any) -> None:
        self.p = platform
        self.n = 0

    def _next(self) -> int:
        self.n += 1
        return self.n

    async def agency(self, name: str | None = None, *, lon: float = -87.63, lat: float = 41.88, half_deg: float = 0.02,
                     **options: Any) -> str:
        spec = AgencyCreate(name=name or f"Agency {self._next()}", jurisdiction=square(lon, lat, half_deg), **options)
        return await accounts.create_agency(self.p, Actor.system("test"), spec)

    async def staff(self, agency_id: str | None, role: str, *, login: bool = True) -> Person:
        email = f"{role}{self._next()}@agency.example.org"
        user_id, password = await accounts.create_agency_user(
            self.p, Actor.system("test"), agency_id or "", email, role, platform_admin=agency_id is None
        )
        person = Person(user_id, email, role, agency_id,
                        Actor(kind="user", user_id=user_id, role=role, agency_id=agency_id))
        if login:
            person.token, _, _ = await accounts.login(self.p, email, password, "127.0.0.1")
        return person

    async def owner(self, *, login: bool = True, **notify: Any) -> Person:
        email = f"owner{self._next()}@home.example.org"
        reg = OwnerRegistration(email=email, password=PASSWORD, name=f"Owner {self.n}", notify=notify or {"email": True})
        user_id = await accounts.register_owner(self.p, reg)
        person = Person(user_id, email, "owner", None, Actor(kind="user", user_id=user_id, role="owner"))
        if login:
            person.token, _, _ = await accounts.login(self.p, email, PASSWORD, "127.0.0.1")
        return person

    async def camera(self, owner: Person, lat: float = 41.88, lon: float = -87.63, *, retention_days: int = 30,
                     precision: str = "exact", grant: dict[str, Any] | None = None, **extra: Any) -> str:
        camera = await consent.create_camera(self.p, owner.actor, CameraCreate(
            label=extra.pop("label", f"Camera {self._next()}"), location=LatLon(lat=lat, lon=lon),
            retention_days=retention_days, precision=precision, **extra,  # type: ignore[arg-type]
        ))
        if grant is not None:
            await consent.set_grant(self.p, owner.actor, camera.id, GrantIn(**grant))
        return camera.id

    async def grant(self, owner: Person, camera_id: str, **grant: Any) -> None:
        await consent.set_grant(self.p, owner.actor, camera_id, GrantIn(**grant))

    async def revoke(self, owner: Person, camera_id: str) -> None:
        await consent.revoke_all(self.p, owner.actor, camera_id)
