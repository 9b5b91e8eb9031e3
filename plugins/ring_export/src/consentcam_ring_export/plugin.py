"""The hooks of the Ring export plugin: link an owner's Ring account, fetch the Ring events inside a window.

The core calls ``consentcam_fetch_recording`` from its direct-fetch job only after checking, at that moment,
that the owner grants ``direct_fetch``; this plugin never decides consent and never fetches on its own.

Ring cannot play back by time: it keeps *events*, each with its own recording. A fetch pages back through the
device's history to the events that start inside the window, downloads each recording as it is (no cutting, no
re-encoding) and hands it to the sink with the Ring event id and times in its provenance, together with every
event found and the parts of the window that no fetched event covers. Outcomes that retrying cannot change (no
linked account, a device not in it, no recording access, no event in the window) are results, not errors: the
clip list is empty, ``missing`` is what nothing covers and the note says why. Ring being unreachable, or a
refused refresh token, raise: the job retries.
"""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from consentcam import DeviceUnreachable, hookimpl
from consentcam.hooktypes import (
    AccountCredentials,
    AccountLink,
    CameraRef,
    ClipSink,
    FetchResult,
    PluginInfo,
    TimeWindow,
)
from ring_doorbell import RingError

from . import __version__, const
from .account import UNREACHABLE, SessionFactory, link, signed_in, unreachable
from .history import RingEvent, Scan, mp4_duration_s, scan, uncovered

log = logging.getLogger(__name__)


def _default_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=60))


