"""Direct fetch: for an approved request item on a camera whose owner granted ``direct_fetch``, a job asks the
camera's plugin to pull exactly the window into the vault, with no owner action.

The grant is checked when the job runs, not when it was queued: an owner who revoked in between gets
nothing fetched, and the job records why. Each clip goes through the same vault path as an owner's upload,
which checks consent once more in the transaction that commits it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit
from .db.models import Agency, Camera, Job
from .errors import ConsentCamError, ConsentRefused, Gone, NotFound
from .hooktypes import CameraConnection, CameraRef, LinkedAccount, TimeWindow
from .jobs import PermanentFailure, job_handler
from .platform import Platform
from .services import linked_accounts
from .services.consent import Consent, connection_secret, shares_of
from .services.requests import UploadTarget, check_upload

log = logging.getLogger(__name__)


async def check_direct_fetch(p: Platform, session: AsyncSession, item_id: str) -> tuple[UploadTarget, Camera]:
    """The item is open and its camera's grant, right now, covers this agency with ``direct_fetch``."""
    target = await check_upload(p, session, item_id=item_id)
    camera = (await session.execute(select(Camera).where(Camera.id == target.camera_id))).scalar_one()
    agency = await session.get(Agency, target.agency_id)
    assert camera is not None and agency is not None
    shares = (await shares_of(session, [camera.id]))[camera.id]
    if not Consent.of(camera, shares, p.now()).allows("direct_fetch", agency, camera):
        raise ConsentRefused("the owner does not allow direct fetch for this camera now", rule="direct_fetch")
    return target, camera


def camera_ref(p: Platform, camera: Camera, account: LinkedAccount | None = None) -> CameraRef:
    fields = dict(camera.connection or {})
    playback = fields.get("playback") if isinstance(fields.get("playback"), dict) else {}
    return CameraRef(
        camera_id=camera.id,
        label=camera.label,
        connection=CameraConnection(kind=camera.connection_kind, fields=fields, secret=connection_secret(p, camera)),
        timezone=str(playback.get("timezone") or fields.get("timezone") or "UTC"),
        account=account,
    )


async def _refuse(p: Platform, item_id: str, camera_id: str | None, agency_id: str | None, reason: str) -> dict[str, Any]:
    async with p.db.transaction() as session:
        await audit.record(p.db, session, p.now(), audit.Actor(kind="system", role="system", agency_id=agency_id,
                                                                 name="direct-fetch"),
                           "fetch.refused", subject_type="request_item", subject_id=item_id,
                           camera_ids=[camera_id] if camera_id else [], detail={"reason": reason})
    return {"fetched": False, "reason": reason}


@job_handler("fetch.direct")
async def direct_fetch(p: Platform, job: Job) -> dict[str, Any]:
    from .vault.ingest import ingest_file  # the vault is the only way into evidence

    item_id = job.payload["item_id"]
    refusal = None
    async with p.db.sessions() as session:
        try:
            target, camera = await check_direct_fetch(p, session, item_id)
        except (ConsentRefused, Gone) as exc:
            refusal = exc.detail
        except NotFound as exc:
            raise PermanentFailure(exc.detail) from exc
    if refusal is not None:  # recorded after the read session closed: a write never waits on our own read
        return await _refuse(p, item_id, job.payload.get("camera_id"), job.payload.get("agency_id"), refusal)
    # The owner's account at the camera's vendor cloud (e.g. Ring), when the owner linked one.
    ref = camera_ref(p, camera, await linked_accounts.account_for(p, camera.owner_id, camera.connection_kind))
    window = TimeWindow(target.window_start, target.window_end)
    evidence_ids: list[str] = []

    def make_sink(plugin_name: str) -> Any:
        async def sink(path: Path, provenance: dict[str, Any]) -> str:
            evidence_id = await ingest_file(
                p, target, Path(path), source=f"plugin:{plugin_name}", uploaded_by=None,
                provenance={"plugin": plugin_name, "camera_kind": camera.connection_kind, **provenance},
            )
            evidence_ids.append(evidence_id)
            return evidence_id

        return sink

    try:
        plugin_name, result = await p.plugins.fetch_recording_named(ref, window, make_sink)
    except ConsentCamError as exc:
        if evidence_ids:
            return {"fetched": True, "evidence_ids": evidence_ids, "error": exc.detail}
        raise  # retried with backoff; recorded as failed after the last attempt
    if result is None:
        return await _refuse(p, item_id, camera.id, target.agency_id,
                             f"no plugin can fetch from a {camera.connection_kind!r} camera; the owner is asked instead")
    missing = [{"start": w.start.isoformat(), "end": w.end.isoformat()} for w in result.missing]
    async with p.db.transaction() as session:
        await audit.record(p.db, session, p.now(),
                           audit.Actor(kind="plugin", role="plugin", agency_id=target.agency_id, name=plugin_name),
                           "fetch.completed", subject_type="request_item", subject_id=item_id, camera_ids=[camera.id],
                           detail={"request_id": target.request_id, "evidence_ids": evidence_ids, "missing": missing,
                                   "note": result.note})
    return {"fetched": bool(evidence_ids), "plugin": plugin_name, "evidence_ids": evidence_ids, "missing": missing,
            "note": result.note, "provenance": result.provenance}

