"""The core's end of the edge relay protocol: agents connect out to ``GET /api/v1/edge/connect`` (a WebSocket,
authenticated by the device key), receive signed live policy statements, start and stop commands, and send HLS
segments back; the hub keeps the newest segments of each open session in memory and serves them only while
the session stays allowed.

Protocol (JSON text frames, ``t`` names the message; binary frames carry segments):

- agent -> core: ``hello {cameras: [ref], running: [session_id]}``, ``started {session}``, ``refused {session,
  reason}``, ``stopped {session, reason}``; a segment is one binary frame: 4 bytes big-endian header length, the
  header ``{session, seq, duration}`` as JSON, then the MPEG-TS bytes.
- core -> agent: ``welcome {device_id}``, ``policy {statement, signature}`` (Ed25519 over the statement's text),
  ``start {session: {id, camera_ref, ends_at, emergency_id}}``, ``stop {session, reason}``, ``sync {sessions: [...]}``
  (the sessions still open after a reconnection; the agent stops any other).

A sweep several times a second asks the live rule again for every open session (``service.sweep``), so
revocation, an emergency's end, the owner's pause or the hard end stop the relay within a fraction of a second
plus the agent's stop; statements are refreshed well before they expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from sqlalchemy import select

from ..db.models import LiveSession
from ..platform import Platform
from . import service

log = logging.getLogger(__name__)

SWEEP_S = 0.2
KEEP_SEGMENTS = 12
MAX_SEGMENT_BYTES = 16 << 20


@dataclass
class DeviceLink:
    device_id: str
    ws: web.WebSocketResponse
    refs: list[str] = field(default_factory=list)
    sent: dict[str, tuple[str, float]] = field(default_factory=dict)  # ref -> (policy fingerprint, issued_at)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, message: dict[str, Any]) -> bool:
        try:
            async with self.lock:
                await self.ws.send_str(json.dumps(message, separators=(",", ":")))
            return True
        except (ConnectionError, RuntimeError):
            return False


@dataclass
class Fetch:
    """A recorded window an agent is pulling from its local recorder for a direct fetch; clips arrive in chunks."""

    device_id: str
    folder: Path
    done: asyncio.Future[dict[str, Any]]
    sizes: dict[int, int] = field(default_factory=dict)


@dataclass
class Relay:
    session_id: str
    device_id: str
    segments: deque[tuple[int, float, bytes, float]] = field(default_factory=lambda: deque(maxlen=KEEP_SEGMENTS))
    received: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class Hub:
    def __init__(self, platform: Platform) -> None:
        self.p = platform
        self.links: dict[str, DeviceLink] = {}
        self.relays: dict[str, Relay] = {}
        self.offline: dict[str, datetime] = {}
        self.agent_events: deque[dict[str, Any]] = deque(maxlen=500)  # what agents reported, for the owner view and tests
        self.fetches: dict[str, Fetch] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        RUNNING.add(self)

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="live-hub")

    async def stop(self) -> None:
        RUNNING.discard(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for link in list(self.links.values()):
            with contextlib.suppress(Exception):
                await link.ws.close()

    def wake(self) -> None:
        self._wake.set()

    @property
    def connected(self) -> set[str]:
        return set(self.links)

    async def _loop(self) -> None:
        last_statements = 0.0
        while True:
            try:
                await self.sweep_once()
                if time.monotonic() - last_statements > 0.5:
                    last_statements = time.monotonic()
                    for link in list(self.links.values()):
                        await self.send_statements(link)
            except asyncio.CancelledError:
                raise
            except Exception:  # the next sweep tries again; never let the relay's guard die
                log.exception("live hub sweep failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SWEEP_S)

    async def sweep_once(self) -> None:
        ended = await service.sweep(self.p, offline=self.offline)
        for live in ended:
            await self.stop_relay(live.id, live.end_reason or "ended")
        if self.relays:  # sessions ended by another process or by a handler: stop relaying them too
            async with self.p.db.sessions() as session:
                closed = (await session.execute(select(LiveSession.id, LiveSession.end_reason).where(
                    LiveSession.id.in_(sorted(self.relays)), LiveSession.ended_at.is_not(None)))).all()
            for session_id, reason in closed:
                await self.stop_relay(session_id, reason or "ended")

    # --- commands -------------------------------------------------------------------------------------

    async def send(self, device_id: str, message: dict[str, Any]) -> bool:
        """Send one message to a connected agent (False when it is not connected)."""
        link = self.links.get(device_id)
        return bool(link) and await link.send(message)  # type: ignore[union-attr]

    async def send_statements(self, link: DeviceLink, *, force: bool = False) -> None:
        statements = await service.statements_for(self.p, link.device_id, link.refs)
        ttl = self.p.settings.live_statement_seconds
        for ref, statement in statements.items():
            fingerprint = json.dumps([statement["camera_id"], statement["live"], statement["emergencies"]])
            previous = link.sent.get(ref)
            if force or previous is None or previous[0] != fingerprint or statement["issued_at"] - previous[1] > ttl / 3:
                if await link.send({"t": "policy", **service.sign(self.p, statement)}):
                    link.sent[ref] = (fingerprint, statement["issued_at"])

    async def start_relay(self, live: LiveSession, camera_ref: str) -> None:
        self.relays[live.id] = Relay(live.id, live.device_id)
        link = self.links.get(live.device_id)
        if link is not None:
            await self.send_statements(link)  # the agent holds the policy that allows this start before it comes
        await self.send(live.device_id, {"t": "start", "session": start_payload(live, camera_ref)})

    async def fetch(self, device_id: str, camera_ref: str, start: datetime, end: datetime, folder: Path,
                    timeout_s: float = 600.0) -> tuple[list[tuple[Path, dict[str, Any]]], dict[str, Any]]:
        """Ask the agent for a recorded window; returns the clips (checked against the sizes and SHA-256 the agent
        reported) with their provenance, and the agent's report. Raises ConnectionError when it cannot."""
        import hashlib
        import uuid

        fetch_id = str(uuid.uuid4())
        fetch = Fetch(device_id, folder, asyncio.get_running_loop().create_future())
        self.fetches[fetch_id] = fetch
        try:
            if not await self.send(device_id, {"t": "fetch", "fetch": fetch_id, "camera_ref": camera_ref,
                                               "start": start.timestamp(), "end": end.timestamp()}):
                raise ConnectionError("the edge relay is not connected")
            report = await asyncio.wait_for(fetch.done, timeout_s)
        finally:
            self.fetches.pop(fetch_id, None)
        if report.get("t") == "fetch_failed":
            raise ConnectionError(f"the edge relay could not fetch: {report.get('reason')}")
        clips = []
        entries = report.get("clips")
        for entry in entries if isinstance(entries, list) else []:
            try:
                number, size, sha256 = int(entry["clip"]), int(entry["size"]), str(entry["sha256"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ConnectionError("the edge relay's report on a clip is malformed") from exc
            path = folder / f"clip-{number}.bin"
            data_ok = path.exists() and path.stat().st_size == size
            if data_ok:
                digest = hashlib.sha256()
                with open(path, "rb") as clip:
                    while chunk := clip.read(1 << 20):
                        digest.update(chunk)
                data_ok = digest.hexdigest() == sha256
            if not data_ok:
                raise ConnectionError("a clip from the edge relay arrived incomplete or altered")
            name = Path(str(entry.get("name") or "")).name
            named = path.with_name(f"{number}-{name}" if name and not name.startswith(".") else path.name)
            path.rename(named)
            provenance = entry.get("provenance") if isinstance(entry.get("provenance"), dict) else {}
            clips.append((named, {**provenance, "relay_sha256": sha256}))
        return clips, report

    async def stop_relay(self, session_id: str, reason: str) -> None:
        relay = self.relays.pop(session_id, None)
        device_id = relay.device_id if relay else None
        if device_id is None:
            async with self.p.db.sessions() as session:
                live = await session.get(LiveSession, session_id)
                device_id = live.device_id if live else None
        if device_id is not None:
            await self.send(device_id, {"t": "stop", "session": session_id, "reason": reason})

    # --- the agent's socket ---------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        header = request.headers.get("Authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        device = await service.authenticate_device(self.p, key)  # Unauthorized before any upgrade
        ws = web.WebSocketResponse(heartbeat=5.0, max_msg_size=MAX_SEGMENT_BYTES)
        await ws.prepare(request)
        link = DeviceLink(device.id, ws)
        old = self.links.get(device.id)
        self.links[device.id] = link
        if old is not None:
            with contextlib.suppress(Exception):
                await old.ws.close()
        self.offline.pop(device.id, None)
        log.info("edge device %s connected", device.id)
        try:
            await link.send({"t": "welcome", "device_id": device.id})
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    try:
                        parsed = json.loads(message.data)
                    except ValueError:
                        parsed = None
                    if not isinstance(parsed, dict):
                        log.warning("edge device %s sent a message that is not a JSON object; ignored", device.id)
                        continue
                    await self._on_text(link, parsed)
                elif message.type == WSMsgType.BINARY:
                    self._on_binary(link, message.data)
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            if self.links.get(device.id) is link:
                del self.links[device.id]
                self.offline[device.id] = self.p.now()
                self.wake()
                for fetch in self.fetches.values():
                    if fetch.device_id == device.id and not fetch.done.done():
                        fetch.done.set_exception(ConnectionError("the edge relay disconnected during the fetch"))
            log.info("edge device %s disconnected", device.id)
        return ws

    async def _on_text(self, link: DeviceLink, message: dict[str, Any]) -> None:
        kind = message.get("t")
        self.agent_events.append({**message, "device_id": link.device_id, "at": time.time()})
        if kind == "hello":
            cameras = message.get("cameras")
            link.refs = sorted({str(r)[:100] for r in cameras if isinstance(r, str) and r})[:64] if isinstance(cameras, list) else []
            await service.device_seen(self.p, link.device_id, link.refs)
            await self.send_statements(link, force=True)
            await self._sync(link)
        elif kind == "started":
            await service.relay_state(self.p, link.device_id, str(message.get("session")), started=True)
        elif kind == "stopped":
            session_id = str(message.get("session"))
            await service.relay_state(self.p, link.device_id, session_id, started=False)
            if session_id in self.relays and self.relays[session_id].device_id == link.device_id:
                del self.relays[session_id]
        elif kind == "refused":
            session_id = str(message.get("session"))
            if session_id in self.relays and self.relays[session_id].device_id == link.device_id:
                del self.relays[session_id]
            await service.agent_refused(self.p, link.device_id, session_id, str(message.get("reason", ""))[:300])
        elif kind in ("fetched", "fetch_failed"):
            fetch = self.fetches.get(str(message.get("fetch")))
            if fetch is not None and fetch.device_id == link.device_id and not fetch.done.done():
                fetch.done.set_result(message)
        elif kind == "ping":
            await service.device_seen(self.p, link.device_id)

    async def _sync(self, link: DeviceLink) -> None:
        """After a (re)connection: the sessions of this device still open; the agent stops any other."""
        now = self.p.now()
        async with self.p.db.sessions() as session:
            rows = (await session.execute(select(LiveSession).where(LiveSession.device_id == link.device_id,
                                                                    LiveSession.ended_at.is_(None),
                                                                    LiveSession.ends_at > now))).scalars().all()

            sessions = []
            for live in rows:
                camera = await service.camera_by_id(session, live.camera_id)
                ref = service.device_of(camera)[1] if camera else None
                if ref:
                    sessions.append(start_payload(live, ref))
                    self.relays.setdefault(live.id, Relay(live.id, live.device_id))
        await link.send({"t": "sync", "sessions": sessions})

    def _on_binary(self, link: DeviceLink, data: bytes) -> None:
        if len(data) < 4:
            return
        (size,) = struct.unpack(">I", data[:4])
        try:
            header = json.loads(data[4:4 + size])
        except ValueError:
            return
        if isinstance(header, dict) and "fetch" in header:
            self._on_fetch_chunk(link, header, data[4 + size:])
        elif isinstance(header, dict):
            self._on_segment(link, header, data[4 + size:])

    def _on_fetch_chunk(self, link: DeviceLink, header: dict[str, Any], chunk: bytes) -> None:
        fetch = self.fetches.get(str(header.get("fetch")))
        try:
            clip, offset = int(header["clip"]), int(header["offset"])
        except (KeyError, TypeError, ValueError):
            return
        if fetch is None or fetch.device_id != link.device_id or fetch.done.done() or not 0 <= clip < 1000:
            return
        if offset != fetch.sizes.get(clip, 0):  # chunks come in order on one socket; anything else is refused
            fetch.done.set_exception(ConnectionError("a clip's chunks arrived out of order"))
            return
        if offset + len(chunk) > self.p.settings.upload_size_limit:
            fetch.done.set_exception(ConnectionError("a clip from the edge relay is over the upload size limit"))
            return
        with open(fetch.folder / f"clip-{clip}.bin", "ab") as out:
            out.write(chunk)
        fetch.sizes[clip] = offset + len(chunk)

    def _on_segment(self, link: DeviceLink, header: dict[str, Any], segment: bytes) -> None:
        try:
            session_id, seq, duration = str(header["session"]), int(header["seq"]), float(header["duration"])
        except (ValueError, KeyError, TypeError):
            return
        relay = self.relays.get(session_id)
        if relay is None or relay.device_id != link.device_id:
            return  # not a session this hub relays (ended, or never opened): dropped, never served
        relay.segments.append((seq, duration, segment, time.time()))
        relay.received += 1
        relay.arrived.set()

    # --- serving the viewer ---------------------------------------------------------------------------

    async def first_segment(self, session_id: str, timeout_s: float) -> None:
        """Hold a viewer's first playlist request until a segment exists (a player given an empty live playlist
        gives up), for at most ``timeout_s``."""
        relay = self.relays.get(session_id)
        if relay is not None and not relay.segments:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(relay.arrived.wait(), timeout_s)

    def playlist(self, session_id: str) -> str | None:
        relay = self.relays.get(session_id)
        if relay is None:
            return None
        segments = list(relay.segments)[-6:]
        target = max([1, *[int(d + 0.999) for _, d, _, _ in segments]])
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}",
                 f"#EXT-X-MEDIA-SEQUENCE:{segments[0][0] if segments else 0}"]
        for seq, duration, _, _ in segments:
            lines += [f"#EXTINF:{duration:.3f},", f"segments/{seq}.ts"]
        return "\n".join(lines) + "\n"

    def segment(self, session_id: str, seq: int) -> bytes | None:
        relay = self.relays.get(session_id)
        if relay is None:
            return None
        for number, _, data, _ in relay.segments:
            if number == seq:
                return data
        return None


def start_payload(live: LiveSession, camera_ref: str) -> dict[str, Any]:
    return {"id": live.id, "camera_ref": camera_ref, "ends_at": live.ends_at.timestamp(), "emergency_id": live.emergency_id}


HUB: web.AppKey[Hub] = web.AppKey("live_hub", Hub)
RUNNING: weakref.WeakSet[Hub] = weakref.WeakSet()  # the hubs of this process, for the relay plugin's direct fetch


def hub_for_device(device_id: str) -> Hub | None:
    """The hub of this process the device is connected to, if any."""
    for hub in list(RUNNING):
        if device_id in hub.links:
            return hub
    return None


def setup_hub(app: web.Application) -> None:
    """Run the hub with the application (after the platform opened)."""

    async def _hub(app: web.Application) -> AsyncIterator[None]:
        from ..http.keys import PLATFORM

        hub = Hub(app[PLATFORM])
        app[HUB] = hub
        hub.start()
        try:
            yield
        finally:
            await hub.stop()

    app.cleanup_ctx.append(_hub)
