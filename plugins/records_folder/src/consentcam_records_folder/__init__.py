"""Deliver export packages to a records system: a watched folder, an HTTPS endpoint, or both (from the environment:
``CONSENTCAM_RECORDS_FOLDER``, ``CONSENTCAM_RECORDS_URL``, ``CONSENTCAM_RECORDS_TOKEN``, ``CONSENTCAM_RECORDS_CA_FILE``)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import ssl
from pathlib import Path

import aiohttp
from consentcam import PluginError, hookimpl
from consentcam.hooktypes import ExportPackage, PluginInfo

__version__ = "0.1.0"
log = logging.getLogger(__name__)
CHUNK = 4 << 20


class RecordsFolder:
    """Settings given here win; what is not given is read from the environment at each delivery."""

    name = "records_folder"

    def __init__(self, folder: str | Path | None = None, url: str | None = None, token: str | None = None,
                 ca_file: str | Path | None = None, timeout_s: float = 600.0) -> None:
        self._folder = folder
        self._url = url
        self._token = token
        self._ca_file = ca_file
        self.timeout_s = timeout_s

    @property
    def folder(self) -> Path | None:
        value = self._folder or os.environ.get("CONSENTCAM_RECORDS_FOLDER")
        return Path(value) if value else None

    @property
    def url(self) -> str | None:
        return self._url or os.environ.get("CONSENTCAM_RECORDS_URL") or None

    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo("records_folder", __version__, ("records_delivery",),
                          "delivers signed export packages to a folder or an HTTPS endpoint")

    @hookimpl
    async def consentcam_export_ready(self, export: ExportPackage) -> None:
        if self.folder is None and self.url is None:
            log.info("records_folder: no CONSENTCAM_RECORDS_FOLDER or CONSENTCAM_RECORDS_URL; export %s not delivered",
                     export.path.name)
            return
        # Failures become the core's error, so the export.ready job records the message and retries.
        if self.folder is not None:
            try:
                await asyncio.to_thread(self._to_folder, export, self.folder)
            except OSError as exc:
                raise PluginError(f"records folder {self.folder}: {exc.strerror or exc}") from None
        if self.url is not None:
            try:
                await self._to_endpoint(export, self.url)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise PluginError(f"records endpoint unreachable: {type(exc).__name__}: {exc}") from None

    # --- a folder ---------------------------------------------------------------------------------------

    def _to_folder(self, export: ExportPackage, folder: Path) -> Path:
        target_dir = folder / export.request_id
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / export.path.name
        if target.exists() and _sha256_of(target) == export.sha256:
            return target
        staging = target_dir / f".{export.path.name}.partial"
        hasher = hashlib.sha256()
        with open(export.path, "rb") as source, open(staging, "wb") as copy:
            while chunk := source.read(CHUNK):
                hasher.update(chunk)
                copy.write(chunk)
            copy.flush()
            os.fsync(copy.fileno())
        if hasher.hexdigest() != export.sha256:
            staging.unlink(missing_ok=True)
            raise PluginError(f"export {export.path.name} does not hash to {export.sha256}; not delivered")
        os.replace(staging, target)
        sidecar = target.with_name(target.name + ".sha256")
        sidecar.write_text(f"{export.sha256}  {target.name}\n")
        _fsync_dir(target_dir)
        return target

    # --- an HTTPS endpoint ------------------------------------------------------------------------------

    async def _to_endpoint(self, export: ExportPackage, url: str) -> None:
        if not url.lower().startswith("https://"):
            raise PluginError(f"records endpoint must be https: {url}")
        context = ssl.create_default_context(cafile=str(self._ca_file or os.environ.get("CONSENTCAM_RECORDS_CA_FILE") or "")
                                             or None)
        headers = {
            "Content-Type": "application/zip",
            "Idempotency-Key": export.sha256,
            "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(export.sha256)).decode()}:",
            "X-ConsentCam-Request-Id": export.request_id,
            "Content-Disposition": f'attachment; filename="{export.path.name}"',
        }
        token = self._token or os.environ.get("CONSENTCAM_RECORDS_TOKEN")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            with open(export.path, "rb") as body:
                headers["Content-Length"] = str(os.fstat(body.fileno()).st_size)
                async with session.post(url, data=_chunks(body), headers=headers, ssl=context) as response:
                    if not 200 <= response.status < 300:
                        text = (await response.text())[:300]
                        raise PluginError(f"records endpoint answered {response.status}: {text}")


async def _chunks(body):  # noqa: ANN001, ANN202 - a file object, an async generator of its bytes
    while chunk := await asyncio.to_thread(body.read, CHUNK):
        yield chunk


def _sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


plugin = RecordsFolder()
