"""The one place that talks to RTSP sources, through PyAV (FFmpeg): open with timeouts and transport fallback,
then copy packets into an MP4 without decoding them.

PyAV's errors are gathered in ``SOURCE_ERRORS`` and caught here, narrowly, and turned into ConsentCam's errors
(``DeviceUnreachable``, ``CredentialsRejected``) or into this module's ``NotFoundAtSource``; their messages go
through ``masking.scrub`` first because PyAV puts the URL, credentials included, into them. Nothing here is
async: PyAV blocks, so the plugin runs these functions in a worker thread.

Behaviour worth knowing:
- Transports: TCP first; a source that refuses it (RTSP 461 Unsupported Transport, which FFmpeg reports as
  "Protocol not supported", or a 400 to a SETUP without client ports, as UDP-only servers answer) or that opens
  over TCP but sends nothing is tried over UDP at once. Connection refused or an opening that times out is
  retried with backoff, every transport again each time.
- Timeouts: PyAV's (open, read) timeouts interrupt FFmpeg wherever it blocks; FFmpeg's own ``timeout`` (socket
  I/O, also its UDP receive wait) is set to the read timeout as well.
- Stream copy: only the first video stream is taken (audio is left out: a camera's microphone is another
  matter of consent and, in many places, of wiretap law). Packets before the first key frame are dropped (a
  clip cannot start on a frame that needs an earlier one); the clip's timestamps start at zero (else the MP4
  reports a wrong duration); each packet's duration is the gap to the next, the last one the typical gap.
- Quirk: over RTSP the first packet(s) may come without a timestamp (FFmpeg has not yet tied the RTP clock to
  the stream); such packets are given the timestamp one frame before the next known one instead of being lost,
  which matters because the first packet is usually the key frame.
"""

from __future__ import annotations

import errno
import logging
import os
import statistics
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
from consentcam import CredentialsRejected, DeviceUnreachable

from . import const
from .masking import scrub

log = logging.getLogger(__name__)

# PyAV raises subclasses of av.error.FFmpegError, several of which are also OSError, ValueError or
# ConnectionError; plain OSError covers the socket layer around it.
SOURCE_ERRORS: tuple[type[BaseException], ...] = (av.error.FFmpegError, OSError)
# Answers meaning "not over this transport": 400 to a SETUP without client ports, other 4xx such as 461
# Unsupported Transport (FFmpeg turns 461 into EPROTONOSUPPORT, which PyAV raises as a plain av.error.OSError).
TRANSPORT_REFUSALS: tuple[type[BaseException], ...] = (av.error.HTTPBadRequestError, av.error.HTTPOtherClientError)
AUTH_REFUSALS: tuple[type[BaseException], ...] = (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError)


def refuses_transport(exc: BaseException) -> bool:
    return isinstance(exc, TRANSPORT_REFUSALS) or getattr(exc, "errno", None) == errno.EPROTONOSUPPORT


class NotFoundAtSource(Exception):
    """The source answered 404: no such stream, or (for a playback URL) no recording there."""


class _NothingReceived(Exception):
    """The stream opened but no packet came within the read timeout."""


@dataclass(frozen=True)
class PullOptions:
    open_timeout_s: float = const.DEFAULT_OPEN_TIMEOUT_S
    read_timeout_s: float = const.DEFAULT_READ_TIMEOUT_S
    attempts: int = const.DEFAULT_ATTEMPTS
    backoff_s: float = const.DEFAULT_BACKOFF_S
    backoff_max_s: float = const.DEFAULT_BACKOFF_MAX_S
    transports: tuple[str, ...] = const.TRANSPORTS
    slowness: float = const.DEFAULT_SLOWNESS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> PullOptions:
        """Defaults, overridden by ``CONSENTCAM_RTSP_OPEN_TIMEOUT_S``, ``..._TRANSPORTS=tcp,udp`` and so on."""
        options = cls()
        changes: dict[str, Any] = {}
        for name, value in vars(options).items():
            raw = environ.get(const.ENV_PREFIX + name.upper())
            if raw is None:
                continue
            if name == "transports":
                changes[name] = tuple(t.strip().lower() for t in raw.split(",") if t.strip())
            else:
                changes[name] = type(value)(raw)
        return replace(options, **changes)

    def backoff(self, failed_attempts: int) -> float:
        return min(self.backoff_max_s, self.backoff_s * 2 ** max(0, failed_attempts - 1))


@dataclass(frozen=True)
class StreamFacts:
    codec: str
    width: int
    height: int
    fps: float | None
    transport: str

    @property
    def frame_interval_s(self) -> float:
        return 1.0 / self.fps if self.fps else 0.1


