"""Failures on the way to a recorder: refused connections, silent servers, streams cut or stalled midway.

Every failure that nothing can fix on the spot becomes a ConsentCam error within the configured timeouts, after
the configured retries; a stream that breaks midway is resumed for the rest of the window.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import timedelta

import pytest
from consentcam import DeviceUnreachable
from consentcam.hooktypes import TimeWindow
from rtsp_testkit import CopySink, plugin, read_clip, rtsp_camera

pytestmark = pytest.mark.peer("rtsp")


def at(recording, second: float):
    return recording.start + timedelta(seconds=second)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_connection_refused_is_device_unreachable_after_the_retries(consentcam_rtsp_recording, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="consentcam_rtsp")
    recording = consentcam_rtsp_recording
    camera = rtsp_camera(f"rtsp://127.0.0.1:{closed_port()}/", {"family": "dahua", "timezone": "UTC"})
    started = time.monotonic()
    with pytest.raises(DeviceUnreachable, match="could not be opened in 3 attempts.*Connection refused"):
        await plugin(attempts=3, backoff_s=0.2, backoff_max_s=0.3).consentcam_fetch_recording(
            camera, TimeWindow(at(recording, 1), at(recording, 2)), CopySink(tmp_path))
    elapsed = time.monotonic() - started
    attempts = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    assert [m.split("(attempt ")[1][:6] for m in attempts] == ["1 of 3", "2 of 3", "3 of 3"]
    assert elapsed < 0.2 + 0.3 + 1.0  # the backoffs, and no waiting on a refusal


class SilentServer:
    """Accepts TCP connections, counts them, and never says a word."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> SilentServer:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            self.writers.append(writer)

        self.server = await asyncio.start_server(accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self.writers:
            writer.close()
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]


async def test_a_silent_server_times_out_within_the_open_timeout_on_every_attempt(consentcam_rtsp_recording, tmp_path):
    recording = consentcam_rtsp_recording
    async with SilentServer() as silent:
        camera = rtsp_camera(f"rtsp://127.0.0.1:{silent.port}/", {"family": "hikvision", "timezone": "UTC"})
        started = time.monotonic()
        with pytest.raises(DeviceUnreachable, match="no answer within 1 s"):
            await plugin(open_timeout_s=1.0, attempts=2, backoff_s=0.2).consentcam_fetch_recording(
                camera, TimeWindow(at(recording, 1), at(recording, 2)), CopySink(tmp_path))
        elapsed = time.monotonic() - started
    # Two attempts of one second and one backoff; a timeout is not a transport refusal, so no UDP attempt too.
    assert silent.connections == 2
    assert 2.0 <= elapsed < 2.0 + 0.2 + 1.5


class CuttingProxy:
    """A TCP proxy to the recorder that breaks the first connection ``after_s`` seconds in: ``cut`` closes it,
    ``stall`` stops passing bytes (the connection stays open). Later connections pass untouched."""

    def __init__(self, upstream_port: int, after_s: float, mode: str) -> None:
        self.upstream_port = upstream_port
        self.after_s = after_s
        self.mode = mode
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CuttingProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.tasks:
            task.cancel()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first = self.connections == 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        stalled = asyncio.Event()

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    if stalled.is_set():
                        await asyncio.sleep(3600)
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                sink.close()

        pipes = [asyncio.ensure_future(pipe(reader, up_writer)), asyncio.ensure_future(pipe(up_reader, writer))]
        self.tasks.update(pipes)
        if first:
            await asyncio.sleep(self.after_s)
            if self.mode == "cut":
                for task in pipes:
                    task.cancel()
            else:
                stalled.set()
        await asyncio.gather(*pipes, return_exceptions=True)


@pytest.mark.parametrize("mode", ["cut", "stall"])
async def test_a_stream_broken_midway_is_resumed_for_the_rest_of_the_window(mode, consentcam_rtsp_recording,
                                                                            consentcam_rtsp_server, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="consentcam_rtsp")
    recording = consentcam_rtsp_recording
    window = TimeWindow(at(recording, 20), at(recording, 26))
    async with CuttingProxy(consentcam_rtsp_server.ports["main"], after_s=2.5, mode=mode) as proxy:
        camera = rtsp_camera(f"rtsp://127.0.0.1:{proxy.port}/", {"family": "hikvision", "timezone": "UTC"})
        sink = CopySink(tmp_path)
        result = await plugin(read_timeout_s=1.5).consentcam_fetch_recording(camera, window, sink)
    assert proxy.connections == 2 and len(sink.received) == 2 and result.missing == []
    assert any("asking for the rest" in r.getMessage() for r in caplog.records)
    first, second = (read_clip(path, recording) for path, _ in sink.received)
    # Together the two clips hold every frame of the window; the second one starts at the whole second at or
    # before the cut (recorder URLs carry whole seconds), so they may overlap by less than a second.
    shown = sorted(set(first.times) | set(second.times))
    expected = [recording.time_of_frame(n) for n in range(20 * recording.fps, 26 * recording.fps)]
    assert shown == expected
    assert first.first_time == window.start and second.last_time == expected[-1]
    assert 0 <= (first.last_time - second.first_time).total_seconds() < 1.0
    print(f"\nACCURACY resumed after a {mode}: clips of {first.container_duration_s:.1f} s and "
          f"{second.container_duration_s:.1f} s, {len(first.times) + len(second.times) - len(shown)} frame(s) in both")
