"""The Ring export plugin as the core's plugin host sees it: loaded through its entry point like any third-party
plugin, hooks that match the specifications, capabilities the host accepts, listed by ``consentcam plugins``,
nothing of the core's insides imported (the vendor kit's ``PluginHostConformance``)."""

from __future__ import annotations

import consentcam_ring_export
from consentcam.testing.conformance import PluginHostConformance


class TestRingExportPluginHost(PluginHostConformance):
    entry_point = "ring_export"
    entry_point_value = "consentcam_ring_export.plugin:plugin"
    package = consentcam_ring_export
    capabilities = ("link_account", "fetch_recording")
    hooks = frozenset({"consentcam_plugin_info", "consentcam_link_account", "consentcam_fetch_recording"})
