"""Fetch by timestamp from a Profile G recorder: the aiohttp test device answers the SOAP side (summary, search,
replay URI, with WS-Security checked), and the replay URI points at its RTSP front, which requires the same
credentials and honours only ONVIF's ``Range: clock=`` with ``Require: onvif-replay`` (any other PLAY plays from
the recording's start), in front of the real gst-rtsp-server peer serving the recording whose frames carry their
own time.

Checked on the clips' pixels: the first and last frames show the asked times; partial windows deliver what exists
and name the part that is missing. Then how the window reaches the recorder: the headers the front received,
Digest authentication, a recorder refusing clock ranges or the feature tag, and why the pixels prove it all."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from consentcam import CredentialsRejected
from consentcam.hooktypes import CameraConnection, CameraRef, TimeWindow
from consentcam.testing.rtsp_peer import PEER_PASSWORD, PEER_USERNAME
from consentcam_onvif.plugin import OnvifPlugin
from consentcam_rtsp.masking import with_credentials
from consentcam_rtsp.puller import PullOptions, RtspSource
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
    assert provenance["offset_s"] == 40.0 and provenance["covered"] == {"start": asked.start.isoformat(),
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


# --- how the window reaches the recorder ------------------------------------------------------------------------


def clock(moment: datetime) -> str:
    """How the test expects a clock range to write a moment (written here, not borrowed from the plugin)."""
    text = moment.strftime("%Y%m%dT%H%M%S")
    return text + (f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else "") + "Z"


async def fetch(device: ProfileGDevice, asked: TimeWindow, sink: CopySink, password: str = PEER_PASSWORD):
    return await OnvifPlugin(pull_options=FAST).consentcam_fetch_recording(camera(device, password), asked, sink)


def assert_shows(clip: Path, recording, asked: TimeWindow) -> None:
    facts = read_clip(clip, recording)
    assert abs(seconds_between(facts.first_time, asked.start)) <= 1.0, facts.first_time
    assert abs(seconds_between(facts.last_time, asked.end)) <= 1.0, facts.last_time


async def test_play_asks_for_the_window_by_clock_with_the_onvif_replay_tag(consentcam_rtsp_server,
                                                                         consentcam_rtsp_recording, tmp_path):
    recording = consentcam_rtsp_recording
    asked = window(recording, 40, 44)
    sink = CopySink(tmp_path)
    async with device_for(consentcam_rtsp_server, recording) as device:
        result = await fetch(device, asked, sink)
    (play,) = device.front.requests("PLAY")
    assert play.headers["range"] == f"clock={clock(asked.start)}-{clock(asked.end)}"
    assert play.headers["require"] == "onvif-replay"
    tagged = [r.method for r in device.front.received if r.headers.get("require") == "onvif-replay"]
    assert tagged == ["DESCRIBE", "SETUP", "PLAY"], [(r.method, r.headers) for r in device.front.received]
    assert result.missing == []
    (clip, provenance), = sink.received
    assert_shows(clip, recording, asked)
    assert provenance["range"] == "clock" and provenance["range_sent"] == play.headers["range"]
    # The front's answer: gst's npt range turned back into clock time.
    assert provenance["range_answered"].startswith(f"clock={clock(asked.start)}-"), provenance["range_answered"]
    assert "clock_refused" not in provenance


async def test_a_window_between_key_frames_is_recorded_as_the_clip_shows_it(consentcam_rtsp_server,
                                                                           consentcam_rtsp_recording, tmp_path):
    """A fraction of a second goes as such (``...T100040.5Z``). The recorder starts at the key frame before it (the
    recording has one each whole second) and says so in its answer; the provenance follows what the clip shows,
    not what was asked, and what the clip does not reach is named missing."""
    recording = consentcam_rtsp_recording
    asked = window(recording, 40.5, 43.5)
    sink = CopySink(tmp_path)
    async with device_for(consentcam_rtsp_server, recording) as device:
        result = await fetch(device, asked, sink)
    (play,) = device.front.requests("PLAY")
    assert play.headers["range"] == f"clock={clock(asked.start)}-{clock(asked.end)}"
    assert "40.5Z-" in play.headers["range"]
    (clip, provenance), = sink.received
    facts = read_clip(clip, recording)
    span = TimeWindow(*(datetime.fromisoformat(provenance["span"][key]) for key in ("start", "end")))
    half_frame = recording.frame_interval_s / 2
    assert abs(seconds_between(facts.first_time, span.start)) < half_frame, (facts.first_time, span)
    assert abs(seconds_between(facts.last_time, span.end - timedelta(seconds=recording.frame_interval_s))) < half_frame
    assert span.start < asked.start  # the key frame before
    covered = TimeWindow(asked.start, min(asked.end, span.end))
    assert provenance["covered"] == {"start": covered.start.isoformat(), "end": covered.end.isoformat()}
    assert result.missing == ([TimeWindow(covered.end, asked.end)] if covered.end < asked.end else [])


async def test_a_recorder_starting_a_second_early_gives_a_clip_recorded_as_it_shows(consentcam_rtsp_server,
                                                                                    consentcam_rtsp_recording, tmp_path):
    """The recorder starts at a key frame a second before the window and says so: the clip shows 39 s to 43 s of a
    40-44 s window, and the provenance and the missing part say exactly that."""
    recording = consentcam_rtsp_recording
    asked = window(recording, 40, 44)
    sink = CopySink(tmp_path)
    async with device_for(consentcam_rtsp_server, recording, replay_lead_s=1.0) as device:
        result = await fetch(device, asked, sink)
    (clip, provenance), = sink.received
    facts = read_clip(clip, recording)
    early = asked.start - timedelta(seconds=1)
    assert abs(seconds_between(facts.first_time, early)) < recording.frame_interval_s / 2, facts.first_time
    assert provenance["span"]["start"] == early.isoformat()
    assert provenance["covered"] == {"start": asked.start.isoformat(), "end": provenance["span"]["end"]}
    (gap,) = result.missing
    assert gap.end == asked.end and gap.start.isoformat() == provenance["span"]["end"]
    assert result.note.startswith("partial: missing ")


async def test_a_clip_that_holds_none_of_the_window_is_not_delivered(consentcam_rtsp_server, consentcam_rtsp_recording,
                                                                    tmp_path):
    """Key frames far apart: the recorder starts five seconds early and a four-second copy never reaches the window.
    Footage outside the request is not the agency's: nothing is delivered, the whole window is missing."""
    recording = consentcam_rtsp_recording
    asked = window(recording, 40, 44)
    sink = CopySink(tmp_path)
    async with device_for(consentcam_rtsp_server, recording, replay_lead_s=5.0) as device:
        result = await fetch(device, asked, sink)
    assert device.front.requests("PLAY")  # it did play
    assert sink.received == [] and result.clips == [] and result.missing == [asked]


