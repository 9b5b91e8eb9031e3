"""Fetching windows from real RTSP recorders (gst-rtsp-server) and a UDP-only relay (rtsp-server-perl).

The recording's frames carry their own time as a block code, so every assertion about time reads pixels.
Durations are held to one frame interval, first and last frames to the asked times within a second (and the
frames are also checked one by one: none lost, none repeated). Measured values are printed (run with -s).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import av
import pytest
from consentcam import CredentialsRejected, DeviceUnreachable
from consentcam.hooktypes import CameraConnection, TimeWindow
from consentcam.testing.rtsp_peer import PEER_PASSWORD, PEER_USERNAME
from consentcam_rtsp.masking import with_credentials
from consentcam_rtsp.puller import RtspSource
from rtsp_testkit import FAST, CopySink, plugin, read_clip, recording_slices, rtsp_camera, seconds

pytestmark = pytest.mark.peer("rtsp")


def at(recording, second: float):
    return recording.start + timedelta(seconds=second)


def frames_between(recording, start: float, end: float):
    return [recording.time_of_frame(n) for n in range(round(start * recording.fps), round(end * recording.fps))]


def assert_exact_clip(facts, recording, window, label: str, *, udp: bool = False) -> None:
    """Duration within a frame, first and last frame within a second, and frame by frame: every frame of the
    window once, in order. Over UDP the last frame may be lost (the server's RTCP BYE, on its own port, can
    overtake the last RTP packet), which the duration's one-frame tolerance allows."""
    interval = recording.frame_interval_s
    first_offset = seconds(facts.first_time - window.start)
    last_offset = seconds(facts.last_time - window.end)
    print(f"\nACCURACY {label}: asked {window.seconds:.1f} s, clip {facts.container_duration_s:.3f} s "
          f"({facts.frames} frames); first frame {first_offset:+.3f} s from the asked start, last frame "
          f"{last_offset:+.3f} s from the asked end (one frame is {interval:.3f} s)")
    assert abs(facts.container_duration_s - window.seconds) <= interval + 1e-6
    assert abs(facts.stream_duration_s - window.seconds) <= interval + 1e-6
    assert facts.first_pts == 0  # shifted to start at zero
    assert abs(first_offset) <= 1.0 and abs(last_offset) <= 1.0
    start_s = seconds(window.start - recording.start)
    expected = frames_between(recording, start_s, start_s + window.seconds)
    if udp and facts.times == expected[:-1]:
        return
    assert facts.times == expected  # none lost, none repeated


# --- one fetch, several facts ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hikvision_fetch(consentcam_rtsp_recording, consentcam_rtsp_server, tmp_path_factory):
    import asyncio

    recording = consentcam_rtsp_recording
    window = TimeWindow(at(recording, 12), at(recording, 18))
    camera = rtsp_camera(consentcam_rtsp_server.url("main", "/Streaming/Channels/101"),
                         {"family": "hikvision", "timezone": "UTC"})
    sink = CopySink(tmp_path_factory.mktemp("hikvision"))
    result = asyncio.run(plugin().consentcam_fetch_recording(camera, window, sink))
    return window, result, sink


def test_hikvision_window_has_the_asked_duration_and_times(hikvision_fetch, consentcam_rtsp_recording):
    window, result, sink = hikvision_fetch
    assert result.missing == [] and len(sink.received) == 1 and len(result.clips) == 1
    clip, _ = sink.received[0]
    assert_exact_clip(read_clip(clip, consentcam_rtsp_recording), consentcam_rtsp_recording, window, "hikvision/tcp")


def test_stream_copy_hands_over_the_recorders_coded_pictures_unchanged(hikvision_fetch, consentcam_rtsp_recording):
    window, _, sink = hikvision_fetch
    facts = read_clip(sink.received[0][0], consentcam_rtsp_recording)
    with av.open(str(consentcam_rtsp_recording.path)) as source:
        original = source.streams.video[0].codec_context
        assert (facts.codec, facts.profile, facts.width, facts.height) == (
            original.name, original.profile, original.width, original.height)
    # Re-encoding, even losslessly, would change the slice bytes; a copy keeps them, picture by picture.
    assert facts.slices == recording_slices(consentcam_rtsp_recording, window.start, window.end)
    assert facts.key_frames == 6  # the recorder's key frames, one a second, and no more


