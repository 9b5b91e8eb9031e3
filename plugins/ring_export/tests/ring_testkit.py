"""Helpers of the Ring export tests: short MP4 clips made with Debian's ffmpeg, each with known content (a solid
colour and a ``comment`` tag naming it), a fake account with five events on one doorbell, and a sink that
collects what the plugin hands over."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ring_fake import FakeDevice, FakeEvent, RingFake

# ring-doorbell 0.9 uses aiohttp's BasicAuth, deprecated since aiohttp 3.12: its warnings are not ours to fix.
LIBRARY_WARNINGS = [pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
                    pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning")]

EMAIL, PASSWORD, CODE = "owner@example.org", "pa ss/w@rd%20ünï", "246810"
DOORBELL_ID, NO_PLAN_ID, CAM_ID, FAILING_ID = 987652, 987653, 555001, 555002
# Five events on the doorbell, minutes after a base time: (minute, colour, kind, seconds, history gives duration)
BASE = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)
EVENTS = [(0, "red", "motion", 3, True), (10, "green", "ding", 2, True), (12, "blue", "motion", 3, False),
          (30, "yellow", "motion", 2, True), (50, "white", "on_demand", 2, True)]


def event_id(index: int) -> int:
    return 7_200_000_000_000_000_000 + index * 1_000_003  # Ring's ids are large and grow with time


def make_clip(path: Path, colour: str, seconds: float, comment: str) -> Path:
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "Debian's ffmpeg is needed (apt-get install ffmpeg)"
    subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", f"color=c={colour}:s=160x120:r=10:d={seconds}",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "10", "-metadata", f"comment={comment}",
                    "-movflags", "+faststart", str(path)], check=True, timeout=60)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def ring_media(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("ring-media")
    return {event_id(i): make_clip(folder / f"event-{i}.mp4", colour, seconds, f"ring-event-{i}")
            for i, (_, colour, _, seconds, _) in enumerate(EVENTS)}


def build_account(fake: RingFake, media: dict[int, Path]) -> None:
    events = []
    for i, (minute, _, kind, seconds, gives_duration) in enumerate(EVENTS):
        events.append(FakeEvent(event_id(i), BASE + timedelta(minutes=minute), kind, media[event_id(i)],
                                float(seconds) if gives_duration else None))
    fake.devices = [
        FakeDevice(DOORBELL_ID, "Front Door", "doorbots", "lpd_v1", True, events),
        FakeDevice(NO_PLAN_ID, "Back Door", "authorized_doorbots", "lpd_v1", False,
                   [FakeEvent(event_id(90), BASE + timedelta(minutes=11), "motion", media[event_id(1)], 2.0)]),
        FakeDevice(CAM_ID, "Driveway", "stickup_cams", "hp_cam_v1", True, []),
        FakeDevice(FAILING_ID, "Garage", "stickup_cams", "hp_cam_v1", True, [], failing=True),
    ]


@pytest.fixture
async def ring_fake(ring_media: dict[int, Path]) -> Any:
    fake = await RingFake(email=EMAIL, password=PASSWORD, code=CODE).start()
    build_account(fake, ring_media)
    try:
        yield fake
    finally:
        await fake.stop()


@dataclass
class CollectingSink:
    """A sink as the core would give one: copies the clip, returns an id."""

    folder: Path
    received: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, path: Path, provenance: dict[str, Any]) -> str:
        copy = self.folder / f"received-{len(self.received) + 1}.mp4"
        shutil.copyfile(path, copy)
        self.received.append((copy, provenance))
        return f"evidence-{len(self.received)}"
