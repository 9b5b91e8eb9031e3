"""Fetch by timestamp from a Profile G recorder: the aiohttp test device answers the SOAP side (summary, search,
replay URI, with WS-Security checked), and the replay URI points at the real gst-rtsp-server peer, which requires
the same credentials and serves the recording whose frames carry their own time.

Checked on the clips' pixels: the first and last frames show the asked times; partial windows deliver what exists
and name the part that is missing."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from consentcam import CredentialsRejected
from consentcam.hooktypes import CameraConnection, CameraRef, TimeWindow
from consentcam.testing.rtsp_peer import PEER_PASSWORD, PEER_USERNAME
from consentcam_onvif.plugin import OnvifPlugin
from consentcam_rtsp.puller import PullOptions
from onvif_testkit import DeviceRecording, ProfileGDevice, read_clip, seconds_between

pytestmark = pytest.mark.peer("rtsp")

FAST = PullOptions(open_timeout_s=3.0, read_timeout_s=3.0, attempts=3, backoff_s=0.2, backoff_max_s=0.5)


@dataclass
class CopySink:
    """The vault's place in these tests: keeps a copy of each clip and its provenance."""

    folder: Path
    received: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, path: Path, provenance: dict[str, Any]) -> str:
        copy = self.folder / f"evidence-{len(self.received) + 1}.mp4"
        shutil.copyfile(path, copy)
        self.received.append((copy, dict(provenance)))
        return f"evidence-{len(self.received)}"


def camera(device: ProfileGDevice, password: str = PEER_PASSWORD) -> CameraRef:
    return CameraRef(camera_id="cam-1", label="Front door", connection=CameraConnection(
        kind="onvif", fields={"host": "127.0.0.1", "port": device.port, "username": PEER_USERNAME},
        secret={"username": PEER_USERNAME, "password": password}))


def device_for(server, recording, **switches) -> ProfileGDevice:
    return ProfileGDevice(recording, server.url("auth", "/recording"), PEER_USERNAME, PEER_PASSWORD, **switches)


def window(recording, start_s: float, end_s: float) -> TimeWindow:
    return TimeWindow(recording.start + timedelta(seconds=start_s), recording.start + timedelta(seconds=end_s))