def test_provenance_tells_where_and_how_the_clip_came(hikvision_fetch):
    window, result, sink = hikvision_fetch
    _, record = sink.received[0]
    assert record["plugin"] == "rtsp" and record["family"] == "hikvision" and record["recorder_timezone"] == "UTC"
    assert record["source_url"].endswith("/Streaming/tracks/101?starttime=20260601T100012Z&endtime=20260601T100018Z")
    assert record["asked"] == {"start": window.start.isoformat(), "end": window.end.isoformat()}
    assert record["covered"] == record["asked"]
    assert (record["transport"], record["codec"], record["frames"], record["stream_copy"]) == ("tcp", "h264", 60, True)
    assert result.provenance["clips"] == [record | {"evidence_id": "evidence-1"}]  # what the sink answered
    assert not any(p.exists() for p in result.clips)  # handed to the sink, then removed


# --- time zones and templates ---------------------------------------------------------------------------


async def test_dahua_recorder_in_chicago_local_time(consentcam_rtsp_recording, consentcam_rtsp_server, tmp_path):
    recording = consentcam_rtsp_recording
    window = TimeWindow(at(recording, 40), at(recording, 44))
    camera = rtsp_camera(consentcam_rtsp_server.url("chicago", "/"), {"family": "dahua", "timezone": "America/Chicago"})
    sink = CopySink(tmp_path)
    result = await plugin().consentcam_fetch_recording(camera, window, sink)
    assert result.missing == []
    clip, record = sink.received[0]
    assert "starttime=2026_06_01_05_00_40&endtime=2026_06_01_05_00_44" in record["source_url"]  # CDT = UTC-5
    assert record["asked_local"]["start"] == "2026-06-01T05:00:40-05:00"
    assert_exact_clip(read_clip(clip, recording), recording, window, "dahua/America/Chicago")


async def test_a_wrong_time_zone_asks_the_recorder_for_other_hours(consentcam_rtsp_recording, consentcam_rtsp_server,
                                                                   tmp_path):
    """The Chicago recorder reads UTC digits as local time, five hours later than the recording: nothing comes."""
    recording = consentcam_rtsp_recording
    window = TimeWindow(at(recording, 40), at(recording, 42))
    camera = rtsp_camera(consentcam_rtsp_server.url("chicago", "/"), {"family": "dahua", "timezone": "UTC"})
    sink = CopySink(tmp_path)
    result = await plugin().consentcam_fetch_recording(camera, window, sink)
    assert sink.received == [] and result.missing == [window]


async def test_generic_template_filled_by_the_owner(consentcam_rtsp_recording, consentcam_rtsp_server, tmp_path):
    recording = consentcam_rtsp_recording
    window = TimeWindow(at(recording, 60), at(recording, 63))
    camera = rtsp_camera(consentcam_rtsp_server.url("chicago", "/live"),
                         {"family": "template", "timezone": "America/Chicago",
                          "template": "/recording?start={start:%Y-%m-%dT%H:%M:%S}&end={end_epoch}"})
    sink = CopySink(tmp_path)
    result = await plugin().consentcam_fetch_recording(camera, window, sink)
    assert result.missing == []
    assert "start=2026-06-01T05:01:00&end=1780308063" in sink.received[0][1]["source_url"]
    assert_exact_clip(read_clip(sink.received[0][0], recording), recording, window, "template")


# --- partial and empty windows --------------------------------------------------------------------------


async def test_a_recording_that_ends_early_is_partial_with_the_missing_span(consentcam_rtsp_recording,
                                                                            consentcam_rtsp_server, tmp_path):
    recording = consentcam_rtsp_recording  # 90 s long
    window = TimeWindow(at(recording, 86), at(recording, 93))
    camera = rtsp_camera(consentcam_rtsp_server.url("main", "/"), {"family": "hikvision", "timezone": "UTC"})
    sink = CopySink(tmp_path)
    result = await plugin().consentcam_fetch_recording(camera, window, sink)
    assert len(result.missing) == 1
    gap = result.missing[0]
    print(f"\nACCURACY partial: missing from {seconds(gap.start - recording.start):.3f} s to "
          f"{seconds(gap.end - recording.start):.3f} s of the recording (it ends at {recording.seconds} s)")
    assert abs(seconds(gap.start - recording.end)) <= recording.frame_interval_s + 1e-6 and gap.end == window.end
    assert result.note.startswith("partial: missing") and "no recording from" in result.note
    clip, record = sink.received[0]
    facts = read_clip(clip, recording)
    assert facts.times == frames_between(recording, 86, 90)
    assert abs(facts.container_duration_s - 4.0) <= recording.frame_interval_s
    assert record["ended"] == "eos" and record["covered"]["end"] == gap.start.isoformat()