@dataclass(frozen=True)
class Pulled:
    """What one connection yielded. ``path`` is None when no frame came."""

    path: Path | None
    facts: StreamFacts
    frames: int
    seconds: float  # media time covered, from the first frame to the end of the last
    ended: str  # "length": got the asked length; "eos": the source ended the stream; "interrupted": cut or stalled
    skipped: int  # packets dropped before the first key frame
    error: str = ""  # masked; why it was interrupted


class RtspSource:
    """One RTSP URL with its credentials. ``shown_url`` (without credentials) is the only form ever shown."""

    def __init__(self, url: str, shown_url: str, options: PullOptions, secrets: Iterable[str | None] = (),
                 seek_s: float = 0.0) -> None:
        self._url = url
        self.shown_url = shown_url
        self.options = options
        # Where to start, in seconds from the stream's start: FFmpeg sends it as PLAY's ``Range: npt=<seek_s>-``
        # (ONVIF replay, where the replay URI names a whole recording and the window is a place in it).
        self.seek_s = seek_s
        self._secrets = tuple(s for s in secrets if s)
        self.transport: str | None = None  # the one that worked last

    def scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    # --- opening ------------------------------------------------------------------------------------

    def _open_once(self, transport: str) -> Any:
        timeout_us = str(int(self.options.read_timeout_s * 1_000_000))
        container = av.open(
            self._url,
            options={"rtsp_transport": transport, "timeout": timeout_us, "allowed_media_types": "video",
                     "buffer_size": str(2 << 20)},
            timeout=(self.options.open_timeout_s, self.options.read_timeout_s),
        )
        if self.seek_s > 0:
            try:
                container.seek(int(self.seek_s * 1_000_000))  # PAUSE, then PLAY from there
            except BaseException:
                container.close()
                raise
        return container

    def open(self) -> tuple[Any, str]:
        """An open container and the transport used; retried with backoff. Raises core errors or
        ``NotFoundAtSource``. Errors are raised outside ``except`` blocks so that no PyAV exception, whose
        message holds the credentials, travels along as ``__context__``."""
        last = ""
        transports = self._ordered_transports()
        for attempt in range(1, self.options.attempts + 1):
            refused = []
            for transport in transports:
                started = time.monotonic()
                try:
                    container = self._open_once(transport)
                except SOURCE_ERRORS as exc:
                    kind, message = self._classify(exc, time.monotonic() - started)
                else:
                    if not container.streams.video:
                        container.close()
                        raise DeviceUnreachable(f"{self.shown_url} offers no video stream")
                    log.info("opened %s over %s (attempt %d)", self.shown_url, transport, attempt)
                    self.transport = transport
                    return container, transport
                last = f"{transport}: {message}"
                if kind == "auth":
                    raise CredentialsRejected(f"{self.shown_url} refused the credentials ({message})")
                if kind == "not_found":
                    raise NotFoundAtSource(f"{self.shown_url} answered {message}")
                if kind == "transport":
                    log.info("%s refused the %s transport (%s)", self.shown_url, transport, message)
                    refused.append(last)
                    continue
                log.warning("opening %s (attempt %d of %d) failed: %s", self.shown_url, attempt, self.options.attempts, last)
                break  # unreachable, not a matter of transport: back off, then every transport again
            if len(refused) == len(transports):  # an answer, and the same one each time: no use retrying
                raise DeviceUnreachable(f"{self.shown_url} refused every transport: {'; '.join(refused)}")
            if attempt < self.options.attempts:
                time.sleep(self.options.backoff(attempt))
        raise DeviceUnreachable(f"{self.shown_url} could not be opened in {self.options.attempts} attempts: {last}")

    def _classify(self, exc: BaseException, waited_s: float) -> tuple[str, str]:
        """("auth" | "not_found" | "transport" | "unreachable", masked message) for a failed opening."""
        if isinstance(exc, AUTH_REFUSALS):
            return "auth", self.scrub(str(exc))
        if isinstance(exc, av.error.HTTPNotFoundError):
            return "not_found", "404 Not Found"
        if refuses_transport(exc):
            return "transport", self.scrub(str(exc))
        if waited_s >= self.options.open_timeout_s * 0.9:
            # PyAV's interrupt ends a blocked opening with whatever FFmpeg was doing (often "Invalid data").
            return "unreachable", f"no answer within {self.options.open_timeout_s:g} s"
        return "unreachable", self.scrub(str(exc))

    def _ordered_transports(self) -> list[str]:
        transports = list(self.options.transports)
        if self.transport in transports:  # what worked before goes first
            transports.remove(self.transport)
            transports.insert(0, self.transport)
        return transports

    # --- reading ------------------------------------------------------------------------------------

    def probe(self) -> StreamFacts:
        """Open, read the stream's facts and its first packet, close."""
        container, transport = self.open()
        try:
            facts = _facts(container.streams.video[0], transport)
            problem = ""
            try:
                next(iter(container.demux(container.streams.video[0])))
            except StopIteration:
                problem = "ended the stream before sending anything"
            except SOURCE_ERRORS as exc:
                problem = f"sent nothing: {self.scrub(str(exc))}"
            if problem:
                raise DeviceUnreachable(f"{self.shown_url} {problem}")
            return facts
        finally:
            container.close()

    def pull(self, dest: Path, seconds: float) -> Pulled:
        """Copy up to ``seconds`` of media from the stream's first key frame into ``dest`` (MP4).

        A source that opens over one transport but sends nothing is tried over the next one."""
        tried: list[str] = []
        while True:
            container, transport = self.open()
            tried.append(transport)
            try:
                return _copy(container, transport, dest, seconds, self.options, self.scrub)
            except _NothingReceived as exc:
                silence = str(exc)
            finally:
                container.close()
            untried = [t for t in self.options.transports if t not in tried]
            if not untried:
                raise DeviceUnreachable(f"{self.shown_url} sent nothing over {', '.join(tried)}: {silence}")
            log.info("%s sent nothing over %s; trying %s", self.shown_url, transport, untried[0])
            self.transport = untried[0]


