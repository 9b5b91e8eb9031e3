"""The vault's stores behind one interface: the local folder and S3-compatible object storage, the latter against
moto's real HTTP server on 127.0.0.1 with object lock (retention dates, legal holds, governance bypass on disposal),
then a clip uploaded, read with ranges and exported through the HTTP API with the S3 store behind it."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from consentcam.vault import use_storage
from consentcam.vault.export import verify_package
from consentcam.vault.storage import LocalStorage, S3Storage, key_for
from consentcam.workflows import make_worker

from .conftest import ok
from .fixtures.vault import open_case, put_clip, sha256

pytest_plugins = ("tests.fixtures.clips",)
pytestmark = [pytest.mark.usefixtures("fast_passwords"), pytest.mark.peer("s3")]

ACCESS = {"access_key": "testing", "secret_key": "testing", "region": "us-east-1"}


@pytest.fixture(scope="module")
def moto_endpoint():
    """moto's S3 server, for real, on loopback (a missing moto is a failure, not a skip)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


async def make_bucket(endpoint: str, name: str, *, lock: bool) -> S3Storage:
    store = S3Storage(name, endpoint_url=endpoint, **ACCESS)
    async with store._client() as client:
        await client.create_bucket(Bucket=name, **({"ObjectLockEnabledForBucket": True} if lock else {}))
    return store


def clip_file(folder: Path, size: int, seed: int = 0) -> tuple[Path, str]:
    data = hashlib.shake_256(f"clip {seed}".encode()).digest(size)
    path = folder / f"clip-{seed}.bin"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


async def read_all(store, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, start, end)])


@pytest.mark.parametrize("backend", ["local", "s3"])
async def test_both_stores_keep_whole_immutable_objects_by_hash(backend, moto_endpoint, tmp_path):
    if backend == "s3":
        store = await make_bucket(moto_endpoint, "conformance", lock=False)
        store.PART = 5 << 20  # S3's smallest part, so that the multipart path runs too
    else:
        store = LocalStorage(tmp_path / "evidence")
    small, small_hash = clip_file(tmp_path, 300_000, 1)
    large, large_hash = clip_file(tmp_path, (5 << 20) + 7, 2)  # two parts: 5 MiB and 7 bytes

    for path, digest in ((small, small_hash), (large, large_hash)):
        data = path.read_bytes()
        key = await store.put(path, digest, len(data))
        assert key == key_for(digest) and await store.size(key) == len(data)
        assert await read_all(store, key) == data
        assert await read_all(store, key, 1000, 1100) == data[1000:1100]
        assert await read_all(store, key, len(data) - 10) == data[-10:]
        assert await store.put(path, digest, len(data)) == key  # already there: nothing changes
        fetched = await store.fetch(key, tmp_path / f"fetched-{digest[:8]}")
        assert hashlib.sha256(fetched.read_bytes()).hexdigest() == digest
    assert sorted([k async for k in store.keys()]) == sorted([key_for(small_hash), key_for(large_hash)])
    await store.delete(key_for(small_hash))
    await store.delete(key_for(small_hash))  # gone already: not an error
    assert await store.size(key_for(small_hash)) is None
    assert [k async for k in store.keys()] == [key_for(large_hash)]


async def test_s3_object_lock_retention_legal_hold_and_disposal(moto_endpoint, tmp_path, consentcam_clock):
    store = await make_bucket(moto_endpoint, "locked-vault", lock=True)
    path, digest = clip_file(tmp_path, 100_000, 3)
    until = consentcam_clock.now().replace(microsecond=0) + timedelta(days=3650)
    key = await store.put(path, digest, 100_000, retain_until=until)

    retention = await store.retention(key)
    assert retention["Mode"] == "GOVERNANCE" and retention["RetainUntilDate"] == until
    assert await store.legal_hold(key) is False
    await store.set_legal_hold(key, True)
    assert await store.legal_hold(key) is True
    await store.set_legal_hold(key, False)

    # Disposal (governance bypass) removes every version, not only the current one.
    await store.delete(key)
    assert await store.size(key) is None
    async with store._client() as client:
        versions = await client.list_object_versions(Bucket="locked-vault", Prefix=key)
    assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []


async def test_a_clip_goes_through_the_api_into_s3_and_back(api, consentcam_world, consentcam_clock, consentcam_platform,
                                                           moto_endpoint, h264_clip, tmp_path):
    p = consentcam_platform
    bucket = f"vault-{consentcam_platform.db.dialect}"
    store = await make_bucket(moto_endpoint, bucket, lock=True)
    use_storage(p, store)
    case = await open_case(api, consentcam_world, consentcam_clock)
    data = h264_clip.read_bytes()
    size = len(data)

    await ok(await put_clip(api, case.path(), data[:9000], **{"Content-Range": f"bytes 0-8999/{size}"}), 202)
    receipt = await ok(await put_clip(api, case.path(), data[9000:], **{"Content-Range": f"bytes 9000-{size - 1}/{size}"}), 201)
    assert receipt["sha256"] == sha256(data)
    key = key_for(receipt["sha256"])
    assert await read_all(store, key) == data
    assert not (p.settings.resolved_evidence_dir / "sha256").exists()  # nothing went to the local folder

    evidence_id = receipt["evidence_id"]
    part = await api.get(f"/api/v1/evidence/{evidence_id}/content",
                         headers={**case.investigator.headers, "Range": "bytes=500-1499"})
    assert part.status == 206 and await part.read() == data[500:1500]

    await ok(await api.post(f"/api/v1/evidence/{evidence_id}/hold", json={"reason": "court order"},
                            headers=case.supervisor.headers))
    await make_worker(p).drain()
    assert await store.legal_hold(key) is True

    package = await api.post(f"/api/v1/requests/{case.request_id}/export", headers=case.investigator.headers)
    assert package.status == 201
    saved = tmp_path / "package.zip"
    saved.write_bytes(await package.read())
    report = verify_package(saved, p.keyring.verify_key())
    assert report.ok, report.problems
    with zipfile.ZipFile(io.BytesIO(saved.read_bytes())) as z:
        assert z.read(f"clips/{evidence_id}.mp4") == data
