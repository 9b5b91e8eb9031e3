"""The live hub's routing through the broker, with two web applications on two ports (each its own platform and
its own NATS connection) sharing one PostgreSQL database and a private nats-server whose ``max_payload`` is
small, so that segments and clips must travel in parts. A small agent written here speaks the edge protocol
over a real WebSocket to one of them; the real ``consentcam-edge`` agent and real processes are proven in
``plugins/fusus_edge/tests/test_edge_broker.py``.

Every cross-process path here is taken through HTTP on the process that does *not* hold the agent's socket, or
through that process's own broker connection; nothing calls the holder's hub directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from consentcam.db.models import AuditEvent, LiveSession
from consentcam.live.broker import NotHeld, token
from consentcam.live.hub import HUB, fetch_through_broker
from consentcam.schemas import Connection
from consentcam.testing.waiting import until
from sqlalchemy import func, select

pytestmark = [pytest.mark.peer("postgresql"), pytest.mark.peer("nats"), pytest.mark.usefixtures("fast_passwords")]

CENTRE = (41.88, -87.63)
MAX_PAYLOAD = 64 << 10
SEGMENT_BYTES = 150_000  # more than two of the broker's parts
CLIP_BYTES = 300_000


def pattern(seed: str, size: int) -> bytes:
    out, block = bytearray(), hashlib.sha256(seed.encode()).digest()
    while len(out) < size:
        out += block
        block = hashlib.sha256(block).digest()
    return bytes(out[:size])


@dataclass
class FakeAgent:
    """Enough of the edge agent for routing: hello, started and segments on start, stopped on stop, a clip on fetch."""

    url: str
    key: str
    cameras: tuple[str, ...] = ("always",)
    heard: list[dict[str, Any]] = field(default_factory=list)
    ws: aiohttp.ClientWebSocketResponse | None = None
    http: aiohttp.ClientSession | None = None
    task: asyncio.Task[None] | None = None
    feeds: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    closed_by_core: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self) -> None:
        self.http = self.http or aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(self.url + "/api/v1/edge/connect", headers={"Authorization": f"Bearer {self.key}"})
        await self.ws.send_json({"t": "hello", "cameras": list(self.cameras), "running": []})
        self.task = asyncio.create_task(self._read(self.ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            parsed = json.loads(message.data)
            self.heard.append(parsed)
            kind = parsed.get("t")
            if kind == "start":
                session_id = parsed["session"]["id"]
                await ws.send_json({"t": "started", "session": session_id})
                self.feeds[session_id] = asyncio.create_task(self._feed(ws, session_id))
            elif kind == "sync":
                for session in parsed["sessions"]:
                    if session["id"] not in self.feeds:
                        self.feeds[session["id"]] = asyncio.create_task(self._feed(ws, session["id"]))
            elif kind == "stop":
                feed = self.feeds.pop(parsed["session"], None)
                if feed is not None:
                    feed.cancel()
                await ws.send_json({"t": "stopped", "session": parsed["session"], "reason": parsed.get("reason")})
            elif kind == "fetch":
                await self._fetch(ws, parsed)
        self.closed_by_core.set()

    async def _feed(self, ws: aiohttp.ClientWebSocketResponse, session_id: str) -> None:
        seq = 0
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not ws.closed:
                header = json.dumps({"session": session_id, "seq": seq, "duration": 1.0}).encode()
                await ws.send_bytes(struct.pack(">I", len(header)) + header + pattern(f"{session_id}:{seq}", SEGMENT_BYTES))
                seq += 1
                await asyncio.sleep(0.1)

    async def _fetch(self, ws: aiohttp.ClientWebSocketResponse, message: dict[str, Any]) -> None:
        clip = pattern(f"clip:{message['start']}", CLIP_BYTES)
        for offset in range(0, len(clip), 100_000):
            header = json.dumps({"fetch": message["fetch"], "clip": 0, "offset": offset}).encode()
            await ws.send_bytes(struct.pack(">I", len(header)) + header + clip[offset:offset + 100_000])
        await ws.send_json({"t": "fetched", "fetch": message["fetch"], "note": "", "missing": [], "provenance": {"agent": "fake"},
                            "clips": [{"clip": 0, "size": len(clip), "sha256": hashlib.sha256(clip).hexdigest(),
                                       "name": "window.mp4", "provenance": {"recorder": "fake"}}]})

    def said(self, kind: str, session_id: str | None = None) -> list[dict[str, Any]]:
        """What the core told the agent: messages of ``kind``, about ``session_id`` if given."""
        def about(message: dict[str, Any]) -> bool:
            session = message.get("session")
            return session_id is None or session == session_id or (isinstance(session, dict) and session.get("id") == session_id)

        return [m for m in self.heard if m.get("t") == kind and about(m)]

    async def close(self) -> None:
        for feed in self.feeds.values():
            feed.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            with contextlib.suppress(Exception):
                await self.task
        if self.http is not None:
            await self.http.close()


@dataclass
class Node:
    """One web process's worth: platform, application, port."""

    name: str
    p: Any
    app: web.Application
    runner: web.AppRunner
    url: str

    @property
    def hub(self) -> Any:
        return self.app[HUB]


