"""The evidence vault over HTTP: uploads through links (streamed, resumable), reading clips with ranges, search,
holds and retention, signed export packages, and the key that signs them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import ClientPayloadError, web

from ..errors import MalformedBody, NotFound, RangeNotSatisfiable
from ..schemas import (
    EvidenceOut,
    EvidencePage,
    EvidenceQuery,
    HoldIn,
    HoldOut,
    RetentionIn,
    RetentionPolicies,
    RetentionPolicyOut,
    SigningKey,
    UploadProgress,
    UploadReceipt,
    UploadStatus,
)
from ..services import accounts
from ..vault import evidence, export, retention
from ..vault.core import vault_for
from ..vault.ingest import Progress, UploadMeta, Uploads, parse_content_range
from .api import ANY_USER, PUBLIC, Api, Call

log = logging.getLogger(__name__)

AGENCY_USERS = {"investigator", "supervisor", "auditor", "admin"}
SUPERVISORS = {"supervisor", "admin"}
EXPORTERS = {"investigator", "supervisor"}
CATEGORY = r"^[a-z0-9_-]{1,50}$"

PUT_UPLOAD_HELP = (
    "Chunk stored, clip not complete: UploadProgress {received, total}; resume with "
    "'Content-Range: bytes RECEIVED-LAST/TOTAL' (also given as the Upload-Offset and Range headers)"
)


def _content_length(request: web.Request) -> int | None:
    raw = request.headers.get("Content-Length")
    if raw is None:
        return None
    if not raw.isdigit():
        raise MalformedBody("Content-Length is not a number")
    return int(raw)


def _filename(request: web.Request) -> str | None:
    disposition = request.headers.get("Content-Disposition", "")
    for part in disposition.split(";"):
        name, _, value = part.strip().partition("=")
        if name.lower() == "filename" and value:
            return value.strip('"')[:200]
    return None


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    """Chunk by chunk as the socket delivered them (no joining copy of what happens to be buffered); a body cut
    short (a broken chunked encoding) ends as a dropped connection does."""
    try:
        async for chunk, _ in request.content.iter_chunks():
            if chunk:
                yield chunk
    except ClientPayloadError as exc:
        raise ConnectionResetError(f"the request body broke off: {exc}") from exc


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("upload ended with %r", task.exception())


def _progress_response(progress: Progress) -> web.Response:
    headers = {"Upload-Offset": str(progress.received)}
    if progress.received:
        headers["Range"] = f"bytes=0-{progress.received - 1}"
    body = UploadProgress(received=progress.received, total=progress.total).model_dump_json()
    return web.Response(status=202, text=body, content_type="application/json", headers=headers)


async def _stream(request: web.Request, status: int, headers: dict[str, str], chunks: AsyncIterator[bytes]) -> web.StreamResponse:
    response = web.StreamResponse(status=status, headers=headers)
    await response.prepare(request)
    try:
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError:  # the reader went away; the read was recorded before the first byte
        log.info("%s %s: the client left before the end", request.method, request.path)
    return response


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    from ..vault.storage import LocalStorage

    async for chunk in LocalStorage(path.parent).read(path.name):
        yield chunk


async def check_link_rate(call: Call) -> None:
    await accounts.check_rate(call.platform, f"link:{call.request.remote or 'unknown'}", "unknown links tried")


@contextlib.asynccontextmanager
async def link_guard(call: Call) -> AsyncIterator[None]:
    """Links are 256-bit capabilities, so guessing is hopeless; still, an address that keeps trying unknown ones is
    slowed down like one that keeps failing to log in."""
    await check_link_rate(call)
    try:
        yield
    except NotFound:
        await accounts.note_rate(call.platform, f"link:{call.request.remote or 'unknown'}",
                                 call.platform.settings.link_failures_per_address)
        raise


def vault_routes(api: Api) -> None:
    # --- uploads through a link (the token is the capability) ----------------------------------------

    @api.route("GET", "/api/v1/uploads/{token}", summary="What a link asks for, and how much of an upload arrived",
               roles=PUBLIC, response=UploadStatus, errors=(404, 410), tags=("vault",))
    async def upload_status(call: Call) -> UploadStatus:
        async with link_guard(call):
            return UploadStatus.model_validate(await Uploads(call.platform).status(call.param("token")))

    @api.route("PUT", "/api/v1/uploads/{token}",
               summary="Upload a clip (or one chunk of it, with Content-Range) through a request's private link",
               roles=PUBLIC, raw_body="application/octet-stream", response=UploadReceipt, status=201,
               errors=(400, 404, 409, 410, 413, 415, 422), tags=("vault",), extra_responses={202: PUT_UPLOAD_HELP},
               extra_models={202: UploadProgress})
    async def put_upload(call: Call) -> Any:
        request = call.request
        await check_link_rate(call)
        spec = parse_content_range(request.headers.get("Content-Range"))
        meta = UploadMeta(remote=request.remote, user_agent=request.headers.get("User-Agent", "")[:300] or None,
                          content_type=request.headers.get("Content-Type"), filename=_filename(request))
        # Its own task, shielded: a server that cancels handlers when the client goes away (aiohttp's
        # handler_cancellation) must still keep what arrived, and finish a completion it began.
        work = asyncio.ensure_future(Uploads(call.platform).receive(call.param("token"), spec, _content_length(request),
                                                                    _body(request), meta))
        work.add_done_callback(_retrieve)
        async with link_guard(call):
            outcome = await asyncio.shield(work)
        if isinstance(outcome, Progress):
            return _progress_response(outcome)
        return UploadReceipt(evidence_id=outcome.evidence_id, sha256=outcome.sha256, size=outcome.size)

    # --- reading ----------------------------------------------------------------------------------------

    @api.route("GET", "/api/v1/evidence", summary="Search your agency's clips (newest first, paginated)",
               roles=AGENCY_USERS, query=EvidenceQuery, response=EvidencePage, tags=("vault",), scope="evidence:read")
    async def search_evidence(call: Call) -> EvidencePage:
        return EvidencePage.model_validate(await evidence.search(call.platform, call.user, call.query))

    @api.route("GET", "/api/v1/evidence/{evidence_id}",
               summary="One clip: media facts, provenance, custody events, labels (a custody event: viewed)",
               roles=ANY_USER, response=EvidenceOut, errors=(404,), tags=("vault",), scope="evidence:read")
    async def get_evidence(call: Call) -> EvidenceOut:
        return EvidenceOut.model_validate(await evidence.get(call.platform, call.user, call.param("evidence_id")))

    @api.route("GET", "/api/v1/evidence/{evidence_id}/content",
               summary="The clip's original bytes; one HTTP Range may be asked (a custody event: downloaded)",
               roles=ANY_USER, raw_response="video/*", errors=(404, 410, 416), tags=("vault",),
               extra_responses={206: "Partial content: the asked range"}, scope="evidence:read")
    async def get_content(call: Call) -> web.StreamResponse:
        try:
            piece = await evidence.open_content(call.platform, call.user, call.param("evidence_id"),
                                                call.request.headers.get("Range"))
        except RangeNotSatisfiable as error:
            from .app import problem_response

            response = problem_response(error)
            response.headers["Content-Range"] = f"bytes */{error.extra.get('size', 0)}"
            return response
        clip = piece.evidence
        media = clip.media or {}
        headers = {
            "Content-Type": media.get("mime_type", "application/octet-stream"),
            "Content-Length": str(piece.end - piece.start),
            "Accept-Ranges": "bytes",
            "ETag": f'"{clip.sha256}"',
            "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(clip.sha256)).decode()}:",
            "Content-Disposition": f'attachment; filename="{clip.id}.{media.get("extension", "bin")}"',
        }
        if piece.partial:
            headers["Content-Range"] = f"bytes {piece.start}-{piece.end - 1}/{clip.size}"
        chunks = vault_for(call.platform).storage.read(clip.storage_key, piece.start, piece.end)
        return await _stream(call.request, 206 if piece.partial else 200, headers, chunks)

    # --- hold and retention -----------------------------------------------------------------------------

    @api.route("POST", "/api/v1/evidence/{evidence_id}/hold", summary="Place a legal hold: the clip is never disposed of",
               roles=SUPERVISORS, body=HoldIn, response=HoldOut, errors=(404, 409, 413), tags=("vault",))
    async def place_hold(call: Call) -> HoldOut:
        clip = await retention.set_hold(call.platform, call.user, call.param("evidence_id"), True, call.body.reason)
        return HoldOut(id=clip.id, on_hold=clip.on_hold)

    @api.route("DELETE", "/api/v1/evidence/{evidence_id}/hold", summary="Lift a legal hold", roles=SUPERVISORS,
               response=HoldOut, errors=(404, 409), tags=("vault",))
    async def lift_hold(call: Call) -> HoldOut:
        clip = await retention.set_hold(call.platform, call.user, call.param("evidence_id"), False, None)
        return HoldOut(id=clip.id, on_hold=clip.on_hold)

    @api.route("GET", "/api/v1/retention", summary="Your agency's retention policies per case category",
               roles=AGENCY_USERS, response=RetentionPolicies, tags=("vault",))
    async def list_retention(call: Call) -> RetentionPolicies:
        return RetentionPolicies.model_validate({"policies": await retention.list_policies(call.platform, call.user)})

    @api.route("PUT", "/api/v1/retention/{category}",
               summary="Keep clips of a case category this many days after receipt ('default': every other category)",
               roles=SUPERVISORS, body=RetentionIn, response=RetentionPolicyOut, errors=(404, 413), tags=("vault",))
    async def set_retention(call: Call) -> RetentionPolicyOut:
        category = _category(call.param("category"))
        return RetentionPolicyOut.model_validate(
            await retention.set_policy(call.platform, call.user, category, call.body.days))

    @api.route("DELETE", "/api/v1/retention/{category}", summary="Remove a retention policy", roles=SUPERVISORS,
               status=204, errors=(404,), tags=("vault",))
    async def delete_retention(call: Call) -> web.Response:
        await retention.set_policy(call.platform, call.user, _category(call.param("category")), None)
        return web.Response(status=204)

    # --- export -------------------------------------------------------------------------------------------

    @api.route("POST", "/api/v1/requests/{request_id}/export",
               summary="Build a signed package of the request's clips (zip: clips, manifest, Ed25519 signature)",
               roles=EXPORTERS, raw_response="application/zip", status=201, errors=(404, 409), tags=("vault",),
               scope="evidence:export")
    async def export_request(call: Call) -> web.StreamResponse:
        built = await export.build(call.platform, call.user, call.param("request_id"))
        return await _stream(call.request, 201, _zip_headers(built.id, built.case_number, built.sha256, built.size),
                             _file_chunks(built.path))

    @api.route("GET", "/api/v1/exports/{export_id}", summary="Download an export package again (audited)",
               roles=AGENCY_USERS, raw_response="application/zip", errors=(404, 409, 410), tags=("vault",),
               scope="evidence:export")
    async def get_export(call: Call) -> web.StreamResponse:
        row = await export.open_export(call.platform, call.user, call.param("export_id"))
        assert row.file_name and row.sha256 and row.size is not None
        path = vault_for(call.platform).export_dir / row.file_name
        return await _stream(call.request, 200, _zip_headers(row.id, None, row.sha256, row.size), _file_chunks(path))

    @api.route("GET", "/api/v1/signing-key", summary="The public key export packages are signed with (pin it)",
               roles=PUBLIC, response=SigningKey, tags=("vault",))
    async def signing_key(call: Call) -> SigningKey:
        public = call.platform.keyring.verify_key()
        return SigningKey(key_id=export.key_id(public), public_key=base64.b64encode(export.public_key_raw(public)).decode(),
                          pem=export.public_key_pem(public).decode())


def _zip_headers(export_id: str, case_number: str | None, sha256: str, size: int) -> dict[str, str]:
    safe_case = "".join(c if c.isalnum() or c in "-_" else "-" for c in (case_number or "case"))[:60]
    return {
        "Content-Type": "application/zip",
        "Content-Length": str(size),
        "Content-Disposition": f'attachment; filename="{safe_case}-export-{export_id}.zip"',
        "Location": f"/api/v1/exports/{export_id}",
        "ETag": f'"{sha256}"',
        "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(sha256)).decode()}:",
        "X-Export-Id": export_id,
    }


def _category(raw: str) -> str:
    import re

    from ..errors import InvalidInput

    if not re.match(CATEGORY, raw):
        raise InvalidInput.at(("path", "category"), "a category is 1-50 of a-z, 0-9, '_' and '-'")
    return raw


async def startup(app: web.Application) -> None:
    """Before serving: finish what a crash interrupted (see ``Uploads.recover``)."""
    from ..vault import startup as recover
    from .keys import PLATFORM

    await recover(app[PLATFORM])
