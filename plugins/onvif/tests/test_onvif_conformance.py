"""The vendor kit's conformance suite (consentcam.testing.conformance), run against the ONVIF plugin: probe against
ipycam (with a wrong password and a closed port), fetch against the Profile G test device whose replay URI points
at the gst-rtsp-server peer, discovery within its time budget."""

from __future__ import annotations

from datetime import timedelta

import pytest
from consentcam.hooktypes import TimeWindow
from consentcam.testing.conformance import (
    DiscoverConformance,
    FetchRecordingConformance,
    PluginConformance,
    ProbeConformance,
)
from consentcam.testing.rtsp_peer import PEER_PASSWORD, PEER_USERNAME
from consentcam_onvif.plugin import OnvifPlugin
from consentcam_rtsp.puller import PullOptions
from onvif_testkit import IPYCAM_PASSWORD, IPYCAM_USERNAME, ProfileGDevice, closed_port, read_clip, running_ipycam

pytestmark = pytest.mark.peer("ipycam")

FAST = PullOptions(open_timeout_s=3.0, read_timeout_s=3.0, attempts=3, backoff_s=0.2, backoff_max_s=0.5)


@pytest.fixture(scope="module")
def ipycam(tmp_path_factory):
    camera = running_ipycam(tmp_path_factory.mktemp("ipycam"))
    yield camera
    camera.stop()


class TestOnvifConformance(PluginConformance, ProbeConformance, FetchRecordingConformance, DiscoverConformance):
    entry_point = "onvif"

    @pytest.fixture
    def plugin(self):
        return OnvifPlugin(timeout_s=5, pull_options=FAST)

    @pytest.fixture
    async def recorder(self, consentcam_rtsp_server, consentcam_rtsp_recording):
        async with ProfileGDevice(consentcam_rtsp_recording, consentcam_rtsp_server.url("auth", "/recording"),
                                  PEER_USERNAME, PEER_PASSWORD) as device:
            yield device

    @pytest.fixture
    def connection(self, recorder):
        return {"kind": "onvif", "host": "127.0.0.1", "port": recorder.port, "username": PEER_USERNAME,
                "password": PEER_PASSWORD}

    @pytest.fixture
    def probe_connection(self, ipycam):
        return {"kind": "onvif", "host": "127.0.0.1", "port": ipycam.ports["onvif_port"], "username": IPYCAM_USERNAME,
                "password": IPYCAM_PASSWORD}

    @pytest.fixture
    def rejected_connection(self, probe_connection):
        return {**probe_connection, "password": "not-the-password"}

    @pytest.fixture
    def unreachable_connection(self):
        return {"kind": "onvif", "host": "127.0.0.1", "port": closed_port(), "username": PEER_USERNAME,
                "password": PEER_PASSWORD}

    @pytest.fixture
    def recorded_window(self, consentcam_rtsp_recording):
        start = consentcam_rtsp_recording.start + timedelta(seconds=50)
        return TimeWindow(start, start + timedelta(seconds=2))

    @pytest.fixture
    def clip_times(self, consentcam_rtsp_recording):
        def times(path):
            facts = read_clip(path, consentcam_rtsp_recording)
            return facts.first_time, facts.last_time + timedelta(seconds=consentcam_rtsp_recording.frame_interval_s)

        return times