@dataclass
class Pair:
    a: Node
    b: Node
    world: Any
    owner: Any
    investigator: Any
    device_id: str
    device_key: str
    camera_id: str
    http: aiohttp.ClientSession

    async def call(self, node: Node, method: str, path: str, who: Any = None, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, node.url + path, headers=who.headers if who else {}, **kwargs) as r:
            if r.content_type in ("application/json", "application/problem+json"):
                return r.status, await r.json()
            return r.status, await r.read()

    def agent(self, node: Node) -> FakeAgent:
        return FakeAgent(node.url, self.device_key)


async def _node(name: str, database_url: str, tmp_path: Path, nats_url: str, prefix: str) -> Node:
    from consentcam.clock import Clock
    from consentcam.http.app import create_app
    from consentcam.platform import open_platform
    from consentcam.settings import Settings
    from consentcam.testing.rtsp_peer import free_port

    port = free_port()
    settings = Settings(_env_file=None, data_dir=tmp_path / name, database_url=database_url,  # type: ignore[call-arg]
                        secret_key="test-deployment-key-not-for-production", public_url=f"http://127.0.0.1:{port}",
                        load_entry_point_plugins=False, run_jobs_in_process=False, live_statement_seconds=5.0,
                        broker_url=nats_url, broker_subject_prefix=prefix, broker_timeout_seconds=1.0)
    p = await open_platform(settings, clock=Clock())
    app = create_app(settings, platform=p, run_jobs=False)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    assert await app[HUB].broker.wait_connected(10), f"{name} did not connect to NATS at {nats_url}"
    return Node(name, p, app, runner, f"http://127.0.0.1:{port}")


@pytest.fixture
def nats(tmp_path: Path) -> Any:
    from consentcam.testing.broker import NatsServer, NatsUnavailable

    server = NatsServer(tmp_path / "nats", max_payload=MAX_PAYLOAD)
    try:
        server.start()
    except NatsUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
async def pair(request: pytest.FixtureRequest, tmp_path: Path, nats: Any) -> AsyncIterator[Pair]:
    from consentcam.testing.broker import subject_prefix
    from consentcam.testing.world import World

    try:
        pg = request.getfixturevalue("_consentcam_pg")
        database_url = await asyncio.to_thread(pg.new)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    prefix = subject_prefix()
    a = await _node("a", database_url, tmp_path, nats.url, prefix)
    b = await _node("b", database_url, tmp_path, nats.url, prefix)
    http = aiohttp.ClientSession()
    try:
        world = World(a.p)
        agency = await world.agency()
        owner, investigator = await world.owner(), await world.staff(agency, "investigator")
        pairing = Pair(a, b, world, owner, investigator, "", "", "", http)
        status, body = await pairing.call(a, "POST", "/api/v1/edge/pairing-codes", owner)
        assert status == 201, body
        status, body = await pairing.call(b, "POST", "/api/v1/edge/pair", json={"code": body["code"], "label": "Shop"})
        assert status == 201, body
        pairing.device_id, pairing.device_key = body["device_id"], body["device_key"]
        pairing.camera_id = await world.camera(owner, *CENTRE, connection=Connection(  # type: ignore[call-arg]
            kind="edge", device_id=pairing.device_id, camera_ref="always"), grant={"map": True, "live": "always"})
        yield pairing
    finally:
        await http.close()
        for node in (b, a):
            await node.runner.cleanup()
            await node.p.db.dispose()
        await asyncio.to_thread(pg.drop, database_url)


