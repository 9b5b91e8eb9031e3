"""Uploads through a link, streamed into the vault.

The body goes to a temporary file under ``<data_dir>/uploads`` while it is hashed, in one pass, a few MiB at a
time (a worker thread writes and hashes one batch while the event loop reads the next). The file itself is the
record of what arrived: its length is where an interrupted upload resumes, from this connection or another,
on this process or after a restart. A ``flock`` on it keeps two transfers for one link apart, across processes.

Completing is ordered so that a crash anywhere leaves either the whole clip in the vault or nothing:
  1. fsync the temporary file; check the media (a child process); refusal removes the upload;
  2. commit the upload's intent (its SHA-256) before touching the store;
  3. place the file in the content-addressed store (an atomic link or an S3 object with its checksum);
  4. in one transaction: check the link again (locked), insert the evidence row, drop the upload row, queue
     the owner's receipt and the ``evidence.stored`` hook, and append ``custody.received`` and ``custody.verified``;
  5. remove the temporary name.
Recovery at startup takes back an object whose step 4 never committed and removes temporary files no upload
row names, so no evidence row lacks its bytes and no stored object lacks its row.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..audit import Actor
from ..db.models import Agency, Camera, Evidence, Export, FootageRequest, RequestItem, Upload
from ..db.types import new_id
from ..errors import (
    Conflict,
    ConsentRefused,
    Gone,
    InvalidInput,
    MalformedBody,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMedia,
)
from ..jobs import enqueue
from ..platform import Platform
from ..security import digest
from ..services import requests
from ..services.requests import UploadTarget
from . import custody, media, retention
from .core import Vault, vault_for
from .storage import fsync_dir, key_for

log = logging.getLogger(__name__)

BATCH = 1 << 20  # at most this many bytes wait for the writer thread (one more batch is being written)
REHASH_CHUNK = 1 << 20
IOV_MAX = 1024
_RANGE = re.compile(r"^bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)$")


@dataclass(frozen=True)
class ChunkSpec:
    """What a PUT's ``Content-Range`` says. No header: the body is the whole clip, from byte 0."""

    start: int | None = None
    end: int | None = None  # inclusive, as in the header
    total: int | None = None
    query: bool = False  # "bytes */TOTAL": no body; report progress, and complete if every byte is there

    @property
    def whole(self) -> bool:
        return self.start is None and not self.query


def parse_content_range(header: str | None) -> ChunkSpec:
    if header is None:
        return ChunkSpec()
    found = _RANGE.match(header.strip())
    if not found:
        raise MalformedBody("Content-Range must be 'bytes FIRST-LAST/TOTAL', 'bytes FIRST-LAST/*' or 'bytes */TOTAL'")
    first, last, total_text = found.groups()
    total = None if total_text == "*" else int(total_text)
    if first is None:
        if total is None:
            raise MalformedBody("'bytes */*' says nothing; give the clip's total size")
        return ChunkSpec(total=total, query=True)
    start, end = int(first), int(last)
    if end < start or (total is not None and end >= total):
        raise MalformedBody(f"Content-Range bytes {start}-{end}/{total_text} is not a range inside the clip")
    return ChunkSpec(start=start, end=end, total=total)


@dataclass
class Progress:
    """An upload that is not complete yet: resume at ``received``."""

    received: int
    total: int | None


@dataclass
class Stored:
    evidence_id: str
    sha256: str
    size: int


@dataclass
class UploadMeta:
    remote: str | None = None
    user_agent: str | None = None
    content_type: str | None = None
    filename: str | None = None


# --- the temporary file -------------------------------------------------------------------------------


@dataclass
class TempFile:
    path: Path
    fd: int

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the flock
            self.fd = -1

    def swap(self, fd: int) -> None:
        """Go on with another file under the same name (already locked), closing the old one."""
        old, self.fd = self.fd, fd
        os.close(old)


