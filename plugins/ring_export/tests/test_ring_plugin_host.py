"""The Ring export plugin as the core's plugin host sees it: loaded through its entry point like any third-party
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

import consentcam_ring_export
from consentcam import hookspecs
from consentcam.hooktypes import PluginInfo
from consentcam.plugins import ENTRY_POINT_GROUP, make_plugin_host, refusal_reason
from consentcam_ring_export.plugin import RingExportPlugin, plugin

PACKAGE = Path(consentcam_ring_export.__file__).parent
CAPABILITIES = ("link_account", "fetch_recording")


def test_the_entry_point_loads_the_plugin_object():
    (point,) = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == "ring_export"]
    assert point.value == "consentcam_ring_export.plugin:plugin"
    assert point.load() is plugin


def test_the_host_loads_it_with_its_capabilities_and_every_hook_matches_a_specification():
    host = make_plugin_host(load_entry_points=True)
    loaded = {p.info.name: p for p in host.loaded}
    assert "ring_export" not in dict(host.refused), host.refused
    assert loaded["ring_export"].info.capabilities == CAPABILITIES
    strict = make_plugin_host(load_entry_points=False, extra=[RingExportPlugin()], strict=True)  # check_pending
    implemented = {name for name in dir(RingExportPlugin) if name.startswith("consentcam_")}
    assert implemented == {"consentcam_plugin_info", "consentcam_link_account", "consentcam_fetch_recording"}
    for name in implemented:
        spec, impl = getattr(hookspecs, name), getattr(RingExportPlugin, name)
        assert inspect.iscoroutinefunction(spec) == inspect.iscoroutinefunction(impl), name
        assert list(inspect.signature(impl).parameters)[1:] == list(inspect.signature(spec).parameters), name
        assert getattr(strict.pm.hook, name).get_hookimpls(), name
    info = plugin.consentcam_plugin_info()
    assert isinstance(info, PluginInfo) and info.version == consentcam_ring_export.__version__
    assert [refusal_reason(c) for c in info.capabilities] == [None] * len(CAPABILITIES)


def test_consentcam_plugins_lists_it(tmp_path):
    env = {**os.environ, "CONSENTCAM_DATA_DIR": str(tmp_path), "CONSENTCAM_SECRET_KEY": "plugin-listing-test-key",
           "CONSENTCAM_LOAD_ENTRY_POINT_PLUGINS": "true"}
    console = Path(sys.executable).with_name("consentcam")  # the command city admins run
    result = subprocess.run([str(console), "plugins", "--json"], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    listed = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert listed["ring_export"]["capabilities"] == list(CAPABILITIES)
    assert listed["ring_export"]["version"] == consentcam_ring_export.__version__


def test_the_plugin_uses_only_the_cores_public_surface():
    """``consentcam`` (hookimpl, errors) and ``consentcam.hooktypes``: nothing of the core's insides."""
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
