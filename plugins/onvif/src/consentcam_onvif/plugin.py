"""The hooks of the ONVIF plugin: discover cameras, probe one, fetch a window from its recordings (Profile G).

A camera's connection (kind ``onvif``) has the fields ``host`` and ``port`` (the device service's HTTP port), the
owner's ``username``, and optionally ``recording_token`` (which recording to fetch from when a device holds
several). The password is a secret: the core keeps it encrypted at rest and decrypts it only for the length of a
hook call (``CameraConnection.secret``); this plugin passes it to the device (SOAP and RTSP) and nowhere else.

The core calls ``consentcam_fetch_recording`` from its direct-fetch job only after checking, at that moment, that
the owner grants ``direct_fetch``; this plugin never decides consent and never fetches on its own.

A fetch reads the recording summary (is anything recorded in the window?), searches the recordings for the one
covering the window, asks its replay URI, and pulls exactly the covered part over RTSP with stream copy, positioned
by ONVIF's absolute clock range (see ``replay`` and ``replay_proxy``). What no recording holds is reported in
``FetchResult.missing`` and the note. A device without the search and replay services, or with nothing recorded in
the window, gets a ``FetchResult`` with no clip and the whole window missing: a final answer, not a failure worth
retrying; the core leaves the item to the owner.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from consentcam import InvalidInput, hookimpl
from consentcam.hooktypes import (
    CameraConnection,
    CameraRef,
    ClipSink,
    DiscoveredCamera,
    FetchResult,
    PluginInfo,
    ProbeResult,
    TimeWindow,
)
from consentcam_rtsp.masking import without_credentials
from consentcam_rtsp.puller import NotFoundAtSource, PullOptions

from . import __version__, const, discovery, replay
from .device import OnvifDevice

log = logging.getLogger(__name__)


class OnvifPlugin:
    name = const.PLUGIN_NAME

    def __init__(self, *, timeout_s: float = const.DEFAULT_TIMEOUT_S, pull_options: PullOptions | None = None,
                 discovery_interface: str = "0.0.0.0", work_dir: Path | None = None) -> None:
        self.timeout_s = timeout_s
        self.pull_options = pull_options or PullOptions.from_env()
        self.discovery_interface = discovery_interface
        self.work_dir = work_dir  # where clips wait for the sink; the system's temporary folder by default

    # --- declaration ----------------------------------------------------------------------------------

    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo(const.PLUGIN_NAME, __version__, const.CAPABILITIES,
                          "ONVIF cameras: WS-Discovery, device probe, clips by time from Profile G recorders")

    # --- cameras --------------------------------------------------------------------------------------

    @hookimpl
    async def consentcam_discover_cameras(self, timeout_s: float) -> list[DiscoveredCamera]:
        return await discovery.discover(timeout_s, interface=self.discovery_interface)

    @hookimpl
    async def consentcam_probe_camera(self, connection: CameraConnection) -> ProbeResult | None:
        if connection.kind != const.CONNECTION_KIND:
            return None
        async with self.device(connection) as device:
            facts = await device.facts()
            profiles = await device.profiles()
            services = device.services()
        capabilities = ["probe", "live"] if any(p.stream_uri for p in profiles) else ["probe"]
        capabilities += services.names
        if services.can_replay:
            capabilities.append("fetch_recording")
        log.info("probed %s: %s %s, %d profile(s), services %s", device, facts.manufacturer, facts.model,
                 len(profiles), services.names)
        return ProbeResult(device={"kind": const.CONNECTION_KIND, **facts.as_dict()},
                           profiles=[profile.as_dict() for profile in profiles], capabilities=capabilities)

    @hookimpl
    async def consentcam_fetch_recording(self, camera: CameraRef, window: TimeWindow, sink: ClipSink) -> FetchResult | None:
        if camera.connection.kind != const.CONNECTION_KIND:
            return None
        work = Path(tempfile.mkdtemp(prefix="consentcam-onvif-", dir=self.work_dir))
        try:
            return await self._fetch(camera, window, sink, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # --- the parts ------------------------------------------------------------------------------------

    def device(self, connection: CameraConnection) -> OnvifDevice:
        host, port = device_address(connection.fields)
        username = connection.secret.get("username") or connection.fields.get("username")
        return OnvifDevice(host, port, username, connection.secret.get("password"), timeout_s=self.timeout_s)

    async def _fetch(self, camera: CameraRef, window: TimeWindow, sink: ClipSink, work: Path) -> FetchResult:
        provenance: dict[str, Any] = {"plugin": const.PLUGIN_NAME, "plugin_version": __version__,
                                      "asked": _span(window)}
        async with self.device(camera.connection) as device:
            if not device.services().can_replay:
                return _nothing(camera, window, provenance, "the device lists no search and replay services (it is not "
                                "a Profile G recorder), so it cannot answer for the past")
            summary = await device.recording_summary()
            if summary is not None and (summary[1] <= window.start or summary[0] >= window.end):
                return _nothing(camera, window, provenance, f"the device recorded from {summary[0].isoformat()} to "
                                f"{summary[1].isoformat()}, nothing in the window")
            recordings = await device.recordings()
            plan = replay.plan(window, recordings, camera.connection.fields.get("recording_token"))
            if plan.recording is None:
                return _nothing(camera, window, provenance, f"none of the device's {len(recordings)} recording(s) "
                                "covers the window")
            uri = await device.replay_uri(plan.recording.token)
        assert plan.covered is not None
        shown = without_credentials(uri)
        log.info("camera %s: replaying %s to %s of recording %s from %s", camera.camera_id,
                 plan.covered.start.isoformat(), plan.covered.end.isoformat(), plan.recording.token, shown)
        secret = camera.connection.secret
        try:
            replayed = await replay.pull(uri, plan, work / "clip-1.mp4", self.pull_options,
                                         secret.get("username") or camera.connection.fields.get("username"),
                                         secret.get("password"))
        except NotFoundAtSource as exc:  # the search promised a recording the replay server does not have
            return _nothing(camera, window, provenance, f"{exc}: the replay server has no such recording")
        pulled = replayed.pulled
        clips: list[Path] = []
        record: dict[str, Any] = {}
        missing = [window]
        if pulled.path is not None:
            span = replay.clip_span(replayed, plan)
            covered = replay.within(span, plan.covered)
            if covered is None:
                # The recorder started at a key frame so far before the window that the copy ended before reaching
                # it: footage outside the request is not the agency's to receive.
                log.warning("camera %s: the clip shows %s to %s, none of the window; dropped", camera.camera_id,
                            span.start.isoformat(), span.end.isoformat())
            else:
                missing = plan.missing + replay.outside(plan.covered, covered)
                record = {**provenance, **_clip_record(plan, replayed, span, covered, shown),
                          "device": f"{device.host}:{device.port}"}
                record["evidence_id"] = await sink(pulled.path, record)
                clips.append(pulled.path)
            pulled.path.unlink(missing_ok=True)  # the vault has it now, or it was dropped
        missing.sort(key=lambda part: part.start)
        note = ("partial: missing " + ", ".join(f"{w.start.isoformat()} to {w.end.isoformat()}" for w in missing)
                if missing else "")
        if missing:
            log.info("camera %s: %s", camera.camera_id, note)
        return FetchResult(clips=clips, provenance={**provenance, "clips": [record] if record else []},
                           missing=missing, note=note)


def device_address(fields: dict[str, Any]) -> tuple[str, int]:
    """``host`` and ``port`` from the connection, or from an ``http(s)://host:port/...`` device service ``url``."""
    host, port = fields.get("host"), fields.get("port")
    url = fields.get("url")
    if not host and isinstance(url, str) and url.startswith(("http://", "https://")):
        parts = urlsplit(url)
        host, port = parts.hostname, port or parts.port or (443 if parts.scheme == "https" else const.DEFAULT_PORT)
    if not isinstance(host, str) or not host:
        raise InvalidInput.at(("connection", "host"), "an ONVIF camera needs the host of its device service")
    try:
        number = int(port or const.DEFAULT_PORT)
    except (TypeError, ValueError):
        number = 0
    if not 0 < number < 65536:
        raise InvalidInput.at(("connection", "port"), "the port is a number from 1 to 65535")
    return host, number