async def test_digest_authentication_is_answered_by_the_proxy_and_ffmpeg_never_holds_the_password(
        consentcam_rtsp_server, consentcam_rtsp_recording, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    recording = consentcam_rtsp_recording
    asked = window(recording, 30, 33)
    sink = CopySink(tmp_path)
    async with device_for(consentcam_rtsp_server, recording, rtsp_auth="digest") as device:
        result = await fetch(device, asked, sink)
    (clip, provenance), = sink.received
    assert_shows(clip, recording, asked)
    authorizations = [r.headers.get("authorization") for r in device.front.received]
    assert authorizations[0] is None  # asked without, to get the challenge
    assert all(a and a.startswith("Digest ") and "qop=auth" in a for a in authorizations[1:]), authorizations
    sent = json.dumps([r.headers for r in device.front.received])
    encoded = base64.b64encode(f"{PEER_USERNAME}:{PEER_PASSWORD}".encode()).decode()
    assert PEER_PASSWORD not in sent and encoded not in sent  # Digest: the password never crossed the wire
    assert PEER_PASSWORD not in json.dumps(result.provenance) + json.dumps(provenance) + caplog.text


async def test_credentials_the_replay_server_refuses_are_credentials_rejected(consentcam_rtsp_server,
                                                                             consentcam_rtsp_recording, tmp_path):
    """The device accepts the password, its RTSP side does not: one retry with the challenge, then the 401 reaches
    FFmpeg, which has no credentials to try, and the fetch fails as refused credentials (not retried, no hang)."""
    recording = consentcam_rtsp_recording
    async with device_for(consentcam_rtsp_server, recording, rtsp_auth="digest",
                          rtsp_password="not-the-password") as device:
        with pytest.raises(CredentialsRejected) as refused:
            await fetch(device, window(recording, 10, 12), CopySink(tmp_path))
    assert [r.method for r in device.front.received] == ["OPTIONS", "OPTIONS"]
    assert PEER_PASSWORD not in str(refused.value)


async def test_a_recorder_refusing_clock_ranges_gets_the_npt_offset_and_the_provenance_says_so(
        consentcam_rtsp_server, consentcam_rtsp_recording, tmp_path):
    recording = consentcam_rtsp_recording
    asked = window(recording, 40, 44)
    sink = CopySink(tmp_path)
    async with device_for(consentcam_rtsp_server, recording, replay_ranges="npt") as device:
        result = await fetch(device, asked, sink)
    plays = device.front.requests("PLAY")
    assert [p.headers["range"] for p in plays] == [f"clock={clock(asked.start)}-{clock(asked.end)}", "npt=40.000-"]
    assert result.missing == []
    (clip, provenance), = sink.received
    assert_shows(clip, recording, asked)
    assert provenance["range"] == "npt" and provenance["range_sent"] == "npt=40.000-"
    assert provenance["clock_refused"] == "457 Invalid Range"


async def test_a_recorder_without_the_onvif_replay_tag_is_asked_again_without_it(consentcam_rtsp_server,
                                                                                consentcam_rtsp_recording, tmp_path):
    """551 Option not supported to ``Require: onvif-replay``: the same request again without it, and no more of it
    on that connection; the clock range is still tried first, then the npt offset."""
    recording = consentcam_rtsp_recording
    asked = window(recording, 60, 63)
    sink = CopySink(tmp_path)
    async with device_for(consentcam_rtsp_server, recording, replay_ranges="npt", replay_tag=False) as device:
        await fetch(device, asked, sink)
    requests = [(r.method, r.headers.get("require")) for r in device.front.received if r.method != "OPTIONS"]
    assert requests[:3] == [("DESCRIBE", "onvif-replay"), ("DESCRIBE", None), ("SETUP", None)], requests
    assert [p.headers["range"] for p in device.front.requests("PLAY")] == [
        f"clock={clock(asked.start)}-{clock(asked.end)}", "npt=60.000-"]
    (clip, provenance), = sink.received
    assert_shows(clip, recording, asked)
    assert provenance["range"] == "npt" and provenance["clock_refused"] == "457 Invalid Range"


async def test_the_test_recorder_ignores_an_npt_seek(consentcam_rtsp_server, consentcam_rtsp_recording, tmp_path):
    """Why the pixel checks above prove that the plugin asks by clock: FFmpeg's own seek (PLAY ``Range: npt=40-``),
    straight to the front, plays from the recording's start."""
    recording = consentcam_rtsp_recording
    async with device_for(consentcam_rtsp_server, recording) as device:
        url = (f"{device.front.base}/recording?start={int(recording.start.timestamp())}"
               f"&end={int(recording.end.timestamp())}")
        source = RtspSource(with_credentials(url, PEER_USERNAME, PEER_PASSWORD), url, FAST, (PEER_PASSWORD,),
                            seek_s=40)
        pulled = await asyncio.to_thread(source.pull, tmp_path / "seeked.mp4", 2.0)
    assert device.front.requests("PLAY")[-1].headers["range"].startswith("npt=40")
    assert pulled.path is not None
    facts = read_clip(pulled.path, recording)
    assert abs(seconds_between(facts.first_time, recording.start)) <= 1.0, facts.first_time
