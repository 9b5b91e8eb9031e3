"""Which part of an asked window a device recorded, and the RTSP pull of exactly that part.

The pull reuses the RTSP plugin's puller (PyAV, stream copy, transports, timeouts, credential masking), so an
ONVIF clip is made exactly like an RTSP recorder's.

How the window reaches the device: ONVIF replay (Streaming spec, section 6) names a whole recording by its replay
URI and positions playback with PLAY's ``Range`` header. The spec asks for absolute ``clock=`` ranges, but FFmpeg
(and so PyAV) can only send ``npt=`` ranges. So the pull seeks to the window's start as an offset from the
recording's start (``EarliestRecording``, from the search), which FFmpeg sends as ``Range: npt=<offset>-``, and
stops after the window's length. A device that accepts only ``clock=`` ranges will play from the recording's start
instead; the clip's first frame then shows the wrong time, and the ``asked``/``covered`` provenance lets anyone
check (see the README's limits).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from consentcam.hooktypes import TimeWindow
from consentcam_rtsp.masking import with_credentials, without_credentials
from consentcam_rtsp.puller import Pulled, PullOptions, RtspSource

from .models import Recording


@dataclass(frozen=True)
class Plan:
    """What to pull for a window: from which recording, which part (``covered``), and what no recording holds."""

    recording: Recording | None
    covered: TimeWindow | None
    missing: list[TimeWindow]

    @property
    def seek_s(self) -> float:
        assert self.recording is not None and self.covered is not None
        return (self.covered.start - self.recording.start).total_seconds()


def plan(window: TimeWindow, recordings: list[Recording], preferred_token: str | None = None) -> Plan:
    """The recording that covers most of ``window`` (the owner's chosen one, when it covers any), and the rest.

    One recording per window: a device keeps one recording per camera source, and a gap inside it is reported by
    the pull ending early.
    """
    overlaps = [(recording, _overlap(window, recording)) for recording in recordings]
    overlaps = [(recording, part) for recording, part in overlaps if part is not None]
    if not overlaps:
        return Plan(None, None, [window])
    preferred = [item for item in overlaps if item[0].token == preferred_token]
    recording, covered = preferred[0] if preferred else max(overlaps, key=lambda item: item[1].seconds)
    return Plan(recording, covered, outside(window, covered))


def outside(window: TimeWindow, covered: TimeWindow) -> list[TimeWindow]:
    """The parts of ``window`` before and after ``covered``."""
    parts = []
    if covered.start > window.start:
        parts.append(TimeWindow(window.start, covered.start))
    if covered.end < window.end:
        parts.append(TimeWindow(covered.end, window.end))
    return parts


def _overlap(window: TimeWindow, recording: Recording) -> TimeWindow | None:
    start, end = max(window.start, recording.start), min(window.end, recording.end)
    return TimeWindow(start, end) if end > start else None


async def pull(replay_uri: str, plan: Plan, dest: Path, options: PullOptions, username: str | None,
               password: str | None) -> Pulled:
    """Copy the planned part of the recording into ``dest`` (MP4, stream copy). Raises ConsentCam errors."""
    assert plan.covered is not None
    shown = without_credentials(replay_uri)
    source = RtspSource(with_credentials(shown, username, password), shown, options, (password, username),
                        seek_s=plan.seek_s)
    return await asyncio.to_thread(source.pull, dest, plan.covered.seconds)


def covered_by(pulled: Pulled, covered: TimeWindow) -> TimeWindow:
    """What the clip really holds: the pull may end before the planned part does (a gap, or a cut stream)."""
    return TimeWindow(covered.start, min(covered.end, covered.start + timedelta(seconds=pulled.seconds)))
