"""The shared RTSP test peer itself (consentcam.testing.rtsp_peer): its time code, its reading of recorder URLs
(an oracle independent of the plugin's templates), and a missing Debian package being an error, not a skip."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import av
import numpy as np
import pytest
from consentcam.testing import rtsp_peer
from consentcam.testing.peers.gst_rtsp_server import parse_window

UTC = UTC


def test_every_frame_of_the_recording_reads_its_own_time(consentcam_rtsp_recording):
    recording = consentcam_rtsp_recording
    with av.open(str(recording.path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.width, stream.codec_context.height) == ("h264", 320, 240)
        shown = [recording.time_shown(frame.to_ndarray(format="gray")) for frame in container.decode(stream)]
    assert shown == [recording.time_of_frame(n) for n in range(recording.seconds * recording.fps)]


def test_a_damaged_code_reads_as_nothing_rather_than_a_wrong_time(consentcam_rtsp_recording):
    with av.open(str(consentcam_rtsp_recording.path)) as container:
        luma = next(container.decode(video=0)).to_ndarray(format="gray").copy()
    assert rtsp_peer.frame_number(luma) == 0
    luma[rtsp_peer.CODE_BLOCK:2 * rtsp_peer.CODE_BLOCK, 0:rtsp_peer.CODE_BLOCK] = 0  # the check bit now agrees
    assert rtsp_peer.frame_number(luma) is None
    assert rtsp_peer.frame_number(np.full((240, 320), 128, dtype=np.uint8)) is None


@pytest.mark.parametrize("path, query, zone, expected", [
    ("/Streaming/tracks/101", "starttime=20260601T100012Z&endtime=20260601T100018Z", "UTC", (10, 0, 12, 10, 0, 18)),
    ("/Streaming/tracks/101", "starttime=20260601T050012Z&endtime=20260601T050018Z", "America/Chicago",
     (10, 0, 12, 10, 0, 18)),
    ("/cam/playback", "channel=1&starttime=2026_06_01_05_00_40&endtime=2026_06_01_05_00_44", "America/Chicago",
     (10, 0, 40, 10, 0, 44)),
    ("/recording", "start=1780308060&end=1780308063", "America/Chicago", (10, 1, 0, 10, 1, 3)),
    ("/recording", "start=2026-06-01T05:01:00&end=2026-06-01T10:01:03Z", "America/Chicago", (10, 1, 0, 10, 1, 3)),
])
def test_the_peer_reads_recorder_urls_in_its_own_zone(path, query, zone, expected):
    tz = UTC if zone == "UTC" else ZoneInfo(zone)
    start, end = parse_window(path, query, tz)
    assert (start, end) == (datetime(2026, 6, 1, *expected[:3], tzinfo=UTC), datetime(2026, 6, 1, *expected[3:], tzinfo=UTC))


def test_the_peer_ignores_urls_without_a_window():
    assert parse_window("/live", "", UTC) is None
    assert parse_window("/cam/playback", "channel=1", UTC) is None


def test_a_missing_debian_package_is_an_error_naming_it(consentcam_rtsp_recording, monkeypatch, tmp_path):
    monkeypatch.setattr(rtsp_peer, "SYSTEM_PYTHON", str(tmp_path / "no-python3"))
    with pytest.raises(rtsp_peer.PeerUnavailable, match="python3-gst-1.0.*apt-get install"):
        rtsp_peer.RtspServer(consentcam_rtsp_recording, folder=tmp_path).start()
    monkeypatch.setattr(rtsp_peer.shutil, "which", lambda tool: None)
    with pytest.raises(rtsp_peer.PeerUnavailable, match="rtsp-server-perl is missing"):
        rtsp_peer.UdpRelay(consentcam_rtsp_recording, folder=tmp_path).start()
    with pytest.raises(rtsp_peer.PeerUnavailable, match="ffmpeg is missing"):
        rtsp_peer.make_recording(tmp_path / "new")


def test_the_server_runs_until_stopped(consentcam_rtsp_server):
    assert consentcam_rtsp_server.running
    assert set(consentcam_rtsp_server.ports) == {"main", "chicago", "udp", "auth"}
    assert all(rtsp_peer.wait_for_port(port, 1.0) for port in consentcam_rtsp_server.ports.values())
