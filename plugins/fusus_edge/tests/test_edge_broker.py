"""The edge relay on the scale path, with real processes only: the city of ``consentcam.testing.topology`` (two
``consentcam serve`` and a ``consentcam worker`` on PostgreSQL, evidence in S3, nginx in front) sharing a NATS
server, the real ``consentcam-edge`` agent connected to web process 1, and gst-rtsp-server as the camera and its
recorder. The test talks to each web process directly, never through the proxy, so it knows which one answers.

Through web process 2, which never holds the agent's socket: the owner sees the relay connected; a supervisor
opens a live view; the viewer's playlist and segments come from process 1's relay; the owner revokes and the agent
stops. A direct fetch runs on the worker, which holds no socket at all, and reaches the agent through process 1.
Nothing here shares memory with the processes, so no in-process shortcut can make a path pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from edge_testkit import AGENT, CENTRE, decode_frames, run_cli, until

pytestmark = [pytest.mark.peer("rtsp"), pytest.mark.peer("nats"), pytest.mark.peer("postgresql"), pytest.mark.peer("nginx"),
              pytest.mark.peer("s3")]

JURISDICTION = {"type": "Polygon", "coordinates": [[[-87.65, 41.87], [-87.61, 41.87], [-87.61, 41.89],
                                                    [-87.65, 41.89], [-87.65, 41.87]]]}


@pytest.fixture
def town(tmp_path: Path, consentcam_smtp: Any, consentcam_nats_url: str) -> Any:
    from consentcam.testing.topology import city

    try:
        # Every process loads the installed plugins (the worker needs this one's direct fetch); nginx stays in
        # front for the city's own clients, and the test reaches each process on its own port.
        with city(tmp_path / "city", consentcam_smtp.host, consentcam_smtp.port, web=2, workers=1,
                  broker_url=consentcam_nats_url,
                  settings={"load_entry_point_plugins": "true", "trusted_proxies": "", "live_statement_seconds": "5"}) as top:
            yield top
    except RuntimeError as exc:  # a missing peer fails the test, never skips it
        pytest.fail(str(exc), pytrace=False)


class Client:
    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http

    async def __call__(self, base: str, method: str, path: str, headers: dict[str, str] | None = None,
                       **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, base + path, headers=headers or {}, **kwargs) as r:
            if r.content_type in ("application/json", "application/problem+json"):
                return r.status, await r.json()
            return r.status, await r.read()

    async def login(self, base: str, email: str, password: str) -> dict[str, str]:
        status, body = await self(base, "POST", "/api/v1/auth/login", json={"email": email, "password": password})
        assert status == 200, body
        return {"Authorization": f"Bearer {body['token']}"}


async def test_an_agent_on_one_process_is_viewed_revoked_and_fetched_through_the_others(
        town: Any, tmp_path: Path, consentcam_rtsp_server: Any, consentcam_rtsp_recording: Any) -> None:
    one, two = town.web_url(1), town.web_url(2)
    jurisdiction = tmp_path / "jurisdiction.geojson"
    jurisdiction.write_text(json.dumps(JURISDICTION))
    agency = town.cli("admin", "create-agency", "Metro PD", "--jurisdiction", str(jurisdiction))["id"]
    staff = {role: town.cli("admin", "create-user", f"{role}@metro.example.org", "--agency", agency, "--role", role)["password"]
             for role in ("investigator", "supervisor")}
    state, agent_log = tmp_path / "edge-state", tmp_path / "agent.log"
    agent: asyncio.subprocess.Process | None = None

    def logs() -> str:
        text = agent_log.read_text(errors="replace") if agent_log.exists() else ""
        return (f"agent:\n{text[-3000:]}\nweb1:\n{town.log('web1')[-3000:]}\nweb2:\n{town.log('web2')[-3000:]}\n"
                f"worker1:\n{town.log('worker1')[-3000:]}")

    async with aiohttp.ClientSession() as http:
        call = Client(http)
        status, _ = await call(two, "POST", "/api/v1/auth/owners", json={
            "email": "owner@shop.example.org", "password": "a long owner password", "name": "Sam", "notify": {"email": True}})
        assert status == 201
        owner = await call.login(two, "owner@shop.example.org", "a long owner password")
        supervisor = await call.login(two, "supervisor@metro.example.org", staff["supervisor"])
        investigator = await call.login(two, "investigator@metro.example.org", staff["investigator"])

        # The agent pairs with, and connects to, web process 1 only.
        status, body = await call(two, "POST", "/api/v1/edge/pairing-codes", owner)
        assert status == 201, body
        rc, _, err = await run_cli("pair", "--core", one, "--code", body["code"], "--state", str(state), "--label", "Shop")
        assert rc == 0, err
        device_id = json.loads((state / "device.json").read_text())["device_id"]
        status, camera = await call(two, "POST", "/api/v1/cameras", owner, json={
            "label": "Shop door", "location": {"lat": CENTRE[0], "lon": CENTRE[1]}, "retention_days": 3650,
            "connection": {"kind": "edge", "device_id": device_id, "camera_ref": "door"}})
        assert status == 201, camera
        status, body = await call(two, "PUT", f"/api/v1/cameras/{camera['id']}/grants", owner,
                                  json={"map": True, "requests": True, "direct_fetch": True, "live": "always"})
        assert status == 200, body
        recorder = {"url": consentcam_rtsp_server.url("main", "/Streaming/Channels/101"),
                    "playback": {"family": "hikvision", "timezone": "UTC"}}
        agent = await asyncio.create_subprocess_exec(
            AGENT, "run", "--state", str(state), "--max-backoff", "1", "--camera", f"door={consentcam_rtsp_server.live_url}",
            "--recorder", f"door={json.dumps(recorder)}", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=open(agent_log, "ab"))  # noqa: SIM115
        try:
            # Process 2 holds no socket, yet reports the relay connected: process 1 answers for it on the broker.
            async def connected() -> bool:
                status, body = await call(two, "GET", "/api/v1/edge/devices", owner)
                return status == 200 and body["devices"][0]["connected"] is True

            await until(connected, 30, lambda: f"process 2 never saw the agent connected\n{logs()}")
            assert f"connected to ws://127.0.0.1:{town.web_ports[0]}/" in agent_log.read_text()

            # A supervisor opens a live view through process 2 and watches it through process 2.
            status, body = await call(two, "POST", "/api/v1/live-sessions", supervisor,
                                      json={"camera_id": camera["id"], "reason": "break-in reported"})
            assert status == 201, body
            session_id = body["id"]
            listed: list[int] = []

            async def segments() -> bool:
                nonlocal listed
                status, text = await call(two, "GET", f"/api/v1/live-sessions/{session_id}/playlist.m3u8", supervisor)
                listed = [int(line.split("/")[-1][:-3]) for line in text.decode().splitlines()
                          if line.startswith("segments/")] if status == 200 else []
                return len(listed) >= 2

            await until(segments, 30, lambda: f"no segments through process 2\n{logs()}")
            status, data = await call(two, "GET", f"/api/v1/live-sessions/{session_id}/segments/{listed[-1]}.ts", supervisor)
            assert status == 200, data
            frames = decode_frames(data)
            assert frames and (frames[0].width, frames[0].height) == (320, 240)

            # A direct fetch: the investigator asks, the supervisor approves, the worker process runs the job.
            recording = consentcam_rtsp_recording
            start, end = recording.start + timedelta(seconds=70), recording.start + timedelta(seconds=74)
            status, body = await call(two, "POST", "/api/v1/requests", investigator, json={
                "case_number": "EDGE-SCALE-1", "description": "direct fetch through a relay held by another process",
                "area": {"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 50},
                "window": {"start": start.isoformat(), "end": end.isoformat()}})
            assert status == 201 and body["matched"] == 1, body
            request_id = body["id"]
            status, body = await call(two, "POST", f"/api/v1/requests/{request_id}/approve", supervisor)
            assert status == 200, body
            evidence_ids: list[str] = []

            async def fetched() -> bool:
                nonlocal evidence_ids
                status, body = await call(two, "GET", f"/api/v1/requests/{request_id}", investigator)
                evidence_ids = [e for item in body.get("items", []) for e in item.get("evidence_ids", [])]
                return bool(evidence_ids)

            await until(fetched, 120, lambda: f"the direct fetch stored nothing\n{logs()}")
            status, evidence = await call(two, "GET", f"/api/v1/evidence/{evidence_ids[0]}", investigator)
            assert status == 200, evidence
            assert evidence["provenance"]["relay"] == "fusus_edge"
            assert evidence["provenance"]["relay_sha256"] == evidence["sha256"]
            status, content = await call(one, "GET", f"/api/v1/evidence/{evidence_ids[0]}/content", investigator)
            assert status == 200 and len(content) == evidence["size"]

            # The owner revokes through process 2; the agent, held by process 1, stops relaying.
            revoked = time.monotonic()
            status, _ = await call(two, "DELETE", f"/api/v1/cameras/{camera['id']}/grants", owner)
            assert status == 200
            await until(lambda: f"stopped session {session_id}" in agent_log.read_text(errors="replace"), 15,
                        lambda: f"the agent kept relaying after the revocation\n{logs()}")
            print(f"\nrevocation through process 2 -> agent on process 1 stopped: {time.monotonic() - revoked:.2f} s")
            status, _ = await call(two, "GET", f"/api/v1/live-sessions/{session_id}/playlist.m3u8", supervisor)
            assert status == 410

            async def acknowledged() -> bool:
                status, body = await call(two, "GET", "/api/v1/edge/devices", owner)
                sessions = {s["id"]: s for s in body["devices"][0]["live_sessions"]}
                return sessions[session_id]["relay_stopped_at"] is not None

            await until(acknowledged, 10, lambda: f"the agent's stop was not recorded\n{logs()}")
        finally:
            if agent.returncode is None:
                agent.terminate()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(agent.wait(), 5)
                if agent.returncode is None:
                    agent.kill()

    import asyncpg

    conn = await asyncpg.connect(town.database_url.replace("+asyncpg", ""))
    try:
        fetch_jobs = await conn.fetch("SELECT status, locked_by FROM jobs WHERE kind = 'fetch.direct'")
    finally:
        await conn.close()
    assert [(j["status"], j["locked_by"]) for j in fetch_jobs] == [("done", "topology-worker-1")]
