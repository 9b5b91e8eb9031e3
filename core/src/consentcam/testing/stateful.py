"""The consent state machine: the permission conformance suite of ConsentCam, shipped with the core.

A Hypothesis ``RuleBasedStateMachine`` drives the real services (owners, cameras, grants, expiry, revocation,
pauses, agency suspension, agency map reads) on a fresh database per example, and keeps beside them a model
made of plain dicts. Each rule applies one operation to both; the model decides on its own, with plain
comparisons, what each agency must see, and small named invariants compare:

- after every step that changed something: each agency whose view the step changed in the model (and one
  more in turn) sees exactly the cameras the model allows (its jurisdiction or a share, ``map``, active, in
  force), nothing while suspended; so revocation and expiry count from the very next read. Each map read
  is also checked against the model by the rule itself, and after time passes each owner sees at once
  which grants lapsed;
- after every step: the audit holds exactly the events the model expects, action by action (one per map
  read that revealed cameras, naming exactly them; none for a read that revealed nothing or was refused;
  one per grant change);
- every few steps, as they cost O(history): the chain verifies, the owners' access logs list every map read
  that revealed their camera, and each owner's camera list shows versions, revocation and "in force" as the
  model does.

Plugins and the SDK reuse it by subclassing (see ``ConsentMachine``) and run it with ``run_consent_machine``.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import hypothesis.strategies as st
from hypothesis import HealthCheck, Phase, note, seed, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import func, select

from .. import audit
from ..audit import Actor
from ..clock import FakeClock
from ..db.models import Agency, AuditEvent
from ..errors import AgencySuspended, InvalidInput
from ..platform import Platform, open_platform
from ..schemas import AgencyCreate, CameraCreate, CameraUpdate, GrantIn, LatLon, OwnerRegistration
from ..services import accounts, consent
from ..services import map as agency_map
from ..settings import Settings
from .databases import PostgresDatabases, SqliteDatabases
from .world import PASSWORD, square

T = TypeVar("T")
Box = tuple[float, float, float, float]  # (min_lon, min_lat, max_lon, max_lat), edges included

START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

# Jurisdictions are lon/lat squares, so the model decides containment with four comparisons.
# A and B overlap in a strip; C holds none of the points below and sees only what owners share with it.
AGENCIES: dict[str, tuple[float, float, float]] = {  # name: (lon, lat, half side in degrees)
    "A": (-87.63, 41.88, 0.02),
    "B": (-87.60, 41.88, 0.02),
    "C": (-87.70, 41.95, 0.01),
}
POINTS: dict[str, tuple[float, float]] = {  # name: (lat, lon), none of them on an edge
    "inside A": (41.880, -87.640),
    "inside B": (41.880, -87.590),
    "inside A and B": (41.870, -87.615),
    "outside all": (41.800, -87.500),
}
AREAS: dict[str, Box | None] = {  # the map's optional bounding box; the first is drawn most
    "everywhere": None,
    "whole city": (-88.0, 41.5, -87.0, 42.5),
    "west strip": (-87.66, 41.85, -87.625, 41.91),
    "east strip": (-87.62, 41.85, -87.55, 41.91),
}
# Hypothesis favours the first element of each list: most grants do not expire (so maps have something on
# them), and 60 s is the commonest step of time and the commonest expiry, so that "time reaches the expiry
# exactly", the instant where an off-by-one in the rule shows, happens often.
EXPIRY_SECONDS = (None, 60, 120, 300)
TIME_STEPS = (60, 1, 30, 90, 120, 300, 900)
LIVE_MODES = ("never", "emergency_only", "always")
MAX_OWNERS = 3
MAX_CAMERAS = 10
HISTORY_CHECK_EVERY = 10  # steps between the slower whole checks (chain, access logs, owners' views)


def box_of(lon: float, lat: float, half_deg: float) -> Box:
    return (lon - half_deg, lat - half_deg, lon + half_deg, lat + half_deg)


def contains(box: Box, lat: float, lon: float) -> bool:
    min_lon, min_lat, max_lon, max_lat = box
    return min_lon <= lon <= max_lon and min_lat <= lat <= max_lat


# --- throwaway databases, one per example -------------------------------------------------------------


class ExampleDatabases:
    """A fresh migrated database per Hypothesis example, on one backend; pytest fixtures cannot do this,
    because Hypothesis runs many examples inside one test."""

    def __init__(self, backend: str, folder: Path) -> None:
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"unknown backend {backend!r}")
        self.backend = backend
        self.folder = folder
        self._pg = PostgresDatabases() if backend == "postgresql" else None
        self._sqlite = SqliteDatabases(folder / "template") if backend == "sqlite" else None
        self._made = 0

    def prepare(self) -> None:
        """Migrate the template now, so that an unreachable server fails the test before Hypothesis starts."""
        url, folder = self.new()
        self.drop(url, folder)

    def new(self) -> tuple[str, Path]:
        self._made += 1
        folder = self.folder / f"example-{self._made}"
        folder.mkdir(parents=True, exist_ok=True)
        if self._sqlite is not None:
            return self._sqlite.new(folder / "db"), folder
        assert self._pg is not None
        return self._pg.new(), folder

    def drop(self, url: str, folder: Path) -> None:
        if self._pg is not None:
            self._pg.drop(url)
        shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        if self._pg is not None:
            self._pg.drop_all()


@dataclass
class Tally:
    """What a run actually executed: Hypothesis may stop an example early, so budgets are measured."""

    rounds: int = 0
    examples: int = 0
    steps: int = 0
    steps_per_example: list[int] = field(default_factory=list)
    rules: Counter[str] = field(default_factory=Counter)
    reads: Counter[str] = field(default_factory=Counter)  # map reads by outcome: refused, 0, 1, 2, 3+ cameras
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process only; a PostgreSQL server's work is not in it


# --- the model ----------------------------------------------------------------------------------------


@dataclass
class AgencyModel:
    name: str
    box: Box
    id: str = ""
    investigator: accounts.Principal | None = None
    token: str = ""
    suspended: bool = False


@dataclass
class OwnerModel:
    name: str
    id: str
    actor: Actor


@dataclass(frozen=True)
class GrantModel:
    map: bool = False
    requests: bool = False
    direct_fetch: bool = False
    live: str = "never"
    share_with: frozenset[str] = frozenset()  # agency names
    expires_at: datetime | None = None

    def in_force(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass
class CameraModel:
    name: str
    id: str
    owner: str
    point: str
    precision: str
    active: bool = True
    grant: GrantModel | None = None  # None: never granted anything
    versions: int = 0  # grant versions written, revocations included
    revoked: bool = False  # the newest version is a revocation
    revealed_to: list[str] = field(default_factory=list)  # agency names, one per map read that revealed it


# --- the machine --------------------------------------------------------------------------------------


class ConsentMachine(RuleBasedStateMachine):
    """Owners, cameras, grants, time, pauses, suspensions and agency map reads against a plain-dict model.

    To extend it (request items, live sessions, a plugin's own operations): subclass, build extra world in
    ``populate``, and write rules that start with ``self.step(...)``, call the services through ``self.run``,
    update the model, and declare the audit events they write with ``self.expect``. Draw existing things
    with ``draw_name`` (sorted model names, never database ids, so that failures replay). The inherited
    invariants then hold the new rules to the same consent rules and the same audit count.
    """

    agency_layout = AGENCIES
    points = POINTS
    areas = AREAS

    def __init__(self, databases: ExampleDatabases, tally: Tally | None = None) -> None:
        super().__init__()
        self.databases = databases
        self.tally = tally if tally is not None else Tally()
        self.tally.examples += 1
        self.tally.steps_per_example.append(0)
        self.agencies: dict[str, AgencyModel] = {
            name: AgencyModel(name, box_of(*where)) for name, where in self.agency_layout.items()
        }
        self.owners: dict[str, OwnerModel] = {}
        self.cameras: dict[str, CameraModel] = {}
        self.camera_names: dict[str, str] = {}  # real id -> model name
        self.now = START
        self.expected_events: Counter[str] = Counter()
        self.changed = False  # whether the last step changed what agencies or owners should see
        self.views: dict[str, set[str]] = {}  # what the model let each agency see when last compared
        self.logged: dict[str, int] = {}  # map reads in each camera's access log when last compared
        self.steps_taken = 0
        self.url, self.folder = databases.new()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock(START)
        try:
            self.p: Platform = self.run(open_platform(self.settings_for(self.url, self.folder), clock=self.clock))
        except BaseException:
            self.loop.close()
            databases.drop(self.url, self.folder)
            raise

    # --- hooks for subclasses ---------------------------------------------------------------------

    def settings_for(self, url: str, folder: Path) -> Settings:
        return Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=folder / "data",
            database_url=url,
            secret_key="consent-machine-key-not-for-production",
            public_url="http://consentcam.test",
            load_entry_point_plugins=False,
            run_jobs_in_process=False,
            token_hours=24 * 365,  # the machine moves the clock by days; tokens are not what it tests
        )

    async def populate(self) -> None:
        """Called at the end of ``open_city`` (agencies, investigators, owner1 and its cameras exist); subclasses
        add their own world here."""

    def run(self, awaitable: Awaitable[T]) -> T:
        """Run one service call on the machine's own event loop (the machine is synchronous)."""
        return self.loop.run_until_complete(awaitable)

    def step(self, message: str, *, changes: bool = True) -> None:
        """Every rule starts here: the note that replays it, and the count that proves the budget.

        ``changes=False`` marks a rule that only reads and checks its own result, so the costlier invariants
        may skip the step after it.
        """
        note(message)
        self.tally.steps += 1
        self.tally.steps_per_example[-1] += 1
        self.tally.rules[message.split(":", 1)[0]] += 1
        self.steps_taken += 1
        self.changed = changes

    def expect(self, action: str, count: int = 1) -> None:
        """Declare audit events the last operation must have written."""
        self.expected_events[action] += count

    def draw_name(self, data: st.DataObject, names: Iterable[str], label: str) -> str:
        return data.draw(st.sampled_from(sorted(names)), label=label)

    def teardown(self) -> None:
        try:
            self.run(self.p.db.dispose())
        finally:
            self.loop.close()
            self.databases.drop(self.url, self.folder)

    # --- what the model says ----------------------------------------------------------------------

    def expected_map(self, agency_name: str, area: Box | None = None) -> set[str]:
        """Camera names the agency must see now, decided from the model alone."""
        agency = self.agencies[agency_name]
        if agency.suspended:
            return set()
        out = set()
        for name, camera in self.cameras.items():
            grant = camera.grant
            lat, lon = self.points[camera.point]
            if not (camera.active and grant is not None and grant.map and grant.in_force(self.now)):
                continue
            if not (agency_name in grant.share_with or contains(agency.box, lat, lon)):
                continue
            if area is None or contains(area, lat, lon):
                out.add(name)
        return out

    def names_of(self, camera_ids: Iterable[str]) -> set[str]:
        return {self.camera_names.get(c, f"unknown camera {c}") for c in camera_ids}

    async def audit_head(self) -> AuditEvent | None:
        async with self.p.db.sessions() as session:
            return (await session.execute(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))).scalar_one_or_none()

    # --- the city ---------------------------------------------------------------------------------

    @initialize(
        precisions=st.lists(st.sampled_from(("block", "exact")), min_size=len(POINTS), max_size=len(POINTS)),
        on_map=st.lists(st.sampled_from((True, False)), min_size=len(POINTS), max_size=len(POINTS)),
    )
    def open_city(self, precisions: list[str], on_map: list[bool]) -> None:
        # Every example starts with one camera at each point, most of them on the map, so that swarm testing
        # (Hypothesis turning some rules off for a whole example) never leaves an example with nothing to see.
        self.step(f"open_city: agencies {sorted(self.agencies)} with one investigator each; owner1 with one camera "
                  f"at each of {sorted(self.points)}, {precisions}, granting map: {on_map}", changes=False)
        self.run(self._open_city())
        owner = self._register_owner()
        for point, precision, mapped in zip(sorted(self.points), precisions, on_map, strict=False):
            camera = self._register_camera(owner, point, precision)
            if mapped:
                self._write_grant(camera, GrantModel(map=True))
        self.run(self.populate())

    async def _open_city(self) -> None:
        for name, agency in sorted(self.agencies.items()):
            lon, lat, half = self.agency_layout[name]
            agency.id = await accounts.create_agency(
                self.p, Actor.system("consent-machine"), AgencyCreate(name=f"Agency {name}", jurisdiction=square(lon, lat, half))
            )
            self.expect("agency.created")
            email = f"investigator.{name.lower()}@agency.example.org"
            _, password = await accounts.create_agency_user(self.p, Actor.system("consent-machine"), agency.id, email, "investigator")
            self.expect("user.created")
            agency.token, _, _ = await accounts.login(self.p, email, password, "127.0.0.1")
            agency.investigator = await accounts.authenticate(self.p, agency.token)

    # --- owners and cameras -----------------------------------------------------------------------

    @precondition(lambda self: len(self.owners) < MAX_OWNERS)
    @rule()
    def register_owner(self) -> None:
        self.step(f"register_owner: owner{len(self.owners) + 1}", changes=False)
        self._register_owner()

    def _register_owner(self) -> OwnerModel:
        name = f"owner{len(self.owners) + 1}"
        reg = OwnerRegistration(email=f"{name}@home.example.org", password=PASSWORD, name=name, notify={"email": True})
        owner_id = self.run(accounts.register_owner(self.p, reg))
        owner = self.owners[name] = OwnerModel(name, owner_id, Actor(kind="user", user_id=owner_id, role="owner"))
        self.expect("owner.registered")
        return owner

    @precondition(lambda self: len(self.cameras) < MAX_CAMERAS)
    @rule(data=st.data(), precision=st.sampled_from(("block", "exact")))
    def register_camera(self, data: st.DataObject, precision: str) -> None:
        owner = self.owners[self.draw_name(data, self.owners, "owner")]
        point = self.draw_name(data, self.points, "point")
        self.step(f"register_camera: cam{len(self.cameras) + 1} of {owner.name} at {point!r}, {precision}")
        self._register_camera(owner, point, precision)

    def _register_camera(self, owner: OwnerModel, point: str, precision: str) -> CameraModel:
        name = f"cam{len(self.cameras) + 1}"
        lat, lon = self.points[point]
        out = self.run(consent.create_camera(self.p, owner.actor, CameraCreate(
            label=name, location=LatLon(lat=lat, lon=lon), retention_days=30, precision=precision,  # type: ignore[arg-type]
        )))
        camera = self.cameras[name] = CameraModel(name, out.id, owner.name, point, precision)
        self.camera_names[out.id] = name
        self.expect("camera.registered")
        assert not out.grant.in_force, "a new camera grants nothing"
        return camera

    def _owner_of(self, camera: CameraModel) -> OwnerModel:
        return self.owners[camera.owner]

    # --- grants -----------------------------------------------------------------------------------

    def _write_grant(self, camera: CameraModel, grant: GrantModel) -> None:
        spec = GrantIn(
            map=grant.map, requests=grant.requests, direct_fetch=grant.direct_fetch, live=grant.live,  # type: ignore[arg-type]
            share_with=[self.agencies[a].id for a in sorted(grant.share_with)], expires_at=grant.expires_at,
        )
        if grant.expires_at is not None and grant.expires_at <= self.now:
            # A change that keeps a lapsed expiry is refused whole: nothing is written, nothing is audited.
            try:
                self.run(consent.set_grant(self.p, self._owner_of(camera).actor, camera.id, spec))
            except InvalidInput:
                return
            raise AssertionError(f"a grant for {camera.name} that expired at {grant.expires_at} was accepted")
        out = self.run(consent.set_grant(self.p, self._owner_of(camera).actor, camera.id, spec))
        camera.grant, camera.versions, camera.revoked = grant, camera.versions + 1, False
        self.expect("grant.changed")
        assert out.in_force == (camera.active and grant.in_force(self.now)), "in force: active, granted and not expired"

    @precondition(lambda self: bool(self.cameras))
    @rule(
        data=st.data(),
        map_=st.sampled_from((True, False)),  # map first: it is the scope this machine reads
        requests=st.booleans(),
        direct_fetch=st.booleans(),
        live=st.sampled_from(LIVE_MODES),
        expires_in=st.sampled_from(EXPIRY_SECONDS),
    )
    def set_grant(self, data: st.DataObject, map_: bool, requests: bool, direct_fetch: bool, live: str,
                  expires_in: int | None) -> None:
        camera = self.cameras[self.draw_name(data, self.cameras, "camera")]
        shares = data.draw(st.lists(st.sampled_from(sorted(self.agencies)), unique=True), label="share_with")
        expires_at = None if expires_in is None else self.now + timedelta(seconds=expires_in)
        grant = GrantModel(map_, requests, direct_fetch, live, frozenset(shares), expires_at)
        self.step(f"set_grant: {camera.name} map={map_} requests={requests} direct_fetch={direct_fetch} live={live} "
                  f"share_with={sorted(shares)} expires_in={expires_in}")
        self._write_grant(camera, grant)

    @precondition(lambda self: any(c.grant is not None for c in self.cameras.values()))
    @rule(data=st.data(), change=st.sampled_from(("share", "toggle map", "unshare", "expire later", "never expire")))
    def change_grant(self, data: st.DataObject, change: str) -> None:
        name = self.draw_name(data, (n for n, c in self.cameras.items() if c.grant is not None), "camera")
        camera = self.cameras[name]
        grant = camera.grant
        assert grant is not None
        agency = self.draw_name(data, self.agencies, "agency") if change in ("share", "unshare") else ""
        if change == "toggle map":
            new = GrantModel(not grant.map, grant.requests, grant.direct_fetch, grant.live, grant.share_with, grant.expires_at)
        elif change == "share":
            new = GrantModel(grant.map, grant.requests, grant.direct_fetch, grant.live, grant.share_with | {agency}, grant.expires_at)
        elif change == "unshare":
            new = GrantModel(grant.map, grant.requests, grant.direct_fetch, grant.live, grant.share_with - {agency}, grant.expires_at)
        elif change == "expire later":
            new = GrantModel(grant.map, grant.requests, grant.direct_fetch, grant.live, grant.share_with,
                             self.now + timedelta(seconds=120))
        else:
            new = GrantModel(grant.map, grant.requests, grant.direct_fetch, grant.live, grant.share_with, None)
        self.step(f"change_grant: {name} {change} {agency}".rstrip())
        self._write_grant(camera, new)

    @precondition(lambda self: bool(self.cameras))
    @rule(data=st.data())
    def revoke_everything(self, data: st.DataObject) -> None:
        camera = self.cameras[self.draw_name(data, self.cameras, "camera")]
        self.step(f"revoke_everything: {camera.name}")
        out = self.run(consent.revoke_all(self.p, self._owner_of(camera).actor, camera.id))
        camera.grant, camera.versions, camera.revoked = GrantModel(), camera.versions + 1, True
        self.expect("grant.revoked")
        assert out.revoked and not out.in_force and not out.map and out.share_with == []

    # --- time and status --------------------------------------------------------------------------

    @rule(seconds=st.sampled_from(TIME_STEPS))
    def let_time_pass(self, seconds: int) -> None:
        # Time matters only to grants with an expiry (tokens outlive the run).
        expiring = sorted(n for n, c in self.cameras.items() if c.grant is not None and c.grant.expires_at is not None)
        self.step(f"let_time_pass: {seconds} s", changes=bool(expiring))
        self.clock.advance(seconds)
        self.now += timedelta(seconds=seconds)
        # Their owners see at once which of them lapsed.
        for name in expiring:
            camera = self.cameras[name]
            self._check_owner_view(camera, self.run(consent.get_camera(self.p, self._owner_of(camera).id, camera.id)))

    @precondition(lambda self: any(c.active for c in self.cameras.values()))
    @rule(data=st.data())
    def pause_camera(self, data: st.DataObject) -> None:
        camera = self.cameras[self.draw_name(data, (n for n, c in self.cameras.items() if c.active), "camera")]
        self.step(f"pause_camera: {camera.name}")
        self._set_status(camera, "paused")

    @precondition(lambda self: any(not c.active for c in self.cameras.values()))
    @rule(data=st.data())
    def unpause_camera(self, data: st.DataObject) -> None:
        camera = self.cameras[self.draw_name(data, (n for n, c in self.cameras.items() if not c.active), "camera")]
        self.step(f"unpause_camera: {camera.name}")
        self._set_status(camera, "active")

    def _set_status(self, camera: CameraModel, status: str) -> None:
        out = self.run(consent.update_camera(self.p, self._owner_of(camera).actor, camera.id, CameraUpdate(status=status)))  # type: ignore[arg-type]
        camera.active = status == "active"
        self.expect("camera.updated")
        assert out.status == status

    # --- agencies ---------------------------------------------------------------------------------

    @precondition(lambda self: any(not a.suspended for a in self.agencies.values()))
    @rule(data=st.data())
    def suspend_agency(self, data: st.DataObject) -> None:
        agency = self.agencies[self.draw_name(data, (n for n, a in self.agencies.items() if not a.suspended), "agency")]
        self.step(f"suspend_agency: {agency.name}")
        changed = self.run(accounts.set_suspended(self.p, Actor.system("consent-machine"), agency.id, True, "audit"))
        agency.suspended = True
        self.expect("agency.suspended")
        assert changed == 1

    @precondition(lambda self: any(a.suspended for a in self.agencies.values()))
    @rule(data=st.data())
    def resume_agency(self, data: st.DataObject) -> None:
        agency = self.agencies[self.draw_name(data, (n for n, a in self.agencies.items() if a.suspended), "agency")]
        self.step(f"resume_agency: {agency.name}")
        changed = self.run(accounts.set_suspended(self.p, Actor.system("consent-machine"), agency.id, False))
        agency.suspended = False
        self.expect("agency.resumed")
        assert changed == 1

    @rule(data=st.data())
    def agency_reads_map(self, data: st.DataObject) -> None:
        agency = self.agencies[self.draw_name(data, self.agencies, "agency")]
        area_name = data.draw(st.sampled_from(tuple(self.areas)), label="area")  # a constant: its own order
        area = self.areas[area_name]
        expected = self.expected_map(agency.name, area)
        self.tally.reads["refused" if agency.suspended else str(len(expected)) if len(expected) < 3 else "3+"] += 1
        self.step(f"agency_reads_map: agency {agency.name} over {area_name}"
                  + (" while suspended" if agency.suspended else f", the model expects {sorted(expected)}"), changes=False)
        # The chain's seq is gapless from 1 and the invariants keep the count equal to the model's, so the
        # head before this read is the model's total.
        before = sum(self.expected_events.values())
        if agency.suspended:
            self._refused_read(agency, area)
        else:
            self._read(agency, area, expected)
        after = self.run(self.audit_head())
        assert after is not None
        if not expected:
            assert after.seq == before, f"a read revealing nothing wrote {after.action} (seq {after.seq})"
            return
        assert after.seq == before + 1, f"a revealing read wrote {after.seq - before} events"
        assert after.action == "map.read" and after.actor_agency_id == agency.id
        assert agency.investigator is not None and after.actor_id == agency.investigator.user_id
        assert self.names_of(after.camera_ids) == expected, f"the event names {sorted(self.names_of(after.camera_ids))}"
        self.expect("map.read")
        for name in sorted(expected):
            self.cameras[name].revealed_to.append(agency.name)

    def _refused_read(self, agency: AgencyModel, area: Box | None) -> None:
        # Over HTTP the token is refused before any service runs.
        try:
            self.run(accounts.authenticate(self.p, agency.token))
        except AgencySuspended:
            pass
        else:
            raise AssertionError(f"agency {agency.name} is suspended, yet its investigator's token was accepted")
        # A caller that resolved its principal before the suspension still sees nothing, and leaves no event.
        assert agency.investigator is not None
        result = self.run(agency_map.map_read(self.p, agency.investigator, area))
        assert result["features"] == [], f"suspended agency {agency.name} saw {sorted(self.names_of(f['id'] for f in result['features']))}"

    def _read(self, agency: AgencyModel, area: Box | None, expected: set[str]) -> None:
        principal = self.run(accounts.authenticate(self.p, agency.token))
        result = self.run(agency_map.map_read(self.p, principal, area))
        seen = [f["id"] for f in result["features"]]
        assert len(seen) == len(set(seen)), "a camera appears twice on one map"
        assert self.names_of(seen) == expected, f"agency {agency.name} saw {sorted(self.names_of(seen))}"
        for feature in result["features"]:
            camera = self.cameras[self.camera_names[feature["id"]]]
            assert camera.grant is not None
            props = feature["properties"]
            assert (props["requests"], props["direct_fetch"], props["live"]) == (
                camera.grant.requests, camera.grant.direct_fetch, camera.grant.live)
            lat, lon = self.points[camera.point]
            assert (feature["geometry"]["coordinates"] == [lon, lat]) == (camera.precision == "exact")

    # --- invariants -------------------------------------------------------------------------------

    @invariant()
    def clock_and_model_agree(self) -> None:
        assert self.clock.now() == self.now

    @precondition(lambda self: self.changed)
    @invariant()
    def agencies_see_what_the_model_allows(self) -> None:
        # Every agency whose view the step changed in the model, and one more in turn: a side effect on a view
        # the model left alone still shows within a few steps (and in the next read by that agency).
        names = sorted(self.agencies)
        views = {name: self.expected_map(name) for name in names}
        turn = names[self.steps_taken % len(names)]
        checked = [name for name in names if name == turn or views[name] != self.views.get(name)]
        self.views = views
        seen = self.run(self._visible_to(checked))
        for name in checked:
            assert seen[name] == views[name], f"agency {name} could see {sorted(seen[name])}, the model allows {sorted(views[name])}"

    async def _visible_to(self, names: Iterable[str]) -> dict[str, set[str]]:
        async with self.p.db.sessions() as session:
            rows = {a.id: a for a in (await session.execute(select(Agency))).scalars()}
        out = {}
        for name in names:
            model = self.agencies[name]
            agency = rows[model.id]
            assert agency.suspended == model.suspended
            out[name] = self.names_of(c.id for c in await agency_map.visible_cameras(self.p, agency, None))
        return out

    @precondition(lambda self: self.steps_taken % HISTORY_CHECK_EVERY == 0)
    @invariant()
    def owners_see_their_grants_as_the_model_does(self) -> None:
        # Versions, revocation and "in force" as the owner's camera list shows them; every few steps, as the
        # agencies' views above are what each step must keep exact.
        listed = self.run(self._owners_cameras())
        for _, camera in sorted(self.cameras.items()):
            self._check_owner_view(camera, listed[camera.id])

    def _check_owner_view(self, camera: CameraModel, out: Any) -> None:
        agency_names = {a.id: name for name, a in self.agencies.items()}
        grant = camera.grant or GrantModel()
        in_force = camera.active and camera.versions > 0 and not camera.revoked and grant.in_force(self.now)
        seen = (out.status, out.grant.version, out.grant.revoked, out.grant.in_force, out.grant.map, out.grant.requests,
                out.grant.direct_fetch, out.grant.live, {agency_names[a] for a in out.grant.share_with}, out.grant.expires_at)
        model = ("active" if camera.active else "paused", camera.versions, camera.revoked, in_force, grant.map,
                 grant.requests, grant.direct_fetch, grant.live, set(grant.share_with), grant.expires_at)
        assert seen == model, f"{camera.owner} sees {camera.name} as {seen}, the model says {model}"

    async def _owners_cameras(self) -> dict[str, Any]:
        out = {}
        for owner in self.owners.values():
            out.update({c.id: c for c in await consent.list_cameras(self.p, owner.id)})
        return out

    @invariant()
    def audit_events_match_the_model(self) -> None:
        recorded = self.run(self._audit_counts())
        assert recorded == +self.expected_events, f"audit holds {dict(recorded)}, the model expects {dict(+self.expected_events)}"

    async def _audit_counts(self) -> Counter[str]:
        async with self.p.db.sessions() as session:
            rows = await session.execute(select(AuditEvent.action, func.count()).group_by(AuditEvent.action))
            return Counter({action: n for action, n in rows})

    @precondition(lambda self: self.steps_taken % HISTORY_CHECK_EVERY == 0)
    @invariant()
    def audit_chain_verifies(self) -> None:
        # Recomputing the whole chain costs O(events), so it runs every few steps; each step's events are
        # counted above, and a broken link is still found within the same example.
        check = self.run(audit.verify_chain(self.p.db))
        assert check.ok, f"the chain breaks at {check.broken_at}: {check.reason}"
        assert check.events == sum(self.expected_events.values())

    @precondition(lambda self: self.steps_taken % HISTORY_CHECK_EVERY == 0)
    @invariant()
    def owners_see_every_read_of_their_cameras(self) -> None:
        # The whole list of map reads in the access log of each camera revealed since the last check, and of
        # one more in turn (whose log must not have grown); each read's own event is checked by the read.
        names = sorted(self.cameras)
        turn = names[(self.steps_taken // HISTORY_CHECK_EVERY) % len(names)]
        checked = [n for n in names if n == turn or len(self.cameras[n].revealed_to) != self.logged.get(n, 0)]
        logs = self.run(self._map_reads_in_access_logs(checked))
        for name in checked:
            expected = [f"Agency {a}" for a in reversed(self.cameras[name].revealed_to)]  # newest first
            assert logs[name] == expected, f"{name}'s access log lists map reads by {logs[name]}, the model {expected}"
            self.logged[name] = len(expected)

    async def _map_reads_in_access_logs(self, names: Iterable[str]) -> dict[str, list[str | None]]:
        out = {}
        for name in names:
            camera = self.cameras[name]
            events = await consent.access_log(self.p, self._owner_of(camera).id, camera.id)
            out[name] = [e["agency"] for e in events if e["action"] == "map.read"]
        return out


# --- running it ---------------------------------------------------------------------------------------


# Hypothesis cuts some examples short on purpose (it explores early stops too), so the budget is counted in
# steps actually run; with seed 0 these settings run 2,201 steps, one round.
CONSENT_SETTINGS = settings(
    max_examples=11,
    stateful_step_count=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.large_base_example],
    # No "explain" phase: it traces every line of every replay, which makes a failure take minutes longer.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)


def run_consent_machine(
    backend: str,
    folder: Path,
    *,
    machine: Callable[[ExampleDatabases, Tally], ConsentMachine] = ConsentMachine,
    hypothesis_settings: settings = CONSENT_SETTINGS,
    min_steps: int = 0,
) -> Tally:
    """Run the machine (or a subclass) on one backend in seeded rounds until at least ``min_steps`` steps ran.

    Round ``n`` uses seed ``n``, so every run executes the same examples and a failure replays as it is.
    Returns what was actually executed.
    """
    databases = ExampleDatabases(backend, folder)
    tally = Tally()
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        databases.prepare()
        round_settings = hypothesis_settings
        while True:
            factory = seed(tally.rounds)(lambda: machine(databases, tally))
            run_state_machine_as_test(factory, settings=round_settings)  # type: ignore[arg-type]
            tally.rounds += 1
            missing = min_steps - tally.steps
            if missing <= 0:
                break
            # Another seed, with just enough examples for what is missing (and one more for a short one).
            step_count = hypothesis_settings.stateful_step_count
            round_settings = settings(hypothesis_settings, max_examples=-(-missing // step_count) + 1)
    finally:
        tally.seconds = time.perf_counter() - started
        tally.cpu_seconds = time.process_time() - cpu_started
        databases.close()
    return tally