class RingExportPlugin:
    name = const.PLUGIN_NAME

    def __init__(self, session_factory: SessionFactory | None = None, work_dir: Path | None = None,
                 page_size: int = const.HISTORY_PAGE, max_pages: int = const.HISTORY_MAX_PAGES) -> None:
        self.session_factory = session_factory or _default_session
        self.work_dir = work_dir  # where recordings wait for the sink; the system's temporary folder by default
        self.page_size = page_size
        self.max_pages = max_pages

    # --- declaration ----------------------------------------------------------------------------------

    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo(const.PLUGIN_NAME, __version__, const.CAPABILITIES,
                          "Ring accounts linked by their owners; Ring events inside an approved window, downloaded")

    # --- owners ---------------------------------------------------------------------------------------

    @hookimpl
    async def consentcam_link_account(self, credentials: AccountCredentials) -> AccountLink | None:
        if credentials.provider != const.PROVIDER:
            return None
        return await link(self.session_factory, credentials)

    # --- cameras --------------------------------------------------------------------------------------

    @hookimpl
    async def consentcam_fetch_recording(self, camera: CameraRef, window: TimeWindow, sink: ClipSink) -> FetchResult | None:
        if camera.connection.kind != const.CONNECTION_KIND:
            return None
        device_id = _device_id(camera.connection.fields.get("device_id"))
        if device_id is None:
            return self._final(window, f"not fetched: camera {camera.camera_id}'s Ring connection has no numeric "
                                       "device_id", reason="no_device_id")
        if camera.account is None or camera.account.provider != const.PROVIDER:
            return self._final(window, f"not fetched: the owner of camera {camera.camera_id} has no linked Ring "
                                       "account; the owner is asked to upload instead", reason="no_linked_account")
        work = Path(tempfile.mkdtemp(prefix="consentcam-ring-", dir=self.work_dir))
        try:
            async with signed_in(self.session_factory, camera.account) as (ring, _keeper):
                device = next((d for d in ring.devices().video_devices if d.id == device_id), None)
                if device is None:
                    return self._final(window, f"not fetched: Ring device {device_id} is not a camera of the linked "
                                               "account (removed, or shared no more)", reason="device_not_in_account",
                                       device_id=str(device_id))
                if not device.has_subscription:
                    return self._final(window, f"no recording access: Ring device {device_id} ({device.name}) has no "
                                               "recordings to download (the account's plan does not show recordings "
                                               "for it); the owner is asked to upload instead",
                                       reason="no_recording_access", device_id=str(device_id), recording_access=False)
                return await self._fetch(camera, device, window, sink, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # --- the parts ------------------------------------------------------------------------------------

    @staticmethod
    def _final(window: TimeWindow, note: str, *, reason: str, **facts: Any) -> FetchResult:
        log.info("%s", note)
        return FetchResult(clips=[], missing=[window], note=note,
                           provenance={"plugin": const.PLUGIN_NAME, "plugin_version": __version__, "fetched": False,
                                       "reason": reason, **facts})

    async def _fetch(self, camera: CameraRef, device: Any, window: TimeWindow, sink: ClipSink, work: Path) -> FetchResult:
        async def page(older_than: int | None) -> list[dict[str, Any]]:
            return await device.async_history(limit=self.page_size, older_than=older_than, convert_timezone=False)

        try:
            found = await scan(page, window, max_pages=self.max_pages)
        except UNREACHABLE as exc:
            raise unreachable(exc) from None
        log.info("camera %s: Ring device %s has %d event(s) starting in %s to %s (%d history page(s))",
                 camera.camera_id, device.id, len(found.inside), window.start.isoformat(), window.end.isoformat(),
                 found.pages)
        downloads: list[tuple[RingEvent, Path, float | None]] = []
        failures: dict[int, str] = {}
        for event in found.inside:
            if event.recording is not None and event.recording != "ready":
                failures[event.id] = f"recording {event.recording}, not ready"
                continue
            path = work / f"ring-{event.id}.mp4"
            try:
                await device.async_recording_download(event.id, filename=str(path), override=True,
                                                      timeout=const.DOWNLOAD_TIMEOUT_S)
            except (RingError, OSError, aiohttp.ClientError, TimeoutError) as exc:
                failures[event.id] = f"download failed: {type(exc).__name__}"
                log.warning("camera %s: Ring event %s: %s", camera.camera_id, event.id, failures[event.id])
                continue
            if not path.is_file() or path.stat().st_size == 0:
                failures[event.id] = "download failed: empty"
                continue
            downloads.append((event, path, event.duration_s or mp4_duration_s(path)))
        if failures and not downloads and len(failures) == len(found.inside) and any(
                v.startswith("download failed") for v in failures.values()):
            raise DeviceUnreachable(f"no Ring recording could be downloaded ({len(failures)} tried)")

        spans = [(e.created_at, e.created_at + _seconds(d)) for e, _, d in downloads if d]
        missing = uncovered(window, spans)
        events = [self._event_record(e, failures.get(e.id)) for e in found.inside]
        summary = {
            "plugin": const.PLUGIN_NAME, "plugin_version": __version__, "device_id": str(device.id),
            "device_name": str(device.name), "asked": _span(window.start, window.end),
            "events_in_window": events, "events_before_window": [e.summary() for e in found.before],
            "uncovered": [_span(w.start, w.end) for w in missing], "history_pages": found.pages,
            "history_complete": found.complete, "malformed_history_entries": found.malformed,
        }
        clips: list[Path] = []
        for index, (event, path, duration) in enumerate(downloads, start=1):
            record = {**copy.deepcopy(summary), "clip": index, "of": len(downloads),
                      "ring_event": {**event.summary(), "duration_s": duration,
                                     "ends_at": (event.created_at + _seconds(duration)).isoformat() if duration else None},
                      "stream_copy": True, "size": path.stat().st_size}
            record["evidence_id"] = await sink(path, record)
            for item in events:
                if item["event_id"] == str(event.id):
                    item["evidence_id"] = record["evidence_id"]
            clips.append(path)
            path.unlink(missing_ok=True)  # the vault has it now
        return FetchResult(clips=clips, provenance=summary, missing=missing, note=self._note(window, found, downloads,
                                                                                              failures, missing))

    @staticmethod
    def _event_record(event: RingEvent, failure: str | None) -> dict[str, Any]:
        return {**event.summary(), "fetched": failure is None, **({"reason": failure} if failure else {})}

    @staticmethod
    def _note(window: TimeWindow, found: Scan, downloads: list[Any], failures: dict[int, str],
              missing: list[TimeWindow]) -> str:
        parts: list[str] = []
        if not found.inside:
            parts.append(f"no Ring event starts inside the window {window.start.isoformat()} to {window.end.isoformat()}:"
                         " Ring records only events (motion, a ring, live view), and none covers it")
        else:
            ids = ", ".join(str(e.id) for e, _, _ in downloads) or "none"
            parts.append(f"{len(found.inside)} Ring event(s) start inside the window; fetched: {ids}")
        if failures:
            parts.append("not fetched: " + ", ".join(f"{k} ({v})" for k, v in failures.items()))
        if found.before:
            parts.append("started before the window and not fetched: "
                         + ", ".join(f"{e.id} at {e.created_at.isoformat()}" for e in found.before))
        if missing and found.inside:
            parts.append("no event covers " + ", ".join(f"{w.start.isoformat()} to {w.end.isoformat()}" for w in missing))
        if not found.complete:
            parts.append(f"history incomplete: {found.stopped}")
        if found.malformed:
            parts.append(f"{found.malformed} malformed history entr{'y' if found.malformed == 1 else 'ies'} skipped")
        return "; ".join(parts)


def _device_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _seconds(value: float | None) -> timedelta:
    return timedelta(seconds=value or 0)


def _span(start: Any, end: Any) -> dict[str, str]:
    return {"start": start.isoformat(), "end": end.isoformat()}


# The object the entry point loads: the library's real endpoints, through a plain aiohttp session.
plugin = RingExportPlugin()
