"""Each hook through the plugin host's typed facade: results are awaited, merged or first-wins as specified,
and a plugin answering None for a camera that is not its own lets the next one answer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from consentcam import hookimpl
from consentcam.hooktypes import (
    CameraConnection,
    CameraRef,
    ClipToAnalyse,
    DeliveryResult,
    DiscoveredCamera,
    EvidenceRecord,
    ExportPackage,
    FetchResult,
    Label,
    LabelSet,
    OwnerNotification,
    PluginInfo,
    ProbeResult,
    TimeWindow,
)
from consentcam.plugins import make_plugin_host


class Vendor:
    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind
        self.seen: list[str] = []

    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo(self.name, "1", ("discover", "probe", "fetch_recording", "analyse_vehicles", "records_delivery"))

    @hookimpl
    async def consentcam_discover_cameras(self, timeout_s: float) -> list[DiscoveredCamera]:
        return [DiscoveredCamera(address=f"{self.name}-cam", xaddrs=(f"http://{self.name}/onvif",))]

    @hookimpl
    async def consentcam_probe_camera(self, connection: CameraConnection) -> ProbeResult | None:
        if connection.kind != self.kind:
            return None
        return ProbeResult(device={"by": self.name}, profiles=[], capabilities=["live_only"])

    @hookimpl
    async def consentcam_fetch_recording(self, camera: CameraRef, window: TimeWindow, sink) -> FetchResult | None:
        if camera.connection.kind != self.kind:
            return None
        await sink(Path("/dev/null"), {"by": self.name})
        return FetchResult(clips=[], note=self.name)

    @hookimpl
    async def consentcam_evidence_stored(self, evidence: EvidenceRecord) -> None:
        self.seen.append(f"stored:{evidence.evidence_id}")

    @hookimpl
    async def consentcam_export_ready(self, export: ExportPackage) -> None:
        self.seen.append(f"export:{export.request_id}")

    @hookimpl
    async def consentcam_analyse_clip(self, clip: ClipToAnalyse) -> LabelSet | None:
        return LabelSet(self.name, "0" * 64, [Label("truck", 1.0, 2.0, 0.9)])

    @hookimpl
    async def consentcam_notify_owner(self, notification: OwnerNotification) -> DeliveryResult | None:
        return DeliveryResult(self.name, True) if notification.channels.get(self.kind) else None


def _host():
    a, b = Vendor("alpha", "onvif"), Vendor("beta", "rtsp")
    return make_plugin_host([a, b], load_entry_points=False), a, b


async def test_discover_cameras_merges_every_plugins_findings():
    host, _, _ = _host()
    assert sorted(c.address for c in await host.discover_cameras(0.1)) == ["alpha-cam", "beta-cam"]


async def test_probe_camera_and_fetch_recording_go_to_the_plugin_that_owns_the_kind():
    host, _, _ = _host()
    assert (await host.probe_camera(CameraConnection("onvif", {}))).device == {"by": "alpha"}
    assert (await host.probe_camera(CameraConnection("rtsp", {}))).device == {"by": "beta"}
    assert await host.probe_camera(CameraConnection("ring", {})) is None
    sunk = []

    def make_sink(name):
        async def sink(path, provenance):
            sunk.append((name, provenance["by"]))
            return "e1"
        return sink

    ref = CameraRef("c1", "door", CameraConnection("rtsp", {}))
    window = TimeWindow(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 5, tzinfo=UTC))
    name, result = await host.fetch_recording_named(ref, window, make_sink)
    assert name == "beta" and result.note == "beta" and sunk == [("beta", "beta")]
    assert (await host.fetch_recording(ref, window, make_sink("x"))).note == "beta"


async def test_evidence_stored_export_ready_and_analyse_clip_reach_every_plugin():
    host, a, b = _host()
    await host.evidence_stored(EvidenceRecord("e1", "0" * 64, 1, "ag", None, None, {}))
    await host.export_ready(ExportPackage("r1", "ag", Path("/tmp/x.zip"), "0" * 64))
    assert a.seen == b.seen == ["stored:e1", "export:r1"]
    sets = await host.analyse_clip(ClipToAnalyse("e1", Path("/tmp/x.mp4"), {}))
    assert sorted(s.analyser for s in sets) == ["alpha", "beta"] and sets[0].labels[0].name == "truck"


async def test_notify_owner_collects_only_the_channels_that_tried():
    host, _, _ = _host()
    note = OwnerNotification("o", "o@example.org", "O", None, {"rtsp": True}, "s", "t", "request")
    assert [r.channel for r in await host.notify_owner(note) if r.channel in ("alpha", "beta")] == ["beta"]


async def test_a_failing_plugin_does_not_keep_the_others_from_their_turn():
    class Broken(Vendor):
        @hookimpl
        async def consentcam_evidence_stored(self, evidence: EvidenceRecord) -> None:
            raise RuntimeError("records system down")

    good, broken = Vendor("good", "onvif"), Broken("broken", "rtsp")
    host = make_plugin_host([good, broken], load_entry_points=False)  # pluggy calls the newest first: broken
    import pytest

    with pytest.raises(RuntimeError, match="records system down"):
        await host.evidence_stored(EvidenceRecord("e9", "0" * 64, 1, "ag", None, None, {}))
    assert good.seen == ["stored:e9"], "the working plugin must still receive the evidence"