def open_locked(path: Path, create: bool = True) -> TempFile | None:
    """Open and lock ``path`` without waiting; None if another transfer holds it (or it is gone and not created)."""
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        same = False
    if not same:  # replaced or removed while we opened it: the name is not ours to use
        os.close(fd)
        return None
    return TempFile(path, fd)


class _Writer:
    """Appends to the temporary file and hashes what was written, one batch in a worker thread at a time, while
    the event loop reads the next."""

    def __init__(self, temp: TempFile, hasher: Any, offset: int) -> None:
        self.temp = temp
        self.hasher = hasher
        self.offset = offset  # bytes on disk and in the hash
        self.accepted = offset  # bytes taken from the body so far
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._pending: asyncio.Future[None] | None = None

    async def add(self, data: bytes) -> None:
        """Queue ``data``; it goes to disk at once when the thread is idle, else with the next batch (up to
        ``BATCH``), so a slow network writes promptly and a fast one in large writes."""
        self._chunks.append(data)
        self._buffered += len(data)
        self.accepted += len(data)
        if self._buffered >= BATCH or self._pending is None or self._pending.done():
            await self._dispatch()

    async def _dispatch(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending
        if self._chunks:
            chunks, self._chunks, self._buffered = self._chunks, [], 0
            self._pending = asyncio.get_running_loop().run_in_executor(None, self._write, chunks)

    def _write(self, chunks: list[bytes]) -> None:
        # One vectored write, no joined copy (a large short-lived buffer in a worker thread costs resident memory).
        views = [memoryview(c) for c in chunks if c]
        while views:
            written = os.pwritev(self.temp.fd, views[:IOV_MAX], self.offset)
            while written:
                head = views[0]
                taken = min(len(head), written)
                self.hasher.update(head[:taken])
                self.offset += taken
                written -= taken
                if taken == len(head):
                    views.pop(0)
                else:
                    views[0] = head[taken:]

    async def close(self) -> None:
        await asyncio.shield(self._drain())

    async def _drain(self) -> None:
        await self._dispatch()
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending


# How a body that stops short shows: the HTTP layer turns its own errors into these.
BODY_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, asyncio.IncompleteReadError)


# --- the service --------------------------------------------------------------------------------------


def _link_upload(item_id: str) -> Any:
    """The upload in progress through an item's link (at most one)."""
    return select(Upload).where(Upload.request_item_id == item_id, Upload.kind == "link")



