"""The city deployment of docs/admins/scale.md, brought up for real on loopback: PostgreSQL (with PostGIS),
two `consentcam serve` processes and two `consentcam worker` processes sharing a NATS broker, evidence in
S3-compatible storage (moto's server), mail to a real SMTP server, and Debian's nginx in front terminating TLS with
the repository's own deploy/nginx/consentcam.conf. The whole request flow goes through nginx (edge relays on this
deployment: plugins/fusus_edge/tests/test_edge_broker.py):

an owner registers, places a camera and grants requests; an investigator asks; a supervisor approves; a worker
mails the owner the link; the owner uploads the clip in two chunks (each may reach a different web process);
the investigator reads it back bit for bit from S3; an auditor verifies the audit chain. Along the way: both web
processes served, jobs ran on the workers only, cookies are Secure behind the TLS proxy, and a client cannot
forge its address past nginx."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from consentcam.testing.topology import City, city
from consentcam.web.browser import make_clip

pytestmark = [pytest.mark.peer("nginx"), pytest.mark.peer("postgresql"), pytest.mark.peer("s3"), pytest.mark.peer("nats")]

CENTRE = (41.8800, -87.6300)
JURISDICTION = {"type": "Polygon", "coordinates": [[[-87.65, 41.87], [-87.61, 41.87], [-87.61, 41.89],
                                                    [-87.65, 41.89], [-87.65, 41.87]]]}


@pytest.fixture
def topology(tmp_path: Path, consentcam_smtp: Any, consentcam_nats_url: str) -> Iterator[City]:
    try:
        with city(tmp_path, consentcam_smtp.host, consentcam_smtp.port, broker_url=consentcam_nats_url) as town:
            yield town
    except RuntimeError as exc:  # a missing peer (nginx, PostgreSQL, moto) fails the test, never skips it
        pytest.fail(str(exc), pytrace=False)


async def _json(response: aiohttp.ClientResponse, status: int) -> Any:
    text = await response.text()
    assert response.status == status, f"{response.method} {response.url}: {response.status} {text[:500]}"
    return json.loads(text) if text else None


async def test_the_request_flow_through_nginx_two_web_processes_two_workers_postgresql_and_s3(
        topology: City, consentcam_smtp: Any, tmp_path: Path) -> None:
    top = topology
    jurisdiction = tmp_path / "jurisdiction.geojson"
    jurisdiction.write_text(json.dumps(JURISDICTION))
    agency = top.cli("admin", "create-agency", "Metro PD", "--jurisdiction", str(jurisdiction))["id"]
    staff = {role: top.cli("admin", "create-user", f"{role}@metro.example.org", "--agency", agency, "--role", role)["password"]
             for role in ("investigator", "supervisor", "auditor")}
    clip = make_clip(tmp_path / "clip.mp4", seconds=4)
    data = clip.read_bytes()

    async with aiohttp.ClientSession(base_url=top.url, connector=aiohttp.TCPConnector(ssl=False)) as http:
        async def login(email: str, password: str) -> dict[str, str]:
            body = await _json(await http.post("/api/v1/auth/login", json={"email": email, "password": password}), 200)
            return {"Authorization": f"Bearer {body['token']}"}

        # The owner registers and consents to requests (not to live feeds, not to direct fetch).
        await _json(await http.post("/api/v1/auth/owners", json={
            "email": "owner@home.example.org", "password": "a long owner password", "name": "Pat",
            "notify": {"email": True}}), 201)
        owner = await login("owner@home.example.org", "a long owner password")
        camera = await _json(await http.post("/api/v1/cameras", headers=owner, json={
            "label": "Porch", "location": {"lat": CENTRE[0], "lon": CENTRE[1]}, "retention_days": 30}), 201)
        await _json(await http.put(f"/api/v1/cameras/{camera['id']}/grants", headers=owner,
                                   json={"map": True, "requests": True}), 200)

        # Behind TLS at nginx, the browser session's cookies are Secure; the app saw https through the proxy.
        session = await http.post("/api/v1/auth/session", json={"email": "owner@home.example.org",
                                                                "password": "a long owner password"})
        assert session.status == 200
        cookies = session.headers.getall("Set-Cookie")
        assert cookies and all("Secure" in c for c in cookies), cookies
        assert session.headers["Strict-Transport-Security"].startswith("max-age=")

        investigator = await login("investigator@metro.example.org", staff["investigator"])
        supervisor = await login("supervisor@metro.example.org", staff["supervisor"])
        end = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)
        created = await _json(await http.post("/api/v1/requests", headers=investigator, json={
            "case_number": "2026-TOPO-1", "description": "Thefts from autos on this block",
            "area": {"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 150},
            "window": {"start": (end - dt.timedelta(hours=1)).isoformat(), "end": end.isoformat()}}), 201)
        assert created["matched"] == 1 and created["status"] == "pending_approval"
        await _json(await http.post(f"/api/v1/requests/{created['id']}/approve", headers=supervisor), 200)

        # A worker process mails the owner the private link (public address: nginx's https name).
        deadline = time.monotonic() + 60
        while not consentcam_smtp.to("owner@home.example.org"):
            assert time.monotonic() < deadline, "no mail: " + top.log("worker1")[-2000:] + top.log("worker2")[-2000:]
            await asyncio.sleep(0.2)
        text = consentcam_smtp.body(consentcam_smtp.to("owner@home.example.org")[0])
        link = re.search(re.escape(top.url) + r"/api/v1/uploads/[A-Za-z0-9_\-]+", text)
        assert link, text
        path = link.group(0)[len(top.url):]

        # Two chunks, each its own HTTP request (nginx spreads them over both web processes): the second resumes
        # where the first stopped, whichever process takes it.
        half = len(data) // 2
        first = await http.put(path, data=data[:half], headers={"Content-Range": f"bytes 0-{half - 1}/{len(data)}",
                                                                "Content-Type": "video/mp4"})
        assert first.status == 202, await first.text()
        # (It also claims to come from elsewhere: nginx replaces the claim with the real peer.)
        receipt = await _json(await http.put(path, data=data[half:], headers={
            "Content-Range": f"bytes {half}-{len(data) - 1}/{len(data)}", "Content-Type": "video/mp4",
            "X-Forwarded-For": "203.0.113.66"}), 201)
        assert receipt["sha256"] == hashlib.sha256(data).hexdigest()

        # Stored once, in S3, under its hash; read back bit for bit through nginx.
        assert [k.rsplit("/", 1)[-1] for k in await top.s3_objects()] == [receipt["sha256"]]
        content = await http.get(f"/api/v1/evidence/{receipt['evidence_id']}/content", headers=investigator)
        assert content.status == 200 and await content.read() == data

        # The uploader's address in the provenance is the peer nginx saw, never the address the client claimed.
        record = await _json(await http.get(f"/api/v1/evidence/{receipt['evidence_id']}", headers=investigator), 200)
        assert record["provenance"]["client_address"] == "127.0.0.1"

        auditor = await login("auditor@metro.example.org", staff["auditor"])
        chain = await _json(await http.get("/api/v1/audit/verify", headers=auditor), 200)
        assert chain["ok"] is True and chain["events"] > 5

    # Both web processes served; jobs ran on the workers, none on a web process.
    upstreams = {line.split()[-1] for line in (tmp_path / "nginx-access.log").read_text().splitlines() if "/api/" in line}
    assert {f"127.0.0.1:{p}" for p in top.web_ports} <= upstreams, upstreams
    import asyncpg

    conn = await asyncpg.connect(top.database_url.replace("+asyncpg", ""))
    try:
        ran = {r["locked_by"] for r in await conn.fetch("SELECT locked_by FROM jobs WHERE status = 'done'")}
        postgis = await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'postgis'")
    finally:
        await conn.close()
    assert ran and ran <= {"topology-worker-1", "topology-worker-2"}, ran
    assert postgis == 1, "the deployment runs on PostGIS (apt: postgresql-15-postgis-3)"