async def test_a_window_after_the_recording_is_all_missing(consentcam_rtsp_recording, consentcam_rtsp_server, tmp_path):
    recording = consentcam_rtsp_recording
    window = TimeWindow(at(recording, 95), at(recording, 99))
    camera = rtsp_camera(consentcam_rtsp_server.url("main", "/"), {"family": "hikvision", "timezone": "UTC"})
    sink = CopySink(tmp_path)
    result = await plugin().consentcam_fetch_recording(camera, window, sink)
    assert sink.received == [] and result.clips == [] and result.missing == [window]


# --- UDP ------------------------------------------------------------------------------------------------


async def test_udp_only_recorder_is_fetched_over_udp_after_tcp_is_refused(consentcam_rtsp_recording,
                                                                          consentcam_rtsp_server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="consentcam_rtsp")
    recording = consentcam_rtsp_recording
    window = TimeWindow(at(recording, 30), at(recording, 34))
    camera = rtsp_camera(consentcam_rtsp_server.url("udp", "/"), {"family": "hikvision", "timezone": "UTC"})
    sink = CopySink(tmp_path)
    result = await plugin().consentcam_fetch_recording(camera, window, sink)
    assert result.missing == []
    clip, record = sink.received[0]
    assert record["transport"] == "udp"
    assert any("refused the tcp transport" in r.getMessage() for r in caplog.records)
    assert_exact_clip(read_clip(clip, recording), recording, window, "hikvision/udp fallback (gst, UDP only)", udp=True)


async def test_udp_only_recorder_fails_when_udp_is_not_allowed(consentcam_rtsp_recording, consentcam_rtsp_server, tmp_path):
    recording = consentcam_rtsp_recording
    camera = rtsp_camera(consentcam_rtsp_server.url("udp", "/"), {"family": "hikvision", "timezone": "UTC"})
    with pytest.raises(DeviceUnreachable, match="refused every transport"):
        await plugin(transports=("tcp",)).consentcam_fetch_recording(
            camera, TimeWindow(at(recording, 30), at(recording, 31)), CopySink(tmp_path))


async def test_second_server_rtsp_server_perl_is_probed_and_pulled_over_udp(consentcam_rtsp_recording,
                                                                            consentcam_rtsp_udp_relay, tmp_path):
    recording = consentcam_rtsp_recording
    probe = await plugin().consentcam_probe_camera(CameraConnection("rtsp", {"url": consentcam_rtsp_udp_relay.url}))
    assert probe.device["transport"] == "udp" and "live_only" in probe.capabilities
    assert probe.profiles[0] | {"fps": round(probe.profiles[0]["fps"])} == {
        "name": "live", "codec": "h264", "width": recording.width, "height": recording.height, "fps": recording.fps}
    # A live pull (what the edge relay takes from such a camera): 3 s over UDP, frames consecutive.
    source = RtspSource(consentcam_rtsp_udp_relay.url, consentcam_rtsp_udp_relay.url, FAST)
    pulled = source.pull(tmp_path / "live.mp4", 3.0)
    facts = read_clip(pulled.path, recording)
    numbers = [round(seconds(t - recording.start) * recording.fps) for t in facts.times]
    print(f"\nACCURACY rtsp-server-perl/udp live: {facts.container_duration_s:.3f} s, {facts.frames} frames, "
          f"frames {numbers[0]}..{numbers[-1]}")
    assert pulled.facts.transport == "udp" and pulled.ended == "length"
    assert abs(facts.container_duration_s - 3.0) <= recording.frame_interval_s + 1e-6
    assert all(b - a == 1 or (a == recording.seconds * recording.fps - 1 and b == 0) for a, b in pairwise(numbers))


# --- live-only cameras ----------------------------------------------------------------------------------


