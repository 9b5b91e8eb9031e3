"""The RTSP plugin as the core's plugin host sees it: loaded through its entry point like any third-party
plugin, hooks that match the specifications, capabilities the host accepts, listed by ``consentcam plugins``."""

from __future__ import annotations

import ast
import inspect
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import consentcam_rtsp
from consentcam import hookspecs
from consentcam.hooktypes import PluginInfo
from consentcam.plugins import ENTRY_POINT_GROUP, make_plugin_host, refusal_reason
from consentcam_rtsp.plugin import RtspPlugin, plugin

PACKAGE = Path(consentcam_rtsp.__file__).parent
CAPABILITIES = ("probe", "fetch_recording", "live_only")


def test_the_entry_point_loads_the_plugin_object():
    (point,) = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == "rtsp"]
    assert point.value == "consentcam_rtsp.plugin:plugin"
    assert point.load() is plugin


def test_the_host_loads_it_from_the_entry_point_with_its_capabilities():
    host = make_plugin_host(load_entry_points=True)
    loaded = {p.info.name: p for p in host.loaded}
    assert "rtsp" not in dict(host.refused), host.refused
    assert loaded["rtsp"].info.capabilities == CAPABILITIES
    assert loaded["rtsp"].source == "entry point consentcam_rtsp.plugin:plugin"


def test_every_hook_matches_a_specification_strictly():
    host = make_plugin_host(load_entry_points=False, extra=[RtspPlugin()], strict=True)  # check_pending inside
    implemented = {name for name in dir(RtspPlugin) if name.startswith("consentcam_")}
    assert implemented == {"consentcam_plugin_info", "consentcam_probe_camera", "consentcam_fetch_recording"}
    for name in implemented:
        spec = getattr(hookspecs, name)
        impl = getattr(RtspPlugin, name)
        assert inspect.iscoroutinefunction(spec) == inspect.iscoroutinefunction(impl), name
        assert list(inspect.signature(impl).parameters)[1:] == list(inspect.signature(spec).parameters), name
        assert getattr(host.pm.hook, name).get_hookimpls(), name


def test_declared_capabilities_are_known_and_none_is_biometric():
    info = plugin.consentcam_plugin_info()
    assert isinstance(info, PluginInfo) and info.name == "rtsp" and info.version == consentcam_rtsp.__version__
    assert info.capabilities == CAPABILITIES
    assert [refusal_reason(c) for c in info.capabilities] == [None] * len(CAPABILITIES)


def test_consentcam_plugins_lists_it(tmp_path):
    env = {**os.environ, "CONSENTCAM_DATA_DIR": str(tmp_path), "CONSENTCAM_SECRET_KEY": "plugin-listing-test-key",
           "CONSENTCAM_LOAD_ENTRY_POINT_PLUGINS": "true"}
    console = Path(sys.executable).with_name("consentcam")  # the command city admins run
    result = subprocess.run([str(console), "plugins", "--json"], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    listed = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert listed["rtsp"]["capabilities"] == list(CAPABILITIES)
    assert listed["rtsp"]["version"] == consentcam_rtsp.__version__


def test_the_plugin_uses_only_the_cores_public_surface():
    """``consentcam`` (hookimpl, errors) and ``consentcam.hooktypes`` (the hook values): nothing of the core's
    insides (database, services, vault), which a third-party plugin could not rely on either."""
    allowed = {"consentcam", "consentcam.hooktypes"}
    used = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("consentcam"):
                if not node.module.startswith("consentcam_"):
                    used.add(node.module)
            elif isinstance(node, ast.Import):
                used.update(a.name for a in node.names if a.name.split(".")[0] == "consentcam")
    assert used and used <= allowed, used - allowed
