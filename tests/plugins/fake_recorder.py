"""A test double of a vendor recorder plugin: answers fetches for cameras of kind "rtsp" with a real H.264
clip made by ffmpeg, and remembers what it was asked, so tests can prove when it was (not) called."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from consentcam import hookimpl
from consentcam.hooktypes import CameraRef, ClipSink, FetchResult, PluginInfo, TimeWindow


class FakeRecorder:
    name = "fake-recorder"

    def __init__(self) -> None:
        self.calls: list[tuple[str, TimeWindow]] = []

    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo("fake-recorder", "0", ("fetch_recording",))

    @hookimpl
    async def consentcam_fetch_recording(self, camera: CameraRef, window: TimeWindow, sink: ClipSink) -> FetchResult | None:
        if camera.connection.kind != "rtsp":
            return None
        self.calls.append((camera.camera_id, window))
        out = Path(tempfile.mkdtemp()) / "clip.mp4"
        seconds = min(window.seconds, 2.0)
        process = await asyncio.create_subprocess_exec(
            "ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={seconds}",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out))
        assert await process.wait() == 0
        await sink(out, {"recorder": "fake", "secret_seen": bool(camera.connection.secret)})
        missing = [TimeWindow(window.start.replace(microsecond=0) + (window.end - window.start) / 2, window.end)]
        return FetchResult(clips=[out], provenance={"recorder": "fake"}, missing=missing, note="fake recorder")
