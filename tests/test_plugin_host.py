"""The plugin host: what it loads, what it refuses, and that a refused plugin's hooks are never called.

Fixture plugins are small modules in ``tests/plugins``; entry-point plugins are simulated by replacing the
entry-point lookup, so the real ``ep.load()`` path runs."""

from __future__ import annotations

import importlib.util
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy
import pytest
from consentcam import PluginRefused, hookimpl, hookspecs
from consentcam import plugins as plugin_host
from consentcam.hooktypes import ClipToAnalyse, OwnerNotification, PluginInfo
from consentcam.plugins import make_plugin_host

from .conftest import ok

HERE = Path(__file__).parent / "plugins"


def load(name: str) -> ModuleType:
    """A fresh copy of a fixture plugin module (so that module-level call records start empty)."""
    spec = importlib.util.spec_from_file_location(f"fixture_plugin_{name}", HERE / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class FakeEntryPoint:
    """What ``make_plugin_host`` uses of an ``importlib.metadata.EntryPoint``."""

    name: str
    module: str

    @property
    def value(self) -> str:
        return f"tests.plugins.{self.module}"

    def load(self) -> ModuleType:
        return load(self.module)


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch):
    def install(*points: FakeEntryPoint) -> None:
        monkeypatch.setattr(plugin_host, "entry_points",
                            lambda group: list(points) if group == plugin_host.ENTRY_POINT_GROUP else [])

    return install


def declaring(*capabilities: str, name: str = "declarer") -> object:
    class Declarer:
        @hookimpl
        def consentcam_plugin_info(self) -> PluginInfo:
            return PluginInfo(name, "1.0", capabilities)

    return Declarer()


NOTIFICATION = OwnerNotification(owner_id="owner-1", email="o@example.org", name="O", phone=None,
                                 channels={"email": False}, subject="s", text="t", kind="request")
CLIP = ClipToAnalyse(evidence_id="ev-1", path=Path("/nonexistent.mp4"), media={})


# --- biometric capabilities -----------------------------------------------------------------------------


@pytest.mark.parametrize("capability", ["face_recognition", "face_search", "gait_recognition", "voice_identification",
                                        "speaker_identification", "Face_Recognition", "x-face-recognition",
                                        "x-Gait analysis", "x-faceid", "person re-identification"])
def test_biometric_capability_is_refused_naming_it(capability):
    for where in ("builtin", "extra"):
        plugin = declaring("analyse_objects", capability)
        with pytest.raises(PluginRefused) as refused:
            make_plugin_host(**{where: [plugin]}, load_entry_points=False)
        assert capability in refused.value.detail and "biometric" in refused.value.detail


def test_face_recognition_module_is_refused_and_its_hooks_never_run():
    module = load("biometric_face")
    with pytest.raises(PluginRefused, match="face_recognition"):
        make_plugin_host(extra=[module], load_entry_points=False)
    assert module.CALLS == []


async def test_refused_entry_point_plugin_is_logged_listed_and_never_called(entry_points, caplog):
    entry_points(FakeEntryPoint("face-finder", "biometric_face"), FakeEntryPoint("pigeon", "custom_capability"))
    with caplog.at_level(logging.ERROR, logger="consentcam.plugins"):
        host = make_plugin_host()
    assert [name for name, _ in host.refused] == ["face-finder"]
    assert "face_recognition" in host.refused[0][1]
    assert any("face_recognition" in record.getMessage() for record in caplog.records)
    assert [p.info.name for p in host.loaded] == ["carrier-pigeon"]
    assert host.pm.get_plugin("face-finder") is None
    assert "face_recognition" not in host.capabilities()
    assert await host.analyse_clip(CLIP) == []  # the refused analyser is not there to be asked


def test_strict_host_raises_for_a_refused_entry_point(entry_points):
    entry_points(FakeEntryPoint("face-finder", "biometric_face"))
    with pytest.raises(PluginRefused, match="face_recognition"):
        make_plugin_host(strict=True)


def test_entry_point_that_fails_to_import_is_refused_not_fatal(entry_points):
    entry_points(FakeEntryPoint("broken", "broken_import"), FakeEntryPoint("pigeon", "custom_capability"))
    host = make_plugin_host()
    assert host.refused[0][0] == "broken" and "consentcam_no_such_vendor_sdk" in host.refused[0][1]
    assert [p.info.name for p in host.loaded] == ["carrier-pigeon"]
    with pytest.raises(PluginRefused, match="failed to import"):
        make_plugin_host(strict=True)