def _clip_record(plan: replay.Plan, replayed: replay.Replayed, span: TimeWindow, covered: TimeWindow,
                 shown_url: str) -> dict[str, Any]:
    """Provenance of one clip: where it came from, how the recorder was positioned, what the clip shows (``span``)
    and which part of the window that is (``covered``). Never credentials: the URL is the one without."""
    assert plan.recording is not None
    pulled, session = replayed.pulled, replayed.session
    record = {
        "clip": 1, "recording_token": plan.recording.token, "source_url": shown_url,
        "recording": {"start": plan.recording.start.isoformat(), "end": plan.recording.end.isoformat()},
        "span": _span(span), "covered": _span(covered), "offset_s": round(plan.offset_s, 3),
        # "clock" (ONVIF's absolute range) or "npt" (the offset, when the recorder refused the clock range), the
        # Range header sent, and the recorder's Range in its answer (where it says it played from).
        "range": session.range if session else None, "range_sent": session.range_sent if session else None,
        "range_answered": session.range_answered if session else None,
        "transport": pulled.facts.transport, "codec": pulled.facts.codec, "width": pulled.facts.width,
        "height": pulled.facts.height, "fps": pulled.facts.fps, "frames": pulled.frames,
        "duration_s": round(pulled.seconds, 3), "ended": pulled.ended, "stream_copy": True,
    }
    if session and session.clock_refused:
        record["clock_refused"] = session.clock_refused
    return record


def _nothing(camera: CameraRef, window: TimeWindow, provenance: dict[str, Any], why: str) -> FetchResult:
    note = f"nothing fetched: camera {camera.camera_id}: {why}; the owner is asked to upload instead"
    log.info("%s", note)
    return FetchResult(clips=[], missing=[window], note=note, provenance=provenance)


def _span(window: TimeWindow) -> dict[str, str]:
    return {"start": window.start.isoformat(), "end": window.end.isoformat()}


# The object the entry point loads; its pull options come from CONSENTCAM_RTSP_* environment variables.
plugin = OnvifPlugin()
