"""The core side of the distribution: declares the live relay, and fetches recorded windows through it.

The relay protocol's core end (the hub agents connect to) is ConsentCam's own open protocol and lives in the core
(``consentcam.live``); a vendor's edge device would plug in here instead, behind the same rules. Direct fetch: the
core's job calls ``consentcam_fetch_recording`` only after checking the owner's ``direct_fetch`` grant at that
moment; for an ``edge`` camera this asks the agent to pull the window from the recorder on the owner's network
(with the RTSP plugin installed beside it), receives the clips over the agent's socket, checks each against the
size and SHA-256 the agent reported, and hands them to the vault's sink: the same path, hash and custody rules
as an owner's upload. A worker process holds no agent's socket: with a broker configured the fetch runs in the
web process that holds it, and the clips come back in parts, checked again against the agent's report.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from consentcam import DeviceUnreachable, hookimpl
from consentcam.hooktypes import CameraRef, ClipSink, FetchResult, PluginInfo, TimeWindow

from . import __version__


class FususEdgePlugin:
    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo("fusus_edge", __version__, ("live_relay", "fetch_recording"),
                          "edge relay on the owner's premises: live feeds as the owner's signed live policy allows, "
                          "and direct fetch from the local recorder")

    @hookimpl
    async def consentcam_fetch_recording(self, camera: CameraRef, window: TimeWindow, sink: ClipSink) -> FetchResult | None:
        if camera.connection.kind != "edge":
            return None
        from datetime import UTC, datetime

        from consentcam.live.hub import fetch_recording

        device_id, ref = camera.connection.fields.get("device_id"), camera.connection.fields.get("camera_ref")
        if not device_id or not ref:
            raise DeviceUnreachable("the camera's connection names no edge relay device and camera reference")
        folder = Path(tempfile.mkdtemp(prefix="consentcam-edge-fetch-"))
        try:
            try:
                # This process's socket to the agent if it holds one, else the holder's through the broker.
                clips, report = await fetch_recording(str(device_id), str(ref), window.start, window.end, folder)
            except (ConnectionError, TimeoutError) as exc:
                raise DeviceUnreachable(f"{exc or 'the edge relay did not answer'}; the fetch is retried") from exc
            for path, provenance in clips:
                await sink(path, {"relay": "fusus_edge", "device_id": device_id, "camera_ref": ref, **provenance})
            missing = [TimeWindow(datetime.fromtimestamp(float(s), UTC), datetime.fromtimestamp(float(e), UTC))
                       for s, e in report.get("missing", [])]
            return FetchResult(clips=[p for p, _ in clips], missing=missing, note=str(report.get("note") or ""),
                               provenance={"plugin": "fusus_edge", "plugin_version": __version__, "device_id": device_id,
                                           "agent": report.get("provenance") or {}})
        finally:
            shutil.rmtree(folder, ignore_errors=True)


plugin = FususEdgePlugin()
