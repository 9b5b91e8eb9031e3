"""Helpers for the RTSP plugin's tests (a module, not a conftest, so that its name cannot clash with the main
suite's conftest): a sink that keeps copies, a camera builder, and a reader that tells what a clip holds."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import av
from consentcam.hooktypes import CameraConnection, CameraRef
from consentcam.testing.rtsp_peer import Recording
from consentcam_rtsp.plugin import RtspPlugin
from consentcam_rtsp.puller import PullOptions

# Short timeouts: every peer is on 127.0.0.1, so a second without an answer is already a dead peer.
FAST = PullOptions(open_timeout_s=3.0, read_timeout_s=3.0, attempts=3, backoff_s=0.2, backoff_max_s=0.5)


@dataclass
class CopySink:
    """The vault's place in these tests: copies each clip it is handed and remembers the provenance."""

    folder: Path
    received: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, path: Path, provenance: dict[str, Any]) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        copy = self.folder / f"evidence-{len(self.received) + 1}.mp4"
        shutil.copyfile(path, copy)
        self.received.append((copy, dict(provenance)))
        return f"evidence-{len(self.received)}"


def rtsp_camera(url: str, playback: dict[str, Any] | None = None, *, username: str | None = None,
                password: str | None = None, camera_id: str = "cam-1", timezone: str = "UTC") -> CameraRef:
    fields: dict[str, Any] = {"url": url}
    if playback is not None:
        fields["playback"] = playback
    secret = {k: v for k, v in {"username": username, "password": password}.items() if v}
    return CameraRef(camera_id=camera_id, label="Test camera", timezone=timezone,
                     connection=CameraConnection(kind="rtsp", fields=fields, secret=secret))


def plugin(**changes: Any) -> RtspPlugin:
    from dataclasses import replace

    return RtspPlugin(options=replace(FAST, **changes))


def split_nal_units(data: bytes) -> list[bytes]:
    """H.264 NAL units of one packet, Annex B (start codes) or MP4 style (4-byte lengths)."""
    if data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")):
        # Emulation prevention keeps 00 00 01 out of NAL payloads; a unit ends with a non-zero byte (stop bit).
        return [part.rstrip(b"\x00") for part in data.split(b"\x00\x00\x01") if part.strip(b"\x00")]
    units, pos = [], 0
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        units.append(data[pos + 4:pos + 4 + size])
        pos += 4 + size
    return units


def slices(data: bytes) -> list[bytes]:
    """The coded picture data of a packet: slice NAL units (types 1 and 5), without parameter sets or SEI."""
    return [unit for unit in split_nal_units(data) if unit and unit[0] & 0x1F in (1, 5)]


@dataclass
class ClipFacts:
    codec: str
    profile: str | None
    width: int
    height: int
    container_duration_s: float
    stream_duration_s: float
    first_pts: int
    times: list[datetime | None]
    slices: list[list[bytes]]
    key_frames: int

    @property
    def first_time(self) -> datetime | None:
        return self.times[0] if self.times else None

    @property
    def last_time(self) -> datetime | None:
        return self.times[-1] if self.times else None

    @property
    def frames(self) -> int:
        return len(self.times)


def read_clip(path: Path, recording: Recording) -> ClipFacts:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        coded = [slices(bytes(p)) for p in packets]
        key_frames = sum(1 for p in packets if p.is_keyframe)
        first_pts = min(p.pts for p in packets)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        times = [recording.time_shown(frame.to_ndarray(format="gray")) for frame in container.decode(stream)]
        return ClipFacts(
            codec=context.name, profile=context.profile, width=context.width, height=context.height,
            container_duration_s=container.duration / 1_000_000 if container.duration else 0.0,
            stream_duration_s=float(stream.duration * stream.time_base) if stream.duration else 0.0,
            first_pts=first_pts, times=times, slices=coded, key_frames=key_frames,
        )


def recording_slices(recording: Recording, start: datetime, end: datetime) -> list[list[bytes]]:
    """The recorder's own coded pictures for [start, end): what a stream copy must hand over unchanged."""
    first = round((start - recording.start).total_seconds() * recording.fps)
    last = round((end - recording.start).total_seconds() * recording.fps)
    with av.open(str(recording.path)) as container:
        packets = [p for p in container.demux(container.streams.video[0]) if p.size]
        return [slices(bytes(p)) for p in packets[first:last]]


def seconds(delta: timedelta) -> float:
    return delta.total_seconds()
