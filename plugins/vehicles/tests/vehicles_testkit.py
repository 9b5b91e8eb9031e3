"""Helpers of the vehicle analyser's tests (imported by name, like ``rtsp_testkit``): where the real model and
photographs are cached, and clips made from them with ffmpeg."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

DOG_JPG = "usr/share/darknet/data/dog.jpg"  # Debian's darknet: a bicycle, a white pickup truck, a dog (768x576)
DOG_SHA256 = "5a9522051c3cec2bbd2f6323fccba32e8fbf3ddcc2b3e2fd46b04c720bc6f866"
CLIP_SIZE = "368x276"
CREATION_TIME = "2026-06-01T08:30:00Z"  # inside the window of the request opened by the flow test


def cache_dir() -> Path:
    """``$CONSENTCAM_TEST_CACHE``, default ``~/.cache/consentcam``: outside the repository, kept between runs."""
    return Path(os.environ.get("CONSENTCAM_TEST_CACHE", Path.home() / ".cache" / "consentcam"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if not found:
        pytest.fail("ffmpeg is required (Debian: apt-get install ffmpeg); it is not on PATH")
    return found


def scene_clip(dog_jpg: Path, target: Path, *, seconds: int = 30, truck: tuple[int, int] = (10, 20),
               size: str = CLIP_SIZE, rate: int = 5) -> Path:
    """A street camera's clip made from the photograph: an empty stretch of pavement (the dog's corner) except
    from ``truck[0]`` to ``truck[1]`` seconds, when the view shows the white pickup truck (and a bicycle)."""
    width, height = (int(v) for v in size.split("x"))
    first, last = truck
    view = f"crop={width}:{height}"
    graph = (
        f"[0:v]{view}:0:300,setsar=1,format=yuv420p,split=2[a][c];"
        f"[1:v]{view}:400:0,setsar=1,format=yuv420p[b];"
        f"[a]trim=duration={first},setpts=PTS-STARTPTS[a1];"
        f"[b]trim=duration={last - first},setpts=PTS-STARTPTS[b1];"
        f"[c]trim=duration={seconds - last},setpts=PTS-STARTPTS[c1];"
        "[a1][b1][c1]concat=n=3:v=1:a=0,noise=alls=4:allf=t[out]"
    )
    args = [ffmpeg(), "-nostdin", "-loglevel", "error", "-y",
            "-loop", "1", "-framerate", str(rate), "-t", str(seconds), "-i", str(dog_jpg),
            "-loop", "1", "-framerate", str(rate), "-t", str(seconds), "-i", str(dog_jpg),
            "-filter_complex", graph, "-map", "[out]", "-r", str(rate), "-c:v", "libx264", "-preset", "veryfast", "-crf", "32",
            "-g", str(rate * 2), "-pix_fmt", "yuv420p", "-metadata", f"creation_time={CREATION_TIME}",
            "-movflags", "+faststart", str(target)]
    subprocess.run(args, check=True, timeout=120)
    return target
