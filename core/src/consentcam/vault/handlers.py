"""The vault's outbox jobs: tell plugins a clip is stored or a package is ready, delete disposed bytes, and
mirror legal holds into the store. Importing this module registers them (``consentcam.workflows`` does)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ..audit import Actor
from ..db.models import Evidence, Export, Job
from ..hooktypes import EvidenceRecord, ExportPackage
from ..jobs import PermanentFailure, job_handler
from ..platform import Platform
from . import custody, retention
from .core import vault_for


class ClipReader:
    """What ``EvidenceRecord.open_bytes`` gives a plugin: the original bytes, read in chunks."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    async def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buffer) < n:
            try:
                self._buffer += await self._chunks.__anext__()
            except StopAsyncIteration:
                break
        if n < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks


@job_handler("evidence.stored")
async def evidence_stored(p: Platform, job: Job) -> dict[str, Any]:
    async with p.db.sessions() as session:
        evidence = await session.get(Evidence, job.payload["evidence_id"])
    if evidence is None:
        raise PermanentFailure("no such evidence")
    if evidence.disposed_at is not None:
        return {"note": "disposed before the hook ran"}
    vault = vault_for(p)

    async def open_bytes() -> ClipReader:
        # A plugin reading the clip is a download like any other: it leaves a custody event first.
        async with p.db.transaction() as session:
            fresh = await session.get(Evidence, evidence.id)
            assert fresh is not None
            await custody.record(p, session, p.now(), Actor.plugin("evidence_stored hook"), custody.DOWNLOADED, fresh,
                                 range="all")
        return ClipReader(vault.storage.read(evidence.storage_key))

    await p.plugins.evidence_stored(EvidenceRecord(
        evidence_id=evidence.id, sha256=evidence.sha256, size=evidence.size, agency_id=evidence.agency_id,
        request_id=evidence.request_id, camera_id=evidence.camera_id, media=dict(evidence.media),
        open_bytes=open_bytes,
    ))
    return {"evidence_id": evidence.id}


@job_handler("export.ready")
async def export_ready(p: Platform, job: Job) -> dict[str, Any]:
    async with p.db.sessions() as session:
        export = await session.get(Export, job.payload["export_id"])
    if export is None:
        raise PermanentFailure("no such export")
    if export.status != "ready" or not export.file_name or not export.sha256:
        return {"note": f"export is {export.status}; nothing to deliver"}
    path = vault_for(p).export_dir / export.file_name
    await p.plugins.export_ready(ExportPackage(request_id=export.request_id, agency_id=export.agency_id, path=path,
                                               sha256=export.sha256))
    return {"export_id": export.id}


@job_handler("vault.delete_bytes")
async def delete_bytes(p: Platform, job: Job) -> dict[str, Any]:
    return await retention.delete_bytes(p, job.payload["evidence_id"])


@job_handler("vault.legal_hold")
async def legal_hold(p: Platform, job: Job) -> dict[str, Any]:
    async with p.db.sessions() as session:
        evidence = await session.get(Evidence, job.payload["evidence_id"])
    if evidence is None or evidence.disposed_at is not None:
        return {"note": "nothing to hold"}
    await vault_for(p).storage.set_legal_hold(evidence.storage_key, evidence.on_hold)
    return {"on_hold": evidence.on_hold}
