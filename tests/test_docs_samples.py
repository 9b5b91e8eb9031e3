"""Every code sample in docs/ is executed (the convention is in docs/contributing.md):

- every ```python block runs, as a whole script in a fresh interpreter;
- a ```sh block runs when the line before it is ``<!-- docs-test: run -->``;
- a block after ``<!-- docs-test: file PATH -->`` is written to PATH instead (a file a later block uses);
- every fence names its language, so a sample cannot hide from this test by having none.

The blocks of one page run in order, in one temporary folder, against one real core on 127.0.0.1 with a fresh
database, and with the environment the convention promises (CONSENTCAM_URL, CONSENTCAM_TOKEN, CONSENTCAM_API_KEY,
CONSENTCAM_DATA_DIR). A block fails the test by exiting non-zero.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LANGUAGES = {"python", "sh", "toml", "json", "text", "http", "yaml", "ini"}
MARKER = re.compile(r"^<!-- docs-test: (run|file (\S+)) -->$")
LAT, LON = 41.8827, -87.6233  # the Loop


@dataclass
class Block:
    page: str
    line: int
    lang: str
    code: str
    action: str  # run | file | show
    path: str | None = None


def blocks_of(page: Path) -> list[Block]:
    found: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^( *)(`{3,})(.*)$", lines[i])  # indented too: a fence inside a list item
        if not opening:
            i += 1
            continue
        indent, fence, info = opening.group(1), opening.group(2), opening.group(3).strip()
        body_start = i + 1
        j = body_start
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        previous = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        marker = MARKER.match(previous)
        lang = info.split()[0] if info else ""
        action = "run" if lang == "python" else "show"
        path = None
        if marker and marker.group(1) == "run":
            action = "run"
        elif marker:
            action, path = "file", marker.group(2)
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip() for line in lines[body_start:j]]
        found.append(Block(str(page.relative_to(DOCS)), i + 1, lang, "\n".join(body) + "\n", action, path))
        i = j + 1
    return found


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def runnable_pages() -> list[str]:
    return [str(p.relative_to(DOCS)) for p in pages() if any(b.action != "show" for b in blocks_of(p))]


def test_every_fence_names_a_known_language_and_markers_fit() -> None:
    problems = []
    for page in pages():
        for block in blocks_of(page):
            where = f"docs/{block.page}:{block.line}"
            if block.lang not in LANGUAGES:
                problems.append(f"{where}: fence language {block.lang!r} (use one of {sorted(LANGUAGES)})")
            if block.action == "run" and block.lang not in ("python", "sh"):
                problems.append(f"{where}: only python and sh blocks run")
    assert not problems, "\n".join(problems)


def test_the_convention_is_used_where_it_matters() -> None:
    """The done-when sample (an owner, a camera, a grant, the access log in ten lines) and the vendor tutorial run."""
    assert "integrators/index.md" in runnable_pages() and "vendors/tutorial.md" in runnable_pages()
    first = next(b for b in blocks_of(DOCS / "integrators" / "index.md") if b.lang == "python")
    assert len(first.code.strip().splitlines()) <= 10
    for call in ("register_owner", "create_camera", "set_grant", "access_log"):
        assert call in first.code


# --- a live core --------------------------------------------------------------------------------------


@dataclass
class Live:
    url: str
    platform: Any
    env: dict[str, str]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def _docs_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from consentcam.testing.databases import SqliteDatabases

    return SqliteDatabases(tmp_path_factory.mktemp("docs-template"))


@pytest.fixture(scope="session")
def docs_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("ffmpeg is required for the docs samples (apt-get install ffmpeg)", pytrace=False)
    out = tmp_path_factory.mktemp("docs-clip") / "clip.mp4"
    subprocess.run([ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=2",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


@pytest.fixture
def docs_database_url(tmp_path: Path, _docs_sqlite: Any) -> str:
    """A fresh migrated SQLite database, made outside the event loop (migrations run their own)."""
    return _docs_sqlite.new(tmp_path / "db")


@pytest.fixture
async def live(tmp_path: Path, docs_database_url: str) -> AsyncIterator[Live]:
    from aiohttp import web
    from consentcam.http.app import create_app
    from consentcam.http.keys import PLATFORM
    from consentcam.settings import Settings

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(_env_file=None, data_dir=tmp_path / "server-data",  # type: ignore[call-arg]
                        database_url=docs_database_url, secret_key="docs-samples-key", public_url=url,
                        load_entry_point_plugins=False, run_jobs_in_process=True,
                        webhook_allowed_networks="127.0.0.0/8")  # the webhooks page's receiver is on loopback
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSENTCAM_", "PYTEST_"))}
    env.update(CONSENTCAM_URL=url, PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               CONSENTCAM_DATA_DIR=str(tmp_path / "work" / "data"))
    try:
        yield Live(url, runner.app[PLATFORM], env)
    finally:
        await runner.cleanup()


async def seed(live: Live, clip: Path) -> None:
    """What the samples may assume: the Metro PD (no approval step) with an investigator (CONSENTCAM_TOKEN) and a
    machine client (CONSENTCAM_API_KEY: map, requests, evidence); an owner with two cameras on its map; an open
    request (case 24-001) whose item the owner answered with a clip."""
    from consentcam.testing.world import World
    from consentcam_sdk import AsyncClient

    world = World(live.platform)
    agency = await world.agency("Metro PD", lon=LON, lat=LAT, require_approval=False)
    investigator = await world.staff(agency, "investigator")
    admin = await world.staff(agency, "admin")
    owner = await world.owner()
    for n, (lat, lon) in enumerate([(LAT, LON), (LAT + 0.001, LON + 0.001)]):
        await world.camera(owner, lat, lon, label=f"Storefront {n + 1}", grant={"map": True, "requests": True})
    now = datetime.now(UTC)
    async with AsyncClient(live.url, token=admin.token) as cc:
        key = await cc.create_api_key(agency, "docs samples", ["map:read", "requests:read", "evidence:read",
                                                               "evidence:export"])
    async with AsyncClient(live.url, token=investigator.token) as cc:
        await cc.create_request(case_number="24-001", description="Hit and run on State St",
                                area={"center": {"lat": LAT, "lon": LON}, "radius_m": 50},
                                window={"start": now - timedelta(hours=3), "end": now - timedelta(hours=2)})
    async with AsyncClient(live.url, token=owner.token) as cc:
        (item,) = (await cc.inbox()).items
        await cc.upload(item.upload_url, clip)
    live.env.update(CONSENTCAM_TOKEN=investigator.token or "", CONSENTCAM_API_KEY=key.key)


async def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 240) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(*argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        return -1, f"timed out after {timeout} s"
    return process.returncode or 0, out.decode(errors="replace")


@pytest.mark.parametrize("page", runnable_pages())
async def test_page_samples_run(page: str, live: Live, docs_clip: Path, tmp_path: Path) -> None:
    blocks = [b for b in blocks_of(DOCS / page) if b.action != "show"]
    if any("CONSENTCAM_TOKEN" in b.code or "CONSENTCAM_API_KEY" in b.code for b in blocks):
        await seed(live, docs_clip)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    for n, block in enumerate(blocks):
        where = f"docs/{block.page}:{block.line}"
        if block.action == "file":
            assert block.path and not Path(block.path).is_absolute() and ".." not in Path(block.path).parts, where
            target = work / block.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code)
            continue
        if block.lang == "python":
            script = work / f".docs-block-{n}.py"
            script.write_text(block.code)
            argv = [sys.executable, str(script)]
        else:
            argv = ["bash", "-euo", "pipefail", "-c", block.code]
        code, output = await _run(argv, work, live.env)
        assert code == 0, f"{where} exited {code}:\n{output[-4000:]}"