class Uploads:
    def __init__(self, p: Platform) -> None:
        self.p = p
        self.vault: Vault = vault_for(p)

    @property
    def dir(self) -> Path:
        self.vault.upload_dir.mkdir(parents=True, exist_ok=True)
        return self.vault.upload_dir

    # the link's state ---------------------------------------------------------------------------------

    async def status(self, token: str) -> dict[str, Any]:
        target = await requests.item_for_upload(self.p, token)
        async with self.p.db.sessions() as session:
            upload = (await session.execute(_link_upload(target.item_id))).scalar_one_or_none()
            stored = (await session.execute(
                select(Evidence.id, Evidence.sha256, Evidence.size, Evidence.created_at)
                .where(Evidence.request_item_id == target.item_id).order_by(Evidence.created_at)
            )).all()
            # The link holder is the camera's owner: who asks and why, about which of their cameras.
            asked = (await session.execute(
                select(Agency.name, FootageRequest.description, Camera.label)
                .select_from(FootageRequest).join(Agency, Agency.id == FootageRequest.agency_id)
                .join(Camera, Camera.id == target.camera_id).where(FootageRequest.id == target.request_id)
            )).one_or_none()
        received, total = 0, None
        if upload is not None:
            total = upload.total
            try:
                received = (self.dir / upload.temp_name).stat().st_size
            except FileNotFoundError:
                received = 0
        return {
            "item_id": target.item_id, "case_number": target.case_number, "camera_id": target.camera_id,
            "window": {"start": target.window_start, "end": target.window_end}, "received": received, "total": total,
            "agency": asked[0] if asked else None, "description": asked[1] if asked else None,
            "camera_label": asked[2] if asked else None,
            "receipts": [{"evidence_id": i, "sha256": s, "size": n, "received_at": at} for i, s, n, at in stored],
        }

    # receiving ----------------------------------------------------------------------------------------

    async def receive(self, token: str, spec: ChunkSpec, length: int | None, body: AsyncIterator[bytes],
                      meta: UploadMeta) -> Progress | Stored:
        """One PUT through a link: a whole clip, a chunk of one, or a status query (``bytes */TOTAL``)."""
        p = self.p
        try:
            target = await requests.item_for_upload(p, token)
        except Gone:
            await self._forget(RequestItem.token_hash == digest(token))  # the link died: so does what it received
            raise
        limit = p.settings.upload_size_limit
        declared_end = (spec.total if spec.total is not None
                        else (spec.end + 1) if spec.end is not None
                        else length if spec.whole else None)
        if declared_end is not None and declared_end > limit:
            raise PayloadTooLarge(f"clips up to {limit} bytes are accepted; this one is {declared_end} bytes", limit=limit)
        if spec.start is not None and length is not None and length != spec.end - spec.start + 1:  # type: ignore[operator]
            raise MalformedBody(f"Content-Length {length} does not match Content-Range bytes {spec.start}-{spec.end}")

        upload, temp = await self._claim(target, spec)
        try:
            return await self._receive_locked(target, upload, temp, spec, length, body, meta, limit)
        finally:
            temp.close()

    async def _claim(self, target: UploadTarget, spec: ChunkSpec) -> tuple[Upload, TempFile]:
        """The item's upload row (made for a transfer that starts at byte 0) and its file, locked."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.vault.config.vault_lock_wait_s
        while True:
            upload = await self._upload_row(target, spec)
            temp = await asyncio.to_thread(open_locked, self.dir / upload.temp_name)
            if temp is not None:
                async with self.p.db.sessions() as session:
                    fresh = await session.get(Upload, upload.id)
                if fresh is not None:
                    return fresh, temp
                # Completed or discarded while we waited: the name we just created belongs to nobody.
                await asyncio.to_thread(temp.path.unlink, missing_ok=True)
                temp.close()
                continue
            if loop.time() > deadline:
                raise Conflict("another transfer for this link is in progress; try again when it ends")
            await asyncio.sleep(0.05)

    async def _upload_row(self, target: UploadTarget, spec: ChunkSpec) -> Upload:
        async with self.p.db.sessions() as session:
            row = (await session.execute(_link_upload(target.item_id))).scalar_one_or_none()
        if row is not None:
            return row
        if not spec.whole and (spec.query or spec.start):
            raise Conflict("no upload is in progress for this link: start at byte 0 (GET the link to see clips "
                           "already received)", received=0)
        now = self.p.now()
        upload_id = new_id()
        row = Upload(id=upload_id, request_item_id=target.item_id, temp_name=f"{upload_id}.part", received=0,
                     total=spec.total, created_at=now, updated_at=now)
        try:
            async with self.p.db.transaction() as session:
                session.add(row)
        except IntegrityError:  # a concurrent first chunk made it
            async with self.p.db.sessions() as session:
                row = (await session.execute(_link_upload(target.item_id))).scalar_one()
        return row

    async def _receive_locked(self, target: UploadTarget, upload: Upload, temp: TempFile, spec: ChunkSpec,
                              length: int | None, body: AsyncIterator[bytes], meta: UploadMeta, limit: int) -> Progress | Stored:
        if upload.sha256 is not None:
            # A completion was cut short (crash, lost store, database gone): take back what it placed, then go on.
            await self._undo_placing(upload)
        offset = await asyncio.to_thread(temp.size)
        total = upload.total
        if spec.whole:
            if offset:
                await self._restart(temp)
                offset = 0
                self.vault.hashers.drop(upload.id)
            total = length
        else:
            if spec.total is not None and total is not None and spec.total != total:
                raise Conflict(f"this upload was announced as {total} bytes, not {spec.total}", received=offset)
            total = spec.total if spec.total is not None else total
            if spec.query:
                pass
            elif spec.start != offset:
                raise Conflict(f"{offset} bytes of this clip have arrived; send the chunk that starts there",
                               received=offset)
            elif total is not None and spec.end is not None and spec.end >= total:
                raise MalformedBody(f"the chunk ends past the clip's {total} bytes")
        if await asyncio.to_thread(lambda: os.fstat(temp.fd).st_nlink) > 1:
            await self._detach(temp)

        hasher = self.vault.hashers.take(upload.id, offset) or await asyncio.to_thread(self._rehash, temp, offset)
        outcome: str = "done"
        if not spec.query:
            cap = spec.end + 1 if spec.end is not None else None
            writer = _Writer(temp, hasher, offset)
            try:
                async for data in body:
                    if writer.accepted + len(data) > limit:
                        outcome = "too_large"
                        break
                    if cap is not None and writer.accepted + len(data) > cap:
                        await writer.add(data[: cap - writer.accepted])
                        outcome = "overflow"
                        break
                    await writer.add(data)
            except BODY_ERRORS:
                outcome = "interrupted"
            finally:
                try:
                    await writer.close()
                finally:
                    offset = writer.offset
                    self.vault.hashers.keep(upload.id, offset, hasher)
                    await self._save_progress(upload.id, offset, total)
            if outcome == "too_large":
                await self.discard(upload.id, temp)
                raise PayloadTooLarge(f"clips up to {limit} bytes are accepted", limit=limit)
            if outcome == "overflow":
                raise MalformedBody("the body is longer than its Content-Range; the extra bytes were not kept",
                                    received=offset)
            if outcome == "interrupted":
                return Progress(offset, total)
        if spec.whole:
            total = offset
            await self._save_progress(upload.id, offset, total)
        if total is None or offset < total:
            return Progress(offset, total)
        owner = Actor(kind="user", user_id=target.owner_id, role="owner")
        provenance = {"via": "upload link", "client_address": meta.remote, "user_agent": meta.user_agent,
                      "content_type": meta.content_type, "filename": meta.filename}
        return await self._complete(target, upload, temp, hasher, offset, source="owner", uploaded_by=target.owner_id,
                                    actor=owner, provenance=provenance, receipt=True)

    def _rehash(self, temp: TempFile, offset: int) -> Any:
        hasher = self.vault.new_hasher()
        position = 0
        while position < offset:
            chunk = os.pread(temp.fd, min(REHASH_CHUNK, offset - position), position)
            if not chunk:
                raise ServiceUnavailable("the upload's temporary file shrank while locked")
            hasher.update(chunk)
            position += len(chunk)
        return hasher

    async def _restart(self, temp: TempFile) -> None:
        """Begin again under a new inode (the old one may be linked into the store), keeping the name locked."""

        def restart() -> None:
            os.unlink(temp.path)
            fd = os.open(temp.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            temp.swap(fd)

        await asyncio.to_thread(restart)

    async def _detach(self, temp: TempFile) -> None:
        """The temporary file is also a stored object (hard link): copy it to a private inode before appending."""

        def copy() -> None:
            staging = temp.path.with_suffix(".detach")
            fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            position, size = 0, os.fstat(temp.fd).st_size
            while position < size:
                chunk = os.pread(temp.fd, REHASH_CHUNK, position)
                os.pwrite(fd, chunk, position)
                position += len(chunk)
            os.fsync(fd)
            os.replace(staging, temp.path)
            temp.swap(fd)

        await asyncio.to_thread(copy)

    async def _save_progress(self, upload_id: str, received: int, total: int | None) -> None:
        try:
            async with self.p.db.transaction() as session:
                await session.execute(update(Upload).where(Upload.id == upload_id)
                                      .values(received=received, total=total, updated_at=self.p.now()))
        except ServiceUnavailable:
            log.warning("upload %s: progress not recorded (database unavailable); the file keeps it", upload_id)

    # completing ---------------------------------------------------------------------------------------

    async def _complete(self, target: UploadTarget, upload: Upload, temp: TempFile, hasher: Any, size: int, *,
                        source: str, uploaded_by: str | None, actor: Actor, provenance: dict[str, Any],
                        receipt: bool, scope: str = "requests") -> Stored:
        """Steps 1-5 of the module's docstring, for a complete temporary file whose hash is in ``hasher``."""
        p, vault = self.p, self.vault
        await asyncio.to_thread(os.fsync, temp.fd)
        sha256 = hasher.hexdigest()
        try:
            facts = await media.check(temp.path, vault.config.vault_probe_timeout_s)
        except (UnsupportedMedia, InvalidInput):
            await self.discard(upload.id, temp)
            raise
        recorded_start, recorded_end = media.recorded_span(facts)
        now = p.now()
        key = key_for(sha256)
        async with p.db.transaction() as session:
            await session.execute(update(Upload).where(Upload.id == upload.id)
                                  .values(sha256=sha256, received=size, total=size, updated_at=now))
        until = await retention.retain_until(p, target.agency_id, target.request_id, now)
        await vault.storage.put(temp.path, sha256, size, retain_until=until)

        evidence_id = new_id()
        try:
            async with p.db.transaction() as session:
                # The link is checked again, locked: a revocation racing this upload either came first (410,
                # nothing kept) or comes after the clip was delivered.
                target = await requests.check_upload(p, session, item_id=target.item_id, lock=True)
                if scope == "direct_fetch":
                    from ..fetching import check_direct_fetch

                    await check_direct_fetch(p, session, target.item_id)
                evidence = Evidence(
                    id=evidence_id, sha256=sha256, size=size, storage_key=key, agency_id=target.agency_id,
                    request_id=target.request_id, request_item_id=target.item_id, camera_id=target.camera_id,
                    source=source, uploaded_by=uploaded_by, media=facts,
                    provenance={
                        **provenance, "request_id": target.request_id, "request_item_id": target.item_id,
                        "case_number": target.case_number, "uploaded_by": uploaded_by, "upload_id": upload.id,
                        "upload_started_at": upload.created_at.isoformat(), "received_at": now.isoformat(),
                        "store": vault.storage.name, "derived": [],
                    },
                    recorded_start=recorded_start, recorded_end=recorded_end, on_hold=False, created_at=now,
                )
                session.add(evidence)
                await requests.mark_uploaded(p, session, target, now)
                await session.execute(delete(Upload).where(Upload.id == upload.id))
                if receipt:
                    await enqueue(session, now, "notify.receipt",
                                  {"owner_id": target.owner_id, "case_number": target.case_number, "sha256": sha256,
                                   "size": size, "received_at": now.isoformat(), "evidence_id": evidence_id},
                                  key=f"notify.receipt:{evidence_id}")
                await enqueue(session, now, "evidence.stored", {"evidence_id": evidence_id},
                              key=f"evidence.stored:{evidence_id}")
                if p.plugins.analysers():
                    # Up to about a day and a half of hourly retries: an analyser waiting for its model file
                    # labels the clips that arrived meanwhile once an operator fetches it.
                    await enqueue(session, now, "evidence.analyse", {"evidence_id": evidence_id},
                                  key=f"evidence.analyse:{evidence_id}", max_attempts=40)
                await session.flush()
                await custody.record(p, session, now, actor, custody.RECEIVED, evidence, upload_id=upload.id,
                                     case_number=target.case_number, source=source)
                await custody.record(p, session, now, Actor.system("vault"), custody.VERIFIED, evidence,
                                     container=facts.get("container"), codec=(facts.get("video") or {}).get("codec"),
                                     duration_s=facts.get("duration_s"))
        except (Gone, NotFound, ConsentRefused):
            await self.discard(upload.id, temp, placed=sha256)
            raise
        # Committed: the clip is in the vault. Make sure a concurrent clean-up of identical bytes did not take them.
        if not await vault.storage.exists(key):
            log.warning("evidence %s: stored object vanished before commit finished; placing it again", evidence_id)
            await vault.storage.put(temp.path, sha256, size, retain_until=until)
        await vault.storage.seal(key)
        await asyncio.to_thread(temp.path.unlink, missing_ok=True)
        vault.hashers.drop(upload.id)
        return Stored(evidence_id, sha256, size)

    async def discard(self, upload_id: str, temp: TempFile | None, placed: str | None = None) -> None:
        """Forget an upload: its row, its file, and an object it placed that nothing else uses."""
        async with self.p.db.transaction() as session:
            free = placed is not None and await retention.unreferenced(session, placed, except_upload=upload_id)
            await session.execute(delete(Upload).where(Upload.id == upload_id))
        if free and placed is not None:
            await self.vault.storage.delete(key_for(placed))
        if temp is not None:
            await asyncio.to_thread(temp.path.unlink, missing_ok=True)
        self.vault.hashers.drop(upload_id)

    async def _forget(self, *where: Any) -> int:
        """Discard uploads (of items matching ``where``) that no transfer is using right now."""
        async with self.p.db.sessions() as session:
            rows = (await session.execute(select(Upload).join(RequestItem, RequestItem.id == Upload.request_item_id)
                                          .where(*where))).scalars().all()
        forgotten = 0
        for upload in rows:
            temp = await asyncio.to_thread(open_locked, self.dir / upload.temp_name)
            if temp is None:
                continue
            try:
                await self.discard(upload.id, temp, placed=upload.sha256)
                forgotten += 1
            finally:
                temp.close()
        return forgotten

    async def sweep_abandoned(self) -> int:
        """Upkeep: uploads through links that no longer work (cancelled, declined, expired, closed) are removed, and
        so are fetched files no job is ingesting any more (a live ingest holds its file locked)."""
        now = self.p.now()
        return await self._forget(or_(
            Upload.kind == "fetch",
            RequestItem.status.in_(("cancelled", "declined", "expired")),
            RequestItem.token_expires_at <= now,
            RequestItem.request_id.in_(select(FootageRequest.id).where(FootageRequest.status != "open")),
        ))

    async def _undo_placing(self, upload: Upload) -> None:
        """Take an object out of the store whose evidence never committed (then the intent, in that order)."""
        assert upload.sha256 is not None
        async with self.p.db.sessions() as session:
            free = await retention.unreferenced(session, upload.sha256, except_upload=upload.id)
        if free:
            await self.vault.storage.delete(key_for(upload.sha256))
        async with self.p.db.transaction() as session:
            await session.execute(update(Upload).where(Upload.id == upload.id).values(sha256=None))
        upload.sha256 = None

    # recovery -----------------------------------------------------------------------------------------

    async def recover(self) -> dict[str, int]:
        """At startup: undo completions cut short, remove temporary files no upload names, clear half-built exports."""
        undone = removed = 0
        async with self.p.db.sessions() as session:
            placing = (await session.execute(select(Upload).where(Upload.sha256.is_not(None)))).scalars().all()
        for upload in placing:
            temp = await asyncio.to_thread(open_locked, self.dir / upload.temp_name, False)
            if temp is None and (self.dir / upload.temp_name).exists():
                continue  # another process is completing it right now
            try:
                await self._undo_placing(upload)
                undone += 1
            finally:
                if temp is not None:
                    temp.close()
        async with self.p.db.sessions() as session:
            fetched = (await session.execute(select(Upload).where(Upload.kind == "fetch"))).scalars().all()
        for upload in fetched:  # a plugin's file half copied: the fetch job runs again and copies it anew
            temp = await asyncio.to_thread(open_locked, self.dir / upload.temp_name, False)
            if temp is None and (self.dir / upload.temp_name).exists():
                continue
            try:
                await self.discard(upload.id, temp)
            finally:
                if temp is not None:
                    temp.close()
        async with self.p.db.sessions() as session:
            named = set((await session.execute(select(Upload.temp_name))).scalars().all())
        for path in await asyncio.to_thread(lambda: sorted(self.dir.iterdir())):
            if path.name in named or not path.is_file():
                continue
            temp = await asyncio.to_thread(open_locked, path, False)
            if temp is None:
                continue
            try:
                await asyncio.to_thread(path.unlink, missing_ok=True)
                removed += 1
            finally:
                temp.close()
        if removed:
            await asyncio.to_thread(fsync_dir, self.dir)
        clean_staging = getattr(self.vault.storage, "clean_staging", None)
        if clean_staging is not None:
            await asyncio.to_thread(clean_staging)
        failed_exports = await self._recover_exports()
        return {"undone": undone, "temp_removed": removed, "exports_failed": failed_exports}

    async def _recover_exports(self) -> int:
        """Exports left "building" by a crash, and their partial files (a builder holds its file locked)."""
        export_dir = self.vault.export_dir
        busy: set[str] = set()
        if export_dir.exists():
            for path in await asyncio.to_thread(lambda: sorted(export_dir.glob("*.part"))):
                held = await asyncio.to_thread(open_locked, path, False)
                if held is None:
                    busy.add(path.name.split(".", 1)[0])
                    continue
                try:
                    await asyncio.to_thread(path.unlink, missing_ok=True)
                finally:
                    held.close()
        stale = update(Export).where(Export.status == "building")
        if busy:
            stale = stale.where(Export.id.not_in(sorted(busy)))
        async with self.p.db.transaction() as session:
            failed = (await session.execute(
                stale.values(status="failed", finished_at=self.p.now()).returning(Export.id)
            )).scalars().all()
        return len(failed)


