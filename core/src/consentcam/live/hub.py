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

Several processes (``CONSENTCAM_BROKER_URL``, see ``broker.py``): an agent's socket and its relays live in one
process, the holder. Commands (``send``, ``start_relay``, ``stop_relay``, ``disconnect``), the viewer's reads
(``first_segment``, ``playlist``, ``segment``) and direct fetches go to the local link or relay first, else to the
holder by request/reply; no holder means "not connected", as in one process. Every process still sweeps: a
session ended anywhere reaches the agent through its holder, and the holder's own sweep stops what it relays
once the database shows the session ended, even while the broker is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import shutil
import struct
import tempfile
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from sqlalchemy import select

from ..db.models import LiveSession
from ..errors import ServiceUnavailable
from ..platform import Platform
from . import service
from .broker import Broker, BrokerUnavailable, NotHeld, Reply, open_broker, running_broker, token

log = logging.getLogger(__name__)

SWEEP_S = 0.2
STATEMENTS_S = 0.5  # how often statements are checked; each is re-sent after a third of its lifetime, or when it changed
KEEP_SEGMENTS = 12
MAX_SEGMENT_BYTES = 16 << 20
REMOTE_KINDS = frozenset({"renew", "stop"})  # what another process may have a holder pass on as is (a start is checked)
FETCH_WAIT_S = 5.0  # a remote fetch's progress question waits this long for the end before answering "running"
FETCH_KEEP_S = 120.0  # a finished remote fetch's clips stay this long without a question, then go


@dataclass
class DeviceLink:
    device_id: str
    ws: web.WebSocketResponse
    refs: list[str] = field(default_factory=list)
    sent: dict[str, tuple[str, float]] = field(default_factory=dict)  # ref -> (policy fingerprint, issued_at)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    moved: bool = False  # the agent connected to another process since: not offline, just elsewhere
    since: float = field(default_factory=time.time)  # when it was accepted: of two sockets, the newer one stays

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


@dataclass
class ServedFetch:
    """A direct fetch this process runs through an agent it holds, for a worker elsewhere that pulls the clips."""

    fetch_id: str
    device_id: str
    folder: Path
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    clips: list[dict[str, Any]] = field(default_factory=list)  # {clip, name, size, sha256, provenance}; paths below
    paths: list[Path] = field(default_factory=list)
    report: dict[str, Any] | None = None
    failure: str | None = None
    touched: float = field(default_factory=time.monotonic)
    released: asyncio.Event = field(default_factory=asyncio.Event)  # the asker has every clip
    task: asyncio.Task[None] | None = None


