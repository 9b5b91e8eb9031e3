"""The asynchronous client. One method per operation of ``API.md``; each returns a typed model."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel

from . import models as m
from .errors import IntegrityError, ProblemError, problem_from
from .exports import ExportVerification, verify_package

T = TypeVar("T", bound=BaseModel)
Progress = Callable[[int, int | None], None]
"""Called as bytes move: (bytes so far, total bytes or None)."""

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 503})
PIECE = 64 << 10

OPERATIONS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    # (method, path, success statuses the client accepts): checked against the server's OpenAPI document
    ("GET", "/api/v1/health", (200,)),
    ("POST", "/api/v1/auth/owners", (201,)),
    ("POST", "/api/v1/auth/login", (200,)),
    ("POST", "/api/v1/auth/logout", (204,)),
    ("GET", "/api/v1/me", (200,)),
    ("GET", "/api/v1/me/notifications", (200,)),
    ("PUT", "/api/v1/me/notifications", (200,)),
    ("POST", "/api/v1/agencies", (201,)),
    ("GET", "/api/v1/agencies/{agency_id}", (200,)),
    ("POST", "/api/v1/agencies/{agency_id}/users", (201,)),
    ("POST", "/api/v1/agencies/{agency_id}/api-keys", (201,)),
    ("GET", "/api/v1/agencies/{agency_id}/api-keys", (200,)),
    ("DELETE", "/api/v1/agencies/{agency_id}/api-keys/{key_id}", (204,)),
    ("POST", "/api/v1/cameras", (201,)),
    ("GET", "/api/v1/cameras", (200,)),
    ("GET", "/api/v1/cameras/{camera_id}", (200,)),
    ("PATCH", "/api/v1/cameras/{camera_id}", (200,)),
    ("DELETE", "/api/v1/cameras/{camera_id}", (204,)),
    ("PUT", "/api/v1/cameras/{camera_id}/grants", (200,)),
    ("GET", "/api/v1/cameras/{camera_id}/grants", (200,)),
    ("DELETE", "/api/v1/cameras/{camera_id}/grants", (200,)),
    ("GET", "/api/v1/cameras/{camera_id}/grants/history", (200,)),
    ("GET", "/api/v1/cameras/{camera_id}/access-log", (200,)),
    ("GET", "/api/v1/map/cameras", (200,)),
    ("POST", "/api/v1/requests", (201,)),
    ("POST", "/api/v1/requests/preview", (200,)),
    ("GET", "/api/v1/requests", (200,)),
    ("GET", "/api/v1/requests/{request_id}", (200,)),
    ("POST", "/api/v1/requests/{request_id}/approve", (200,)),
    ("POST", "/api/v1/requests/{request_id}/close", (200,)),
    ("GET", "/api/v1/inbox", (200,)),
    ("POST", "/api/v1/items/{item_id}/decline", (200,)),
    ("GET", "/api/v1/uploads/{token}", (200,)),
    ("PUT", "/api/v1/uploads/{token}", (201, 202, 409)),
    ("GET", "/api/v1/evidence", (200,)),
    ("GET", "/api/v1/evidence/{evidence_id}", (200,)),
    ("GET", "/api/v1/evidence/{evidence_id}/content", (200,)),
    ("GET", "/api/v1/signing-key", (200,)),
    ("POST", "/api/v1/requests/{request_id}/export", (201,)),
    ("GET", "/api/v1/transparency", (200,)),
    ("GET", "/api/v1/audit/verify", (200,)),
    ("GET", "/api/v1/plugins", (200,)),
)


def _input(model: type[m.Input], given: m.Input | Mapping[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
    if isinstance(given, m.Input):
        if fields:
            given = given.model_copy(update=fields)
        return given.wire()
    return model.model_validate({**(given or {}), **fields}).wire()


def _digest_of(headers: Mapping[str, str]) -> str | None:
    """The SHA-256 announced in ``Repr-Digest: sha-256=:BASE64:``, as hex."""
    for part in headers.get("Repr-Digest", "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "sha-256" and value.startswith(":") and value.endswith(":"):
            return base64.b64decode(value[1:-1]).hex()
    return None


class AsyncClient:
    """``async with AsyncClient(url, token=... | api_key=...) as cc: ...``.

    GET, PUT and DELETE answered 429 or 503 are retried up to ``retries`` times with exponential backoff (honouring
    ``Retry-After`` up to ``max_backoff``); POST never is, because it may have taken effect."""

    def __init__(self, base_url: str, *, token: str | None = None, api_key: str | None = None, retries: int = 3,
                 backoff: float = 0.25, max_backoff: float = 10.0, timeout: float = 60.0,
                 session: aiohttp.ClientSession | None = None) -> None:
        if token and api_key:
            raise ValueError("give a token or an API key, not both")
        self.base_url = base_url.rstrip("/")
        self.token = token or api_key
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    # --- transport ------------------------------------------------------------------------------------

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json, application/problem+json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def _delay(self, attempt: int, response: aiohttp.ClientResponse) -> float:
        after = response.headers.get("Retry-After", "")
        if after.isdigit():
            return min(float(after), self.max_backoff)
        return min(self.backoff * 2 ** attempt * (1 + random.random() / 4), self.max_backoff)

    async def _send(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                    data: Any = None, headers: Mapping[str, str] | None = None,
                    replayable: bool = True) -> aiohttp.ClientResponse:
        """A response with a success status (still open: the caller reads it), or a ``ProblemError``."""
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            response = await self.session.request(method, self._url(path), json=json, params=query, data=data,
                                                  headers=self._headers(headers))
            if response.status < 400:
                return response
            body = await response.read()
            response.release()
            if (response.status in RETRY_STATUSES and method in IDEMPOTENT and replayable
                    and attempt < self.retries):
                await asyncio.sleep(self._delay(attempt, response))
                attempt += 1
                continue
            raise problem_from(response.status, body, response.reason or "")

    async def _call(self, method: str, path: str, out: type[T] | None, **kw: Any) -> Any:
        response = await self._send(method, path, **kw)
        async with response:
            if out is None:
                await response.read()
                return None
            return out.model_validate_json(await response.read())

    # --- accounts -------------------------------------------------------------------------------------

    async def health(self) -> m.Health:
        return await self._call("GET", "/api/v1/health", m.Health)

    async def register_owner(self, registration: m.OwnerRegistration | Mapping[str, Any] | None = None,
                             **fields: Any) -> m.OwnerCreated:
        """Register an owner. With a webhook URL, the answer carries its signing secret: the only time it is shown."""
        body = _input(m.OwnerRegistration, registration, fields)
        return await self._call("POST", "/api/v1/auth/owners", m.OwnerCreated, json=body)

    async def login(self, email: str, password: str) -> m.LoginResult:
        """Sign in; later calls of this client carry the token."""
        result = await self._call("POST", "/api/v1/auth/login", m.LoginResult,
                                  json=m.Login(email=email, password=password).wire())
        self.token = result.token
        return result

    async def logout(self) -> None:
        await self._call("POST", "/api/v1/auth/logout", None)
        self.token = None

    async def me(self) -> m.User:
        return await self._call("GET", "/api/v1/me", m.User)

    async def notifications(self) -> m.NotificationPrefs:
        """How the signed-in owner is told of requests (whether a webhook secret is set, never the secret)."""
        return await self._call("GET", "/api/v1/me/notifications", m.NotificationPrefs)

    async def set_notifications(self, prefs: m.NotificationPrefsIn | Mapping[str, Any] | None = None,
                                **fields: Any) -> m.NotificationPrefs:
        """Choose email, SMS and a webhook; a new webhook URL (or ``rotate_webhook_secret=True``) returns a new
        signing secret in ``webhook_secret``, this once."""
        body = _input(m.NotificationPrefsIn, prefs, fields)
        return await self._call("PUT", "/api/v1/me/notifications", m.NotificationPrefs, json=body)

    # --- agencies and API keys ------------------------------------------------------------------------

    async def create_agency(self, agency: m.AgencyCreate | Mapping[str, Any] | None = None, **fields: Any) -> m.Created:
        return await self._call("POST", "/api/v1/agencies", m.Created, json=_input(m.AgencyCreate, agency, fields))

    async def get_agency(self, agency_id: str) -> m.Agency:
        return await self._call("GET", f"/api/v1/agencies/{agency_id}", m.Agency)

    async def create_agency_user(self, agency_id: str, email: str, role: str, name: str | None = None) -> m.AgencyUserCreated:
        body = _input(m.AgencyUserCreate, None, {"email": email, "role": role, **({"name": name} if name else {})})
        return await self._call("POST", f"/api/v1/agencies/{agency_id}/users", m.AgencyUserCreated, json=body)

    async def create_api_key(self, agency_id: str, label: str, scopes: list[str],
                             expires_at: datetime | None = None) -> m.ApiKeyCreated:
        fields: dict[str, Any] = {"label": label, "scopes": scopes}
        if expires_at is not None:
            fields["expires_at"] = expires_at
        return await self._call("POST", f"/api/v1/agencies/{agency_id}/api-keys", m.ApiKeyCreated,
                                json=_input(m.ApiKeyCreate, None, fields))

    async def list_api_keys(self, agency_id: str) -> m.ApiKeyList:
        return await self._call("GET", f"/api/v1/agencies/{agency_id}/api-keys", m.ApiKeyList)

    async def revoke_api_key(self, agency_id: str, key_id: str) -> None:
        await self._call("DELETE", f"/api/v1/agencies/{agency_id}/api-keys/{key_id}", None)

    # --- cameras and consent (owners) -----------------------------------------------------------------

    async def create_camera(self, camera: m.CameraCreate | Mapping[str, Any] | None = None, **fields: Any) -> m.Camera:
        return await self._call("POST", "/api/v1/cameras", m.Camera, json=_input(m.CameraCreate, camera, fields))

    async def list_cameras(self) -> list[m.Camera]:
        response = await self._send("GET", "/api/v1/cameras")
        async with response:
            return [m.Camera.model_validate(c) for c in await response.json()]

    async def get_camera(self, camera_id: str) -> m.Camera:
        return await self._call("GET", f"/api/v1/cameras/{camera_id}", m.Camera)

    async def update_camera(self, camera_id: str, change: m.CameraUpdate | Mapping[str, Any] | None = None,
                            **fields: Any) -> m.Camera:
        return await self._call("PATCH", f"/api/v1/cameras/{camera_id}", m.Camera,
                                json=_input(m.CameraUpdate, change, fields))

    async def delete_camera(self, camera_id: str) -> None:
        await self._call("DELETE", f"/api/v1/cameras/{camera_id}", None)

    async def set_grant(self, camera_id: str, grant: m.GrantSpec | Mapping[str, Any] | None = None,
                        **fields: Any) -> m.Grant:
        return await self._call("PUT", f"/api/v1/cameras/{camera_id}/grants", m.Grant,
                                json=_input(m.GrantSpec, grant, fields))

    async def get_grant(self, camera_id: str) -> m.Grant:
        return await self._call("GET", f"/api/v1/cameras/{camera_id}/grants", m.Grant)

    async def revoke_grants(self, camera_id: str) -> m.Grant:
        return await self._call("DELETE", f"/api/v1/cameras/{camera_id}/grants", m.Grant)

    async def grant_history(self, camera_id: str) -> list[dict[str, Any]]:
        response = await self._send("GET", f"/api/v1/cameras/{camera_id}/grants/history")
        async with response:
            return await response.json()

    async def access_log(self, camera_id: str, before: int | None = None) -> m.AccessLog:
        return await self._call("GET", f"/api/v1/cameras/{camera_id}/access-log", m.AccessLog,
                                params={"before": before})

    # --- map ------------------------------------------------------------------------------------------

    async def map_cameras(self, bbox: tuple[float, float, float, float] | None = None) -> m.FeatureCollection:
        return await self._call("GET", "/api/v1/map/cameras", m.FeatureCollection,
                                params={"bbox": ",".join(map(str, bbox)) if bbox else None})

    # --- footage requests -----------------------------------------------------------------------------

    async def create_request(self, request: m.RequestCreate | Mapping[str, Any] | None = None,
                             **fields: Any) -> m.RequestCreated:
        return await self._call("POST", "/api/v1/requests", m.RequestCreated,
                                json=_input(m.RequestCreate, request, fields))

    async def preview_request(self, area: dict[str, Any], start: datetime, end: datetime) -> m.Preview:
        body = _input(m.RequestPreview, None, {"area": area, "window": {"start": start, "end": end}})
        return await self._call("POST", "/api/v1/requests/preview", m.Preview, json=body)

    async def list_requests(self, status: str | None = None, limit: int = 100, offset: int = 0) -> m.RequestList:
        return await self._call("GET", "/api/v1/requests", m.RequestList,
                                params={"status": status, "limit": limit, "offset": offset})

    async def iter_requests(self, status: str | None = None, page_size: int = 100) -> AsyncIterator[m.FootageRequest]:
        """Every request of the caller's agency, newest first, a page (limit/offset) at a time."""
        offset = 0
        while True:
            page = (await self.list_requests(status, page_size, offset)).requests
            for found in page:
                yield found
            if len(page) < page_size:
                return
            offset += len(page)

    async def get_request(self, request_id: str) -> m.FootageRequest:
        return await self._call("GET", f"/api/v1/requests/{request_id}", m.FootageRequest)

    async def approve_request(self, request_id: str) -> m.RequestStatus:
        return await self._call("POST", f"/api/v1/requests/{request_id}/approve", m.RequestStatus)

    async def close_request(self, request_id: str) -> m.RequestStatus:
        return await self._call("POST", f"/api/v1/requests/{request_id}/close", m.RequestStatus)

    async def inbox(self) -> m.Inbox:
        return await self._call("GET", "/api/v1/inbox", m.Inbox)

    async def decline_item(self, item_id: str, reason: str | None = None) -> m.RequestStatus:
        return await self._call("POST", f"/api/v1/items/{item_id}/decline", m.RequestStatus,
                                json=_input(m.Decline, None, {"reason": reason} if reason else {}))

    # --- uploads through a link -----------------------------------------------------------------------

    def _upload_path(self, link: str) -> str:
        """A link's path on this client's server: an ``upload_url`` or its bare token."""
        token = urlsplit(link).path.rstrip("/").rsplit("/", 1)[-1] if "/" in link else link
        return f"/api/v1/uploads/{token}"

    async def upload_status(self, link: str) -> m.UploadStatus:
        return await self._call("GET", self._upload_path(link), m.UploadStatus)

    async def upload(self, link: str, clip: str | os.PathLike[str] | bytes, *, chunk_size: int = 8 << 20,
                     progress: Progress | None = None, resume: bool = True,
                     content_type: str = "application/octet-stream") -> m.UploadReceipt:
        """Send a clip through an owner's link, in chunks (``Content-Range``), streamed from disk.

        With ``resume`` an interrupted upload continues where the server's count stops; the receipt's SHA-256 is
        checked against the clip's."""
        path = self._upload_path(link)
        data = clip if isinstance(clip, bytes) else None
        total = len(data) if data is not None else Path(clip).stat().st_size  # type: ignore[arg-type]
        expected = await asyncio.to_thread(_sha256, data if data is not None else Path(clip))  # type: ignore[arg-type]
        offset = 0
        if resume:
            status = await self.upload_status(path)
            if status.total in (None, total) and status.received < total:
                offset = status.received
        conflicts = 0
        while True:
            end = min(offset + chunk_size, total) - 1
            headers = {"Content-Range": f"bytes {offset}-{end}/{total}", "Content-Type": content_type,
                       "Content-Length": str(end - offset + 1)}
            stopped: list[BaseException] = []
            body = _pieces(data if data is not None else Path(clip), offset, end + 1, total, progress, stopped)  # type: ignore[arg-type]
            try:
                response = await self._send("PUT", path, data=body, headers=headers, replayable=False)
            except aiohttp.ClientError:
                if stopped:  # the progress callback raised: that, not aiohttp's wrapping of it, is the news
                    raise stopped[0] from None
                raise
            except ProblemError as problem:
                received = problem.extra.get("received")
                if problem.status == 409 and isinstance(received, int) and received != offset and conflicts < 3:
                    conflicts, offset = conflicts + 1, received  # the server holds a different count: follow it
                    continue
                raise
            async with response:
                raw = await response.read()
            if response.status == 201:
                receipt = m.UploadReceipt.model_validate_json(raw)
                if receipt.sha256 != expected or receipt.size != total:
                    raise IntegrityError(f"the server stored {receipt.size} bytes hashing to {receipt.sha256}; "
                                         f"the clip is {total} bytes hashing to {expected}")
                return receipt
            offset = m.UploadProgress.model_validate_json(raw).received

    # --- evidence -------------------------------------------------------------------------------------

    async def search_evidence(self, *, request_id: str | None = None, camera_id: str | None = None,
                              label: str | None = None, start: datetime | None = None, end: datetime | None = None,
                              limit: int = 50, cursor: str | None = None) -> m.EvidencePage:
        params = {"request_id": request_id, "camera_id": camera_id, "label": label, "limit": limit, "cursor": cursor,
                  "from": start.isoformat() if start else None, "to": end.isoformat() if end else None}
        return await self._call("GET", "/api/v1/evidence", m.EvidencePage, params=params)

    async def iter_evidence(self, page_size: int = 50, **filters: Any) -> AsyncIterator[m.EvidenceSummary]:
        """Every matching clip, newest first, following ``next_cursor``."""
        cursor = None
        while True:
            page = await self.search_evidence(limit=page_size, cursor=cursor, **filters)
            for clip in page.items:
                yield clip
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def get_evidence(self, evidence_id: str) -> m.Evidence:
        return await self._call("GET", f"/api/v1/evidence/{evidence_id}", m.Evidence)

    async def download_evidence(self, evidence_id: str, target: str | os.PathLike[str] | IO[bytes], *,
                                progress: Progress | None = None) -> m.Evidence:
        """Stream a clip's bytes to a path or binary file; raise ``IntegrityError`` unless they hash to the SHA-256
        of the clip's metadata (and of the response's ``Repr-Digest``)."""
        clip = await self.get_evidence(evidence_id)
        response = await self._send("GET", f"/api/v1/evidence/{evidence_id}/content")
        async with response:
            digest, size = await _save(response, target, progress)
            announced = _digest_of(response.headers)
        for name, wanted in (("the metadata", clip.sha256), ("Repr-Digest", announced)):
            if wanted is not None and wanted != digest:
                raise IntegrityError(f"evidence {evidence_id}: the download hashes to {digest}, {name} says {wanted}")
        if size != clip.size:
            raise IntegrityError(f"evidence {evidence_id}: {size} bytes downloaded, the metadata says {clip.size}")
        return clip

    async def signing_key(self) -> m.SigningKey:
        return await self._call("GET", "/api/v1/signing-key", m.SigningKey)

    async def export_request(self, request_id: str, target: str | os.PathLike[str], *,
                             public_key: str | bytes | None = None,
                             progress: Progress | None = None) -> ExportVerification:
        """Build and download a request's signed package, then verify it (zip hash, every clip's size and SHA-256,
        the Ed25519 signature of the manifest). Pin ``public_key`` (base64 raw key or PEM, from
        ``signing_key()`` fetched separately) to know who signed; raises ``IntegrityError`` on any mismatch."""
        response = await self._send("POST", f"/api/v1/requests/{request_id}/export")
        async with response:
            digest, _ = await _save(response, target, progress)
            announced = _digest_of(response.headers)
        if announced is not None and announced != digest:
            raise IntegrityError(f"the package hashes to {digest}, the server says {announced}")
        verification = await asyncio.to_thread(verify_package, Path(target), public_key)
        verification.raise_for_problems()
        return verification

    # --- oversight ------------------------------------------------------------------------------------

    async def transparency(self) -> m.TransparencyReport:
        return await self._call("GET", "/api/v1/transparency", m.TransparencyReport)

    async def verify_audit(self) -> m.ChainReport:
        return await self._call("GET", "/api/v1/audit/verify", m.ChainReport)

    async def plugins(self) -> m.PluginList:
        return await self._call("GET", "/api/v1/plugins", m.PluginList)

    async def openapi(self) -> dict[str, Any]:
        response = await self._send("GET", "/api/v1/openapi.json")
        async with response:
            return await response.json()


