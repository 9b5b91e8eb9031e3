"""The vendor kit's conformance suite (consentcam.testing.conformance), run against the RTSP plugin and the
gst-rtsp-server peer: a recorder behind credentials, a closed port, a wrong password."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from consentcam.hooktypes import TimeWindow
from consentcam.testing.conformance import FetchRecordingConformance, PluginConformance, ProbeConformance
from consentcam.testing.rtsp_peer import PEER_PASSWORD, PEER_USERNAME
from rtsp_testkit import plugin as fast_plugin
from rtsp_testkit import read_clip

pytestmark = pytest.mark.peer("rtsp")

PLAYBACK = {"family": "hikvision", "timezone": "UTC"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestRtspConformance(PluginConformance, ProbeConformance, FetchRecordingConformance):
    entry_point = "rtsp"

    @pytest.fixture
    def plugin(self):
        return fast_plugin()

    @pytest.fixture
    def connection(self, consentcam_rtsp_server):
        # Credentials as separate fields: the peer's password holds '/', '@' and '%' on purpose.
        return {"kind": "rtsp", "url": consentcam_rtsp_server.url("auth", "/Streaming/Channels/101"),
                "username": PEER_USERNAME, "password": PEER_PASSWORD, "playback": PLAYBACK}

    @pytest.fixture
    def probe_connection(self, connection, consentcam_rtsp_server):
        return {**connection, "url": consentcam_rtsp_server.url("auth", "/live")}

    @pytest.fixture
    def rejected_connection(self, probe_connection):
        return {**probe_connection, "password": "not-the-password"}

    @pytest.fixture
    def unreachable_connection(self):
        return {"kind": "rtsp", "url": f"rtsp://127.0.0.1:{closed_port()}/Streaming/Channels/101",
                "username": PEER_USERNAME, "password": PEER_PASSWORD, "playback": PLAYBACK}

    @pytest.fixture
    def recorded_window(self, consentcam_rtsp_recording):
        start = consentcam_rtsp_recording.start + timedelta(seconds=30)
        return TimeWindow(start, start + timedelta(seconds=3))

    @pytest.fixture
    def clip_times(self, consentcam_rtsp_recording):
        def times(path):
            facts = read_clip(path, consentcam_rtsp_recording)
            return facts.first_time, facts.last_time + timedelta(seconds=consentcam_rtsp_recording.frame_interval_s)

        return times