class Hub:
    def __init__(self, platform: Platform, broker: Broker | None = None) -> None:
        self.p = platform
        self.broker = broker
        self.links: dict[str, DeviceLink] = {}
        self.relays: dict[str, Relay] = {}
        self.offline: dict[str, datetime] = {}
        self.agent_events: deque[dict[str, Any]] = deque(maxlen=500)  # what agents reported, for the owner view and tests
        self.fetches: dict[str, Fetch] = {}
        self.served: dict[str, ServedFetch] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._statements_task: asyncio.Task[None] | None = None
        self._chores: set[asyncio.Future[Any]] = set()
        RUNNING.add(self)

    # --- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.broker is not None:
            await self.broker.subscribe(self.broker.subject("edge", "claims"), self._on_claim)
            self.broker.on_connected.append(self._claim_all)
        self._task = asyncio.create_task(self._loop(), name="live-hub")
        self._statements_task = asyncio.create_task(self._statements_loop(), name="live-hub-statements")

    async def stop(self) -> None:
        RUNNING.discard(self)
        for task in (self._task, self._statements_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for served in list(self.served.values()):
            await self._forget_served(served)
        for chore in list(self._chores):
            chore.cancel()
        for link in list(self.links.values()):
            with contextlib.suppress(Exception):
                await link.ws.close()

    def wake(self) -> None:
        self._wake.set()

    def held(self, device_id: str) -> DeviceLink | None:
        """The device's socket, if this process holds it (not one the agent has left for another process)."""
        link = self.links.get(device_id)
        return None if link is None or link.moved else link

    @property
    def connected(self) -> set[str]:
        return {device_id for device_id, link in self.links.items() if not link.moved}

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the next sweep tries again; never let the relay's guard die
                log.exception("live hub sweep failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SWEEP_S)

    async def _statements_loop(self) -> None:
        """Keep every connected agent's signed statements fresh, on its own: an agent stops relaying when its
        statement expires, so this must not wait behind a sweep that is ending sessions (their writes queue for
        the database's write lock, and their audit events for the chain's). It only reads."""
        while True:
            try:
                for link in list(self.links.values()):
                    await self.send_statements(link)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live hub statement refresh failed")
            await asyncio.sleep(STATEMENTS_S)

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
        """Send one message to a connected agent (False when it is not connected: here, or with a broker, to any
        process of the deployment)."""
        link = self.held(device_id)
        if link is not None:
            return await link.send(message)
        if self.broker is None:
            return False
        try:
            reply, _ = await self._ask_device(device_id, {"op": "send", "message": message})
        except ConnectionError:
            return False
        return reply.get("ok") is True

    async def is_connected(self, device_id: str, *, strict: bool = True) -> bool:
        """Whether the device's agent holds a socket to this deployment now (to this process, or with a broker to
        any). ``strict``: when the broker cannot tell, raise ServiceUnavailable rather than answer False."""
        if self.held(device_id) is not None:
            return True
        if self.broker is None:
            return False
        try:
            reply, _ = await self._ask_device(device_id, {"op": "ping"})
        except NotHeld:
            return False
        except BrokerUnavailable as exc:
            if strict:
                raise ServiceUnavailable("cannot tell whether the camera's edge relay is connected: the message broker "
                                         "between this deployment's servers is unreachable; try again shortly") from exc
            return False
        return reply.get("ok") is True

    async def disconnect(self, device_id: str) -> None:
        """Close the device's socket, wherever it is held (after unpairing, its key opens no other)."""
        link = self.held(device_id)
        if link is not None:
            await link.ws.close()
        elif self.broker is not None:
            with contextlib.suppress(ConnectionError):
                await self._ask_device(device_id, {"op": "close"})

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
        link = self.held(live.device_id)
        if link is None and self.broker is not None:
            # The relay lives with the agent's socket, where its segments arrive; that process starts it.
            try:
                await self._ask_device(live.device_id, {"op": "start", "session": live.id})
            except NotHeld:
                pass  # held nowhere now: the agent's next connection, wherever, receives the open session in its sync
            except BrokerUnavailable as exc:
                log.warning("live session %s: could not reach the process holding edge device %s: %s", live.id,
                            live.device_id, exc)
            return
        await self._hold_relay(live.id, live.device_id, fresh=True)
        if link is not None:
            await self.send_statements(link)  # the agent holds the policy that allows this start before it comes
        await self.send(live.device_id, {"t": "start", "session": start_payload(live, camera_ref)})

    async def fetch(self, device_id: str, camera_ref: str, start: datetime, end: datetime, folder: Path,
                    timeout_s: float = 600.0) -> tuple[list[tuple[Path, dict[str, Any]]], dict[str, Any]]:
        """Ask the agent for a recorded window; returns the clips (checked against the sizes and SHA-256 the agent
        reported) with their provenance, and the agent's report. Raises ConnectionError when it cannot."""
        import uuid

        fetch_id = str(uuid.uuid4())
        fetch = Fetch(device_id, folder, asyncio.get_running_loop().create_future())
        self.fetches[fetch_id] = fetch
        try:
            link = self.held(device_id)  # this process's socket only: fetch_recording routes to the holder
            if link is None or not await link.send({"t": "fetch", "fetch": fetch_id, "camera_ref": camera_ref,
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
            if not path.exists() or path.stat().st_size != size or _sha256_of(path) != sha256:
                raise ConnectionError("a clip from the edge relay arrived incomplete or altered")
            name = Path(str(entry.get("name") or "")).name
            named = path.with_name(f"{number}-{name}" if name and not name.startswith(".") else path.name)
            path.rename(named)
            provenance = entry.get("provenance") if isinstance(entry.get("provenance"), dict) else {}
            clips.append((named, {**provenance, "relay_sha256": sha256}))
        return clips, report

    async def stop_relay(self, session_id: str, reason: str) -> None:
        relay = await self._drop_relay(session_id)
        device_id = relay.device_id if relay else None
        if device_id is None:
            async with self.p.db.sessions() as session:
                live = await session.get(LiveSession, session_id)
                device_id = live.device_id if live else None
        if device_id is None:
            return
        if self.held(device_id) is not None or self.broker is None:
            await self.send(device_id, {"t": "stop", "session": session_id, "reason": reason})
            return
        try:
            await self._ask_device(device_id, {"op": "stop", "session": session_id, "reason": reason})
        except ConnectionError:
            pass  # held nowhere, or the broker is down: the holder's own sweep stops it from the database

    async def _hold_relay(self, session_id: str, device_id: str, *, fresh: bool = False) -> Relay:
        """This process relays the session: segments from the agent are kept here, and with a broker, viewers
        served by other processes are answered from here."""
        relay = self.relays.get(session_id)
        if fresh or relay is None or relay.device_id != device_id:
            relay = self.relays[session_id] = Relay(session_id, device_id)
        if self.broker is not None:
            await self.broker.subscribe(self.broker.subject("edge", "relay", token(session_id)),
                                        functools.partial(self._on_relay_request, session_id))
        return relay

    async def _drop_relay(self, session_id: str) -> Relay | None:
        relay = self.relays.pop(session_id, None)
        if self.broker is not None:
            with contextlib.suppress(ValueError):
                await self.broker.unsubscribe(self.broker.subject("edge", "relay", token(session_id)))
        return relay

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
        if self.broker is not None:
            # Answer for the device from now on, then tell the other processes: one that still holds an older
            # socket of this agent closes it and forgets its relays, as this process just did with its own.
            await self.broker.subscribe(self.broker.subject("edge", "device", token(device.id)),
                                        functools.partial(self._on_device_request, device.id))
            await self._claim(device.id, fresh=True)
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
                if self.broker is not None:
                    await self.broker.unsubscribe(self.broker.subject("edge", "device", token(device.id)))
                if not link.moved:
                    self.offline[device.id] = self.p.now()
                self.wake()
                for fetch in self.fetches.values():
                    if fetch.device_id == device.id and not fetch.done.done():
                        fetch.done.set_exception(ConnectionError("the edge relay disconnected during the fetch"))
            log.info("edge device %s disconnected%s", device.id, " (it connected to another process)" if link.moved else "")
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
                await self._drop_relay(session_id)
        elif kind == "refused":
            session_id = str(message.get("session"))
            if session_id in self.relays and self.relays[session_id].device_id == link.device_id:
                await self._drop_relay(session_id)
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
        for started in sessions:
            await self._hold_relay(started["id"], link.device_id)
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
        if relay is None and self.broker is not None:
            with contextlib.suppress(NotHeld):
                await self._ask_relay(session_id, {"op": "wait", "timeout": timeout_s},
                                      timeout=timeout_s + self.broker.timeout)
            return
        if relay is not None:
            await _first_segment(relay, timeout_s)

    async def playlist(self, session_id: str) -> str | None:
        relay = self.relays.get(session_id)
        if relay is not None:
            return render_playlist(relay)
        if self.broker is None:
            return None
        try:
            reply, _ = await self._ask_relay(session_id, {"op": "playlist"})
        except NotHeld:
            return None
        text = reply.get("playlist")
        return text if isinstance(text, str) else None

    async def segment(self, session_id: str, seq: int) -> bytes | None:
        relay = self.relays.get(session_id)
        if relay is not None:
            return find_segment(relay, seq)
        if self.broker is None:
            return None
        parts: list[bytes] = []
        received, size = 0, None
        while size is None or received < size:  # in parts no larger than the broker carries
            try:
                reply, data = await self._ask_relay(session_id, {"op": "segment", "seq": seq, "offset": received})
            except NotHeld:
                return None
            if reply.get("found") is not True:
                return None  # gone meanwhile (segments are kept for a few seconds only)
            total = int(reply["size"])
            if (size is not None and total != size) or (total > received and not data):
                return None  # not the segment whose first part came, or no progress: never loop on it
            size = total
            parts.append(data)
            received += len(data)
        return b"".join(parts) if received == size else None

    # --- the broker: asking the holder ----------------------------------------------------------------

    async def _ask_device(self, device_id: str, header: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        assert self.broker is not None
        try:
            subject = self.broker.subject("edge", "device", token(device_id))
        except ValueError:
            raise NotHeld(device_id) from None
        return await self.broker.request(subject, header)

    async def _ask_relay(self, session_id: str, header: dict[str, Any], *,
                         timeout: float | None = None) -> tuple[dict[str, Any], bytes]:
        """NotHeld when no process relays the session; a broker failure is the viewer's 503."""
        assert self.broker is not None
        try:
            subject = self.broker.subject("edge", "relay", token(session_id))
        except ValueError:
            raise NotHeld(session_id) from None
        try:
            return await self.broker.request(subject, header, timeout=timeout)
        except BrokerUnavailable as exc:
            raise ServiceUnavailable("this live view is relayed by another server of this deployment, which cannot be "
                                     f"reached now ({exc}); try again shortly") from exc

    # --- the broker: answering as the holder ----------------------------------------------------------

    async def _claim(self, device_id: str, *, fresh: bool) -> None:
        """``fresh``: the socket was accepted just now, so it is the newest whatever the clocks say; a claim said
        again after an outage carries when its socket was accepted, and the newer socket stays."""
        assert self.broker is not None
        link = self.links.get(device_id)
        await self.broker.publish(self.broker.subject("edge", "claims"), {
            "device_id": device_id, "holder": self.broker.instance, "fresh": fresh,
            "since": link.since if link else time.time()})

    async def _claim_all(self) -> None:
        """After the broker was away: claim again every device held here, since a claim made meanwhile was lost
        (an agent that moved here during the outage may still have an older socket, or be counted offline,
        elsewhere)."""
        for device_id, link in list(self.links.items()):
            if not link.moved:
                await self._claim(device_id, fresh=False)

    async def _on_claim(self, header: dict[str, Any], _data: bytes) -> None:
        """Another process now holds the device's socket: close any older one here and forget its relays."""
        assert self.broker is not None
        device_id, holder = str(header.get("device_id") or ""), str(header.get("holder") or "")
        if not device_id or holder == self.broker.instance:
            return None
        link = self.links.get(device_id)
        if link is not None and not link.moved:
            try:
                since = float(header.get("since") or 0.0)
            except (TypeError, ValueError):
                since = 0.0
            if header.get("fresh") is not True and (since, holder) < (link.since, self.broker.instance):
                return None  # a claim said again after an outage, and the socket here is the newer one: it stays
            link.moved = True
            log.info("edge device %s connected to another process; closing its older socket here", device_id)
            self._background(link.ws.close())
        self.offline.pop(device_id, None)  # connected, elsewhere: its sessions are not to be ended as offline
        for session_id in [s for s, relay in self.relays.items() if relay.device_id == device_id]:
            await self._drop_relay(session_id)  # its segments arrive at the new holder now
        return None

    async def _on_device_request(self, device_id: str, header: dict[str, Any], _data: bytes) -> Reply | None:
        link = self.links.get(device_id)
        if link is None or link.moved:
            return None  # not held here: stay silent, so that the holder answers, or nobody (no responders)
        op = header.get("op")
        if op == "ping":
            return {"ok": True}, b""
        if op == "send":
            message = header.get("message")
            if not isinstance(message, dict) or message.get("t") not in REMOTE_KINDS:
                return {"ok": False, "error": "not a message another process may send to an agent"}, b""
            return {"ok": await link.send(message)}, b""
        if op == "start":
            return {"ok": await self._start_held(link, str(header.get("session")))}, b""
        if op == "stop":
            session_id = str(header.get("session"))
            relay = self.relays.get(session_id)
            if relay is not None and relay.device_id == device_id:
                await self._drop_relay(session_id)
            reason = str(header.get("reason") or "ended")[:300]
            return {"ok": await link.send({"t": "stop", "session": session_id, "reason": reason})}, b""
        if op == "close":
            self._background(link.ws.close())
            return {"ok": True}, b""
        if op == "fetch":
            return await self._serve_fetch(device_id, header)
        return {"ok": False, "error": f"unknown operation {op!r}"}, b""

    async def _start_held(self, link: DeviceLink, session_id: str) -> bool:
        """A session opened by another process on a device held here: started only if the database shows it
        open, for this device."""
        async with self.p.db.sessions() as session:
            live = await session.get(LiveSession, session_id)
            camera = await service.camera_by_id(session, live.camera_id) if live is not None else None
        if (live is None or camera is None or live.device_id != link.device_id or live.ended_at is not None
                or live.ends_at <= self.p.now()):
            return False
        ref = service.device_of(camera)[1]
        if not ref:
            return False
        await self._hold_relay(live.id, live.device_id, fresh=True)
        await self.send_statements(link)
        return await link.send({"t": "start", "session": start_payload(live, ref)})

    async def _on_relay_request(self, session_id: str, header: dict[str, Any], _data: bytes) -> Reply | None:
        relay = self.relays.get(session_id)
        if relay is None:
            return None  # only the sessions this process relays
        op = header.get("op")
        if op == "wait":
            await _first_segment(relay, min(float(header.get("timeout") or 0.0), 30.0))
            return {"ok": True}, b""
        if op == "playlist":
            return {"playlist": render_playlist(relay)}, b""
        if op == "segment":
            assert self.broker is not None
            data = find_segment(relay, int(header.get("seq", -1)))
            if data is None:
                return {"found": False}, b""
            offset = max(0, int(header.get("offset") or 0))
            return {"found": True, "size": len(data)}, data[offset:offset + self.broker.part_size]
        return {"ok": False, "error": f"unknown operation {op!r}"}, b""

    async def _serve_fetch(self, device_id: str, header: dict[str, Any]) -> Reply:
        """A worker elsewhere asks for a direct fetch through an agent held here: run it as for a local job, keep
        the clips until the worker has pulled them in parts, then delete them."""
        assert self.broker is not None
        fetch_id = token(str(header.get("fetch")))
        start, end = float(header["start"]), float(header["end"])
        timeout_s = min(max(float(header.get("timeout") or 600.0), 1.0), 3600.0)
        if fetch_id not in self.served:
            served = ServedFetch(fetch_id, device_id, Path(tempfile.mkdtemp(prefix="consentcam-edge-served-")))
            self.served[fetch_id] = served
            await self.broker.subscribe(self.broker.subject("edge", "fetch", fetch_id),
                                        functools.partial(self._on_fetch_request, served))
            served.task = asyncio.create_task(self._run_served(served, str(header.get("camera_ref") or ""),
                                                               datetime.fromtimestamp(start, UTC),
                                                               datetime.fromtimestamp(end, UTC), timeout_s))
        return {"ok": True}, b""

    async def _run_served(self, served: ServedFetch, camera_ref: str, start: datetime, end: datetime,
                          timeout_s: float) -> None:
        try:
            try:
                clips, report = await self.fetch(served.device_id, camera_ref, start, end, served.folder, timeout_s)
            except (ConnectionError, TimeoutError) as exc:
                served.failure = str(exc) or "the edge relay did not answer in time"
            else:
                served.report = report
                for number, (path, provenance) in enumerate(clips):
                    served.paths.append(path)
                    served.clips.append({"clip": number, "name": path.name, "size": path.stat().st_size,
                                         "sha256": provenance["relay_sha256"], "provenance": provenance})
            served.finished.set()
            while not served.released.is_set() and time.monotonic() - served.touched < FETCH_KEEP_S:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(served.released.wait(), 5.0)
        finally:
            await self._forget_served(served)

    async def _on_fetch_request(self, served: ServedFetch, header: dict[str, Any], _data: bytes) -> Reply | None:
        if self.served.get(served.fetch_id) is not served:
            return None
        served.touched = time.monotonic()
        op = header.get("op")
        if op == "status":
            if not served.finished.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(served.finished.wait(), min(float(header.get("wait") or 0.0), FETCH_WAIT_S))
            served.touched = time.monotonic()
            if not served.finished.is_set():
                return {"state": "running"}, b""
            if served.failure is not None:
                return {"state": "failed", "reason": served.failure}, b""
            return {"state": "done", "report": served.report or {}, "clips": served.clips}, b""
        if op == "part":
            assert self.broker is not None
            number, offset = int(header["clip"]), int(header["offset"])
            if not served.finished.is_set() or not 0 <= number < len(served.paths) or offset < 0:
                return {"ok": False}, b""
            with open(served.paths[number], "rb") as clip:
                clip.seek(offset)
                return {"ok": True}, clip.read(self.broker.part_size)
        if op == "done":
            served.released.set()
            return {"ok": True}, b""
        return {"ok": False, "error": f"unknown operation {op!r}"}, b""

    async def _forget_served(self, served: ServedFetch) -> None:
        if self.served.get(served.fetch_id) is served:
            del self.served[served.fetch_id]
        if self.broker is not None:
            await self.broker.unsubscribe(self.broker.subject("edge", "fetch", served.fetch_id))
        if served.task is not None and served.task is not asyncio.current_task():
            served.task.cancel()
        shutil.rmtree(served.folder, ignore_errors=True)

    def _background(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)


def _sha256_of(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as clip:
        while chunk := clip.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def _first_segment(relay: Relay, timeout_s: float) -> None:
    if not relay.segments:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(relay.arrived.wait(), timeout_s)


def render_playlist(relay: Relay) -> str:
    segments = list(relay.segments)[-6:]
    target = max([1, *[int(d + 0.999) for _, d, _, _ in segments]])
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}",
             f"#EXT-X-MEDIA-SEQUENCE:{segments[0][0] if segments else 0}"]
    for seq, duration, _, _ in segments:
        lines += [f"#EXTINF:{duration:.3f},", f"segments/{seq}.ts"]
    return "\n".join(lines) + "\n"


def find_segment(relay: Relay, seq: int) -> bytes | None:
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
        if hub.held(device_id) is not None:
            return hub
    return None


async def fetch_recording(device_id: str, camera_ref: str, start: datetime, end: datetime, folder: Path,
                          timeout_s: float = 600.0) -> tuple[list[tuple[Path, dict[str, Any]]], dict[str, Any]]:
    """A direct fetch through the device's agent, from any process (a web process, or a worker that holds no
    socket at all): through this process's hub when it holds the agent's socket, else through the broker to the
    process that does. Returns the clips in ``folder`` with their provenance, and the agent's report; raises
    ConnectionError (or TimeoutError) when the agent cannot be reached or the fetch fails."""
    hub = hub_for_device(device_id)
    if hub is not None:
        return await hub.fetch(device_id, camera_ref, start, end, folder, timeout_s)
    broker = running_broker()
    if broker is None:
        raise ConnectionError("the camera's edge relay is not connected to this server")
    return await fetch_through_broker(broker, device_id, camera_ref, start, end, folder, timeout_s)


async def fetch_through_broker(broker: Broker, device_id: str, camera_ref: str, start: datetime, end: datetime,
                               folder: Path, timeout_s: float = 600.0
                               ) -> tuple[list[tuple[Path, dict[str, Any]]], dict[str, Any]]:
    """The asking side of a direct fetch through an agent another process holds: that process pulls the window
    from the agent as for a local fetch (checking each clip against the agent's report), then this side pulls
    every clip in parts and checks its size and SHA-256 against the agent's report once more, end to end."""
    import hashlib
    import uuid

    fetch_id = uuid.uuid4().hex
    deadline = time.monotonic() + timeout_s
    try:
        reply, _ = await broker.request(broker.subject("edge", "device", token(device_id)), {
            "op": "fetch", "fetch": fetch_id, "camera_ref": camera_ref, "start": start.timestamp(),
            "end": end.timestamp(), "timeout": timeout_s})
    except (NotHeld, ValueError):
        raise ConnectionError("the camera's edge relay is not connected to any server of this deployment") from None
    if reply.get("ok") is not True:
        raise ConnectionError(f"the server holding the edge relay refused the fetch: {reply.get('error')}")
    subject = broker.subject("edge", "fetch", fetch_id)

    async def ask(header: dict[str, Any], timeout: float | None = None) -> tuple[dict[str, Any], bytes]:
        try:
            return await broker.request(subject, header, timeout=timeout)
        except NotHeld:
            raise ConnectionError("the server holding the edge relay went away during the fetch") from None

    try:
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("the edge relay did not finish the fetch in time")
            status, _ = await ask({"op": "status", "wait": FETCH_WAIT_S}, FETCH_WAIT_S + broker.timeout)
            if status.get("state") != "running":
                break
        if status.get("state") != "done":
            raise ConnectionError(str(status.get("reason") or "the edge relay could not fetch"))
        clips = []
        entries = status.get("clips")
        for entry in entries if isinstance(entries, list) else []:
            try:
                number, size, sha256 = int(entry["clip"]), int(entry["size"]), str(entry["sha256"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ConnectionError("the report on a clip from the edge relay is malformed") from exc
            name = Path(str(entry.get("name") or "")).name
            path = folder / (name if name and not name.startswith(".") else f"clip-{number}.bin")
            digest, received = hashlib.sha256(), 0
            with open(path, "wb") as out:
                while received < size:
                    part_header, data = await ask({"op": "part", "clip": number, "offset": received})
                    if part_header.get("ok") is not True or not data:
                        raise ConnectionError("a clip from the edge relay arrived incomplete")
                    out.write(data)
                    digest.update(data)
                    received += len(data)
            if received != size or digest.hexdigest() != sha256:
                raise ConnectionError("a clip from the edge relay arrived incomplete or altered")
            provenance = entry.get("provenance") if isinstance(entry.get("provenance"), dict) else {}
            clips.append((path, {**provenance, "relay_sha256": sha256}))
        report = status.get("report")
        return clips, report if isinstance(report, dict) else {}
    finally:
        with contextlib.suppress(ConnectionError):
            await broker.request(subject, {"op": "done"})


def setup_hub(app: web.Application) -> None:
    """Run the hub with the application (after the platform opened), with this process's broker connection when
    the deployment has one."""

    async def _hub(app: web.Application) -> AsyncIterator[None]:
        from ..http.keys import PLATFORM

        platform = app[PLATFORM]
        async with open_broker(platform.settings, role="web") as broker:
            hub = Hub(platform, broker)
            app[HUB] = hub
            await hub.start()
            try:
                yield
            finally:
                await hub.stop()

    app.cleanup_ctx.append(_hub)
