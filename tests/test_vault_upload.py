"""The evidence vault end to end over real HTTP: a real H.264 clip from ffmpeg is uploaded through a request's
link, interrupted half way by a dropped connection, resumed, read back with ranges, exported as a signed package
and verified by ``consentcam verify-export`` in a subprocess. Then the upload protocol's edges: chunks and their
offsets, the size limit, files that are not video, and links revoked while an upload is under way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from consentcam.cli import main
from consentcam.db.models import Agency, Camera, Evidence, Job, RequestItem, Upload
from consentcam.vault import vault_for
from sqlalchemy import select

from .conftest import count, ok, problem
from .fixtures.vault import (
    CREATION_TIME,
    make_clip,
    open_case,
    put_clip,
    send_and_cut,
    sha256,
)

pytest_plugins = ("tests.fixtures.clips",)  # h264_clip, other_clip
pytestmark = pytest.mark.usefixtures("fast_passwords")

CONSENTCAM = Path(sys.executable).with_name("consentcam")


def vault_files(platform) -> tuple[list[str], list[str]]:
    """(temporary upload files, stored objects) on disk right now."""
    vault = vault_for(platform)
    temps = sorted(p.name for p in vault.upload_dir.iterdir()) if vault.upload_dir.exists() else []
    root = platform.settings.resolved_evidence_dir / "sha256"
    stored = sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []
    return temps, stored


async def custody_actions(api, person, evidence_id) -> list[str]:
    record = await ok(await api.get(f"/api/v1/evidence/{evidence_id}", headers=person.headers))
    return [e["action"] for e in record["custody"]]


async def test_clip_uploaded_interrupted_resumed_read_with_ranges_exported_and_verified(
        api, consentcam_world, consentcam_clock, consentcam_platform, h264_clip, tmp_path):
    p, world = consentcam_platform, consentcam_world
    case = await open_case(api, world, consentcam_clock)
    link = case.path()
    data = h264_clip.read_bytes()
    size, half = len(data), len(data) // 2

    # Half the clip, then the connection drops (a real TCP close mid-body).
    status = await send_and_cut(api, link, data[:half], announced=size)
    assert status["received"] == half and status["total"] == size and status["receipts"] == []
    assert status["case_number"] == "2026-0099" and status["camera_id"] == case.links[0]["camera_id"]
    # The owner holding the link sees who asks, why, and about which of their cameras (the upload page shows it).
    async with p.db.sessions() as session:
        agency_name = (await session.get(Agency, case.agency)).name
        camera_label = (await session.execute(select(Camera.label).where(Camera.id == case.links[0]["camera_id"]))).scalar_one()
    assert (status["agency"], status["description"], status["camera_label"]) == (
        agency_name, "Hit and run at the corner", camera_label)
    assert await count(p, Evidence) == 0

    # The rest, from a new connection, resumes where it stopped.
    receipt = await ok(await put_clip(api, link, data[half:], **{"Content-Range": f"bytes {half}-{size - 1}/{size}"}), 201)
    assert receipt["sha256"] == sha256(data) and receipt["size"] == size
    evidence_id = receipt["evidence_id"]
    temps, stored = vault_files(p)
    assert temps == [] and stored == [sha256(data)]
    stored_path = p.settings.resolved_evidence_dir / "sha256" / receipt["sha256"][:2] / receipt["sha256"][2:4] / receipt["sha256"]
    assert stored_path.read_bytes() == data  # the original bytes, untouched

    # The owner's receipt is queued in the same transaction, and the inbox shows it already.
    async with p.db.sessions() as session:
        job = (await session.execute(select(Job).where(Job.kind == "notify.receipt"))).scalar_one()
        item = await session.get(RequestItem, case.links[0]["item_id"])
    assert job.idempotency_key == f"notify.receipt:{evidence_id}"
    assert {k: job.payload[k] for k in ("owner_id", "case_number", "sha256", "size", "evidence_id")} == {
        "owner_id": case.owners[0].id, "case_number": "2026-0099", "sha256": receipt["sha256"], "size": size,
        "evidence_id": evidence_id}
    assert item.status == "uploaded"
    inbox = await ok(await api.get("/api/v1/inbox", headers=case.owners[0].headers))
    assert [r["sha256"] for r in inbox["items"][0]["receipts"]] == [receipt["sha256"]]
    status = await ok(await api.get(link))
    assert status["received"] == 0 and [r["evidence_id"] for r in status["receipts"]] == [evidence_id]

    # The record: media facts from PyAV, provenance, custody so far.
    record = await ok(await api.get(f"/api/v1/evidence/{evidence_id}", headers=case.investigator.headers))
    media = record["media"]
    assert media["container"] == "mp4" and media["mime_type"] == "video/mp4"
    assert media["video"]["codec"] == "h264" and (media["video"]["width"], media["video"]["height"]) == (320, 240)
    assert abs(media["duration_s"] - 5.0) < 0.2
    assert media["creation_time"] == CREATION_TIME.replace("Z", "+00:00")
    assert record["recorded_start"].startswith("2026-06-01T08:30:00") and record["recorded_end"].startswith("2026-06-01T08:30:05")
    assert record["provenance"]["request_id"] == case.request_id and record["provenance"]["uploaded_by"] == case.owners[0].id
    assert record["labels"] == [] and record["case_number"] == "2026-0099"
    assert [e["action"] for e in record["custody"]] == ["custody.received", "custody.verified", "custody.viewed"]
    assert all(e["detail"]["sha256"] == receipt["sha256"] for e in record["custody"])
    assert record["custody"][0]["actor_id"] == case.owners[0].id
    assert record["custody"][2]["actor_id"] == case.investigator.id

    # The bytes, whole and in ranges; each read is one custody event.
    content = f"/api/v1/evidence/{evidence_id}/content"
    whole = await api.get(content, headers=case.investigator.headers)
    assert whole.status == 200 and await whole.read() == data
    assert whole.headers["ETag"] == f'"{receipt["sha256"]}"' and whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Content-Type"] == "video/mp4"
    for header, expected, content_range in (
        ("bytes=100-199", data[100:200], f"bytes 100-199/{size}"),
        ("bytes=-50", data[-50:], f"bytes {size - 50}-{size - 1}/{size}"),
        (f"bytes={size - 10}-", data[-10:], f"bytes {size - 10}-{size - 1}/{size}"),
        (f"bytes={size - 5}-{size + 100}", data[-5:], f"bytes {size - 5}-{size - 1}/{size}"),
    ):
        part = await api.get(content, headers={**case.investigator.headers, "Range": header})
        assert part.status == 206, header
        assert part.headers["Content-Range"] == content_range and await part.read() == expected
    refused = await api.get(content, headers={**case.investigator.headers, "Range": f"bytes={size}-"})
    await problem(refused, 416)
    assert refused.headers["Content-Range"] == f"bytes */{size}"
    actions = await custody_actions(api, case.investigator, evidence_id)
    assert actions.count("custody.downloaded") == 5  # the refused range read nothing

    # Nobody outside the requesting agency reads it, not even the owner who sent it: it does not exist for them.
    other_agency = await world.agency(name="Elsewhere PD", lon=-87.5, lat=41.9)
    outsider = await world.staff(other_agency, "investigator")
    for person in (outsider, case.owners[0]):
        await problem(await api.get(f"/api/v1/evidence/{evidence_id}", headers=person.headers), 404)
        await problem(await api.get(content, headers=person.headers), 404)

    # Export: a signed zip, verified by the CLI in a subprocess, pinned to the key the platform publishes.
    exported = await api.post(f"/api/v1/requests/{case.request_id}/export", headers=case.investigator.headers)
    assert exported.status == 201, await exported.text()
    assert exported.headers["Content-Type"] == "application/zip"
    package = tmp_path / "case.zip"
    package.write_bytes(await exported.read())
    assert sha256(package.read_bytes()) == exported.headers["ETag"].strip('"')
    key = await ok(await api.get("/api/v1/signing-key"))
    key_file = tmp_path / "signing-key.pem"
    key_file.write_text(key["pem"])
    with zipfile.ZipFile(package) as z:
        manifest = json.loads(z.read("manifest.json"))
        assert z.read(manifest["items"][0]["file"]) == data
    assert manifest["request"]["case_number"] == "2026-0099"
    assert [(i["sha256"], i["size"]) for i in manifest["items"]] == [(receipt["sha256"], size)]
    chain = [e["action"] for e in manifest["items"][0]["custody"]]
    assert chain[:3] == ["custody.received", "custody.verified", "custody.viewed"] and chain[-1] == "custody.exported"

    env = {**os.environ, "CONSENTCAM_DATA_DIR": str(tmp_path / "nowhere")}
    verified = subprocess.run([str(CONSENTCAM), "verify-export", str(package), "--public-key", str(key_file)],
                              capture_output=True, text=True, timeout=60, env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("OK") and "pinned key" in verified.stdout
    unpinned = CliRunner().invoke(main, ["verify-export", str(package), "--json"])
    assert unpinned.exit_code == 0 and json.loads(unpinned.output)["pinned"] is False

    # A changed byte in the clip is caught, and exits non-zero.
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename.startswith("clips/"):
                body = body[:1000] + bytes([body[1000] ^ 1]) + body[1001:]
            dst.writestr(info, body)
    caught = subprocess.run([str(CONSENTCAM), "verify-export", str(tampered), "--public-key", str(key_file)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert caught.returncode == 1 and "hashes to" in caught.stdout, caught.stdout

    # The export is in every clip's custody chain, and the whole audit chain still verifies.
    assert (await custody_actions(api, case.investigator, evidence_id)).count("custody.exported") == 1
    chain_check = await ok(await api.get("/api/v1/audit/verify", headers=case.auditor.headers))
    assert chain_check["ok"] is True


async def test_chunks_resume_at_the_received_offset_and_wrong_offsets_are_409(api, consentcam_world, consentcam_clock,
                                                                             consentcam_platform, h264_clip):
    case = await open_case(api, consentcam_world, consentcam_clock)
    link = case.path()
    data = h264_clip.read_bytes()
    size = len(data)
    cuts = [0, size // 3, 2 * size // 3, size]

    # No upload in progress: only a chunk from byte 0 may begin one.
    body = await problem(await put_clip(api, link, data[10:20], **{"Content-Range": f"bytes 10-19/{size}"}), 409)
    assert body["received"] == 0
    await problem(await put_clip(api, link, b"x", **{"Content-Range": "bytes 5-1/10"}), 400)
    await problem(await put_clip(api, link, b"x", **{"Content-Range": "items 0-0/1"}), 400)

    for number, (start, end) in enumerate(zip(cuts[:2], cuts[1:3], strict=True)):
        response = await put_clip(api, link, data[start:end], **{"Content-Range": f"bytes {start}-{end - 1}/{size}"})
        progress = await ok(response, 202)
        assert progress == {"received": end, "total": size, "complete": False}, number
        assert response.headers["Upload-Offset"] == str(end) and response.headers["Range"] == f"bytes=0-{end - 1}"

    # Sent again (say, the answer was lost): refused, and told where to go on.
    body = await problem(await put_clip(api, link, data[cuts[1]:cuts[2]],
                                        **{"Content-Range": f"bytes {cuts[1]}-{cuts[2] - 1}/{size}"}), 409)
    assert body["received"] == cuts[2]
    # Another total than announced is a conflict too; asking is harmless.
    await problem(await put_clip(api, link, b"", **{"Content-Range": f"bytes */{size + 1}"}), 409)
    assert await ok(await put_clip(api, link, b"", **{"Content-Range": f"bytes */{size}"}), 202) == {
        "received": cuts[2], "total": size, "complete": False}

    receipt = await ok(await put_clip(api, link, data[cuts[2]:], **{"Content-Range": f"bytes {cuts[2]}-{size - 1}/{size}"}), 201)
    assert receipt["sha256"] == sha256(data)
    # The link stays usable for another clip of the same camera; a stale chunk of the finished one is refused.
    await problem(await put_clip(api, link, data[cuts[2]:], **{"Content-Range": f"bytes {cuts[2]}-{size - 1}/{size}"}), 409)
    status = await ok(await api.get(link))
    assert [r["sha256"] for r in status["receipts"]] == [receipt["sha256"]]


async def test_a_whole_body_put_stores_in_one_request_and_a_new_put_starts_over(api, consentcam_world, consentcam_clock,
                                                                              consentcam_platform, h264_clip, other_clip):
    case = await open_case(api, consentcam_world, consentcam_clock, cameras=2)
    data, other = h264_clip.read_bytes(), other_clip.read_bytes()

    first = await ok(await put_clip(api, case.path(0), data), 201)
    assert first["sha256"] == sha256(data)

    # Part of one clip arrives, then the owner starts over with another file (a PUT without Content-Range): the old
    # bytes are dropped. That new transfer is cut half way too, and resumes like any other.
    await ok(await put_clip(api, case.path(1), data[:2000], **{"Content-Range": f"bytes 0-1999/{len(data)}"}), 202)
    half = len(other) // 2
    status = await send_and_cut(api, case.path(1), other[:half], announced=len(other))
    assert (status["received"], status["total"]) == (half, len(other))
    second = await ok(await put_clip(api, case.path(1), other[half:],
                                     **{"Content-Range": f"bytes {half}-{len(other) - 1}/{len(other)}"}), 201)
    assert second["sha256"] == sha256(other) and second["size"] == len(other)
    record = await ok(await api.get(f"/api/v1/evidence/{second['evidence_id']}", headers=case.investigator.headers))
    assert record["media"]["creation_time"] is None and record["recorded_start"] is None
    assert vault_files(consentcam_platform)[0] == []


async def test_size_limit_is_refused_early_and_while_streaming(api, consentcam_world, consentcam_clock,
                                                              consentcam_platform, h264_clip):
    p = consentcam_platform
    p.settings.upload_size_limit = 4096
    case = await open_case(api, consentcam_world, consentcam_clock)
    link = case.path()

    # Announced too big: refused before a byte is kept.
    body = await problem(await put_clip(api, link, b"x" * 10, **{"Content-Range": "bytes 0-9/5000"}), 413)
    assert body["limit"] == 4096
    await problem(await put_clip(api, link, b"x" * 5000), 413)
    assert await count(p, Upload) == 0

    # Not announced (chunked): refused when the limit is crossed, and what arrived is removed.
    async def chunks():
        for _ in range(10):
            yield b"y" * 1000

    await problem(await api.put(link, data=chunks()), 413)
    assert await count(p, Upload) == 0 and vault_files(p) == ([], [])
    assert await count(p, Evidence) == 0


async def test_files_that_are_not_video_or_are_damaged_are_refused_and_removed(api, consentcam_world, consentcam_clock,
                                                                               consentcam_platform, h264_clip, tmp_path):
    p = consentcam_platform
    case = await open_case(api, consentcam_world, consentcam_clock)
    link = case.path()
    data = h264_clip.read_bytes()
    faststart = make_clip(tmp_path / "fast.mp4", faststart=True).read_bytes()
    still = tmp_path / "still.png"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1",
                    str(still)], check=True)

    cases = [
        ("text", b"this is a letter, not a video\n" * 200, 415),
        ("still image", still.read_bytes(), 415),
        ("cut before its index", data[: len(data) // 2], 422),  # the moov box never arrived
        ("cut after its index", faststart[: len(faststart) // 2], 422),  # frames missing from the end
    ]
    for name, body, status in cases:
        refused = await problem(await put_clip(api, link, body), status)
        assert refused["detail"], name
        assert await count(p, Upload) == 0, name
        assert vault_files(p) == ([], []), name
    assert await count(p, Evidence) == 0
    # The link still works for a real clip.
    await ok(await put_clip(api, link, data), 201)


async def test_a_revoked_link_answers_410_and_keeps_nothing(api, consentcam_world, consentcam_clock, consentcam_platform,
                                                            h264_clip):
    p = consentcam_platform
    case = await open_case(api, consentcam_world, consentcam_clock, cameras=2)
    data = h264_clip.read_bytes()
    size = len(data)

    # Revoked between two chunks: the next one is 410 and the first chunk's bytes are gone.
    await ok(await put_clip(api, case.path(0), data[:3000], **{"Content-Range": f"bytes 0-2999/{size}"}), 202)
    assert len(vault_files(p)[0]) == 1
    owner, camera = case.links[0]["owner"], case.links[0]["camera_id"]
    await ok(await api.delete(f"/api/v1/cameras/{camera}/grants", headers=owner.headers))
    await problem(await put_clip(api, case.path(0), data[3000:], **{"Content-Range": f"bytes 3000-{size - 1}/{size}"}), 410)
    assert await count(p, Upload) == 0 and vault_files(p) == ([], [])

    # Revoked while the last chunk is being placed in the store: the check inside the committing transaction
    # sees it, answers 410, and takes the placed object back out.
    vault = vault_for(p)
    owner, camera = case.links[1]["owner"], case.links[1]["camera_id"]
    real_put = vault.storage.put

    async def put_then_revoke(*args, **kwargs):
        key = await real_put(*args, **kwargs)
        from consentcam.services import consent

        await consent.revoke_all(p, owner.actor, camera)
        return key

    vault.storage.put = put_then_revoke  # type: ignore[method-assign]
    try:
        await problem(await put_clip(api, case.path(1), data), 410)
    finally:
        vault.storage.put = real_put  # type: ignore[method-assign]
    assert await count(p, Evidence) == 0 and await count(p, Upload) == 0
    assert vault_files(p) == ([], [])
