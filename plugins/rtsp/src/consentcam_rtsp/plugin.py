"""The hooks of the RTSP plugin: probe a stream, fetch a window from a recorder, say when a camera is live only.

The core calls ``consentcam_fetch_recording`` from its direct-fetch job only after checking, at that moment,
that the owner grants ``direct_fetch``; this plugin never decides consent and never fetches on its own.

A live-only camera (no ``playback`` in its connection) cannot answer for the past. Its fetch returns a
``FetchResult`` with no clip, the whole window missing and a note starting "live only:", rather than raising:
the outcome is final, not a failure worth retrying, and the core leaves the request item to the owner's upload.

A fetch asks the recorder for the window (whole seconds) and copies what comes. When the stream ends before the
window does (cut, stalled, or the recording ends there: FFmpeg cannot tell a cut TCP connection from the end),
the rest of the window is asked for again, up to ``attempts`` times, so a window may come as several clips;
what the recorder then has not (404, or nothing sent) is reported missing. Each clip is
handed to the sink (which puts it in the vault) and removed afterwards; ``FetchResult.clips`` lists the files as
handed over. Provenance records the playback URL without credentials, the recorder's time zone and local
times, the transport, codec and size, and what each clip covers.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from consentcam import ConsentCamError, DeviceUnreachable, InvalidInput, PluginError, hookimpl
from consentcam.hooktypes import CameraConnection, CameraRef, ClipSink, FetchResult, PluginInfo, ProbeResult, TimeWindow

from . import __version__, const
from .masking import with_credentials, without_credentials
from .puller import NotFoundAtSource, Pulled, PullOptions, RtspSource
from .templates import PlaybackConfig, PlaybackConfigError, PlaybackRequest, build_playback, playback_config

log = logging.getLogger(__name__)


class RtspPlugin:
    name = const.PLUGIN_NAME

    def __init__(self, options: PullOptions | None = None, work_dir: Path | None = None) -> None:
        self.options = options or PullOptions.from_env()
        self.work_dir = work_dir  # where clips wait for the sink; the system's temporary folder by default

    # --- declaration ----------------------------------------------------------------------------------

    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo(const.PLUGIN_NAME, __version__, const.CAPABILITIES,
                          "clips by time from RTSP recorders (Hikvision, Dahua, URL templates); live-only RTSP cameras")

    # --- cameras --------------------------------------------------------------------------------------

    @hookimpl
    async def consentcam_probe_camera(self, connection: CameraConnection) -> ProbeResult | None:
        if connection.kind != const.CONNECTION_KIND:
            return None
        try:
            playback = playback_config(connection.fields)
        except PlaybackConfigError as exc:
            raise InvalidInput.at(("connection", "playback"), str(exc)) from None
        source = self._source(connection, self._live_url(connection))
        try:
            facts = await asyncio.to_thread(source.probe)
        except NotFoundAtSource as exc:
            raise PluginError(f"{exc}: check the stream's path") from None
        device = {"kind": const.CONNECTION_KIND, "url": source.shown_url, "transport": facts.transport,
                  "playback": playback.family if playback else None,
                  "timezone": playback.timezone if playback else None}
        profile = {"name": "live", "codec": facts.codec, "width": facts.width, "height": facts.height, "fps": facts.fps}
        capabilities = ["live", "fetch_recording"] if playback else ["live", "live_only"]
        return ProbeResult(device=device, profiles=[profile], capabilities=capabilities)

    @hookimpl
    async def consentcam_fetch_recording(self, camera: CameraRef, window: TimeWindow, sink: ClipSink) -> FetchResult | None:
        connection = camera.connection
        if connection.kind != const.CONNECTION_KIND:
            return None
        try:
            playback = playback_config(connection.fields, camera.timezone)
        except PlaybackConfigError as exc:
            raise PluginError(f"camera {camera.camera_id}: {exc}") from None
        if playback is None:
            return self.live_only(camera, window)
        work = Path(tempfile.mkdtemp(prefix="consentcam-rtsp-", dir=self.work_dir))
        try:
            return await self._fetch(camera, playback, window, sink, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # --- the parts ------------------------------------------------------------------------------------

    def live_only(self, camera: CameraRef, window: TimeWindow) -> FetchResult:
        note = (f"live only: camera {camera.camera_id} has a live RTSP stream and no recorder playback, so it cannot "
                "answer for the past; the owner is asked to upload instead")
        log.info("%s", note)
        return FetchResult(clips=[], missing=[window], note=note,
                           provenance={"plugin": const.PLUGIN_NAME, "plugin_version": __version__, "live_only": True})

    async def _fetch(self, camera: CameraRef, playback: PlaybackConfig, window: TimeWindow, sink: ClipSink,
                     work: Path) -> FetchResult:
        live_url = self._live_url(camera.connection)
        clips: list[Path] = []
        records: list[dict[str, Any]] = []
        missing: list[TimeWindow] = []
        notes: list[str] = []
        start, end = window.start, window.end
        resumptions = 0
        while start < end:
            request = self._playback(playback, live_url, start, end)
            notes.extend(n for n in request.notes if n not in notes)
            source = self._source(camera.connection, request.url)
            log.info("camera %s: fetching %s to %s from %s", camera.camera_id, request.start.isoformat(),
                     request.end.isoformat(), source.shown_url)
            dest = work / f"clip-{len(clips) + 1}.mp4"
            try:
                pulled = await asyncio.to_thread(source.pull, dest, request.seconds)
            except NotFoundAtSource as exc:
                notes.append(f"{exc}: the recorder has no recording from {start.isoformat()}"
                             + ("" if clips else ", or the playback template is wrong"))
                missing.append(TimeWindow(start, end))
                break
            except ConsentCamError as exc:
                if not clips:
                    raise  # nothing fetched: the job fails and the core retries it later
                notes.append(f"stopped after {len(clips)} clip(s): {exc.detail}")
                missing.append(TimeWindow(start, end))
                break
            covered_end = request.start + timedelta(seconds=pulled.seconds)
            if pulled.path is not None:
                record = self._record(request, pulled, len(clips) + 1)
                record["evidence_id"] = await sink(pulled.path, record)
                clips.append(pulled.path)
                records.append(record)
                pulled.path.unlink(missing_ok=True)  # the vault has it now
            tolerance = timedelta(seconds=pulled.facts.frame_interval_s * 1.01)
            if pulled.ended == "length" or covered_end >= end - tolerance:
                break
            if pulled.frames == 0:
                missing.append(TimeWindow(start, end))
                notes.append(f"the recorder sent nothing from {start.isoformat()}")
                break
            # Ended early. A cut connection looks like the end of a recording (FFmpeg reports both as the end of
            # the stream), so ask for the rest: a recorder that has no more answers 404 or sends nothing.
            resumptions += 1
            stop_at = max(start, covered_end)
            if resumptions > self.options.attempts:
                missing.append(TimeWindow(stop_at, end))
                notes.append(f"the stream ended early {resumptions} times; gave up at {stop_at.isoformat()}")
                break
            log.warning("camera %s: the stream ended at %s, %.1f s early (%s); asking for the rest", camera.camera_id,
                        stop_at.isoformat(), (end - stop_at).total_seconds(), pulled.error or "end of stream")
            if pulled.ended == "interrupted":
                await asyncio.sleep(self.options.backoff(resumptions))
            start = stop_at
        provenance = {
            "plugin": const.PLUGIN_NAME, "plugin_version": __version__, "family": playback.family,
            "recorder_timezone": playback.timezone, "asked": _span(window.start, window.end),
            "clips": records, "stream_copy": True,
        }
        if missing:
            notes.insert(0, "partial: missing " + ", ".join(f"{w.start.isoformat()} to {w.end.isoformat()}" for w in missing))
        return FetchResult(clips=clips, provenance=provenance, missing=missing, note="; ".join(notes))

    def _playback(self, playback: PlaybackConfig, live_url: str, start: datetime, end: datetime) -> PlaybackRequest:
        try:
            return build_playback(playback, live_url, start, end)
        except (PlaybackConfigError, ValueError) as exc:
            raise PluginError(f"playback URL: {exc}") from None

    def _source(self, connection: CameraConnection, url: str) -> RtspSource:
        shown = without_credentials(url)
        username, password = connection.secret.get("username"), connection.secret.get("password")
        return RtspSource(with_credentials(shown, username, password), shown, self.options, (password, username))

    @staticmethod
    def _live_url(connection: CameraConnection) -> str:
        url = connection.fields.get("url")
        if not isinstance(url, str) or not url.startswith(("rtsp://", "rtsps://")):
            raise DeviceUnreachable("the camera's connection has no rtsp:// url")
        return url

    @staticmethod
    def _record(request: PlaybackRequest, pulled: Pulled, index: int) -> dict[str, Any]:
        """Provenance of one clip. Never credentials: the URL is the one without them."""
        return {
            "plugin": const.PLUGIN_NAME, "plugin_version": __version__, "clip": index,
            "source_url": without_credentials(request.url), "family": request.family, "recorder_timezone": request.timezone,
            "asked": _span(request.start, request.end),
            "asked_local": {"start": request.local_start.isoformat(), "end": request.local_end.isoformat()},
            "covered": _span(request.start, request.start + timedelta(seconds=pulled.seconds)),
            "transport": pulled.facts.transport, "codec": pulled.facts.codec, "width": pulled.facts.width,
            "height": pulled.facts.height, "fps": pulled.facts.fps, "frames": pulled.frames,
            "duration_s": round(pulled.seconds, 3), "ended": pulled.ended, "stream_copy": True,
            "dropped_before_key_frame": pulled.skipped,
        }


def _span(start: datetime, end: datetime) -> dict[str, str]:
    return {"start": start.isoformat(), "end": end.isoformat()}


# The object the entry point loads; its options come from CONSENTCAM_RTSP_* environment variables.
plugin = RtspPlugin()
