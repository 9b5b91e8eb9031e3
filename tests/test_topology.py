"""The city deployment of docs/admins/scale.md, brought up for real on loopback: PostgreSQL (with PostGIS),
two `consentcam serve` processes and two `consentcam worker` processes, evidence in S3-compatible storage (moto's
server), mail to a real SMTP server, and Debian's nginx in front terminating TLS with the repository's own
deploy/nginx/consentcam.conf. The whole request flow goes through nginx:

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
import os
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from consentcam.testing.databases import PostgresDatabases
from consentcam.web.browser import consentcam_command, free_port, make_clip

pytestmark = [pytest.mark.peer("nginx"), pytest.mark.peer("postgresql"), pytest.mark.peer("s3")]

ROOT = Path(__file__).resolve().parent.parent
NGINX_SITE = ROOT / "deploy" / "nginx" / "consentcam.conf"
CENTRE = (41.8800, -87.6300)
JURISDICTION = {"type": "Polygon", "coordinates": [[[-87.65, 41.87], [-87.61, 41.87], [-87.61, 41.89],
                                                    [-87.65, 41.89], [-87.65, 41.87]]]}


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=ssl._create_unverified_context()) as response:  # noqa: S323
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cameras.city.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Topology:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.web_ports = [free_port(), free_port()]
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.env: dict[str, str] = {}

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.folder / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(command, env=env or self.env, stdout=out, stderr=subprocess.STDOUT)
        self.processes.append((name, process, log))
        return process

    def cli(self, *args: str) -> dict[str, Any]:
        done = subprocess.run([*consentcam_command(), *args, "--json"], env=self.env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
        return json.loads(done.stdout.decode().strip().splitlines()[-1])

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for _name, process, _log in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for _name, process, _log in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def topology(tmp_path: Path, consentcam_smtp: Any) -> Iterator[Topology]:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        pytest.fail("nginx is required for the deployment test (Debian: apt-get install nginx)", pytrace=False)
    from moto.server import ThreadedMotoServer

    top = Topology(tmp_path)
    pg = PostgresDatabases()
    database_url = pg.new()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        s3_host, s3_port = moto.get_host_and_port()
        endpoint = f"http://{s3_host}:{s3_port}"
        asyncio.run(_make_bucket(endpoint))
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        top.env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTCAM_")}
        top.env.update({
            "CONSENTCAM_DATABASE_URL": database_url,
            "CONSENTCAM_DATA_DIR": str(data_dir),
            "CONSENTCAM_SECRET_KEY": "topology-test-key-not-for-production",
            "CONSENTCAM_PUBLIC_URL": top.url,
            "CONSENTCAM_TRUSTED_PROXIES": "127.0.0.1",
            "CONSENTCAM_RUN_JOBS_IN_PROCESS": "false",
            "CONSENTCAM_LOAD_ENTRY_POINT_PLUGINS": "false",
            "CONSENTCAM_TILE_URL": "",
            "CONSENTCAM_SMTP_HOST": consentcam_smtp.host,
            "CONSENTCAM_SMTP_PORT": str(consentcam_smtp.port),
            "CONSENTCAM_VAULT_BACKEND": "s3",
            "CONSENTCAM_VAULT_S3_BUCKET": "evidence",
            "CONSENTCAM_VAULT_S3_ENDPOINT": endpoint,
            "CONSENTCAM_VAULT_S3_ACCESS_KEY": "testing",
            "CONSENTCAM_VAULT_S3_SECRET_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
        })
        subprocess.run([*consentcam_command(), "db", "upgrade"], env=top.env, check=True, capture_output=True, timeout=120)
        for i, port in enumerate(top.web_ports, 1):
            top.start(f"web{i}", [*consentcam_command(), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-migrate"])
        for i in (1, 2):
            top.start(f"worker{i}", [*consentcam_command(), "worker", "--name", f"topology-worker-{i}"])

        cert, key = _self_signed(tmp_path)
        site = NGINX_SITE.read_text()
        site = (site.replace("@LISTEN@", f"127.0.0.1:{top.port} ssl").replace("@CERT@", str(cert)).replace("@KEY@", str(key))
                .replace("@UPSTREAMS@", " ".join(f"server 127.0.0.1:{p};" for p in top.web_ports)))
        (tmp_path / "site.conf").write_text(site)
        main_conf = tmp_path / "nginx.conf"
        user = "user root;\n" if os.geteuid() == 0 else ""
        main_conf.write_text(f"""{user}worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format upstream '$request_method $uri $status $upstream_addr';
    access_log {tmp_path}/nginx-access.log upstream;
    client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fcgi; uwsgi_temp_path {tmp_path}/uwsgi; scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/site.conf;
}}
""")
        check = subprocess.run([nginx, "-t", "-c", str(main_conf), "-p", str(tmp_path)], capture_output=True, timeout=30)
        assert check.returncode == 0, check.stderr.decode()
        top.start("nginx", [nginx, "-c", str(main_conf), "-p", str(tmp_path), "-g", "daemon off;"])
        for i, port in enumerate(top.web_ports, 1):
            _wait_http(f"http://127.0.0.1:{port}/api/v1/health", top.processes[i - 1][1], tmp_path / f"web{i}.log")
        _wait_http(f"{top.url}/api/v1/health", top.processes[-1][1], tmp_path / "nginx-error.log")
        yield top
    finally:
        top.stop()
        moto.stop()
        pg.drop(database_url)


async def _make_bucket(endpoint: str) -> None:
    from consentcam.vault.storage import S3Storage

    store = S3Storage("evidence", endpoint_url=endpoint, access_key="testing", secret_key="testing")
    async with store._client() as client:
        await client.create_bucket(Bucket="evidence", ObjectLockEnabledForBucket=True)


async def _objects(endpoint: str) -> list[str]:
    from consentcam.vault.storage import S3Storage

    store = S3Storage("evidence", endpoint_url=endpoint, access_key="testing", secret_key="testing")
    async with store._client() as client:
        listed = await client.list_objects_v2(Bucket="evidence")
    return [o["Key"] for o in listed.get("Contents", [])]


async def _json(response: aiohttp.ClientResponse, status: int) -> Any:
    text = await response.text()
    assert response.status == status, f"{response.method} {response.url}: {response.status} {text[:500]}"
    return json.loads(text) if text else None


async def test_the_request_flow_through_nginx_two_web_processes_two_workers_postgresql_and_s3(
        topology: Topology, consentcam_smtp: Any, tmp_path: Path) -> None:
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
        endpoint = top.env["CONSENTCAM_VAULT_S3_ENDPOINT"]
        assert [k.rsplit("/", 1)[-1] for k in await _objects(endpoint)] == [receipt["sha256"]]
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

    conn = await asyncpg.connect(top.env["CONSENTCAM_DATABASE_URL"].replace("+asyncpg", ""))
    try:
        ran = {r["locked_by"] for r in await conn.fetch("SELECT locked_by FROM jobs WHERE status = 'done'")}
        postgis = await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'postgis'")
    finally:
        await conn.close()
    assert ran and ran <= {"topology-worker-1", "topology-worker-2"}, ran
    assert postgis == 1, "the deployment runs on PostGIS (apt: postgresql-15-postgis-3)"
