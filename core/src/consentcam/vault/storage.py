"""Where the vault keeps clip bytes: one interface, a local folder (the default) and S3-compatible object storage.

Both stores are content-addressed (``sha256/ab/cd/<sha256>``) and only ever add whole objects: ``put`` makes an
object appear atomically or not at all, never changes an existing one, and ``delete`` is called by disposal alone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import logging
import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 20


def key_for(sha256: str) -> str:
    return f"sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


class StorageError(Exception):
    """The store refused or failed an operation; callers decide whether to retry."""


class Storage(ABC):
    """What the vault needs from a store of immutable objects."""

    name: str = "abstract"

    @abstractmethod
    async def put(self, source: Path, sha256: str, size: int, *, retain_until: datetime | None = None) -> str:
        """Place ``source`` (already fsynced, hashing to ``sha256``) under its key; a no-op if it is there already."""

    @abstractmethod
    async def size(self, key: str) -> int | None:
        """The stored object's size, or None when there is no object under ``key``."""

    @abstractmethod
    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes ``[start, end)`` of an object, in chunks."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove an object for good (disposal). Missing objects are not an error."""

    @abstractmethod
    def keys(self) -> AsyncIterator[str]:
        """Every object key (consistency checks)."""

    async def exists(self, key: str) -> bool:
        return await self.size(key) is not None

    async def seal(self, key: str) -> None:
        """Called once the object's evidence row is committed."""
        return None

    async def set_legal_hold(self, key: str, on: bool) -> None:
        """Mirror a legal hold in the store where it has one (S3 object lock)."""
        return None

    def local_path(self, key: str) -> Path | None:
        """A path to read the object directly, when the store is a local folder."""
        return None

    async def fetch(self, key: str, target: Path) -> Path:
        """A readable local file with the object's bytes: the object itself when local, else a copy in ``target``."""
        local = self.local_path(key)
        if local is not None:
            return local
        fd = await asyncio.to_thread(os.open, target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            async for chunk in self.read(key):
                await asyncio.to_thread(_write_all, fd, chunk)
        finally:
            await asyncio.to_thread(os.close, fd)
        return target

    async def close(self) -> None:
        """Release what the store holds for the running event loop (connections); the next use opens anew."""
        return None


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- a local folder -----------------------------------------------------------------------------------


class LocalStorage(Storage):
    """Objects are files under ``root``; ``put`` hard-links the finished upload in (or copies, then links, when the
    upload folder is on another file system), so the name appears atomically with every byte already on disk."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        if ".." in key.split("/") or key.startswith("/"):
            raise StorageError(f"not a storage key: {key!r}")
        return self.root / key

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    async def put(self, source: Path, sha256: str, size: int, *, retain_until: datetime | None = None) -> str:
        key = key_for(sha256)
        await asyncio.to_thread(self._put, source, self.path(key), size)
        return key

    def _put(self, source: Path, final: Path, size: int) -> None:
        if final.exists():
            if final.stat().st_size != size:
                raise StorageError(f"{final} exists with another size; the store is damaged")
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, final)
        except FileExistsError:
            return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            # Another file system (or no hard links): copy beside the final name, fsync, then link it in.
            staging = final.parent / f".tmp-{secrets.token_hex(8)}"
            try:
                with open(source, "rb") as src, open(staging, "xb") as dst:
                    while chunk := src.read(8 * READ_CHUNK):
                        dst.write(chunk)
                    dst.flush()
                    os.fsync(dst.fileno())
                try:
                    os.link(staging, final)
                except FileExistsError:
                    pass
            finally:
                staging.unlink(missing_ok=True)
        fsync_dir(final.parent)

    async def seal(self, key: str) -> None:
        path = self.path(key)
        await asyncio.to_thread(_chmod_quietly, path, 0o440)

    async def size(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(os.stat, self.path(key))).st_size
        except FileNotFoundError:
            return None

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self.path(key)
        handle = await asyncio.to_thread(open, path, "rb")
        try:
            await asyncio.to_thread(handle.seek, start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                want = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk = await asyncio.to_thread(handle.read, want)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def delete(self, key: str) -> None:
        path = self.path(key)

        def remove() -> None:
            try:
                path.unlink()
            except FileNotFoundError:
                return
            fsync_dir(path.parent)

        await asyncio.to_thread(remove)

    async def keys(self) -> AsyncIterator[str]:
        base = self.root / "sha256"
        found = await asyncio.to_thread(lambda: sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else [])
        for path in found:
            if path.name.startswith(".tmp-"):
                continue
            yield path.relative_to(self.root).as_posix()

    def clean_staging(self) -> int:
        """Copies left half-made by a crash inside ``put`` (only on the cross-file-system path)."""
        base = self.root / "sha256"
        removed = 0
        if base.exists():
            for path in base.rglob(".tmp-*"):
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def _chmod_quietly(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except OSError:
        pass


# --- S3-compatible object storage ---------------------------------------------------------------------


class S3Storage(Storage):
    """An S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Wasabi, Backblaze B2's S3 API) through aiobotocore.

    On a bucket with object lock enabled, each object gets a retention date from the agency's policy (in
    ``lock_mode``: GOVERNANCE lets disposal bypass it with the right permission, COMPLIANCE lets nobody) and legal
    holds are mirrored as S3 legal holds. Every upload carries its SHA-256, so the store itself refuses altered bytes.
    """

    name = "s3"
    PART = 16 << 20  # multipart above this; S3 wants parts of at least 5 MiB

    def __init__(self, bucket: str, *, endpoint_url: str | None = None, region: str = "us-east-1",
                 access_key: str | None = None, secret_key: str | None = None, prefix: str = "",
                 lock_mode: str = "GOVERNANCE") -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.access_key = access_key
        self.secret_key = secret_key
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.lock_mode = lock_mode.upper()
        self._lock_enabled: bool | None = None
        self._session: Any = None
        # One client per event loop (a client's connections belong to the loop that opened them), made on first use
        # and kept until close(): making one builds an SSL context and a client class, which under upload load was
        # a third of a web process's CPU (py-spy, bench/load.py).
        self._clients: dict[asyncio.AbstractEventLoop, asyncio.Task[tuple[contextlib.AsyncExitStack, Any]]] = {}

    async def _open_client(self) -> tuple[contextlib.AsyncExitStack, Any]:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        if self._session is None:
            self._session = get_session()
        stack = contextlib.AsyncExitStack()
        client = await stack.enter_async_context(self._session.create_client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=AioConfig(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"},
                             max_pool_connections=50),
        ))
        return stack, client

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        for other in [other for other in self._clients if other.is_closed()]:
            del self._clients[other]  # a finished loop's client went with it
        opening = self._clients.get(loop)
        if opening is None:
            opening = self._clients[loop] = loop.create_task(self._open_client())
        try:
            _, client = await asyncio.shield(opening)
        except Exception:
            if self._clients.get(loop) is opening:
                del self._clients[loop]  # the next call tries again
            raise
        yield client

    async def close(self) -> None:
        opening = self._clients.pop(asyncio.get_running_loop(), None)
        if opening is not None:
            with contextlib.suppress(Exception):
                stack, _ = await opening
                await stack.aclose()

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def lock_enabled(self, client: Any) -> bool:
        if self._lock_enabled is None:
            try:
                conf = await client.get_object_lock_configuration(Bucket=self.bucket)
                self._lock_enabled = conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
            except Exception as exc:  # noqa: BLE001 - "not configured" comes as several error codes across stores
                log.info("bucket %s has no object lock (%s)", self.bucket, exc)
                self._lock_enabled = False
        return self._lock_enabled

    async def put(self, source: Path, sha256: str, size: int, *, retain_until: datetime | None = None) -> str:
        key = key_for(sha256)
        async with self._client() as client:
            if await self._size(client, key) is not None:
                return key
            extra: dict[str, Any] = {"Metadata": {"sha256": sha256}, "ContentType": "application/octet-stream"}
            if retain_until is not None and await self.lock_enabled(client):
                extra["ObjectLockMode"] = self.lock_mode
                extra["ObjectLockRetainUntilDate"] = retain_until
            if size <= self.PART:
                data = await asyncio.to_thread(source.read_bytes)
                await client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ChecksumAlgorithm="SHA256",
                                        ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(), **extra)
            else:
                await self._multipart(client, source, key, extra)
            stored = await self._size(client, key)
        if stored != size:
            raise StorageError(f"object {key} has {stored} bytes after upload, expected {size}")
        return key

    async def _multipart(self, client: Any, source: Path, key: str, extra: dict[str, Any]) -> None:
        started = await client.create_multipart_upload(Bucket=self.bucket, Key=self._key(key), ChecksumAlgorithm="SHA256",
                                                       **extra)
        upload_id = started["UploadId"]
        parts = []
        try:
            with open(source, "rb") as handle:
                number = 1
                while True:
                    data = await asyncio.to_thread(handle.read, self.PART)
                    if not data:
                        break
                    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
                    part = await client.upload_part(Bucket=self.bucket, Key=self._key(key), UploadId=upload_id,
                                                    PartNumber=number, Body=data, ChecksumSHA256=checksum)
                    parts.append({"PartNumber": number, "ETag": part["ETag"], "ChecksumSHA256": checksum})
                    number += 1
            await client.complete_multipart_upload(Bucket=self.bucket, Key=self._key(key), UploadId=upload_id,
                                                   MultipartUpload={"Parts": parts})
        except BaseException:
            try:
                await client.abort_multipart_upload(Bucket=self.bucket, Key=self._key(key), UploadId=upload_id)
            except Exception:  # noqa: BLE001 - the original error matters more
                log.warning("could not abort multipart upload %s of %s", upload_id, key)
            raise

    async def size(self, key: str) -> int | None:
        async with self._client() as client:
            return await self._size(client, key)

    async def _size(self, client: Any, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            head = await client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if end is not None and end <= start:
            return
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if start or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        async with self._client() as client:
            response = await client.get_object(**args)
            body = response["Body"]
            try:
                while chunk := await body.read(READ_CHUNK):
                    yield chunk
            finally:
                body.close()

    async def delete(self, key: str) -> None:
        full = self._key(key)
        async with self._client() as client:
            bypass = {"BypassGovernanceRetention": True} if self.lock_mode == "GOVERNANCE" else {}
            versions = await client.list_object_versions(Bucket=self.bucket, Prefix=full)
            found = [v for v in versions.get("Versions", []) + versions.get("DeleteMarkers", []) if v["Key"] == full]
            if not found:
                await client.delete_object(Bucket=self.bucket, Key=full, **bypass)
                return
            for version in found:
                if await self.lock_enabled(client):
                    try:
                        await client.put_object_legal_hold(Bucket=self.bucket, Key=full, VersionId=version["VersionId"],
                                                           LegalHold={"Status": "OFF"})
                    except Exception:  # noqa: BLE001 - delete markers carry no hold
                        pass
                await client.delete_object(Bucket=self.bucket, Key=full, VersionId=version["VersionId"], **bypass)

    async def set_legal_hold(self, key: str, on: bool) -> None:
        async with self._client() as client:
            if not await self.lock_enabled(client):
                return
            await client.put_object_legal_hold(Bucket=self.bucket, Key=self._key(key),
                                               LegalHold={"Status": "ON" if on else "OFF"})

    async def legal_hold(self, key: str) -> bool | None:
        async with self._client() as client:
            if not await self.lock_enabled(client):
                return None
            answer = await client.get_object_legal_hold(Bucket=self.bucket, Key=self._key(key))
        return answer.get("LegalHold", {}).get("Status") == "ON"

    async def retention(self, key: str) -> dict[str, Any] | None:
        """The object's lock mode and retain-until date, as HEAD reports them (None when it has none)."""
        async with self._client() as client:
            head = await client.head_object(Bucket=self.bucket, Key=self._key(key))
        if "ObjectLockMode" not in head:
            return None
        return {"Mode": head["ObjectLockMode"], "RetainUntilDate": head.get("ObjectLockRetainUntilDate")}

    async def keys(self) -> AsyncIterator[str]:
        async with self._client() as client:
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + "sha256/"):
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix):]
