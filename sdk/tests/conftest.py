"""A real ConsentCam core on a free port of 127.0.0.1 for every test that asks for ``live``: the SDK is tested
over HTTP against the server, never against mocks. SQLite, for speed; the core's own suite covers PostgreSQL."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from consentcam.http.app import create_app
from consentcam.http.keys import PLATFORM
from consentcam.settings import Settings
from consentcam.testing.databases import SqliteDatabases
from consentcam.testing.world import World


@dataclass
class Live:
    url: str
    settings: Settings
    platform: Any
    world: World


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def _sdk_sqlite(tmp_path_factory: pytest.TempPathFactory) -> SqliteDatabases:
    return SqliteDatabases(tmp_path_factory.mktemp("sdk-template"))


@pytest.fixture
def sdk_database_url(tmp_path: Path, _sdk_sqlite: SqliteDatabases) -> str:
    """A fresh migrated SQLite database (made outside the event loop: migrations run their own)."""
    return _sdk_sqlite.new(tmp_path / "db")


@pytest.fixture
async def live(tmp_path: Path, sdk_database_url: str) -> AsyncIterator[Live]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        database_url=sdk_database_url,
        secret_key="k",
        public_url=url,
        load_entry_point_plugins=False,
        run_jobs_in_process=True,
    )
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    platform = runner.app[PLATFORM]
    try:
        yield Live(url, settings, platform, World(platform))
    finally:
        await runner.cleanup()


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real H.264 clip (2 s, 160x120), made once with Debian's FFmpeg."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("ffmpeg is required for the upload tests (apt-get install ffmpeg)", pytrace=False)
    out = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run([ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=2",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out)], check=True)
    return out