# --- streaming helpers ------------------------------------------------------------------------------------


def _sha256(source: bytes | Path) -> str:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    hasher = hashlib.sha256()
    with open(source, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


async def _pieces(source: bytes | Path, start: int, stop: int, total: int, progress: Progress | None,
                  stopped: list[BaseException]) -> AsyncIterator[bytes]:
    """The bytes [start, stop) of a clip, piece by piece, reporting progress after each."""
    handle = None if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    try:
        if handle is not None:
            handle.seek(start)
        position = start
        while position < stop:
            size = min(PIECE, stop - position)
            piece = source[position:position + size] if handle is None else await asyncio.to_thread(handle.read, size)  # type: ignore[index]
            if not piece:
                raise OSError(f"the clip ended at byte {position}, expected {stop}")
            yield piece
            position += len(piece)
            if progress is not None:
                try:
                    progress(position, total)
                except BaseException as exc:
                    stopped.append(exc)
                    raise
    finally:
        if handle is not None:
            handle.close()


async def _save(response: aiohttp.ClientResponse, target: str | os.PathLike[str] | IO[bytes],
                progress: Progress | None) -> tuple[str, int]:
    """Stream a response body into a path or binary file; its SHA-256 (hex) and size."""
    hasher, size = hashlib.sha256(), 0
    total = response.content_length
    handle = target if hasattr(target, "write") else open(target, "wb")  # type: ignore[arg-type]  # noqa: SIM115
    try:
        async for chunk in response.content.iter_chunked(PIECE):
            hasher.update(chunk)
            handle.write(chunk)  # type: ignore[union-attr]
            size += len(chunk)
            if progress is not None:
                progress(size, total)
    finally:
        if handle is not target:
            handle.close()  # type: ignore[union-attr]
    return hasher.hexdigest(), size