async def test_a_process_without_the_agents_socket_opens_views_serves_segments_and_revokes_through_the_holder(pair):
    a, b = pair.a, pair.b
    agent = pair.agent(a)
    await agent.connect()
    try:
        await until(lambda: pair.device_id in a.hub.links, 10, "the agent did not connect to A")
        assert pair.device_id not in b.hub.links

        # B holds nothing, yet sees the device connected (A answers for it) and opens a view on it.
        status, body = await pair.call(b, "GET", "/api/v1/edge/devices", pair.owner)
        assert status == 200 and body["devices"][0]["connected"] is True, body
        status, body = await pair.call(b, "POST", "/api/v1/live-sessions", pair.investigator,
                                       json={"camera_id": pair.camera_id, "reason": "robbery in progress"})
        assert status == 201, body
        session_id = body["id"]
        await until(lambda: agent.said("start", session_id), 5, "the start did not reach the agent through A")
        assert session_id in a.hub.relays and session_id not in b.hub.relays  # the relay lives where segments arrive

        # The viewer's playlist and segments, through B: every segment is larger than the broker's max_payload.
        status, text = await pair.call(b, "GET", f"/api/v1/live-sessions/{session_id}/playlist.m3u8", pair.investigator)
        assert status == 200, text
        listed = [int(line.split("/")[-1][:-3]) for line in text.decode().splitlines() if line.startswith("segments/")]
        assert listed, text
        status, data = await pair.call(b, "GET", f"/api/v1/live-sessions/{session_id}/segments/{listed[-1]}.ts",
                                       pair.investigator)
        assert status == 200 and data == pattern(f"{session_id}:{listed[-1]}", SEGMENT_BYTES)
        status, body = await pair.call(b, "GET", f"/api/v1/live-sessions/{session_id}/segments/999999.ts", pair.investigator)
        assert status == 404

        # A renewal through B reaches the agent as is; the owner revokes through B and the agent is told to stop.
        status, body = await pair.call(b, "POST", f"/api/v1/live-sessions/{session_id}/renew", pair.investigator,
                                       json={"reason": "suspect still inside"})
        assert status == 200, body
        await until(lambda: agent.said("renew", session_id), 5, "the renewal did not reach the agent")
        status, _ = await pair.call(b, "DELETE", f"/api/v1/cameras/{pair.camera_id}/grants", pair.owner)
        assert status == 200
        await until(lambda: agent.said("stop", session_id), 5, "the revocation did not reach the agent")
        await until(lambda: session_id not in a.hub.relays, 5, "A kept relaying a revoked session")
        status, _ = await pair.call(b, "GET", f"/api/v1/live-sessions/{session_id}/playlist.m3u8", pair.investigator)
        assert status == 410
        async with a.p.db.sessions() as session:
            closings = (await session.execute(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.action == "live.closed", AuditEvent.subject_id == session_id))).scalar_one()
        assert closings == 1  # two processes sweep; one closing is recorded

        # A direct fetch asked through B's broker connection: A pulls from the agent, B pulls the clip in parts.
        start = datetime(2026, 5, 1, 12, tzinfo=UTC)
        folder = Path(pair.world.p.settings.data_dir) / "fetched"
        folder.mkdir(parents=True)
        clips, report = await fetch_through_broker(b.hub.broker, pair.device_id, "always", start,
                                                   start + timedelta(seconds=10), folder, timeout_s=30)
        ((path, provenance),) = clips
        assert path.read_bytes() == pattern(f"clip:{start.timestamp()}", CLIP_BYTES)
        assert provenance["recorder"] == "fake" and provenance["relay_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert report["provenance"] == {"agent": "fake"}
        await until(lambda: not a.hub.served, 5, "A kept the fetched clips after B took them")
    finally:
        await agent.close()

    # No process holds the device now: "not connected" at once, from the broker's lack of responders.
    await until(lambda: pair.device_id not in a.hub.links, 5, "A kept the closed socket")
    status, body = await pair.call(b, "GET", "/api/v1/edge/devices", pair.owner)
    assert body["devices"][0]["connected"] is False
    assert await b.hub.send(pair.device_id, {"t": "renew", "session": "x", "ends_at": 0}) is False
    with pytest.raises(ConnectionError, match="not connected to any server"):
        await fetch_through_broker(b.hub.broker, pair.device_id, "always", start, start + timedelta(seconds=10), folder)


async def test_the_holder_acts_only_for_what_it_holds(pair):
    a, b = pair.a, pair.b
    agent = pair.agent(a)
    await agent.connect()
    try:
        await until(lambda: pair.device_id in a.hub.links, 10, "the agent did not connect to A")
        broker = b.hub.broker
        device = broker.subject("edge", "device", token(pair.device_id))
        # A raw start down the socket is not something another process may ask for; a start is checked against
        # the database, so a session id that is not open on this device starts nothing.
        reply, _ = await broker.request(device, {"op": "send", "message": {"t": "start", "session": {"id": "forged"}}})
        assert reply["ok"] is False
        reply, _ = await broker.request(device, {"op": "start", "session": "forged"})
        assert reply["ok"] is False
        assert not agent.said("start") and "forged" not in a.hub.relays
        # Nobody holds another device, or relays a session never opened: no responders, at once.
        with pytest.raises(NotHeld):
            await broker.request(broker.subject("edge", "device", "another-device"), {"op": "ping"})
        with pytest.raises(NotHeld):
            await broker.request(broker.subject("edge", "relay", "no-such-session"), {"op": "playlist"})
        with pytest.raises(ValueError):
            token("a.b")  # ids never become subjects with dots or wildcards in them
    finally:
        await agent.close()


async def test_an_agent_that_reconnects_to_another_process_moves_its_relays_there(pair):
    a, b = pair.a, pair.b
    first = pair.agent(a)
    await first.connect()
    second = pair.agent(b)
    try:
        await until(lambda: pair.device_id in a.hub.links, 10, "the agent did not connect to A")
        status, body = await pair.call(a, "POST", "/api/v1/live-sessions", pair.investigator,
                                       json={"camera_id": pair.camera_id, "reason": "robbery in progress"})
        assert status == 201, body
        session_id = body["id"]
        await until(lambda: session_id in a.hub.relays and a.hub.relays[session_id].received, 10, "no segment reached A")

        # The agent's network changes and it comes back through the load balancer to B: B claims the device, A
        # closes the older socket and forgets the relay, not marking the device offline (its session stays open).
        await second.connect()
        await until(first.closed_by_core.is_set, 10, "A did not close the older socket")
        await until(lambda: pair.device_id not in a.hub.links and session_id not in a.hub.relays, 5,
                    "A kept the moved device's socket or relay")
        assert pair.device_id not in a.hub.offline
        # B answers the agent's hello with a sync once it has read the open sessions: that runs beside A's closing
        # of the older socket, in no fixed order (on a slower CI machine A was first), so wait for it.
        await until(lambda: second.said("sync"), 10, "B did not sync the agent")
        assert second.said("sync")[-1]["sessions"][0]["id"] == session_id
        await until(lambda: session_id in b.hub.relays and b.hub.relays[session_id].received, 10, "no segment reached B")

        # A viewer served by A is now answered by B.
        status, text = await pair.call(a, "GET", f"/api/v1/live-sessions/{session_id}/playlist.m3u8", pair.investigator)
        assert status == 200 and b"segments/" in text, text
        async with a.p.db.sessions() as session:
            live = await session.get(LiveSession, session_id)
        assert live.ended_at is None
    finally:
        await second.close()
        await first.close()


async def test_while_the_broker_is_down_local_paths_work_and_remote_ones_fail_at_once(pair, nats):
    a, b = pair.a, pair.b
    agent = pair.agent(a)
    await agent.connect()
    try:
        await until(lambda: pair.device_id in a.hub.links, 10, "the agent did not connect to A")
        status, body = await pair.call(b, "POST", "/api/v1/live-sessions", pair.investigator,
                                       json={"camera_id": pair.camera_id, "reason": "robbery in progress"})
        assert status == 201, body
        session_id = body["id"]
        await until(lambda: session_id in a.hub.relays and a.hub.relays[session_id].received, 10, "no segment reached A")

        nats.stop()
        await until(lambda: not a.hub.broker.connected and not b.hub.broker.connected, 10, "the processes did not notice")
        # B cannot reach the holder: a clear 503, not a hang and not a false "ended".
        status, body = await pair.call(b, "GET", f"/api/v1/live-sessions/{session_id}/playlist.m3u8", pair.investigator)
        assert status == 503 and "another server" in body["detail"], body
        status, body = await pair.call(b, "POST", "/api/v1/live-sessions", pair.investigator,
                                       json={"camera_id": pair.camera_id, "reason": "second view"})
        assert status == 503, body
        # A holds the socket and the relay: its viewers and commands need no broker.
        status, text = await pair.call(a, "GET", f"/api/v1/live-sessions/{session_id}/playlist.m3u8", pair.investigator)
        assert status == 200 and b"segments/" in text
        # A revocation through B still stops the relay: A's own sweep reads the ended session from the database.
        status, _ = await pair.call(b, "DELETE", f"/api/v1/cameras/{pair.camera_id}/grants", pair.owner)
        assert status == 200
        await until(lambda: agent.said("stop", session_id), 5, "the revocation did not reach the agent without the broker")

        nats.start()
        await until(lambda: a.hub.broker.connected and b.hub.broker.connected, 20, "the processes did not reconnect")
        await pair.world.grant(pair.owner, pair.camera_id, map=True, live="always")
        status, body = await pair.call(b, "POST", "/api/v1/live-sessions", pair.investigator,
                                       json={"camera_id": pair.camera_id, "reason": "after the outage"})
        assert status == 201, body
        await until(lambda: agent.said("start", body["id"]), 5, "the start did not reach the agent after the reconnection")
    finally:
        await agent.close()


async def test_a_process_started_before_the_broker_answers_once_it_is_up(tmp_path):
    """A process may start while NATS is down (a reboot of everything at once): it serves what is local, fails what
    needs the broker at once, and takes its subscriptions up as soon as the broker answers."""
    from consentcam.live.broker import Broker, BrokerUnavailable
    from consentcam.settings import Settings
    from consentcam.testing.broker import NatsServer, NatsUnavailable

    server = NatsServer(tmp_path / "late-nats")  # its port is chosen, nothing listens yet
    settings = Settings(_env_file=None, broker_url=server.url, broker_subject_prefix="late",  # type: ignore[call-arg]
                        broker_timeout_seconds=1.0)
    holder, asker = Broker(settings), Broker(settings)
    await holder.start()
    await asker.start()
    try:
        async def answer(header: dict[str, Any], data: bytes) -> tuple[dict[str, Any], bytes]:
            return {"echo": header["n"]}, data[::-1]

        await holder.subscribe("late.edge.device.d1", answer)
        with pytest.raises(BrokerUnavailable):
            await asker.request("late.edge.device.d1", {"n": 1})
        try:
            server.start()
        except NatsUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
        assert await holder.wait_connected(20) and await asker.wait_connected(20)
        reply, data = await asker.request("late.edge.device.d1", {"n": 2}, b"abc")
        assert reply == {"echo": 2} and data == b"cba"
    finally:
        await asker.close()
        await holder.close()
        server.stop()


async def test_after_an_outage_the_newer_of_two_sockets_stays(pair, nats):
    """The agent moved from A to B while the broker was down, so B's claim was lost and A still holds the older
    socket; once the broker is back both say their claims again, and only A's (older) socket is closed."""
    a, b = pair.a, pair.b
    first, second = pair.agent(a), pair.agent(b)
    await first.connect()
    try:
        await until(lambda: a.hub.held(pair.device_id), 10, "the agent did not connect to A")
        nats.stop()
        await until(lambda: not a.hub.broker.connected and not b.hub.broker.connected, 10, "the processes did not notice")
        await second.connect()
        await until(lambda: b.hub.held(pair.device_id), 10, "the agent did not connect to B")
        assert a.hub.held(pair.device_id) is not None  # nobody told A

        nats.start()
        await until(first.closed_by_core.is_set, 20, "A kept the older socket after the broker came back")
        await until(lambda: a.hub.held(pair.device_id) is None, 5, "A still holds the device")
        assert b.hub.held(pair.device_id) is not None and not second.closed_by_core.is_set()
        assert pair.device_id not in a.hub.offline
        status, body = await pair.call(a, "GET", "/api/v1/edge/devices", pair.owner)
        assert body["devices"][0]["connected"] is True  # answered by B
    finally:
        await second.close()
        await first.close()
