"""Frames from a clip at a fixed rate, with PyAV, scaled straight to the model's size.

Every frame is decoded (inter frames need their references) but only the sampled ones are converted, and
FFmpeg's scaler turns them into BGR at the letterbox size in one step, so a 1080p clip costs little more than
its decode. A still picture (JPEG, PNG) is one frame at 0 s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from .detector import fitted_size

log = logging.getLogger(__name__)


class UnreadableClip(Exception):
    """The file has no video FFmpeg can decode."""


@dataclass(frozen=True)
class Sample:
    at_s: float  # offset from the clip's first frame
    bgr: np.ndarray  # HxWx3 uint8, fitted inside the model's square


def sample(path: Path, *, every_s: float, size: int, skip_nonref: bool = False) -> Iterator[Sample]:
    """Yield the first frame at or after each multiple of ``every_s`` (0, every_s, 2*every_s, ...).

    With ``skip_nonref`` the decoder skips frames nothing else refers to (B-frames, mostly): about half the
    decoding of a typical H.264 clip, at the price of a sample landing a frame or two after its due time."""
    if every_s <= 0:
        raise ValueError("the sampling interval must be positive")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise UnreadableClip(f"{path.name}: {exc}") from exc
    with container:
        if not container.streams.video:
            raise UnreadableClip(f"{path.name}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if skip_nonref:
            stream.codec_context.skip_frame = "NONREF"
        origin: float | None = None
        due = 0.0
        try:
            for frame in container.decode(stream):
                at = frame.time if frame.time is not None else (due if origin is None else None)
                if at is None:
                    continue
                if origin is None:
                    origin = at
                offset = at - origin
                if offset + 1e-6 < due:
                    continue
                width, height = fitted_size(frame.width, frame.height, size)
                bgr = frame.to_ndarray(format="bgr24", width=width, height=height,
                                       interpolation=av.video.reformatter.Interpolation.BILINEAR)
                yield Sample(round(offset, 3), bgr)
                while due <= offset + 1e-6:
                    due += every_s
        except av.error.FFmpegError as exc:  # a clip cut short: keep what was decoded
            log.warning("%s: decoding stopped early: %s", path.name, exc)