async def ingest_file(p: Platform, target: UploadTarget, path: Path, *, source: str, uploaded_by: str | None,
                      provenance: dict[str, Any]) -> str:
    """A clip a plugin fetched for a request item (``ClipSink``): copied and hashed into the vault's own temporary
    file (the plugin's file is never moved or changed), then completed like an upload through the link, with the
    item's consent checked again in the committing transaction (``direct_fetch`` when a plugin fetched it)."""
    service = Uploads(p)
    now = p.now()
    upload = Upload(id=new_id(), request_item_id=target.item_id, kind="fetch", received=0, created_at=now, updated_at=now)
    upload.temp_name = f"{upload.id}.part"
    # Locked before its row exists: upkeep and recovery leave a locked file (and its row) alone.
    temp = await asyncio.to_thread(open_locked, service.dir / upload.temp_name)
    assert temp is not None
    try:
        async with p.db.transaction() as session:
            session.add(upload)
        hasher = service.vault.new_hasher()
        size = await asyncio.to_thread(_copy_hashing, Path(path), temp, hasher)
        if size > p.settings.upload_size_limit:
            await service.discard(upload.id, temp)
            raise PayloadTooLarge(f"clips up to {p.settings.upload_size_limit} bytes are accepted")
        plugin = source.split(":", 1)[1] if source.startswith("plugin:") else source
        stored = await service._complete(target, upload, temp, hasher, size, source=source, uploaded_by=uploaded_by,
                                         actor=Actor.plugin(plugin), provenance={"via": "direct fetch", **provenance},
                                         receipt=False, scope="direct_fetch" if uploaded_by is None else "requests")
    except BaseException:
        async with p.db.sessions() as session:
            still = await session.get(Upload, upload.id)
        if still is None:
            await asyncio.to_thread(temp.path.unlink, missing_ok=True)
        elif still.sha256 is None:  # with an intent, recovery (or the next upkeep) takes back what was placed
            await service.discard(upload.id, temp)
        raise
    finally:
        temp.close()
    return stored.evidence_id


def _copy_hashing(source: Path, temp: TempFile, hasher: Any) -> int:
    offset = 0
    with open(source, "rb") as handle:
        while chunk := handle.read(REHASH_CHUNK):
            view = memoryview(chunk)
            while view:
                written = os.pwrite(temp.fd, view, offset)
                hasher.update(view[:written])
                offset += written
                view = view[written:]
    return offset
