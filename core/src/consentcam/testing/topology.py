"""The city deployment of docs/admins/scale.md on loopback, for the deployment test and the load and fault runs:
PostgreSQL (a throwaway database, PostGIS where installed), N ``consentcam serve`` and M ``consentcam worker``
processes, evidence in S3-compatible storage (moto's real HTTP server), and Debian's nginx terminating TLS in front
with the repository's own ``deploy/nginx/consentcam.conf``; with ``broker_url``, every process shares that NATS
server (under a subject prefix of its own), as the guide's processes do. Processes can be killed and restarted by
name.

``city(folder, smtp_host, smtp_port)`` is a context manager yielding a ``City``; it fails (never skips) when nginx,
PostgreSQL or moto is missing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..web.browser import consentcam_command, free_port
from .databases import PostgresDatabases

NGINX_SITE = Path(__file__).resolve().parents[4] / "deploy" / "nginx" / "consentcam.conf"
BUCKET = "evidence"
S3_KEYS = {"access_key": "testing", "secret_key": "testing"}


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found is None:
        raise RuntimeError("nginx is required for the deployment topology (Debian: apt-get install nginx)")
    return found


def wait_http(url: str, process: subprocess.Popen[bytes] | None, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    unverified = ssl._create_unverified_context()  # noqa: S323 - our own self-signed certificate on loopback
    while True:
        if process is not None and process.poll() is not None:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"{process.args} exited with {process.returncode}:\n{text[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=unverified) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"{url} did not answer within {timeout} s:\n{text[-3000:]}")
        time.sleep(0.2)


def self_signed(folder: Path) -> tuple[Path, Path]:
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


@dataclass
class Process:
    name: str
    command: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    health: str | None = None  # a URL answering 200 once the process is ready
    restarts: int = 0


@dataclass
class City:
    folder: Path
    url: str
    env: dict[str, str]
    s3_endpoint: str
    database_url: str
    web_ports: list[int]
    bucket: str = BUCKET
    processes: dict[str, Process] = field(default_factory=dict)

    def web_url(self, number: int) -> str:
        """Web process ``number`` (1, 2, ...) directly, without the proxy in front."""
        return f"http://127.0.0.1:{self.web_ports[number - 1]}"

    # processes ------------------------------------------------------------------------------------------

    def start(self, proc: Process, wait: bool = True) -> None:
        with open(proc.log, "ab") as out:
            proc.popen = subprocess.Popen(proc.command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        self.processes[proc.name] = proc
        if wait and proc.health:
            wait_http(proc.health, proc.popen, proc.log)

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash or the OOM killer would: no cleanup, no goodbye."""
        proc = self.processes[name]
        if proc.popen is not None and proc.popen.poll() is None:
            os.kill(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait()

    def restart(self, name: str, wait: bool = True) -> None:
        proc = self.processes[name]
        self.kill(name)
        proc.restarts += 1
        self.start(proc, wait=wait)

    def stop(self) -> None:
        for proc in reversed(list(self.processes.values())):
            if proc.popen is not None and proc.popen.poll() is None:
                proc.popen.terminate()
        for proc in self.processes.values():
            if proc.popen is None:
                continue
            try:
                proc.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()

    def log(self, name: str) -> str:
        return self.processes[name].log.read_text(errors="replace")

    # administration -------------------------------------------------------------------------------------

    def cli(self, *args: str) -> dict[str, Any]:
        done = subprocess.run([*consentcam_command(), *args, "--json"], env=self.env, capture_output=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"consentcam {' '.join(args)}: {done.stderr.decode(errors='replace')[-2000:]}")
        return json.loads(done.stdout.decode().strip().splitlines()[-1])

    async def s3_objects(self) -> dict[str, int]:
        """Every object in the evidence bucket: key -> size."""
        from ..vault.storage import S3Storage

        store = S3Storage(self.bucket, endpoint_url=self.s3_endpoint, **S3_KEYS)
        found: dict[str, int] = {}
        try:
            async with store._client() as client:
                paginator = client.get_paginator("list_objects_v2")
                async for page in paginator.paginate(Bucket=self.bucket):
                    for item in page.get("Contents", []):
                        found[item["Key"]] = item["Size"]
        finally:
            await store.close()
        return found


async def _make_bucket(endpoint: str, bucket: str) -> None:
    from ..vault.storage import S3Storage

    store = S3Storage(bucket, endpoint_url=endpoint, **S3_KEYS)
    try:
        async with store._client() as client:
            await client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    finally:
        await store.close()


@contextmanager
def city(folder: Path, smtp_host: str, smtp_port: int, *, web: int = 2, workers: int = 2,
         settings: dict[str, str] | None = None, broker_url: str | None = None) -> Iterator[City]:
    """Bring the deployment up in ``folder``; everything is stopped and the database dropped at the end."""
    nginx = nginx_binary()
    if not NGINX_SITE.exists():
        raise RuntimeError(f"{NGINX_SITE} is missing: the topology runs from a source checkout of ConsentCam")
    from moto.server import ThreadedMotoServer

    pg = PostgresDatabases()
    database_url = pg.new()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    town: City | None = None
    try:
        s3_host, s3_port = moto.get_host_and_port()
        endpoint = f"http://{s3_host}:{s3_port}"
        # A bucket of its own: moto keeps every server's buckets in one store per Python process, so a second city in
        # the same test run would otherwise see the first one's evidence.
        bucket = f"{BUCKET}-{os.getpid()}-{free_port()}"
        asyncio.run(_make_bucket(endpoint, bucket))
        data_dir = folder / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        url = f"https://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTCAM_")}
        env.update({
            "CONSENTCAM_DATABASE_URL": database_url,
            "CONSENTCAM_DATA_DIR": str(data_dir),
            "CONSENTCAM_SECRET_KEY": "topology-test-key-not-for-production",
            "CONSENTCAM_PUBLIC_URL": url,
            "CONSENTCAM_TRUSTED_PROXIES": "127.0.0.1",
            "CONSENTCAM_RUN_JOBS_IN_PROCESS": "false",
            "CONSENTCAM_LOAD_ENTRY_POINT_PLUGINS": "false",
            "CONSENTCAM_TILE_URL": "",
            "CONSENTCAM_SMTP_HOST": smtp_host,
            "CONSENTCAM_SMTP_PORT": str(smtp_port),
            "CONSENTCAM_VAULT_BACKEND": "s3",
            "CONSENTCAM_VAULT_S3_BUCKET": bucket,
            "CONSENTCAM_VAULT_S3_ENDPOINT": endpoint,
            "CONSENTCAM_VAULT_S3_ACCESS_KEY": S3_KEYS["access_key"],
            "CONSENTCAM_VAULT_S3_SECRET_KEY": S3_KEYS["secret_key"],
            "AWS_EC2_METADATA_DISABLED": "true",
            **({"CONSENTCAM_BROKER_URL": broker_url, "CONSENTCAM_BROKER_SUBJECT_PREFIX": f"topology{os.getpid()}x{port}"}
               if broker_url else {}),
            **{f"CONSENTCAM_{k.upper()}": v for k, v in (settings or {}).items()},
        })
        web_ports = [free_port() for _ in range(web)]
        town = City(folder, url, env, endpoint, database_url, web_ports, bucket)
        upgrade = subprocess.run([*consentcam_command(), "db", "upgrade"], env=env, capture_output=True, timeout=300)
        if upgrade.returncode != 0:
            raise RuntimeError(f"consentcam db upgrade: {upgrade.stderr.decode(errors='replace')[-2000:]}")
        for i, web_port in enumerate(web_ports, 1):
            town.start(Process(f"web{i}", [*consentcam_command(), "serve", "--host", "127.0.0.1", "--port", str(web_port),
                                           "--no-migrate"], folder / f"web{i}.log",
                               health=f"http://127.0.0.1:{web_port}/api/v1/health"), wait=False)
        for i in range(1, workers + 1):
            town.start(Process(f"worker{i}", [*consentcam_command(), "worker", "--name", f"topology-worker-{i}"],
                               folder / f"worker{i}.log"))

        cert, key = self_signed(folder)
        site = (NGINX_SITE.read_text().replace("@LISTEN@", f"127.0.0.1:{port} ssl").replace("@CERT@", str(cert))
                .replace("@KEY@", str(key)).replace("@UPSTREAMS@", " ".join(f"server 127.0.0.1:{p} fail_timeout=2s;" for p in web_ports)))
        (folder / "site.conf").write_text(site)
        main_conf = folder / "nginx.conf"
        user = "user root;\n" if os.geteuid() == 0 else ""
        main_conf.write_text(f"""{user}worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log warn;
events {{ worker_connections 2048; }}
http {{
    log_format upstream '$request_method $uri $status $upstream_addr';
    access_log {folder}/nginx-access.log upstream;
    client_body_temp_path {folder}/body; proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fcgi; uwsgi_temp_path {folder}/uwsgi; scgi_temp_path {folder}/scgi;
    include {folder}/site.conf;
}}
""")
        check = subprocess.run([nginx, "-t", "-c", str(main_conf), "-p", str(folder)], capture_output=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t: {check.stderr.decode(errors='replace')}")
        town.start(Process("nginx", [nginx, "-c", str(main_conf), "-p", str(folder), "-g", "daemon off;"],
                           folder / "nginx.log", health=f"{url}/api/v1/health"), wait=False)
        for proc in list(town.processes.values()):
            if proc.health:
                wait_http(proc.health, proc.popen, proc.log)
        yield town
    finally:
        if town is not None:
            town.stop()
        moto.stop()
        pg.drop(database_url)
