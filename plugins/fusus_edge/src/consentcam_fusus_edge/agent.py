"""The edge agent: one outbound WebSocket to the core, reconnecting with backoff; FFmpeg pulls a camera's RTSP
stream and cuts it into 1-second HLS segments by stream copy (no transcoding); each finished segment goes to the
core as one binary frame. A watchdog asks the signed policy about every running relay five times a second and
stops what it no longer allows, whether or not the socket is up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from . import __version__
from .policy import Policy, StatementRejected

log = logging.getLogger("consentcam_edge")

WATCHDOG_S = 0.2
PUMP_S = 0.1
FETCH_CHUNK = 512 << 10
SEGMENT_NAME = re.compile(r"seg_(\d+)\.ts$")


@dataclass
class Identity:
    """What pairing left on the box: the core's URL, this device's id and key, the core's public signing key."""

    core: str
    device_id: str
    device_key: str
    core_public_key: str

    @classmethod
    def load(cls, folder: Path) -> Identity:
        data = json.loads((folder / "device.json").read_text())
        return cls(data["core"], data["device_id"], data["device_key"], data["core_public_key"])

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "device.json"
        tmp = folder / "device.json.tmp"
        tmp.write_text(json.dumps(self.__dict__, indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)
        return path


async def pair(core: str, code: str, label: str | None = None) -> Identity:
    """Exchange a one-time pairing code for this device's key."""
    core = core.rstrip("/")
    async with aiohttp.ClientSession() as http, http.post(f"{core}/api/v1/edge/pair",
                                                          json={"code": code, **({"label": label} if label else {})}) as r:
        body = await r.json(content_type=None)
        if r.status != 201:
            raise PairingFailed(body.get("detail") if isinstance(body, dict) else f"HTTP {r.status}")
    return Identity(core, body["device_id"], body["device_key"], body["core_public_key"])


class PairingFailed(RuntimeError):
    pass


@dataclass
class Relay:
    session: dict[str, Any]
    camera_ref: str
    folder: Path
    process: asyncio.subprocess.Process
    sent: set[int] = field(default_factory=set)
    pump: asyncio.Task[None] | None = None


class Agent:
    def __init__(self, identity: Identity, cameras: dict[str, str], *, ffmpeg: str = "ffmpeg",
                 max_backoff_s: float = 30.0, work_dir: Path | None = None, rtsp_transport: str = "tcp",
                 recorders: dict[str, dict[str, Any]] | None = None) -> None:
        self.identity = identity
        self.cameras = cameras
        self.ffmpeg = shutil.which(ffmpeg) or ffmpeg
        self.max_backoff_s = max_backoff_s
        self.rtsp_transport = rtsp_transport
        self.recorders = recorders or {}  # camera ref -> RTSP recorder connection (for direct fetch)
        self.fetches: set[asyncio.Task[None]] = set()
        self.policy = Policy(identity.core_public_key, identity.device_id)
        self.relays: dict[str, Relay] = {}
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._send_lock = asyncio.Lock()
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="consentcam-edge-"))
        self.connections = 0

    # --- the socket -----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        base = self.identity.core.rstrip("/")
        return re.sub(r"^http", "ws", base) + "/api/v1/edge/connect"

    async def run(self) -> None:
        watchdog = asyncio.create_task(self._watchdog())
        backoff = 0.5
        try:
            async with aiohttp.ClientSession() as http:
                while True:
                    started = time.monotonic()
                    try:
                        await self._connect(http)
                    except aiohttp.WSServerHandshakeError as exc:
                        if exc.status == 401:
                            log.error("the core refused this device's key (unpaired?); pair again")
                        else:
                            log.warning("connection refused by the core: HTTP %s", exc.status)
                    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                        log.warning("no connection to the core: %s", exc or type(exc).__name__)
                    finally:
                        self.ws = None
                    if time.monotonic() - started > 10:
                        backoff = 0.5  # it was a working connection: come back quickly
                    delay = backoff * (0.8 + 0.4 * random.random())
                    log.info("reconnecting in %.1f s", delay)
                    await asyncio.sleep(delay)
                    backoff = min(backoff * 2, self.max_backoff_s)
        finally:
            watchdog.cancel()
            for session_id in list(self.relays):
                await self._stop(session_id, "the agent is stopping", notify=False)

    async def _connect(self, http: aiohttp.ClientSession) -> None:
        headers = {"Authorization": f"Bearer {self.identity.device_key}", "User-Agent": f"consentcam-edge/{__version__}"}
        async with http.ws_connect(self.url, headers=headers, heartbeat=5.0, timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                                   max_msg_size=1 << 20) as ws:
            self.ws = ws
            self.connections += 1
            log.info("connected to %s (connection %d)", self.url, self.connections)
            await self._send({"t": "hello", "cameras": sorted(self.cameras), "running": sorted(self.relays),
                              "version": __version__})
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    await self._on_message(json.loads(message.data))
                elif message.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                    break
            log.warning("the connection to the core closed")

    async def _send(self, message: dict[str, Any] | bytes) -> bool:
        ws = self.ws
        if ws is None or ws.closed:
            return False
        try:
            async with self._send_lock:
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                else:
                    await ws.send_str(json.dumps(message, separators=(",", ":")))
            return True
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            return False

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("t")
        if kind == "policy":
            try:
                statement = self.policy.accept(message["statement"], message["signature"])
                log.debug("policy for %s: %s", statement["camera_ref"], statement["live"])
            except (StatementRejected, KeyError, ValueError) as exc:
                log.error("ignored a live policy statement: %s", exc)
            await self._enforce()
        elif kind == "start":
            await self._start(message.get("session") or {})
        elif kind == "stop":
            await self._stop(str(message.get("session")), str(message.get("reason") or "stopped by the core"))
        elif kind == "renew":
            relay = self.relays.get(str(message.get("session")))
            if relay is not None:
                relay.session["ends_at"] = float(message.get("ends_at", relay.session["ends_at"]))
        elif kind == "fetch":
            task = asyncio.create_task(self._fetch(message))
            self.fetches.add(task)
            task.add_done_callback(self.fetches.discard)
        elif kind == "sync":
            wanted = {str(s.get("id")): s for s in message.get("sessions", [])}
            for session_id in list(self.relays):
                if session_id not in wanted:
                    await self._stop(session_id, "the core no longer has this session open")
            for session_id, session in wanted.items():
                if session_id not in self.relays:
                    await self._start(session)

    # --- direct fetch: a recorded window from the local recorder, through the RTSP plugin ------------------

    async def _fetch(self, message: dict[str, Any]) -> None:
        """Pull a window from the camera's recorder on the local network (the RTSP plugin, installed beside the
        agent) and send each clip up the socket in chunks; the core hands them to the vault like an owner upload."""
        fetch_id, ref = str(message.get("fetch")), str(message.get("camera_ref"))
        recorder = self.recorders.get(ref)
        if recorder is None:
            await self._send({"t": "fetch_failed", "fetch": fetch_id, "reason": f"no recorder is configured for {ref!r}"})
            return
        try:
            from datetime import UTC, datetime

            from consentcam.hooktypes import CameraConnection, CameraRef, TimeWindow
            from consentcam_rtsp.plugin import RtspPlugin
        except ImportError:
            await self._send({"t": "fetch_failed", "fetch": fetch_id,
                              "reason": "the RTSP plugin (consentcam-rtsp) is not installed beside the agent"})
            return
        fields = {k: v for k, v in recorder.items() if k not in ("username", "password")}
        secret = {k: v for k, v in recorder.items() if k in ("username", "password")}
        camera = CameraRef(camera_id=ref, label=ref, connection=CameraConnection("rtsp", fields, secret),
                           timezone=str((fields.get("playback") or {}).get("timezone", "UTC")))
        window = TimeWindow(datetime.fromtimestamp(float(message["start"]), UTC),
                            datetime.fromtimestamp(float(message["end"]), UTC))
        sent: list[dict[str, Any]] = []

        async def sink(path: Path, provenance: dict[str, Any]) -> str:
            import hashlib

            number, digest, size = len(sent), hashlib.sha256(), 0
            with open(path, "rb") as clip:
                while chunk := clip.read(FETCH_CHUNK):
                    digest.update(chunk)
                    header = json.dumps({"fetch": fetch_id, "clip": number, "offset": size}).encode()
                    if not await self._send(struct.pack(">I", len(header)) + header + chunk):
                        raise ConnectionError("the socket to the core closed during the upload")
                    size += len(chunk)
            sent.append({"clip": number, "size": size, "sha256": digest.hexdigest(), "name": Path(path).name,
                         "provenance": provenance})
            return f"{fetch_id}:{number}"

        try:
            result = await RtspPlugin(work_dir=self.work_dir).consentcam_fetch_recording(camera, window, sink)
        except Exception as exc:  # the plugin's errors, the recorder's, the socket's: all reported, none raised
            log.warning("fetch %s on %s failed: %s", fetch_id, ref, exc)
            await self._send({"t": "fetch_failed", "fetch": fetch_id, "reason": str(exc)[:500]})
            return
        log.info("fetch %s on %s: %d clip(s)", fetch_id, ref, len(sent))
        await self._send({"t": "fetched", "fetch": fetch_id, "clips": sent, "note": result.note if result else "",
                          "missing": [[w.start.timestamp(), w.end.timestamp()] for w in (result.missing if result else [])],
                          "provenance": result.provenance if result else {}})

    # --- relays ---------------------------------------------------------------------------------------

    async def _start(self, session: dict[str, Any]) -> None:
        session_id, ref = str(session.get("id")), str(session.get("camera_ref"))
        if session_id in self.relays:
            return
        refusal = self.policy.refusal(ref, session, time.time())
        if refusal is None and ref not in self.cameras:
            refusal = "this agent offers no camera by that reference"
        if refusal is not None:
            log.warning("refused to start session %s on %s: %s", session_id, ref, refusal)
            await self._send({"t": "refused", "session": session_id, "reason": refusal})
            return
        folder = self.work_dir / session_id
        folder.mkdir(parents=True, exist_ok=True)
        argv = [self.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-rtsp_transport", self.rtsp_transport,
                "-i", self.cameras[ref], "-map", "0:v:0", "-c", "copy", "-f", "hls", "-hls_time", "1",
                "-hls_list_size", "10", "-hls_flags", "delete_segments+temp_file+omit_endlist",
                "-hls_segment_filename", str(folder / "seg_%06d.ts"), str(folder / "live.m3u8")]
        process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                       stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        relay = Relay(dict(session), ref, folder, process)
        self.relays[session_id] = relay
        relay.pump = asyncio.create_task(self._pump(session_id, relay))
        log.info("started session %s on %s (ffmpeg pid %d)", session_id, ref, process.pid)
        await self._send({"t": "started", "session": session_id})

    async def _stop(self, session_id: str, reason: str, *, notify: bool = True) -> None:
        relay = self.relays.pop(session_id, None)
        if relay is None:
            if notify:
                await self._send({"t": "stopped", "session": session_id, "reason": reason})
            return
        if relay.pump is not None:
            relay.pump.cancel()
        if relay.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                relay.process.kill()  # a live relay keeps no file worth closing cleanly: stop at once
        with contextlib.suppress(Exception):
            await asyncio.wait_for(relay.process.wait(), 5)
        shutil.rmtree(relay.folder, ignore_errors=True)
        log.info("stopped session %s: %s", session_id, reason)
        if notify:
            await self._send({"t": "stopped", "session": session_id, "reason": reason})

    async def _enforce(self) -> None:
        now = time.time()
        for session_id, relay in list(self.relays.items()):
            refusal = self.policy.refusal(relay.camera_ref, relay.session, now)
            if refusal is None and relay.process.returncode is not None:
                err = b""
                if relay.process.stderr is not None:
                    with contextlib.suppress(Exception):
                        err = await asyncio.wait_for(relay.process.stderr.read(2000), 0.2)
                refusal = f"the camera stream ended ({err.decode(errors='replace').strip()[:200] or relay.process.returncode})"
            if refusal is not None:
                await self._stop(session_id, refusal)

    async def _watchdog(self) -> None:
        while True:
            try:
                await self._enforce()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watchdog failed")
            await asyncio.sleep(WATCHDOG_S)

    async def _pump(self, session_id: str, relay: Relay) -> None:
        """Send each segment FFmpeg finished (it lists a segment in the playlist only once it is closed)."""
        playlist = relay.folder / "live.m3u8"
        while True:
            await asyncio.sleep(PUMP_S)
            try:
                text = playlist.read_text()
            except OSError:
                continue
            duration = 1.0
            for line in text.splitlines():
                if line.startswith("#EXTINF:"):
                    with contextlib.suppress(ValueError):
                        duration = float(line[8:].split(",")[0])
                    continue
                match = SEGMENT_NAME.search(line.strip())
                if not match:
                    continue
                seq = int(match.group(1))
                if seq in relay.sent:
                    continue
                try:
                    data = (relay.folder / line.strip()).read_bytes()
                except OSError:
                    relay.sent.add(seq)
                    continue
                if self.policy.refusal(relay.camera_ref, relay.session, time.time()) is not None:
                    return  # never one segment more than the policy allows; the watchdog stops the relay
                header = json.dumps({"session": session_id, "seq": seq, "duration": duration}).encode()
                await self._send(struct.pack(">I", len(header)) + header + data)
                relay.sent.add(seq)
