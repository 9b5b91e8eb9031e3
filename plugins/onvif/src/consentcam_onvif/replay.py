"""Which part of an asked window a device recorded, and the RTSP pull of exactly that part.

The pull reuses the RTSP plugin's puller (PyAV, stream copy, timeouts, credential masking), so an ONVIF clip is
made exactly like an RTSP recorder's.

How the window reaches the device: ONVIF replay (Streaming spec, section 6) names a whole recording by its replay
URI and positions playback with PLAY's ``Range: clock=<start>-<end>`` header (absolute UTC) and
``Require: onvif-replay``. FFmpeg (and so PyAV) can send neither, so FFmpeg talks to the recorder through a local
proxy (``replay_proxy``) that rewrites its PLAY to the window's clock range and answers the recorder's
authentication; FFmpeg does not seek, and stops after the window's length. A recorder that refuses the clock
range gets the window's offset from the recording's start (``EarliestRecording``, from the search) as
``Range: npt=<offset>-`` instead. The provenance says which range played (``range``: ``clock`` or ``npt``), the
header sent and the recorder's answer, so anyone can check where a clip was taken from.

Where the clip really starts: a recorder starts playing at a key frame, often before the asked time; its answer
to PLAY says where (``Range: clock=<start>-`` or, for an npt range, the offset). ``clip_span`` takes the clip's
start from that answer, and the part of the window the clip holds (``within``) and what it misses follow from it
and from the media's length, not from what was asked.

The media comes over the RTSP connection (TCP, interleaved), the transport the ONVIF Streaming spec recommends for
replay, whatever transports the RTSP puller is configured with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from consentcam import DeviceUnreachable, PluginError
from consentcam.hooktypes import TimeWindow
from consentcam_rtsp.masking import scrub, without_credentials
from consentcam_rtsp.puller import Pulled, PullOptions, RtspSource

from .models import Recording
from .replay_proxy import ReplayProxy, ReplaySession, parse_clock_time

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What to pull for a window: from which recording, which part (``covered``), and what no recording holds."""

    recording: Recording | None
    covered: TimeWindow | None
    missing: list[TimeWindow]

    @property
    def offset_s(self) -> float:
        """Where the covered part starts in the recording: what an npt range names."""
        assert self.recording is not None and self.covered is not None
        return (self.covered.start - self.recording.start).total_seconds()


@dataclass(frozen=True)
class Replayed:
    """A pull and how the recorder was positioned for it (None if it accepted no PLAY)."""

    pulled: Pulled
    session: ReplaySession | None


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
               password: str | None) -> Replayed:
    """Copy the planned part of the recording into ``dest`` (MP4, stream copy). Raises ConsentCam errors."""
    assert plan.covered is not None
    shown = without_credentials(replay_uri)
    try:
        proxy = ReplayProxy(shown, plan.covered.start, plan.covered.end, plan.offset_s, username, password,
                            timeout_s=options.open_timeout_s)
    except ValueError:
        raise PluginError(f"the device gave a replay URI without a host: {shown}") from None
    secrets = (password, username)
    async with proxy:
        # No credentials in FFmpeg's URL (the proxy answers the recorder's challenge), and TCP only: the proxy
        # carries the media inside the RTSP connection.
        source = RtspSource(proxy.url, shown, replace(options, transports=("tcp",)), secrets)
        try:
            pulled = await asyncio.to_thread(source.pull, dest, plan.covered.seconds)
        except DeviceUnreachable as exc:  # FFmpeg saw a closed connection or a 503: the proxy knows why
            reasons = sorted({scrub(session.error, secrets) for session in proxy.sessions if session.error})
            if not reasons:
                raise
            raise DeviceUnreachable(f"{exc.detail} (replay proxy: {'; '.join(reasons)})") from None
    session = proxy.played
    if session is not None:
        refused = f" after it refused the clock range ({session.clock_refused})" if session.clock_refused else ""
        log.info("%s played Range: %s%s; it answered Range: %s", shown, session.range_sent, refused,
                 session.range_answered)
    return Replayed(pulled, session)


def clip_span(replayed: Replayed, plan: Plan) -> TimeWindow:
    """What the clip shows: from where the recorder says it started playing (the planned start when its answer
    says nothing usable), for the length of media pulled. The pull may end before the planned part does (a gap,
    a cut stream, or a start at an earlier key frame)."""
    assert plan.covered is not None
    start = _answered_start(replayed.session, plan) or plan.covered.start
    return TimeWindow(start, start + timedelta(seconds=replayed.pulled.seconds))


def within(span: TimeWindow, covered: TimeWindow) -> TimeWindow | None:
    """The part of ``covered`` that ``span`` holds, if any."""
    start, end = max(span.start, covered.start), min(span.end, covered.end)
    return TimeWindow(start, end) if end > start else None


_CLOCK_START = re.compile(r"clock=(\d{8}T\d{6}(?:\.\d+)?Z)-")
_NPT_START = re.compile(r"npt=(\d+(?:\.\d+)?)-")


def _answered_start(session: ReplaySession | None, plan: Plan) -> datetime | None:
    """Where the recorder says it started: a clock range as it is; an npt range only when we sent one, as an
    offset from the recording's start like ours (what an npt answer to a clock range counts from is anyone's
    guess). None for anything else, or for a start outside the recording's part before the window's end."""
    assert plan.recording is not None and plan.covered is not None
    answer = (session.range_answered or "").strip() if session else ""
    start: datetime | None = None
    if found := _CLOCK_START.match(answer):
        with contextlib.suppress(ValueError):  # a well-formed time that is no date (month 13, say)
            start = parse_clock_time(found.group(1))
    elif session and session.range == "npt" and (found := _NPT_START.match(answer)):
        start = plan.recording.start + timedelta(seconds=float(found.group(1)))
    if start is not None and not plan.recording.start <= start < plan.covered.end:
        log.info("the recorder says it played from %s, outside the recording before the window's end: ignored",
                 start.isoformat())
        return None
    return start
