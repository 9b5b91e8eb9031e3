"""The ten-line script of docs/integrators/index.md, run verbatim (in a fresh interpreter) against a live server."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

from consentcam_sdk import AsyncClient

DOCS = Path(__file__).resolve().parents[2] / "docs" / "integrators" / "index.md"


def _script() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    assert blocks, f"{DOCS} has no ```python block"
    return blocks[0]


def test_the_script_is_ten_lines_at_most() -> None:
    assert len(_script().strip().splitlines()) <= 10


async def test_docs_script_registers_owner_camera_grant_and_reads_the_log(live: Any) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _script(), env={**os.environ, "CONSENTCAM_URL": live.url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines, "the script printed no access-log event"
    assert any("grant" in line for line in lines), lines
    # What the script made is on the server.
    async with AsyncClient(live.url) as cc:
        await cc.login("ada@example.org", "correct horse battery")
        (camera,) = await cc.list_cameras()
        assert camera.label == "Porch"
        assert camera.grant.map and camera.grant.requests and camera.grant.version >= 1
