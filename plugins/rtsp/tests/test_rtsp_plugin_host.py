"""The RTSP plugin as the core's plugin host sees it: loaded through its entry point like any third-party
plugin, hooks that match the specifications, capabilities the host accepts, listed by ``consentcam plugins``,
nothing of the core's insides imported (the vendor kit's ``PluginHostConformance``)."""

from __future__ import annotations

import consentcam_rtsp
from consentcam.testing.conformance import PluginHostConformance


class TestRtspPluginHost(PluginHostConformance):
    entry_point = "rtsp"
    entry_point_value = "consentcam_rtsp.plugin:plugin"
    package = consentcam_rtsp
    capabilities = ("probe", "fetch_recording", "live_only")
    hooks = frozenset({"consentcam_plugin_info", "consentcam_probe_camera", "consentcam_fetch_recording"})
