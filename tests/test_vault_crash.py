"""Crash safety of the vault, for real: ``consentcam serve`` runs as a subprocess on a temporary SQLite database and
data folder, 50 owners' clients upload 50 different H.264 clips through their links (slowly, in small writes), and
the server is killed with SIGKILL at random moments and restarted, again and again, while each client resumes from
wherever the server says its upload stopped. Afterwards: every clip is in the vault once, with the hash of its
source file; no evidence row lacks its file and no stored file lacks its row; no temporary file is left."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from consentcam.audit import verify_chain
from consentcam.db.migrate import upgrade
from consentcam.db.models import Evidence, RequestItem, Upload
from consentcam.platform import open_platform
from consentcam.schemas import RequestCreate
from consentcam.services import requests
from consentcam.services.accounts import authenticate
from consentcam.settings import Settings
from consentcam.testing.world import World
from sqlalchemy import select

from .fixtures.vault import CENTRE, make_clip, variant

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fast_passwords")]

CONSENTCAM = Path(sys.executable).with_name("consentcam")
UPLOADS = 50
CONCURRENCY = 5
PIECE = 32 << 10
MAX_KILLS = 7
SEED = int(os.environ.get("CONSENTCAM_CRASH_SEED", "20260601"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``consentcam serve`` in a subprocess, killed without warning when told."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, session: aiohttp.ClientSession) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(CONSENTCAM), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--no-migrate"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            assert self.process.poll() is None, f"the server exited: {self.log.read_text()[-2000:]}"
            try:
                async with session.get(f"{self.url}/api/v1/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert asyncio.get_running_loop().time() < deadline, "the server did not come up in 60 s"
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Clip:
    path: str  # the link's path
    data: bytes
    sha256: str
    attempts: int = 0
    resumed_from: int = 0  # the largest offset an attempt resumed from
    evidence_id: str | None = None


async def prepare(settings: Settings, count: int) -> list[str]:
    """An agency, a supervisor-approved request, and ``count`` request items, made through the services."""
    platform = await open_platform(settings)
    try:
        world = World(platform)
        agency = await world.agency(require_approval=True, max_area_km2=2.0)
        investigator = await world.staff(agency, "investigator")
        supervisor = await world.staff(agency, "supervisor")
        for index in range(count):
            if index % 10 == 0:
                owner = await world.owner()
            await world.camera(owner, CENTRE[0] + 0.00002 * index, CENTRE[1], grant={"requests": True})
        end = platform.now() - timedelta(hours=2)
        spec = RequestCreate(case_number="CRASH-1", description="many clips, many crashes",
                             area={"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 300},
                             window={"start": end - timedelta(hours=1), "end": end})
        request = await requests.create_request(platform, await authenticate(platform, investigator.token), spec)
        await requests.approve(platform, await authenticate(platform, supervisor.token), request.id)
        async with platform.db.sessions() as session:
            items = (await session.execute(select(RequestItem).where(RequestItem.request_id == request.id)
                                           .order_by(RequestItem.id))).scalars().all()
        assert len(items) == count
        return [urlsplit(requests.upload_url(platform, requests.item_token(platform, i.id, i.token_salt))).path
                for i in items]
    finally:
        await platform.db.dispose()


async def throttled(data: bytes, start: int):
    for offset in range(start, len(data), PIECE):
        yield data[offset:offset + PIECE]
        await asyncio.sleep(0.01)


async def upload(session: aiohttp.ClientSession, server: Server, clip: Clip, gate: asyncio.Semaphore) -> None:
    """Send one clip until the vault holds it, resuming at whatever offset the server reports."""
    size = len(clip.data)
    async with gate:
        while clip.evidence_id is None:
            clip.attempts += 1
            try:
                async with session.get(server.url + clip.path) as response:
                    if response.status != 200:
                        await asyncio.sleep(0.1)
                        continue
                    status = await response.json()
                if status["receipts"]:
                    (receipt,) = status["receipts"]
                    assert receipt["sha256"] == clip.sha256, "the vault holds other bytes than were sent"
                    clip.evidence_id = receipt["evidence_id"]
                    return
                received = status["received"]
                if received == size:
                    headers, body = {"Content-Range": f"bytes */{size}"}, b""
                else:
                    headers = {"Content-Range": f"bytes {received}-{size - 1}/{size}", "Content-Type": "video/mp4"}
                    body = throttled(clip.data, received)
                    clip.resumed_from = max(clip.resumed_from, received)
                async with session.put(server.url + clip.path, data=body, headers=headers) as response:
                    answer = await response.json()
                    if response.status == 201:
                        assert answer["sha256"] == clip.sha256 and answer["size"] == size
                        clip.evidence_id = answer["evidence_id"]
                        return
                    assert response.status in (202, 409, 503), answer  # interrupted, raced, or not ready: ask again
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                pass
            await asyncio.sleep(0.1)


async def chaos(session: aiohttp.ClientSession, server: Server, rng: random.Random, done: asyncio.Event) -> None:
    """Kill the server at random moments while uploads run, and bring it back each time."""
    while not done.is_set() and server.kills < MAX_KILLS:
        try:
            await asyncio.wait_for(done.wait(), timeout=rng.uniform(0.3, 1.5))
        except TimeoutError:
            server.kill()
            await server.start(session)


def check_vault(data_dir: Path, rows: list[Evidence], uploads: list[Upload], clips: list[Clip]) -> None:
    evidence_dir = data_dir / "evidence" / "sha256"
    stored = {p.name: p for p in evidence_dir.rglob("*") if p.is_file()}
    # Each clip exactly once, with its source's hash.
    assert sorted(r.sha256 for r in rows) == sorted(c.sha256 for c in clips)
    assert {r.id for r in rows} == {c.evidence_id for c in clips}
    # No evidence row lacks its file (whose bytes hash as recorded); no stored file lacks its row.
    for row in rows:
        path = stored.get(row.sha256)
        assert path is not None, f"evidence {row.id} has no file"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row.sha256 and path.stat().st_size == row.size
    assert set(stored) == {r.sha256 for r in rows}, "a stored file has no evidence row"
    # No temporary file without its upload row, and none left at all once every upload completed.
    assert uploads == []
    assert sorted(p.name for p in (data_dir / "uploads").iterdir()) == []


async def test_sigkill_at_random_moments_during_50_uploads_loses_nothing_and_leaves_nothing(tmp_path):
    rng = random.Random(SEED)
    data_dir = tmp_path / "data"
    database = f"sqlite+aiosqlite:///{tmp_path / 'crash.sqlite3'}"
    env = {**os.environ, "CONSENTCAM_DATA_DIR": str(data_dir), "CONSENTCAM_DATABASE_URL": database,
           "CONSENTCAM_SECRET_KEY": "crash-test-key", "CONSENTCAM_PUBLIC_URL": "http://127.0.0.1",
           "CONSENTCAM_LOAD_ENTRY_POINT_PLUGINS": "false", "CONSENTCAM_RUN_JOBS_IN_PROCESS": "false"}
    settings = Settings(_env_file=None, data_dir=data_dir, database_url=database, secret_key="crash-test-key",  # type: ignore[call-arg]
                        public_url="http://127.0.0.1", load_entry_point_plugins=False, run_jobs_in_process=False)
    await asyncio.to_thread(upgrade, database)
    paths = await prepare(settings, UPLOADS)

    # 50 different real clips: one encoded (about 2 MB), the others the same with a different trailing free box.
    base = make_clip(tmp_path / "base.mp4", seconds=2, size="320x240", noise=40)
    files = [variant(base, tmp_path / f"clip-{i}.mp4", f"clip {i}") for i in range(UPLOADS)]
    clips = []
    for path, file in zip(paths, files, strict=True):
        data = file.read_bytes()
        clips.append(Clip(path, data, hashlib.sha256(data).hexdigest()))
    assert len({c.sha256 for c in clips}) == UPLOADS

    server = Server(env, free_port(), tmp_path / "server.log")
    timeout = aiohttp.ClientTimeout(total=60, sock_connect=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await server.start(session)
        try:
            done = asyncio.Event()
            killer = asyncio.create_task(chaos(session, server, rng, done))
            gate = asyncio.Semaphore(CONCURRENCY)
            await asyncio.wait_for(asyncio.gather(*(upload(session, server, c, gate) for c in clips)), timeout=600)
            done.set()
            await killer
            # One more crash after the last upload, then the restart's recovery, then a clean stop.
            server.kill()
            await server.start(session)
        finally:
            server.stop()

    assert server.kills >= 4, f"only {server.kills} kills happened; the test proved little"
    assert sum(1 for c in clips if c.resumed_from > 0) >= 1, "no upload was resumed from a stored offset"
    assert sum(c.attempts for c in clips) > UPLOADS, "no upload was ever interrupted"

    platform = await open_platform(settings)
    try:
        async with platform.db.sessions() as session:
            rows = list((await session.execute(select(Evidence))).scalars().all())
            uploads = list((await session.execute(select(Upload))).scalars().all())
        check_vault(data_dir, rows, uploads, clips)
        chain = await verify_chain(platform.db)
        assert chain.ok, chain.reason
    finally:
        await platform.db.dispose()
