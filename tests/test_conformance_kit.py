"""The conformance kit can fail: run against deliberately wrong fetch and analysis plugins (in a pytest subprocess),
each of its direct checks fails for the fault it is about, and passes for a plugin that does it right."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SUITE = '''
import logging
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from consentcam import DeviceUnreachable, hookimpl
from consentcam.hooktypes import FetchResult, Label, LabelSet, PluginInfo, TimeWindow
from consentcam.testing.conformance import AnalyseConformance, FetchRecordingConformance, PluginConformance

START = datetime(2026, 6, 1, 10, 0, 30, tzinfo=UTC)
WINDOW = TimeWindow(START, START + timedelta(seconds=3))


def clip(folder: Path, seconds: float) -> Path:
    out = folder / f"clip-{seconds}.mp4"
    subprocess.run([shutil.which("ffmpeg"), "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=size=160x120:rate=10:duration={seconds}", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(out)], check=True)
    return out


class Fake:
    seconds = 3.0
    def __init__(self, folder): self.folder = folder
    @hookimpl
    def consentcam_plugin_info(self): return PluginInfo(type(self).__name__.lower(), "1", ("fetch_recording",))
    @hookimpl
    async def consentcam_fetch_recording(self, camera, window, sink):
        if camera.connection.fields.get("vendor") != "fake":
            return None
        if camera.connection.fields.get("port") == 9:
            return self.unreachable()
        path = clip(self.folder, self.seconds)
        await sink(path, self.provenance(camera))
        return FetchResult(clips=[path])
    def unreachable(self): raise DeviceUnreachable("nobody at port 9")
    def provenance(self, camera): return {"device": "fake"}


class Good(Fake): pass
class TooLong(Fake): seconds = 6.0
class Leaky(Fake):
    def provenance(self, camera):
        logging.getLogger("fake").info("fetching with %s", camera.connection.secret["password"])
        return {"device": "fake"}
class RawError(Fake):
    def unreachable(self): raise OSError("connection refused")


class Base(PluginConformance, FetchRecordingConformance):
    fake = Good
    @pytest.fixture
    def plugin(self, tmp_path): return self.fake(tmp_path)
    @pytest.fixture
    def connection(self): return {"kind": "rtsp", "vendor": "fake", "port": 1, "password": "hunter2-secret"}
    @pytest.fixture
    def recorded_window(self): return WINDOW
    @pytest.fixture
    def unreachable_connection(self): return {"kind": "rtsp", "vendor": "fake", "port": 9, "password": "hunter2-secret"}


class Analyser:
    labels = [Label("pickup_truck", 0.5, 1.5, 0.9)]
    def __init__(self, folder): self.folder = folder
    @hookimpl
    def consentcam_plugin_info(self): return PluginInfo(type(self).__name__.lower(), "1", ("analyse_vehicles",))
    @hookimpl
    async def consentcam_analyse_clip(self, clip):
        return LabelSet(type(self).__name__.lower(), "ab" * 32, self.labels)


class GoodAnalyser(Analyser): pass
class PastTheEnd(Analyser): labels = [Label("sedan", 1.0, 9.0, 0.8)]
class Faces(Analyser): labels = [Label("face_recognition", 0.0, 1.0, 0.8)]
class Overconfident(Analyser): labels = [Label("bus", 0.0, 1.0, 1.7)]


class AnalyseBase(PluginConformance, AnalyseConformance):
    fake = GoodAnalyser
    @pytest.fixture
    def plugin(self, tmp_path): return self.fake(tmp_path)
    @pytest.fixture
    def analysis_clip(self, tmp_path): return clip(tmp_path, 2.0)


class TestGoodAnalyser(AnalyseBase): fake = GoodAnalyser
class TestPastTheEnd(AnalyseBase): fake = PastTheEnd
class TestFaces(AnalyseBase): fake = Faces
class TestOverconfident(AnalyseBase): fake = Overconfident


class TestGood(Base): fake = Good
class TestTooLong(Base): fake = TooLong
class TestLeaky(Base): fake = Leaky
class TestRawError(Base): fake = RawError
'''


def test_the_kit_fails_each_fault_and_passes_a_good_plugin(tmp_path: Path) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is required (apt-get install ffmpeg)", pytrace=False)
    (tmp_path / "test_fakes.py").write_text(SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    report = tmp_path / "report.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CONSENTCAM_TEST_BACKENDS"))}
    # The direct checks only: the ones through the core are shown by the RTSP plugin's and the scaffold's runs.
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not test_core_ and not entry_point",
                          f"--junitxml={report}", "test_fakes.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    failed = set()
    passed = set()
    for case in ET.parse(report).iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}.{case.get('name')}"
        (failed if any(c.tag in ("failure", "error") for c in case) else passed).add(name)
    assert {n for n in passed if n.startswith("TestGood.")} >= {
        "TestGood.test_fetch_honours_the_window", "TestGood.test_an_unreachable_camera_is_a_core_error",
        "TestGood.test_fetch_other_kinds_is_none", "TestGood.test_loads_in_a_strict_host"}, run.stdout[-3000:]
    assert "TestGoodAnalyser.test_labels_lie_within_the_clip" in passed, run.stdout[-3000:]
    assert failed == {"TestTooLong.test_fetch_honours_the_window", "TestLeaky.test_fetch_honours_the_window",
                      "TestRawError.test_an_unreachable_camera_is_a_core_error",
                      "TestPastTheEnd.test_labels_lie_within_the_clip", "TestFaces.test_labels_lie_within_the_clip",
                      "TestOverconfident.test_labels_lie_within_the_clip"}, run.stdout[-3000:]


HOST_SUITE = '''
import consentcam_rtsp
from consentcam.testing.conformance import PluginHostConformance


class Right(PluginHostConformance):
    entry_point = "rtsp"
    entry_point_value = "consentcam_rtsp.plugin:plugin"
    package = consentcam_rtsp
    capabilities = ("probe", "fetch_recording", "live_only")
    hooks = frozenset({"consentcam_plugin_info", "consentcam_probe_camera", "consentcam_fetch_recording"})


class TestRight(Right): pass
class TestWrongValue(Right): entry_point_value = "consentcam_rtsp.plugin:RtspPlugin"
class TestWrongCapabilities(Right): capabilities = ("probe", "fetch_recording")
class TestWrongHooks(Right): hooks = frozenset({"consentcam_plugin_info", "consentcam_probe_camera"})
class TestNarrowerSurface(Right): public_modules = frozenset({"consentcam.hooktypes"})
class TestMissingCapabilities(Right): capabilities = None
'''


def test_the_plugin_host_checks_fail_each_wrong_declaration(tmp_path: Path) -> None:
    """PluginHostConformance, subclassed for the installed RTSP plugin: right, it passes; told a wrong entry-point
    value, capability list, hook set or public surface, or left without its capabilities, the check about that
    fails (and says which attribute is missing)."""
    (tmp_path / "test_host_fakes.py").write_text(HOST_SUITE)
    report = tmp_path / "report.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CONSENTCAM_TEST_BACKENDS"))}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                          "test_host_fakes.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    failed: dict[str, str] = {}
    passed = set()
    for case in ET.parse(report).iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}.{case.get('name')}"
        problems = [c for c in case if c.tag in ("failure", "error")]
        if problems:
            failed[name] = " ".join((c.get("message") or "") + (c.text or "") for c in problems)
        else:
            passed.add(name)
    right = {n for n in passed | set(failed) if n.startswith("TestRight.")}
    assert len(right) == 6 and right <= passed, (sorted(failed), run.stdout[-3000:])
    expected = {
        "TestWrongValue.test_the_entry_point_loads_the_plugin_object",
        "TestWrongCapabilities.test_the_host_loads_it_from_the_entry_point_with_its_capabilities",
        "TestWrongHooks.test_every_hook_matches_a_specification_strictly",
        "TestNarrowerSurface.test_the_plugin_uses_only_the_cores_public_surface",
        "TestMissingCapabilities.test_the_host_loads_it_from_the_entry_point_with_its_capabilities",
    }
    assert expected <= set(failed), (sorted(failed), run.stdout[-3000:])
    assert "set `capabilities`" in failed["TestMissingCapabilities.test_the_host_loads_it_from_the_entry_point_with_its_capabilities"]