async def test_a_live_only_camera_says_so_and_fetches_nothing(consentcam_rtsp_recording, consentcam_rtsp_server, tmp_path):
    recording = consentcam_rtsp_recording
    window = TimeWindow(at(recording, 10), at(recording, 20))
    camera = rtsp_camera(consentcam_rtsp_server.live_url)  # no playback
    sink = CopySink(tmp_path)
    result = await plugin().consentcam_fetch_recording(camera, window, sink)
    assert result.note.startswith("live only:") and result.missing == [window] and result.clips == []
    assert sink.received == [] and result.provenance["live_only"] is True


async def test_probe_reports_live_only_or_playback(consentcam_rtsp_server):
    live = await plugin().consentcam_probe_camera(CameraConnection("rtsp", {"url": consentcam_rtsp_server.live_url}))
    assert live.capabilities == ["live", "live_only"] and live.device["transport"] == "tcp"
    assert live.profiles[0]["codec"] == "h264" and (live.profiles[0]["width"], live.profiles[0]["height"]) == (320, 240)
    recorder = await plugin().consentcam_probe_camera(CameraConnection(
        "rtsp", {"url": consentcam_rtsp_server.live_url, "playback": {"family": "dahua", "timezone": "America/Chicago"}}))
    assert recorder.capabilities == ["live", "fetch_recording"] and recorder.device["timezone"] == "America/Chicago"


async def test_other_connection_kinds_are_not_ours(tmp_path):
    from consentcam.hooktypes import CameraRef

    onvif = CameraConnection("onvif", {"host": "127.0.0.1", "port": 80})
    assert await plugin().consentcam_probe_camera(onvif) is None
    camera = CameraRef("cam-9", "x", onvif)
    window = TimeWindow(datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 1, 0, 0, 5, tzinfo=UTC))
    assert await plugin().consentcam_fetch_recording(camera, window, CopySink(tmp_path)) is None


# --- credentials ----------------------------------------------------------------------------------------


SECRET_FORMS = (PEER_PASSWORD, "s3cr%3At%2Fp%40ss%25w0rd", with_credentials("rtsp://h/", PEER_USERNAME, PEER_PASSWORD)
                .split("@")[0].split("//")[1])


def assert_no_secret(text: str) -> None:
    for form in SECRET_FORMS:
        assert form not in text, f"a credential leaked: {text[:300]}"


async def test_credentials_are_used_and_never_logged_nor_in_provenance(consentcam_rtsp_recording, consentcam_rtsp_server,
                                                                      tmp_path, caplog):
    import av.logging

    caplog.set_level(logging.DEBUG)
    av.logging.set_level(av.logging.DEBUG)  # FFmpeg's own messages too, through Python logging
    try:
        recording = consentcam_rtsp_recording
        window = TimeWindow(at(recording, 50), at(recording, 52))
        camera = rtsp_camera(consentcam_rtsp_server.url("auth", "/"), {"family": "hikvision", "timezone": "UTC"},
                             username=PEER_USERNAME, password=PEER_PASSWORD)
        sink = CopySink(tmp_path)
        result = await plugin().consentcam_fetch_recording(camera, window, sink)
    finally:
        av.logging.set_level(None)
    assert result.missing == [] and len(sink.received) == 1  # the recorder took the credentials
    assert_exact_clip(read_clip(sink.received[0][0], recording), recording, window, "hikvision/basic auth")
    assert any("rtsp://127.0.0.1" in r.getMessage() for r in caplog.records)  # URLs are logged, masked
    for record in caplog.records:
        assert_no_secret(record.getMessage())
    assert_no_secret(json.dumps(sink.received[0][1]) + json.dumps(result.provenance) + result.note)


async def test_rejected_credentials_are_a_core_error_without_the_password(consentcam_rtsp_recording,
                                                                         consentcam_rtsp_server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    recording = consentcam_rtsp_recording
    window = TimeWindow(at(recording, 50), at(recording, 51))
    for password in (PEER_PASSWORD + "x", None):
        camera = rtsp_camera(consentcam_rtsp_server.url("auth", "/"), {"family": "hikvision", "timezone": "UTC"},
                             username=PEER_USERNAME, password=password)
        with pytest.raises(CredentialsRejected) as caught:
            await plugin().consentcam_fetch_recording(camera, window, CopySink(tmp_path))
        assert "refused the credentials" in caught.value.detail
        assert caught.value.__context__ is None and caught.value.__cause__ is None  # no PyAV error riding along
        assert_no_secret(str(caught.value))
    for record in caplog.records:
        assert_no_secret(record.getMessage())