async def test_fetch_pulls_exactly_the_window(consentcam_rtsp_server, consentcam_rtsp_recording, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    recording = consentcam_rtsp_recording
    asked = window(recording, 40, 44)
    sink = CopySink(tmp_path)
    async with device_for(consentcam_rtsp_server, recording) as device:
        result = await OnvifPlugin(pull_options=FAST).consentcam_fetch_recording(camera(device), asked, sink)
    assert device.calls[-5:] == ["GetRecordingSummary", "FindRecordings", "GetRecordingSearchResults", "EndSearch",
                                 "GetReplayUri"], device.calls
    assert result is not None and result.missing == [] and result.note == ""
    (clip, provenance), = sink.received
    facts = read_clip(clip, recording)
    first, last = seconds_between(facts.first_time, asked.start), seconds_between(facts.last_time, asked.end)
    print(f"\nACCURACY onvif: asked {asked.seconds:.1f} s, clip {facts.duration_s:.3f} s; first frame {first:+.3f} s, "
          f"last frame {last:+.3f} s")
    assert abs(first) <= 1.0 and abs(last) <= 1.0
    assert abs(facts.duration_s - asked.seconds) <= 1.0
    assert provenance["recording_token"] == "rec-1" and provenance["stream_copy"] is True
    assert provenance["seek_s"] == 40.0 and provenance["covered"] == {"start": asked.start.isoformat(),
                                                                      "end": asked.end.isoformat()}
    # The password went to the device (WS-Security) and the RTSP server (which requires it), nowhere else.
    assert PEER_PASSWORD not in json.dumps(result.provenance) + json.dumps(provenance) + caplog.text


async def test_a_window_past_the_recording_delivers_what_exists_and_names_the_rest(
        consentcam_rtsp_server, consentcam_rtsp_recording, tmp_path):
    recording = consentcam_rtsp_recording  # 90 s
    asked = window(recording, 87, 93)
    sink = CopySink(tmp_path)
    async with device_for(consentcam_rtsp_server, recording) as device:
        result = await OnvifPlugin(pull_options=FAST).consentcam_fetch_recording(camera(device), asked, sink)
    assert result.missing == [TimeWindow(recording.end, asked.end)]
    assert result.note == f"partial: missing {recording.end.isoformat()} to {asked.end.isoformat()}"
    (clip, _), = sink.received
    facts = read_clip(clip, recording)
    assert abs(seconds_between(facts.first_time, asked.start)) <= 1.0
    assert abs(seconds_between(facts.last_time, recording.end)) <= 1.0
    assert abs(facts.duration_s - 3.0) <= 1.0


async def test_a_device_that_claims_more_than_it_plays_reports_the_gap(consentcam_rtsp_server, consentcam_rtsp_recording,
                                                                      tmp_path):
    """The search says the recording runs on for a minute, but the stream ends with the file: the clip stops
    there and the rest is reported missing from what really came, not from what was promised."""
    recording = consentcam_rtsp_recording
    claims = [DeviceRecording("rec-1", recording.start, recording.end + timedelta(seconds=60))]
    asked = window(recording, 87, 93)
    sink = CopySink(tmp_path)
    async with device_for(consentcam_rtsp_server, recording, recordings=claims) as device:
        result = await OnvifPlugin(pull_options=FAST).consentcam_fetch_recording(camera(device), asked, sink)
    (gap,) = result.missing
    assert gap.end == asked.end and abs((gap.start - recording.end).total_seconds()) <= 0.2, result.missing
    assert result.note.startswith("partial: missing ")
    assert len(sink.received) == 1


async def test_a_window_with_nothing_recorded_fetches_nothing_and_says_why(consentcam_rtsp_server,
                                                                          consentcam_rtsp_recording, tmp_path):
    recording = consentcam_rtsp_recording
    asked = window(recording, -600, -300)
    sink = CopySink(tmp_path)
    async with device_for(consentcam_rtsp_server, recording) as device:
        result = await OnvifPlugin(pull_options=FAST).consentcam_fetch_recording(camera(device), asked, sink)
    assert result.clips == [] and sink.received == [] and result.missing == [asked]
    assert "nothing in the window" in result.note and "GetReplayUri" not in device.calls


async def test_a_device_without_search_and_replay_fetches_nothing(consentcam_rtsp_server, consentcam_rtsp_recording,
                                                                 tmp_path):
    recording = consentcam_rtsp_recording
    asked = window(recording, 10, 12)
    async with device_for(consentcam_rtsp_server, recording, profile_g=False) as device:
        result = await OnvifPlugin(pull_options=FAST).consentcam_fetch_recording(camera(device), asked, CopySink(tmp_path))
    assert result.clips == [] and result.missing == [asked] and "not a Profile G recorder" in result.note


async def test_a_wrong_password_is_refused_before_anything_is_pulled(consentcam_rtsp_server, consentcam_rtsp_recording,
                                                                    tmp_path):
    recording = consentcam_rtsp_recording
    async with device_for(consentcam_rtsp_server, recording) as device:
        with pytest.raises(CredentialsRejected):
            await OnvifPlugin(pull_options=FAST).consentcam_fetch_recording(
                camera(device, password="wrong"), window(recording, 10, 12), CopySink(tmp_path))
    assert "GetReplayUri" not in device.calls


async def test_a_replay_uri_the_rtsp_server_does_not_know_fetches_nothing(consentcam_rtsp_server,
                                                                         consentcam_rtsp_recording, tmp_path):
    """The search promises a recording, but its replay URI answers 404: nothing fetched, the reason given, no retry."""
    recording = consentcam_rtsp_recording
    asked = window(recording, 10, 12)
    device = ProfileGDevice(recording, consentcam_rtsp_server.url("auth", "/no-such-recording"), PEER_USERNAME,
                            PEER_PASSWORD)
    async with device:
        result = await OnvifPlugin(pull_options=FAST).consentcam_fetch_recording(camera(device), asked, CopySink(tmp_path))
    assert result.clips == [] and result.missing == [asked]
    assert "404" in result.note and "the replay server has no such recording" in result.note
    assert PEER_PASSWORD not in result.note