# --- declarations and hook names ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["extra", "builtin", "entry point"])
def test_misspelt_hook_fails_at_check_pending(how, entry_points):
    module = load("misspelt_hook")
    kwargs: dict[str, Any] = {"load_entry_points": False}
    if how == "entry point":
        entry_points(FakeEntryPoint("pager", "misspelt_hook"))
        kwargs = {}
    else:
        kwargs[how] = [module]
    with pytest.raises(pluggy.PluginValidationError, match="consentcam_notfy_owner"):
        make_plugin_host(**kwargs)


def test_unknown_capability_is_refused_unless_custom():
    with pytest.raises(PluginRefused) as refused:
        make_plugin_host(extra=[load("unknown_capability")], load_entry_points=False)
    assert "teleportation" in refused.value.detail and "x-" in refused.value.detail

    host = make_plugin_host(extra=[load("custom_capability")], load_entry_points=False)
    assert [(p.info.name, p.info.capabilities, p.source) for p in host.loaded] == [
        ("carrier-pigeon", ("notify_sms", "x-carrier-pigeon"), "extra")]


@pytest.mark.parametrize("module", ["undeclared"])
def test_plugin_without_a_declaration_is_refused(module):
    with pytest.raises(PluginRefused, match="consentcam_plugin_info"):
        make_plugin_host(extra=[load(module)], load_entry_points=False)


def test_declaration_must_be_a_plain_function_returning_plugin_info():
    class AsyncDeclaration:
        @hookimpl
        async def consentcam_plugin_info(self) -> PluginInfo:
            return PluginInfo("late", "1", ("probe",))

    class DictDeclaration:
        @hookimpl
        def consentcam_plugin_info(self) -> dict:
            return {"name": "loose", "version": "1", "capabilities": ["probe"]}

    for plugin, words in ((AsyncDeclaration(), "plain function"), (DictDeclaration(), "PluginInfo")):
        with pytest.raises(PluginRefused, match=words):
            make_plugin_host(extra=[plugin], load_entry_points=False)


async def test_a_loaded_plugin_is_called_through_the_typed_facade():
    module = load("custom_capability")
    host = make_plugin_host(extra=[module], load_entry_points=False)
    results = await host.notify_owner(NOTIFICATION)
    assert [(r.channel, r.delivered) for r in results] == [("pigeon", True)]
    assert module.SENT == ["owner-1"]


def test_every_hook_is_prefixed_typed_and_documented():
    specs = [(name, fn) for name, fn in vars(hookspecs).items() if hasattr(fn, "consentcam_spec")]
    assert len(specs) >= 8
    for name, fn in specs:
        assert name.startswith("consentcam_"), name
        assert inspect.getdoc(fn), f"{name} has no docstring"
        signature = inspect.signature(fn)
        assert all(p.annotation is not inspect.Parameter.empty for p in signature.parameters.values()), name
        assert signature.return_annotation is not inspect.Signature.empty, name


# --- through the platform ------------------------------------------------------------------------------


async def test_the_platform_refuses_to_start_with_a_biometric_extra_plugin(consentcam_settings):
    from consentcam.platform import open_platform

    with pytest.raises(PluginRefused, match="face_recognition"):
        await open_platform(consentcam_settings, extra_plugins=[load("biometric_face")])


@pytest.mark.usefixtures("fast_passwords")
async def test_admin_lists_loaded_and_refused_plugins(entry_points, consentcam_settings, consentcam_clock, aiohttp_client):
    from consentcam.http.app import create_app
    from consentcam.platform import open_platform
    from consentcam.testing.world import World

    entry_points(FakeEntryPoint("face-finder", "biometric_face"), FakeEntryPoint("pigeon", "custom_capability"))
    settings = consentcam_settings.model_copy(update={"load_entry_point_plugins": True})
    platform = await open_platform(settings, clock=consentcam_clock)
    try:
        client = await aiohttp_client(create_app(settings, platform=platform, run_jobs=False))
        world = World(platform)
        admin = await world.staff(None, "admin")
        listed = await ok(await client.get("/api/v1/plugins", headers=admin.headers))
        names = {p["name"]: p for p in listed["plugins"]}
        assert {"consentcam-core", "consentcam-email", "consentcam-webhook", "carrier-pigeon"} <= set(names)
        assert names["carrier-pigeon"]["capabilities"] == ["notify_sms", "x-carrier-pigeon"]
        assert names["carrier-pigeon"]["version"] == "2.0"
        assert "face-finder" not in names
        assert [r["name"] for r in listed["refused"]] == ["face-finder"]
        assert "face_recognition" in listed["refused"][0]["reason"]
        investigator = await world.staff(await world.agency(), "investigator")
        assert (await client.get("/api/v1/plugins", headers=investigator.headers)).status == 403
    finally:
        await platform.db.dispose()
