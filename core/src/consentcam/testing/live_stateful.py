"""The live-feed state machine (invariant 3 of ``DESIGN.md``, and invariant 2 for live views): shipped with the
core beside the consent machine, so a relay plugin can run it against itself.

A Hypothesis ``RuleBasedStateMachine`` drives the real services (grants with a live mode, revocation, emergencies
declared over or away from a camera, ended early or by time, the owner's pause, live sessions opened and swept)
on a fresh database per example, and keeps a model of plain values beside them. The model alone decides whether
a live view may open; each ``open`` compares the service's answer (and the rule it names) with it, and after
every step the sweep runs and every session still open must be one the model allows: ``emergency_only`` only
inside an active emergency covering the camera, ``never`` never, nothing past its hard end or while paused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import hypothesis.strategies as st
from hypothesis import HealthCheck, Phase, note, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import select

from ..clock import FakeClock
from ..db.models import LiveSession
from ..errors import ConsentCamError
from ..platform import Platform, open_platform
from ..schemas import CameraCreate, Connection, GrantIn, LatLon
from ..services import consent
from ..services.accounts import authenticate
from ..settings import Settings
from .world import World

T = TypeVar("T")
START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CAMERAS = {"near": (41.8800, -87.6300), "far": (41.8950, -87.6150)}  # (lat, lon); the emergency circle covers "near"
OVER_NEAR = {"center": {"lat": 41.8800, "lon": -87.6300}, "radius_m": 300}
ELSEWHERE = {"center": {"lat": 41.8650, "lon": -87.6450}, "radius_m": 300}  # covers neither camera
MODES = ("emergency_only", "always", "never")  # Hypothesis favours the first
INITIAL = {"near": "emergency_only", "far": "always"}


@dataclass
class EmergencyModel:
    covers: frozenset[str]
    ends_at: datetime
    ended: bool = False

    def active(self, now: datetime) -> bool:
        return not self.ended and now < self.ends_at


@dataclass
class Tally:
    steps: int = 0
    examples: int = 0
    opened: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    swept: int = 0


class LiveMachine(RuleBasedStateMachine):
    databases: Any = None  # set by ``run_live_machine``: .new() -> (url, folder), .drop(url, folder)
    tally: Tally = Tally()

    def __init__(self) -> None:
        super().__init__()
        type(self).tally.examples += 1
        self.url, self.folder = self.databases.new()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock(START)
        self.now = START
        self.live = dict(INITIAL)
        self.emergencies: dict[str, EmergencyModel] = {}
        self.paused = False
        self.sessions: dict[str, tuple[str, str | None, datetime]] = {}  # id -> (camera, emergency id, ends_at)
        self.p: Platform = self.run(open_platform(Settings(
            _env_file=None, data_dir=self.folder / "data", database_url=self.url,  # type: ignore[call-arg]
            secret_key="live-machine-key-not-for-production", load_entry_point_plugins=False,
            run_jobs_in_process=False, token_hours=24 * 365), clock=self.clock))
        self.run(self._populate())

    async def _populate(self) -> None:
        from ..live import service

        world = World(self.p)
        agency = await world.agency()
        supervisor, investigator = await world.staff(agency, "supervisor"), await world.staff(agency, "investigator")
        self.owner = await world.owner()
        self.supervisor = await authenticate(self.p, supervisor.token)  # type: ignore[arg-type]
        self.investigator = await authenticate(self.p, investigator.token)  # type: ignore[arg-type]
        owner = await authenticate(self.p, self.owner.token)  # type: ignore[arg-type]
        self.owner_principal = owner
        code, _ = await service.create_pairing_code(self.p, owner)
        device, _ = await service.pair(self.p, code, "machine relay")
        self.device_id = device.id
        self.camera_ids: dict[str, str] = {}
        for name, (lat, lon) in CAMERAS.items():
            camera = await consent.create_camera(self.p, self.owner.actor, CameraCreate(
                label=name, location=LatLon(lat=lat, lon=lon), retention_days=7, precision="exact",
                connection=Connection(kind="edge", device_id=device.id, camera_ref=name)))  # type: ignore[call-arg]
            self.camera_ids[name] = camera.id
            await consent.set_grant(self.p, self.owner.actor, camera.id, GrantIn(map=True, live=INITIAL[name]))  # type: ignore[arg-type]

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)

    def step(self, message: str) -> None:
        note(message)
        type(self).tally.steps += 1

    def teardown(self) -> None:
        try:
            self.run(self.p.db.dispose())
        finally:
            self.loop.close()
            self.databases.drop(self.url, self.folder)

    # --- the model ----------------------------------------------------------------------------------

    def covering(self, camera: str) -> list[str]:
        return [i for i, e in self.emergencies.items() if e.active(self.now) and camera in e.covers]

    def expected_rule(self, camera: str) -> str | None:
        """None when a live view of ``camera`` may open now, else the rule that refuses it."""
        mode = self.live[camera]
        if mode == "never":
            return "live_never"
        if self.paused:
            return "owner_paused"
        if mode == "emergency_only" and not self.covering(camera):
            return "live_emergency_only"
        return None

    def session_allowed(self, camera: str, emergency_id: str | None, ends_at: datetime) -> bool:
        if self.now >= ends_at or self.paused:
            return False
        mode = self.live[camera]
        if mode == "always":
            return True
        return mode == "emergency_only" and emergency_id is not None and emergency_id in self.covering(camera)

    # --- rules --------------------------------------------------------------------------------------

    @rule(camera=st.sampled_from(sorted(CAMERAS)), mode=st.sampled_from(MODES))
    def set_live(self, camera: str, mode: str) -> None:
        self.step(f"set_live: {camera} {mode}")
        self.run(consent.set_grant(self.p, self.owner.actor, self.camera_ids[camera], GrantIn(map=True, live=mode)))  # type: ignore[arg-type]
        self.live[camera] = mode

    @rule(camera=st.sampled_from(sorted(CAMERAS)))
    def revoke(self, camera: str) -> None:
        self.step(f"revoke: {camera}")
        self.run(consent.revoke_all(self.p, self.owner.actor, self.camera_ids[camera]))
        self.live[camera] = "never"

    @rule(over_near=st.sampled_from((True, False)), minutes=st.sampled_from((5, 60, 1)))
    def declare(self, over_near: bool, minutes: int) -> None:
        from ..live import service
        from ..live.schemas import EmergencyCreate

        self.step(f"declare: {'over near' if over_near else 'elsewhere'} for {minutes} min")
        emergency = self.run(service.declare_emergency(self.p, self.supervisor, EmergencyCreate(
            area=OVER_NEAR if over_near else ELSEWHERE, minutes=minutes, reason="machine")))
        self.emergencies[emergency.id] = EmergencyModel(frozenset({"near"} if over_near else ()),
                                                        self.now + timedelta(minutes=minutes))

    @rule(data=st.data())
    def end_emergency(self, data: st.DataObject) -> None:
        from ..live import service

        active = sorted(i for i, e in self.emergencies.items() if e.active(self.now))
        if not active:
            return
        emergency_id = data.draw(st.sampled_from(active), label="emergency")
        self.step("end_emergency")
        self.run(service.end_emergency(self.p, self.supervisor, emergency_id))
        self.emergencies[emergency_id].ended = True

    @rule(seconds=st.sampled_from((60, 240, 600, 3600)))
    def time_passes(self, seconds: int) -> None:
        self.step(f"time_passes: {seconds} s")
        self.now = self.clock.advance(seconds)

    @rule(paused=st.sampled_from((False, True)))
    def pause(self, paused: bool) -> None:
        from ..live import service

        self.step(f"pause: {paused}")
        self.run(service.update_device(self.p, self.owner_principal, self.device_id, paused, None))
        self.paused = paused

    @rule(camera=st.sampled_from(sorted(CAMERAS)))
    def open(self, camera: str) -> None:
        from ..live import service

        self.step(f"open: {camera}")
        expected = self.expected_rule(camera)
        try:
            live = self.run(service.open_session(self.p, self.investigator, self.camera_ids[camera], "machine",
                                                 connected={self.device_id}))
        except ConsentCamError as exc:
            rule_named = exc.extra.get("rule")
            assert expected is not None, f"refused ({rule_named}: {exc.detail}) but the model allows it"
            assert rule_named == expected, f"refused by {rule_named}, the model says {expected}"
            type(self).tally.refused[expected] = type(self).tally.refused.get(expected, 0) + 1
            return
        assert expected is None, f"opened, but the model refuses it by {expected}"
        if self.live[camera] == "emergency_only":
            assert live.emergency_id in self.covering(camera)
        self.sessions[live.id] = (camera, live.emergency_id, live.ends_at)
        type(self).tally.opened += 1

    @rule(camera=st.sampled_from(sorted(CAMERAS)))
    def open_again(self, camera: str) -> None:
        """The same as ``open``: investigators try often, so that views open often enough to be closed."""
        self.open(camera)

    # --- the invariant ------------------------------------------------------------------------------

    @invariant()
    def only_allowed_sessions_stay_open(self) -> None:
        from ..live import service

        ended = self.run(service.sweep(self.p))
        type(self).tally.swept += len(ended)

        async def still_open() -> set[str]:
            async with self.p.db.sessions() as session:
                return set((await session.execute(select(LiveSession.id).where(LiveSession.ended_at.is_(None)))).scalars())

        open_now = self.run(still_open())
        for session_id, (camera, emergency_id, ends_at) in self.sessions.items():
            allowed = self.session_allowed(camera, emergency_id, ends_at)
            assert (session_id in open_now) == allowed, (
                f"session on {camera} ({self.live[camera]}, emergency {emergency_id}) is "
                f"{'open' if session_id in open_now else 'closed'} but the model says {'open' if allowed else 'closed'}")
        assert open_now <= set(self.sessions), "a session is open that no rule opened"


def run_live_machine(backend: str, folder: Path, *, examples: int = 12, steps: int = 25) -> Tally:
    from .databases import PostgresDatabases, SqliteDatabases

    if backend == "sqlite":
        template = SqliteDatabases(folder / "template")
        counter = iter(range(1_000_000))

        class Dbs:
            def new(self) -> tuple[str, Path]:
                where = folder / f"example-{next(counter)}"
                return template.new(where / "db"), where

            def drop(self, url: str, where: Path) -> None:
                import shutil

                shutil.rmtree(where, ignore_errors=True)
    else:
        pg = PostgresDatabases()

        class Dbs:  # type: ignore[no-redef]
            def new(self) -> tuple[str, Path]:
                where = folder / f"example-{len(pg.created)}"
                return pg.new(), where

            def drop(self, url: str, where: Path) -> None:
                pg.drop(url)

    machine = type("LiveMachineRun", (LiveMachine,), {"databases": Dbs(), "tally": Tally()})
    try:
        run_state_machine_as_test(machine, settings=settings(
            max_examples=examples, stateful_step_count=steps, deadline=None, derandomize=True,
            phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck)))
    finally:
        if backend != "sqlite":
            pg.drop_all()
    return machine.tally
