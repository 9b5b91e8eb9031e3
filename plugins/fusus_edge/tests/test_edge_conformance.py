"""The vendor kit's plugin conformance (consentcam.testing.conformance) for the relay's core plugin: it declares
itself with allowed capabilities, loads in a strict host, implements what the capabilities promise, its async hooks
are coroutines, and the installed entry point loads it. (Its fetch is proven end to end, through a real agent, in
``test_edge_relay.py``.)"""

from __future__ import annotations

import pytest
from consentcam.testing.conformance import PluginConformance
from consentcam_fusus_edge.plugin import FususEdgePlugin


class TestFususEdgeConformance(PluginConformance):
    entry_point = "fusus_edge"

    @pytest.fixture
    def plugin(self):
        return FususEdgePlugin()