def _facts(stream: Any, transport: str) -> StreamFacts:
    context = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate
    return StreamFacts(codec=context.name, width=context.width, height=context.height,
                       fps=float(rate) if rate else None, transport=transport)


def _copy(container: Any, transport: str, dest: Path, seconds: float, options: PullOptions, scrub_text: Any) -> Pulled:
    stream = container.streams.video[0]
    facts = _facts(stream, transport)
    time_base: Fraction = stream.time_base
    limit = int(seconds / time_base)
    nominal = int(1 / (facts.fps * time_base)) if facts.fps else None
    part = dest.with_name(dest.name + ".part")
    output = av.open(str(part), "w", format="mp4")
    target = output.add_stream_from_template(stream)
    deadline = time.monotonic() + options.open_timeout_s + options.read_timeout_s + seconds * options.slowness

    started = False  # a key frame has been seen
    waiting: list[Any] = []  # packets from the start without a timestamp yet
    origin: int | None = None  # the first key frame's timestamp: the clip's zero
    previous: Any = None  # the last packet taken, muxed once the next one gives its duration
    last_dts = -1
    gaps: list[int] = []
    frames = skipped = 0
    ended, error = "eos", ""

    def take(packet: Any) -> bool:
        """Shift and queue one packet; False once the asked length is reached."""
        nonlocal origin, previous, last_dts, frames
        if origin is None:
            origin = packet.pts
        pts = packet.pts - origin
        if pts >= limit:
            return False
        dts = (packet.dts - origin) if packet.dts is not None else pts
        if dts <= last_dts:  # the MP4 muxer needs strictly increasing decoding times
            dts = last_dts + 1
        packet.pts, packet.dts, last_dts = max(pts, dts), dts, dts
        if previous is not None:
            gap = packet.pts - previous.pts
            if gap > 0:
                gaps.append(gap)
                previous.duration = gap
            _mux(output, target, previous)
        previous = packet
        frames += 1
        return True

    try:
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the demuxer's final empty packet
                if time.monotonic() > deadline:
                    ended, error = "interrupted", "the source is slower than real time"
                    break
                if not started:
                    if not packet.is_keyframe:
                        skipped += 1
                        continue
                    started = True
                if packet.pts is None and packet.dts is not None:
                    packet.pts = packet.dts
                if packet.pts is None:
                    if previous is None:
                        waiting.append(packet)  # timed once a packet with a timestamp comes
                        continue
                    packet.pts = previous.pts + origin + (previous.duration or nominal or 1)
                if waiting:
                    step = packet.duration or nominal or 1
                    for back, early in enumerate(waiting):
                        early.pts = packet.pts - step * (len(waiting) - back)
                    queued, waiting[:] = list(waiting), []
                    if not all(take(early) for early in queued):
                        ended = "length"
                        break
                if not take(packet):
                    ended = "length"
                    break
        except SOURCE_ERRORS as exc:
            ended, error = "interrupted", scrub_text(str(exc)) or type(exc).__name__
        if previous is not None:
            previous.duration = int(statistics.median(gaps)) if gaps else (nominal or 1)
            _mux(output, target, previous)
    finally:
        output.close()

    if previous is None:
        part.unlink(missing_ok=True)
        if ended == "interrupted" and not skipped:
            raise _NothingReceived(error)
        return Pulled(None, facts, 0, 0.0, ended, skipped, error)
    part.replace(dest)
    covered = float((previous.pts + previous.duration) * time_base)
    return Pulled(dest, facts, frames, covered, ended, skipped, error)


def _mux(output: Any, target: Any, packet: Any) -> None:
    packet.stream = target
    output.mux(packet)
