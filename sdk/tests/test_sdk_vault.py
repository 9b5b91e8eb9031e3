"""Footage requests end to end through the SDK: API keys, pagination, a resumable upload through an owner's link,
a hash-verified download, and a verified export package."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from consentcam_sdk import AsyncClient, Client, Forbidden, IntegrityError, verify_package

LAT, LON = 41.88, -87.63


def _window() -> dict[str, datetime]:
    now = datetime.now(UTC)
    return {"start": now - timedelta(hours=3), "end": now - timedelta(hours=2)}


async def _open_request(live: Any, investigator: Any, case: str = "24-001") -> str:
    async with AsyncClient(live.url, token=investigator.token) as cc:
        created = await cc.create_request(case_number=case, description="Hit and run on Main St",
                                          area={"center": {"lat": LAT, "lon": LON}, "radius_m": 200},
                                          window=_window())
    assert created.status == "open" and created.matched == 1, created
    return created.id


@pytest.fixture
async def scene(live: Any) -> dict[str, Any]:
    world = live.world
    agency = await world.agency(require_approval=False)
    owner = await world.owner()
    camera = await world.camera(owner, LAT, LON, grant={"map": True, "requests": True})
    investigator = await world.staff(agency, "investigator")
    return {"agency": agency, "owner": owner, "camera": camera, "investigator": investigator}


async def test_api_key_made_through_the_sdk_reads_the_map(live: Any, scene: dict[str, Any]) -> None:
    admin = await live.world.staff(scene["agency"], "admin")
    async with AsyncClient(live.url, token=admin.token) as cc:
        created = await cc.create_api_key(scene["agency"], "GIS sync", ["map:read"])
        assert created.scopes == ["map:read"] and created.active and created.key
        assert [k.id for k in (await cc.list_api_keys(scene["agency"])).keys] == [created.id]
    async with AsyncClient(live.url, api_key=created.key) as machine:
        found = await machine.map_cameras(bbox=(LON - 0.01, LAT - 0.01, LON + 0.01, LAT + 0.01))
        assert found.type == "FeatureCollection" and len(found.features) == 1
        with pytest.raises(Forbidden):  # the key's one scope is map:read
            await machine.list_requests()


async def test_requests_paginate_with_limit_and_offset(live: Any, scene: dict[str, Any]) -> None:
    made = [await _open_request(live, scene["investigator"], f"24-{n:03}") for n in range(5)]
    async with AsyncClient(live.url, token=scene["investigator"].token) as cc:
        seen = [r.id async for r in cc.iter_requests(page_size=2)]
    assert sorted(seen) == sorted(made) and len(seen) == 5


async def test_upload_interrupted_and_resumed_then_download_and_export(live: Any, scene: dict[str, Any], clip: Path,
                                                                       tmp_path: Path) -> None:
    request_id = await _open_request(live, scene["investigator"])
    owner = Client(live.url, token=scene["owner"].token)  # the blocking wrapper, used from a worker thread
    try:
        (item,) = (await asyncio.to_thread(owner.inbox)).items
        assert item.upload_url and item.case_number == "24-001"
        size = clip.stat().st_size
        chunk = max(size // 4, 1)

        class Interrupted(Exception):
            pass

        def stop_midway(sent: int, total: int | None) -> None:
            if sent > chunk + chunk // 2:  # in the middle of the second chunk
                raise Interrupted

        async with AsyncClient(live.url) as link:  # the link is the capability: no login
            with pytest.raises(Interrupted):
                await link.upload(item.upload_url, clip, chunk_size=chunk, progress=stop_midway)
            status = await link.upload_status(item.upload_url)
            assert chunk <= status.received < size, status
            reported: list[tuple[int, int | None]] = []
            receipt = await link.upload(item.upload_url, clip, chunk_size=chunk,
                                        progress=lambda s, t: reported.append((s, t)))
        assert reported[0][0] > chunk, "the second call started again from byte 0"
        assert reported[-1] == (size, size)
        digest = hashlib.sha256(clip.read_bytes()).hexdigest()
        assert receipt.sha256 == digest and receipt.size == size
    finally:
        await asyncio.to_thread(owner.close)

    async with AsyncClient(live.url, token=scene["investigator"].token) as cc:
        request = await cc.get_request(request_id)
        assert request.items and request.items[0].evidence_ids == [receipt.evidence_id]
        assert [e.id async for e in cc.iter_evidence(page_size=1, request_id=request_id)] == [receipt.evidence_id]

        target = tmp_path / "clip.mp4"
        clip_info = await cc.download_evidence(receipt.evidence_id, target)
        assert target.read_bytes() == clip.read_bytes() and clip_info.sha256 == digest

        key = await cc.signing_key()
        verified = await cc.export_request(request_id, tmp_path / "case.zip", public_key=key.public_key)
        assert verified.ok and verified.clips == 1 and verified.signature_checked and verified.key_pinned
        assert verified.case_number == "24-001"

        # A package signed by someone else, or with a changed clip, does not verify.
        other = base64.b64encode(bytes(32)).decode()
        assert not verify_package(tmp_path / "case.zip", other).ok
        _tamper(tmp_path / "case.zip", clip.read_bytes())
        problems = verify_package(tmp_path / "case.zip").problems
        assert len(problems) == 1 and problems[0].startswith(f"clips/{receipt.evidence_id}."), problems

        # The vault's copy changed on disk: the download no longer matches the metadata.
        assert _tamper_tree(live.settings.data_dir, clip.read_bytes()), "the stored clip was not found"
        with pytest.raises(IntegrityError):
            await cc.download_evidence(receipt.evidence_id, tmp_path / "tampered.mp4")


def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


def _tamper(path: Path, original: bytes) -> None:
    raw = path.read_bytes()
    at = raw.index(original)  # stored, not compressed
    path.write_bytes(raw[:at] + _flip(original) + raw[at + len(original):])


def _tamper_tree(root: Path, original: bytes) -> int:
    changed = 0
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size == len(original) and path.read_bytes() == original:
            path.chmod(0o600)
            path.write_bytes(_flip(original))
            changed += 1
    return changed
