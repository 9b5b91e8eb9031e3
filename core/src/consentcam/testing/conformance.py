"""Conformance tests for plugins, one class per hook kind, run by every plugin's own test suite (zarr's habit: the
suite ships in the package, each implementation subclasses it and supplies fixtures).

A plugin's tests combine the classes for the hooks it implements and provide the fixtures each class names::

    from consentcam.testing.conformance import FetchRecordingConformance, PluginConformance

    class TestAcmeConformance(PluginConformance, FetchRecordingConformance):
        entry_point = "acme"

        @pytest.fixture
        def plugin(self):
            return AcmePlugin()

        @pytest.fixture
        def connection(self, acme_peer):  # a device (or a test peer) that holds recordings
            return {"kind": "rtsp", "vendor": "acme", "url": acme_peer.url, "password": "..."}
        ...

``PluginHostConformance`` checks the installed distribution (entry point, strict host, ``consentcam plugins``, imports)
from class attributes alone. A fixture a class needs and the subclass did not provide fails its tests with a message
naming it. The tests that run through the core use the kit's ``consentcam_settings`` and ``consentcam_clock``, so
they run on every database backend chosen with ``--consentcam-backends``.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import importlib
import inspect
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from .. import hookspecs
from ..errors import ConsentCamError, CredentialsRejected, DeviceUnreachable
from ..hooktypes import (
    CameraConnection,
    CameraRef,
    ClipToAnalyse,
    DeliveryResult,
    DiscoveredCamera,
    ExportPackage,
    FetchResult,
    LabelSet,
    LinkedAccount,
    OwnerNotification,
    PluginInfo,
    ProbeResult,
    TimeWindow,
)
from ..plugins import ENTRY_POINT_GROUP, make_plugin_host, refusal_reason

CENTRE = (41.88, -87.63)  # inside the World's default agency square

# What a capability promises: a plugin declaring one implements at least one of these hooks.
CAPABILITY_HOOKS: dict[str, tuple[str, ...]] = {
    "discover": ("consentcam_discover_cameras",),
    "probe": ("consentcam_probe_camera",),
    "fetch_recording": ("consentcam_fetch_recording",),
    "notify_email": ("consentcam_notify_owner",),
    "notify_webhook": ("consentcam_notify_owner",),
    "notify_sms": ("consentcam_notify_owner",),
    "records_delivery": ("consentcam_export_ready", "consentcam_evidence_stored"),
    "evidence_export": ("consentcam_export_ready", "consentcam_evidence_stored"),
    "analyse_objects": ("consentcam_analyse_clip",),
    "analyse_vehicles": ("consentcam_analyse_clip",),
    "geocode": ("consentcam_geocode",),
    "link_account": ("consentcam_link_account",),
}


def _missing(name: str, what: str) -> Any:
    pytest.fail(f"conformance: provide a `{name}` fixture in your test class: {what}", pytrace=False)


async def _call(hook: Callable[..., Any], **kwargs: Any) -> Any:
    result = hook(**kwargs)
    return await result if inspect.isawaitable(result) else result


def _hook_names(plugin: object) -> set[str]:
    return {name for name in dir(plugin) if name.startswith("consentcam_")
            and callable(getattr(plugin, name, None)) and getattr(getattr(plugin, name), "consentcam_impl", None) is not None}


def split_connection(connection: dict[str, Any]) -> CameraConnection:
    """The connection exactly as the core hands it to a plugin: the owner's fields validated by the API's schema,
    credentials taken out of the fields (and out of a URL's userinfo) into ``secret``."""
    from ..schemas import Connection
    from ..services import consent

    plain = SimpleNamespace(keyring=SimpleNamespace(encrypt=lambda text: text))
    kind, fields, secret = consent.split_connection(plain, Connection.model_validate(connection))  # type: ignore[arg-type]
    return CameraConnection(kind=kind, fields=fields, secret=json.loads(secret) if secret else {})


def camera_for(connection: dict[str, Any], camera_id: str = "cam-conformance",
               account_secret: dict[str, Any] | None = None) -> CameraRef:
    fields = connection.get("playback") if isinstance(connection.get("playback"), dict) else {}
    account = None
    if account_secret is not None:  # a vendor cloud's linked account (e.g. Ring), its rotated secrets kept here
        async def save(secret: dict[str, Any]) -> None:
            account_secret.clear()
            account_secret.update(secret)

        account = LinkedAccount(provider=str(connection.get("kind")), secret=dict(account_secret), save=save)
    return CameraRef(camera_id=camera_id, label="Conformance camera", connection=split_connection(connection),
                     timezone=str(fields.get("timezone") or connection.get("timezone") or "UTC"), account=account)


def account_secrets(account_secret: dict[str, Any] | None) -> list[str]:
    """The token-like values of a linked account's secret (an identifier such as a hardware id is not one)."""
    words = ("token", "password", "secret", "key")
    return [str(v) for k, v in (account_secret or {}).items()
            if any(w in k.lower() for w in words) and isinstance(v, str) and len(v) >= 4]


def secrets_of(connection: CameraConnection) -> list[str]:
    """The values that must never show: passwords, tokens, keys (a user name is not one)."""
    return [str(v) for k, v in connection.secret.items() if k != "username" and isinstance(v, str) and len(v) >= 4]


def logged(caplog: pytest.LogCaptureFixture, ignore: tuple[str, ...] = ()) -> str:
    """Everything logged during the test, except by the loggers of test peers running in the same process."""
    return "\n".join(caplog.handler.format(r) for r in caplog.records if not (ignore and r.name.startswith(ignore)))


def assert_no_secret(where: str, text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text, f"conformance: a credential of the camera appears in {where}"


@dataclass
class KitSink:
    """Stands where the vault would: copies each clip it is handed (the plugin may delete its file afterwards)."""

    folder: Path
    received: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, path: Path, provenance: dict[str, Any]) -> str:
        assert Path(path).is_file(), f"conformance: the sink was handed {path}, which is not a file"
        self.folder.mkdir(parents=True, exist_ok=True)
        copy = self.folder / f"clip-{len(self.received) + 1}{Path(path).suffix}"
        await asyncio.to_thread(shutil.copyfile, path, copy)
        self.received.append((copy, dict(provenance)))
        return f"evidence-{len(self.received)}"


# --- every plugin -------------------------------------------------------------------------------------


class PluginConformance:
    """What the host demands of every plugin. Fixture: ``plugin`` (the object your entry point loads, or one
    configured for the tests). Set ``entry_point`` to the entry-point name to check the installed distribution."""

    entry_point: str | None = None

    @pytest.fixture
    def plugin(self) -> Any:
        return _missing("plugin", "the plugin object, as your entry point loads it")

    def test_declares_itself_with_allowed_capabilities(self, plugin: Any) -> None:
        declare = getattr(plugin, "consentcam_plugin_info", None)
        assert declare is not None, "conformance: implement consentcam_plugin_info"
        assert not inspect.iscoroutinefunction(declare), "consentcam_plugin_info must be a plain function"
        info = declare()
        assert isinstance(info, PluginInfo), "consentcam_plugin_info must return consentcam.hooktypes.PluginInfo"
        assert info.name and info.version, "declare a name and a version"
        assert info.capabilities, "declare at least one capability"
        for capability in info.capabilities:
            assert refusal_reason(capability) is None, refusal_reason(capability)

    def test_loads_in_a_strict_host(self, plugin: Any) -> None:
        """Every hook implementation matches a specification (pluggy's ``check_pending``)."""
        host = make_plugin_host(load_entry_points=False, extra=[plugin], strict=True)
        assert [p.info.name for p in host.loaded] == [plugin.consentcam_plugin_info().name]

    def test_implements_what_its_capabilities_promise(self, plugin: Any) -> None:
        hooks = _hook_names(plugin)
        for capability in plugin.consentcam_plugin_info().capabilities:
            promised = tuple(h for h in CAPABILITY_HOOKS.get(capability, ()) if hasattr(hookspecs, h))
            if promised:
                assert hooks & set(promised), f"capability {capability!r} promises one of {promised}"

    def test_async_hooks_are_coroutine_functions(self, plugin: Any) -> None:
        """The host awaits them on the server's event loop: a plain function doing I/O would stall the platform."""
        for name in _hook_names(plugin):
            spec = getattr(hookspecs, name, None)  # an unknown name is test_loads_in_a_strict_host's failure
            if spec is not None and inspect.iscoroutinefunction(spec):
                assert inspect.iscoroutinefunction(getattr(plugin, name)), f"{name} must be `async def`"

    def test_the_entry_point_loads_this_plugin(self, plugin: Any) -> None:
        if self.entry_point is None:
            pytest.skip("set `entry_point` in the class to check the installed distribution's entry point")
        found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        assert self.entry_point in found, f"no {ENTRY_POINT_GROUP!r} entry point named {self.entry_point!r} is installed"
        loaded = found[self.entry_point].load()
        assert loaded.consentcam_plugin_info().name == plugin.consentcam_plugin_info().name


class PluginHostConformance:
    """The installed distribution as the core's plugin host sees it: loaded through its entry point like any
    third-party plugin, hooks that match the specifications, capabilities the host accepts, listed by
    ``consentcam plugins``, and nothing of the core imported but its public surface. No fixtures; class attributes:
    ``entry_point`` (the name in the ``consentcam`` group), ``entry_point_value`` (``"module:attribute"``, as your
    ``pyproject.toml`` registers it), ``package`` (your top-level package), ``capabilities`` and ``hooks`` (exactly
    what the plugin declares and implements). Optional: ``plugin_name`` (what ``consentcam_plugin_info`` declares,
    when it is not the entry point's name), ``public_modules``."""

    entry_point: str | None = None
    entry_point_value: str | None = None
    package: ModuleType | None = None
    capabilities: tuple[str, ...] | None = None
    hooks: frozenset[str] | None = None
    plugin_name: str | None = None
    public_modules: frozenset[str] = frozenset({"consentcam", "consentcam.hooktypes"})

    def _declared(self, attribute: str, what: str) -> Any:
        value = getattr(self, attribute)
        if value is None:
            pytest.fail(f"conformance: set `{attribute}` in your test class: {what}", pytrace=False)
        return value

    @property
    def _name(self) -> str:
        return self.plugin_name or self._declared("entry_point", "the name in the consentcam entry-point group")

    @property
    def _capabilities(self) -> tuple[str, ...]:
        return tuple(self._declared("capabilities", "the capabilities the plugin declares"))

    def _version(self, point: EntryPoint) -> str | None:
        """The package's ``__version__``, or else the installed distribution's."""
        package = self._declared("package", "the plugin's top-level package")
        return getattr(package, "__version__", None) or (point.dist.version if point.dist else None)

    @pytest.fixture
    def installed_entry_point(self) -> EntryPoint:
        name = self._declared("entry_point", "the name in the consentcam entry-point group")
        points = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        assert len(points) == 1, f"{len(points)} {ENTRY_POINT_GROUP!r} entry points named {name!r} are installed, not one"
        return points[0]

    def test_the_entry_point_loads_the_plugin_object(self, installed_entry_point: EntryPoint) -> None:
        value = self._declared("entry_point_value", "the entry point's 'module:attribute'")
        assert installed_entry_point.value == value
        module, _, attribute = value.partition(":")
        expected = functools.reduce(getattr, attribute.split("."), importlib.import_module(module))
        assert installed_entry_point.load() is expected

    def test_the_host_loads_it_from_the_entry_point_with_its_capabilities(self) -> None:
        host = make_plugin_host(load_entry_points=True)
        loaded = {p.info.name: p for p in host.loaded}
        assert self.entry_point not in dict(host.refused), host.refused
        assert self._name in loaded, f"the host did not load {self._name!r}: {sorted(loaded)}"
        assert loaded[self._name].info.capabilities == self._capabilities
        assert loaded[self._name].source == f"entry point {self._declared('entry_point_value', 'module:attribute')}"

    def test_every_hook_matches_a_specification_strictly(self, installed_entry_point: EntryPoint) -> None:
        plugin = installed_entry_point.load()
        host = make_plugin_host(load_entry_points=False, extra=[plugin], strict=True)  # check_pending inside
        implemented = {name for name in dir(plugin) if name.startswith("consentcam_")}
        assert implemented == set(self._declared("hooks", "the names of the hooks the plugin implements"))
        for name in implemented:
            spec = getattr(hookspecs, name, None)
            assert spec is not None, f"{name} is not a hook of consentcam.hookspecs"
            impl = getattr(plugin, name)  # bound: its signature leaves out `self`, like the specification's
            assert inspect.iscoroutinefunction(spec) == inspect.iscoroutinefunction(impl), name
            assert list(inspect.signature(impl).parameters) == list(inspect.signature(spec).parameters), name
            assert getattr(host.pm.hook, name).get_hookimpls(), name

    def test_declared_capabilities_are_known_and_none_is_biometric(self, installed_entry_point: EntryPoint) -> None:
        info = installed_entry_point.load().consentcam_plugin_info()
        assert isinstance(info, PluginInfo) and info.name == self._name
        assert info.version == self._version(installed_entry_point)
        assert info.capabilities == self._capabilities
        assert [refusal_reason(c) for c in info.capabilities] == [None] * len(info.capabilities)

    def test_consentcam_plugins_lists_it(self, installed_entry_point: EntryPoint, tmp_path: Path) -> None:
        env = {**os.environ, "CONSENTCAM_DATA_DIR": str(tmp_path), "CONSENTCAM_SECRET_KEY": "plugin-listing-test-key",
               "CONSENTCAM_LOAD_ENTRY_POINT_PLUGINS": "true"}
        console = Path(sys.executable).with_name("consentcam")  # the command city admins run
        result = subprocess.run([str(console), "plugins", "--json"], capture_output=True, text=True, env=env,
                                cwd=tmp_path, timeout=120)
        assert result.returncode == 0, result.stderr
        listed = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
        assert listed[self._name]["capabilities"] == list(self._capabilities)
        assert listed[self._name]["version"] == self._version(installed_entry_point)

    def test_the_plugin_uses_only_the_cores_public_surface(self) -> None:
        """``consentcam`` (hookimpl, errors) and ``consentcam.hooktypes`` (the hook values): nothing of the core's
        insides (database, services, vault), which a third-party plugin could not rely on either."""
        package = self._declared("package", "the plugin's top-level package")
        used = set()
        for path in Path(package.__file__).parent.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("consentcam"):
                    if not node.module.startswith("consentcam_"):
                        used.add(node.module)
                elif isinstance(node, ast.Import):
                    used.update(a.name for a in node.names if a.name.split(".")[0] == "consentcam")
        assert used and used <= self.public_modules, used - self.public_modules


# --- fetch a recording --------------------------------------------------------------------------------


class FetchSpy:
    """The plugin as the host sees it, counting the fetches the core asks of it."""

    def __init__(self, plugin: Any) -> None:
        self.plugin = plugin
        self.calls: list[str] = []

    @hookspecs.hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return self.plugin.consentcam_plugin_info()

    @hookspecs.hookimpl
    async def consentcam_fetch_recording(self, camera: CameraRef, window: TimeWindow, sink: Any) -> FetchResult | None:
        self.calls.append(camera.camera_id)
        return await _call(self.plugin.consentcam_fetch_recording, camera=camera, window=window, sink=sink)


class FetchRecordingConformance:
    """A fetch-recording plugin honours the asked window, reports failures as core errors, keeps credentials out of
    what it writes, and is never asked to fetch without a valid ``direct_fetch`` grant at the moment the job runs.

    Fixtures: ``plugin``; ``connection`` (a camera's connection as its owner registers it, on a device or test peer
    holding recordings, credentials included); ``recorded_window`` (a ``TimeWindow`` of a few seconds the device
    holds); ``unreachable_connection`` (the same kind of camera that cannot be reached). Optional: ``clip_times``,
    a function of a clip's path giving the wall-clock times its first and last frames show, to check the edges.
    """

    window_tolerance_s: float = 1.0
    peer_loggers: tuple[str, ...] = ()  # loggers of in-process test peers, left out of the "nothing leaked" checks

    @pytest.fixture
    def connection(self) -> dict[str, Any]:
        return _missing("connection", "the connection of a camera that holds recordings, as an owner registers it")

    @pytest.fixture
    def recorded_window(self) -> TimeWindow:
        return _missing("recorded_window", "a TimeWindow of a few seconds that the camera holds")

    @pytest.fixture
    def unreachable_connection(self) -> dict[str, Any]:
        return _missing("unreachable_connection", "the connection of a camera that cannot be reached")

    @pytest.fixture
    def clip_times(self) -> Callable[[Path], tuple[datetime | None, datetime | None]] | None:
        return None

    @pytest.fixture
    def account_secret(self) -> dict[str, Any] | None:
        """For a camera in a vendor's cloud: what your ``consentcam_link_account`` returned for a linked test account;
        the kit hands it over as ``CameraRef.account`` and, in the core tests, keeps it for the camera's owner."""
        return None

    async def test_fetch_other_kinds_is_none(self, plugin: Any, recorded_window: TimeWindow, tmp_path: Path) -> None:
        sink = KitSink(tmp_path)
        camera = camera_for({"kind": "manual", "note": "not a camera any plugin reaches"})
        assert await _call(plugin.consentcam_fetch_recording, camera=camera, window=recorded_window, sink=sink) is None
        assert sink.received == []

    async def test_fetch_honours_the_window(self, plugin: Any, connection: dict[str, Any], recorded_window: TimeWindow,
                                            clip_times: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                            account_secret: dict[str, Any] | None) -> None:
        from ..vault.media import MediaRefused, probe

        caplog.set_level(logging.DEBUG)
        linked = account_secrets(account_secret)  # before the fetch: the plugin may rotate them
        camera = camera_for(connection, account_secret=account_secret)
        sink = KitSink(tmp_path / "sink")
        window = recorded_window
        result = await _call(plugin.consentcam_fetch_recording, camera=camera, window=window, sink=sink)
        assert isinstance(result, FetchResult), f"a camera of yours must give a FetchResult, not {result!r}"
        assert sink.received, "a recorded window gave no clip to the sink"
        assert len(result.clips) == len(sink.received), "report in `clips` every file handed to the sink, and only those"
        for gap in result.missing:
            assert window.start <= gap.start < gap.end <= window.end, f"missing {gap} lies outside the asked window"
        covered = 0.0
        for path, provenance in sink.received:
            try:
                facts = await asyncio.to_thread(probe, path)
            except MediaRefused as exc:
                pytest.fail(f"the vault would refuse the clip handed to the sink: {exc}")
            assert facts.get("video"), "a clip must hold a video stream"
            covered += float(facts.get("duration_s") or 0.0)
            json.dumps(provenance)  # stored as JSON beside the evidence
        missing_s = sum(gap.seconds for gap in result.missing)
        tolerance = self.window_tolerance_s
        assert covered <= window.seconds + tolerance, f"asked {window.seconds:.1f} s, handed over {covered:.1f} s: more than asked"
        assert covered >= window.seconds - missing_s - tolerance, (
            f"asked {window.seconds:.1f} s, handed over {covered:.1f} s and reported only {missing_s:.1f} s missing")
        if clip_times is not None:
            first, _ = clip_times(sink.received[0][0])
            _, last = clip_times(sink.received[-1][0])
            assert first is not None and abs((first - window.start).total_seconds()) <= tolerance, (first, window.start)
            if not result.missing:
                assert last is not None and abs((last - window.end).total_seconds()) <= tolerance, (last, window.end)
        secrets = secrets_of(camera.connection) + linked + account_secrets(account_secret)
        json.dumps(result.provenance)
        assert_no_secret("the provenance", json.dumps([p for _, p in sink.received] + [result.provenance]), secrets)
        assert_no_secret("the note", result.note, secrets)
        assert_no_secret("the log", logged(caplog, self.peer_loggers), secrets)

    async def test_an_unreachable_camera_is_a_core_error(self, plugin: Any, unreachable_connection: dict[str, Any],
                                                          recorded_window: TimeWindow, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture,
                                                          account_secret: dict[str, Any] | None) -> None:
        """The core retries a ``ConsentCamError`` and records its message; anything else is a crash in your code."""
        caplog.set_level(logging.DEBUG)
        linked = account_secrets(account_secret)
        camera = camera_for(unreachable_connection, account_secret=account_secret)
        sink = KitSink(tmp_path)
        with pytest.raises(ConsentCamError) as caught:
            await _call(plugin.consentcam_fetch_recording, camera=camera, window=recorded_window, sink=sink)
        assert sink.received == []
        secrets = secrets_of(camera.connection) + linked + account_secrets(account_secret)
        assert_no_secret("the error", caught.value.detail, secrets)
        assert_no_secret("the log", logged(caplog, self.peer_loggers), secrets)

    # Through the core: a request approved by a supervisor, the outbox's fetch.direct job, the vault.

    @pytest.fixture
    async def fetch_core(self, plugin: Any, consentcam_settings: Any, consentcam_clock: Any,
                         monkeypatch: pytest.MonkeyPatch) -> Any:
        from argon2 import PasswordHasher

        from .. import security
        from ..platform import open_platform

        # Argon2 at its cheapest: these tests make accounts, they do not test password hashing.
        cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        monkeypatch.setattr(security, "_hasher", cheap)
        spy = FetchSpy(plugin)
        platform = await open_platform(consentcam_settings, clock=consentcam_clock, extra_plugins=[spy])
        try:
            yield platform, spy
        finally:
            await platform.db.dispose()

    async def _approved_request(self, p: Any, clock: Any, connection: dict[str, Any], window: TimeWindow,
                                grants: list[dict[str, Any]],
                                account_secret: dict[str, Any] | None = None) -> tuple[Any, Any, list[str]]:
        """One owner with a camera per grant, all inside the fence of one request a supervisor approved."""
        from ..schemas import RequestCreate
        from ..services.accounts import authenticate
        from ..services.requests import approve, create_request
        from .world import World

        clock.set(window.end + timedelta(minutes=1))  # the window is in the recent past
        world = World(p)
        agency = await world.agency(require_approval=True)
        investigator, supervisor = await world.staff(agency, "investigator"), await world.staff(agency, "supervisor")
        owner = await world.owner()
        if account_secret is not None:  # the owner linked the vendor account, as through the linked-accounts API
            from ..db.models import LinkedAccount as LinkedAccountRow

            async with p.db.transaction() as session:
                session.add(LinkedAccountRow(owner_id=owner.id, provider=str(connection.get("kind")),
                                             secret=p.keyring.encrypt(json.dumps(account_secret)),
                                             created_at=p.now(), updated_at=p.now()))
        cameras = [await world.camera(owner, *CENTRE, grant=grant, connection=connection) for grant in grants]
        spec = RequestCreate(case_number="KIT-1", description="conformance: direct fetch",
                             area={"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 50},
                             window={"start": window.start, "end": window.end})
        request = await create_request(p, await authenticate(p, investigator.token), spec)
        await approve(p, await authenticate(p, supervisor.token), request.id)
        return world, owner, cameras

    async def test_core_fetches_an_approved_item_into_the_vault(self, fetch_core: Any, consentcam_clock: Any,
                                                               connection: dict[str, Any], recorded_window: TimeWindow,
                                                               account_secret: dict[str, Any] | None) -> None:
        from sqlalchemy import select

        from ..db.models import Evidence, Job
        from ..workflows import make_worker

        p, spy = fetch_core
        _, _, (camera,) = await self._approved_request(p, consentcam_clock, connection, recorded_window,
                                                       [{"requests": True, "direct_fetch": True}], account_secret)
        await make_worker(p, kinds=("fetch.direct",)).drain()
        assert spy.calls == [camera]
        async with p.db.sessions() as session:
            job = (await session.execute(select(Job).where(Job.kind == "fetch.direct"))).scalar_one()
            evidence = (await session.execute(select(Evidence))).scalars().all()
        assert job.status == "done" and job.result["fetched"] is True, (job.status, job.result, job.last_error)
        name = spy.consentcam_plugin_info().name
        assert evidence and {e.source for e in evidence} == {f"plugin:{name}"}, [e.source for e in evidence]
        assert {e.camera_id for e in evidence} == {camera}

    GRANT_CHANGES = ("never granted", "revoke everything", "drop direct_fetch", "pause the camera", "let the grant lapse")

    async def test_core_never_fetches_without_a_valid_grant_at_job_time(self, fetch_core: Any, consentcam_clock: Any,
                                                                       connection: dict[str, Any],
                                                                       recorded_window: TimeWindow,
                                                                       account_secret: dict[str, Any] | None) -> None:
        """One request over six cameras: one whose grant stays valid (so the jobs demonstrably ran) and one for each
        way consent can be missing when the job runs. Only the first is ever asked of the plugin."""
        from sqlalchemy import select

        from ..db.models import Evidence, Job
        from ..schemas import CameraUpdate
        from ..services import consent
        from ..workflows import make_worker

        p, spy = fetch_core
        grants: list[dict[str, Any]] = [{"requests": True, "direct_fetch": True}]
        for change in self.GRANT_CHANGES:
            grant: dict[str, Any] = {"requests": True, "direct_fetch": change != "never granted"}
            if change == "let the grant lapse":
                grant["expires_at"] = recorded_window.end + timedelta(minutes=11)
            grants.append(grant)
        world, owner, (valid, *changed) = await self._approved_request(p, consentcam_clock, connection,
                                                                       recorded_window, grants, account_secret)
        for change, camera in zip(self.GRANT_CHANGES, changed, strict=True):
            if change == "revoke everything":
                await world.revoke(owner, camera)
            elif change == "drop direct_fetch":
                await world.grant(owner, camera, requests=True, direct_fetch=False)
            elif change == "pause the camera":
                await consent.update_camera(p, owner.actor, camera, CameraUpdate(status="paused"))
        consentcam_clock.advance(601)  # the lapsing grant's end passes; the others have none
        async with p.db.sessions() as session:
            jobs = (await session.execute(select(Job).where(Job.kind == "fetch.direct"))).scalars().all()
        assert len(jobs) == len(grants) - 1, "one fetch.direct job per camera that granted direct_fetch"
        await make_worker(p, kinds=("fetch.direct",)).drain()
        assert valid in spy.calls, "the camera whose grant stayed valid was not fetched: the jobs did not run"
        asked = {change: camera for change, camera in zip(self.GRANT_CHANGES, changed, strict=True) if camera in spy.calls}
        assert not asked, f"the plugin was asked to fetch without a valid grant: {sorted(asked)}"
        async with p.db.sessions() as session:
            evidence = (await session.execute(select(Evidence))).scalars().all()
        assert {e.camera_id for e in evidence} <= {valid}


# --- probe a camera -----------------------------------------------------------------------------------


class ProbeConformance:
    """Fixtures: ``plugin``; ``probe_connection`` (a reachable camera, as its owner registers it);
    ``unreachable_connection``. Optional: ``rejected_connection`` (the camera with a wrong password)."""

    peer_loggers: tuple[str, ...] = ()

    @pytest.fixture
    def probe_connection(self) -> dict[str, Any]:
        return _missing("probe_connection", "the connection of a camera that answers")

    @pytest.fixture
    def unreachable_connection(self) -> dict[str, Any]:
        return _missing("unreachable_connection", "the connection of a camera that cannot be reached")

    @pytest.fixture
    def rejected_connection(self) -> dict[str, Any] | None:
        return None

    async def test_probe_other_kinds_is_none(self, plugin: Any) -> None:
        connection = split_connection({"kind": "manual", "note": "not a camera any plugin reaches"})
        assert await _call(plugin.consentcam_probe_camera, connection=connection) is None

    async def test_probe_reads_the_device(self, plugin: Any, probe_connection: dict[str, Any],
                                          caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        connection = split_connection(probe_connection)
        result = await _call(plugin.consentcam_probe_camera, connection=connection)
        assert isinstance(result, ProbeResult), f"a camera of yours must give a ProbeResult, not {result!r}"
        assert isinstance(result.device, dict) and isinstance(result.profiles, list)
        assert all(isinstance(p, dict) for p in result.profiles) and all(isinstance(c, str) for c in result.capabilities)
        shown = json.dumps({"device": result.device, "profiles": result.profiles, "capabilities": result.capabilities})
        secrets = secrets_of(connection)
        assert_no_secret("the probe result (shown to the owner)", shown, secrets)
        assert_no_secret("the log", logged(caplog, self.peer_loggers), secrets)

    async def test_an_unreachable_camera_is_device_unreachable(self, plugin: Any, unreachable_connection: dict[str, Any]) -> None:
        """The API answers 502 with the message: the owner can act on it."""
        with pytest.raises(DeviceUnreachable):
            await _call(plugin.consentcam_probe_camera, connection=split_connection(unreachable_connection))

    async def test_a_wrong_password_is_credentials_rejected(self, plugin: Any, rejected_connection: dict[str, Any] | None) -> None:
        if rejected_connection is None:
            pytest.skip("no `rejected_connection` fixture: give one if your devices take credentials")
        connection = split_connection(rejected_connection)
        with pytest.raises(CredentialsRejected) as caught:
            await _call(plugin.consentcam_probe_camera, connection=connection)
        assert_no_secret("the error", caught.value.detail, secrets_of(connection))


# --- discover cameras ---------------------------------------------------------------------------------


class DiscoverConformance:
    """Discovery answers within its time budget with typed results. Set ``discover_timeout_s``; optional fixture
    ``discoverable`` (the address of a camera or peer that must be found)."""

    discover_timeout_s: float = 1.0
    discover_slack_s: float = 2.0

    @pytest.fixture
    def discoverable(self) -> str | None:
        return None

    async def test_discovery_keeps_its_time_budget_and_types(self, plugin: Any, discoverable: str | None) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        found = await asyncio.wait_for(_call(plugin.consentcam_discover_cameras, timeout_s=self.discover_timeout_s),
                                       self.discover_timeout_s + self.discover_slack_s)
        assert loop.time() - started <= self.discover_timeout_s + self.discover_slack_s
        assert isinstance(found, list) and all(isinstance(c, DiscoveredCamera) for c in found), found
        if discoverable is not None:
            assert any(discoverable in (c.address, *c.xaddrs) for c in found), (discoverable, found)


# --- notify an owner ----------------------------------------------------------------------------------


class NotifyConformance:
    """Fixtures: ``plugin``; ``chosen_channels`` (an owner's channels that choose yours, pointing at a working test
    peer); ``failing_channels`` (choosing yours, pointing at a peer that is down). A failure is a ``DeliveryResult``
    with ``delivered=False`` (the core retries when ``retryable``), never an exception; capability links in the
    message are never logged."""

    peer_loggers: tuple[str, ...] = ()  # e.g. ("mail.log",) for aiosmtpd in the same process

    @pytest.fixture
    def chosen_channels(self) -> dict[str, Any]:
        return _missing("chosen_channels", "owner channels choosing your channel, pointing at a working peer")

    @pytest.fixture
    def failing_channels(self) -> dict[str, Any]:
        return _missing("failing_channels", "owner channels choosing your channel, pointing at a peer that is down")

    @staticmethod
    def notification(channels: dict[str, Any]) -> OwnerNotification:
        link = "http://consentcam.test/u/up_conformance-capability-link"
        return OwnerNotification(owner_id="owner-1", email="owner@home.example.org", name="Owner", phone="+13125550100",
                                 channels=channels, subject="Conformance", text=f"Send a clip: {link}", kind="request",
                                 data={"items": [{"upload_url": link}]}, idempotency_key="job-conformance-1")

    async def test_not_chosen_is_none(self, plugin: Any) -> None:
        nobody = {"email": False, "sms": False, "webhook_url": None, "webhook_secret": None}
        assert await _call(plugin.consentcam_notify_owner, notification=self.notification(nobody)) is None

    async def test_delivers_through_the_chosen_channel(self, plugin: Any, chosen_channels: dict[str, Any],
                                                       caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        result = await _call(plugin.consentcam_notify_owner, notification=self.notification(chosen_channels))
        assert isinstance(result, DeliveryResult) and result.channel and result.delivered, result
        assert "up_conformance-capability-link" not in logged(caplog, self.peer_loggers), "a capability link was logged"

    async def test_a_failure_is_a_result_not_an_exception(self, plugin: Any, failing_channels: dict[str, Any],
                                                          caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        result = await _call(plugin.consentcam_notify_owner, notification=self.notification(failing_channels))
        assert isinstance(result, DeliveryResult) and not result.delivered, result
        assert "up_conformance-capability-link" not in logged(caplog, self.peer_loggers) + result.detail, "a capability link was logged"


# --- deliver export packages --------------------------------------------------------------------------


class ExportReadyConformance:
    """A records-delivery plugin delivers the package's exact bytes, leaves the package as it found it, takes a
    second delivery of the same package (jobs run at least once) and reports failure as a core error so that the
    job is retried. Fixtures: ``plugin`` (delivering to a working test destination), ``delivered`` (a function
    returning the bytes of every package the destination holds), ``failing_plugin`` (the plugin pointed at a
    destination that refuses)."""

    @pytest.fixture
    def delivered(self) -> Callable[[], list[bytes]]:
        return _missing("delivered", "a function returning the bytes of every package your destination received")

    @pytest.fixture
    def failing_plugin(self) -> Any:
        return _missing("failing_plugin", "your plugin pointed at a destination that refuses")

    @pytest.fixture
    def package(self, tmp_path: Path) -> ExportPackage:
        import hashlib

        path = tmp_path / "export" / "case-KIT-1.zip"
        path.parent.mkdir()
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("manifest.json", json.dumps({"case": "KIT-1", "items": []}))
            archive.writestr("README.txt", "conformance package\n")
        return ExportPackage("request-kit-1", "agency-kit", path, hashlib.sha256(path.read_bytes()).hexdigest())

    async def test_delivers_the_exact_bytes_and_leaves_the_package(self, plugin: Any, package: ExportPackage,
                                                                   delivered: Callable[[], list[bytes]]) -> None:
        before = package.path.read_bytes()
        await _call(plugin.consentcam_export_ready, export=package)
        assert package.path.read_bytes() == before, "the package was changed or moved"
        assert before in delivered(), "the destination did not receive the package's exact bytes"

    async def test_a_second_delivery_is_not_an_error(self, plugin: Any, package: ExportPackage,
                                                     delivered: Callable[[], list[bytes]]) -> None:
        await _call(plugin.consentcam_export_ready, export=package)
        await _call(plugin.consentcam_export_ready, export=package)
        assert package.path.read_bytes() in delivered()

    async def test_a_refusing_destination_is_a_core_error(self, failing_plugin: Any, package: ExportPackage) -> None:
        with pytest.raises(ConsentCamError):
            await _call(failing_plugin.consentcam_export_ready, export=package)


# --- analyse clips ------------------------------------------------------------------------------------


class AnalyseConformance:
    """Labels lie within the clip, with scores in [0, 1] and the model's hash; nothing biometric. Fixtures:
    ``plugin``; ``analysis_clip`` (the path of a short video your analyser reads)."""

    @pytest.fixture
    def analysis_clip(self) -> Path:
        return _missing("analysis_clip", "the path of a short video clip to analyse")

    async def test_labels_lie_within_the_clip(self, plugin: Any, analysis_clip: Path) -> None:
        from ..vault.media import probe

        facts = await asyncio.to_thread(probe, analysis_clip)
        duration = float(facts.get("duration_s") or 0.0)
        result = await _call(plugin.consentcam_analyse_clip,
                             clip=ClipToAnalyse(evidence_id="evidence-kit-1", path=analysis_clip, media=facts))
        if result is None:
            return  # passing is allowed
        assert isinstance(result, LabelSet), result
        assert result.analyser and re.fullmatch(r"[0-9a-f]{64}", result.model_sha256), "name the analyser and its model's SHA-256"
        for label in result.labels:
            assert 0.0 <= label.start_s <= label.end_s <= duration + 0.5, label
            assert 0.0 <= label.score <= 1.0, label
            reason = refusal_reason(label.name) or ""
            assert "biometric" not in reason, f"label {label.name!r} is biometric identification"
            json.dumps(label.attributes)
