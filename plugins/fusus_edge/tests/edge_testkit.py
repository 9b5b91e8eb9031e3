"""A real rig for the edge relay: the core served on a free port of 127.0.0.1 (real clock, SQLite), the real
``consentcam-edge`` agent as a subprocess paired through the CLI, connecting through a TCP proxy the test can
cut (socket loss), and gst-rtsp-server's live mount as every camera."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from consentcam.testing.waiting import until

AGENT = str(Path(sys.executable).parent / "consentcam-edge")
CENTRE = (41.88, -87.63)  # inside the world's default agency square
STATEMENT_S = 3.0


class Proxy:
    """A TCP proxy on its own port; ``cut`` closes every connection and stops listening, ``resume`` listens again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self.writers.clear()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)
        self.server = None

    async def resume(self) -> None:
        await self.start()


@dataclass
class Rig:
    p: Any
    url: str
    runner: web.AppRunner
    app: web.Application
    world: Any
    agency: str
    supervisor: Any
    investigator: Any
    other_investigator: Any
    owner: Any
    state: Path
    log_path: Path
    proxy: Proxy
    code: str = ""
    device_id: str = ""
    cameras: dict[str, str] = field(default_factory=dict)  # live mode -> camera id (camera_ref is the mode)
    agent: asyncio.subprocess.Process | None = None
    http: aiohttp.ClientSession | None = None

    @property
    def hub(self) -> Any:
        from consentcam.live.hub import HUB

        return self.app[HUB]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def call(self, method: str, path: str, who: Any = None, **kwargs: Any) -> tuple[int, Any]:
        assert self.http is not None
        headers = who.headers if who is not None else {}
        async with self.http.request(method, self.url + path, headers=headers, **kwargs) as r:
            if r.content_type in ("application/json", "application/problem+json"):
                return r.status, await r.json()
            return r.status, await r.read()

    async def start_agent(self, rtsp_url: str, *extra: str) -> None:
        argv = [AGENT, "run", "--state", str(self.state), "--max-backoff", "1", *extra]
        for ref in self.cameras:
            argv += ["--camera", f"{ref}={rtsp_url}"]
        self.agent = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                          stdout=asyncio.subprocess.DEVNULL,
                                                          stderr=open(self.log_path, "ab"))  # noqa: SIM115
        await self.wait_connected()

    async def wait_connected(self, timeout: float = 20.0) -> None:
        await until(lambda: self.device_id in self.hub.connected and self.hub.links[self.device_id].refs, timeout,
                    lambda: f"the agent did not connect; its log:\n{self.log()}")

    async def open(self, mode: str, who: Any = None, reason: str = "shots fired reported") -> tuple[int, Any]:
        return await self.call("POST", "/api/v1/live-sessions", who or self.investigator,
                               json={"camera_id": self.cameras[mode], "reason": reason})

    async def segments(self, session_id: str, who: Any = None) -> list[int]:
        status, body = await self.call("GET", f"/api/v1/live-sessions/{session_id}/playlist.m3u8", who or self.investigator)
        if status != 200:
            return []
        return [int(line.split("/")[-1][:-3]) for line in body.decode().splitlines() if line.startswith("segments/")]

    async def wait_segments(self, session_id: str, count: int = 1, timeout: float = 20.0) -> list[int]:
        found: list[int] = []

        async def enough() -> bool:
            nonlocal found
            found = await self.segments(session_id)
            return len(found) >= count

        await until(enough, timeout, lambda: f"no {count} segments for {session_id}; agent log:\n{self.log()}")
        return found

    def agent_said(self, kind: str, session_id: str) -> dict[str, Any] | None:
        for event in self.hub.agent_events:
            if event.get("t") == kind and event.get("session") == session_id:
                return event
        return None



def decode_frames(data: bytes) -> list[Any]:
    """Every video frame PyAV decodes from one MPEG-TS segment."""
    import av

    frames = []
    with av.open(io.BytesIO(data), format="mpegts") as container:
        for frame in container.decode(video=0):
            frames.append(frame)
    return frames


@contextlib.asynccontextmanager
async def rig(database_url: str, tmp_path: Path, rtsp_url: str, modes: tuple[str, ...] = ("always", "emergency_only", "never"),
              *, agent_args: tuple[str, ...] = (), via_proxy: bool = True, plugins: tuple[object, ...] = (),
              **settings_overrides: Any):
    from consentcam.clock import Clock
    from consentcam.http.app import create_app
    from consentcam.platform import open_platform
    from consentcam.schemas import Connection
    from consentcam.settings import Settings
    from consentcam.testing.rtsp_peer import free_port
    from consentcam.testing.world import World

    port = free_port()
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", database_url=database_url,  # type: ignore[call-arg]
                        secret_key="test-deployment-key-not-for-production", public_url=f"http://127.0.0.1:{port}",
                        load_entry_point_plugins=False, run_jobs_in_process=False,
                        **{"live_statement_seconds": STATEMENT_S, **settings_overrides})
    p = await open_platform(settings, clock=Clock(), extra_plugins=plugins)
    app = create_app(settings, platform=p, run_jobs=False)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    proxy = Proxy(port)
    await proxy.start()
    world = World(p)
    agency = await world.agency()
    r = Rig(p=p, url=f"http://127.0.0.1:{port}", runner=runner, app=app, world=world, agency=agency,
            supervisor=await world.staff(agency, "supervisor"), investigator=await world.staff(agency, "investigator"),
            other_investigator=await world.staff(agency, "investigator"), owner=await world.owner(),
            state=tmp_path / "edge-state", log_path=tmp_path / "agent.log", proxy=proxy)
    r.http = aiohttp.ClientSession()
    try:
        status, body = await r.call("POST", "/api/v1/edge/pairing-codes", r.owner)
        assert status == 201, body
        r.code = body["code"]
        core = f"http://127.0.0.1:{proxy.port if via_proxy else port}"
        rc, out, err = await run_cli("pair", "--core", core, "--code", r.code,
                                     "--state", str(r.state), "--label", "Shop relay")
        assert rc == 0, err
        r.device_id = json.loads((r.state / "device.json").read_text())["device_id"]
        for mode in modes:
            r.cameras[mode] = await world.camera(
                r.owner, *CENTRE, label=f"{mode} camera",
                connection=Connection(kind="edge", device_id=r.device_id, camera_ref=mode),  # type: ignore[call-arg]
                grant={"map": True, "live": mode})
        await r.start_agent(rtsp_url, *agent_args)
        yield r
    finally:
        if r.agent is not None and r.agent.returncode is None:
            r.agent.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(r.agent.wait(), 5)
            if r.agent.returncode is None:
                r.agent.kill()
        await r.http.close()
        with contextlib.suppress(Exception):
            await proxy.cut()
        await runner.cleanup()
        await p.db.dispose()


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(AGENT, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()
