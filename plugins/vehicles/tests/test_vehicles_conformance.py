"""The vendor kit's conformance suite (consentcam.testing.conformance) run against the vehicle analyser: it declares
itself with allowed (never biometric) capabilities, loads in a strict host and from its entry point, and its labels
lie within the clip with scores in [0, 1] and the model's SHA-256."""

from __future__ import annotations

from pathlib import Path

import pytest
from consentcam.testing.conformance import AnalyseConformance, PluginConformance
from consentcam_vehicles.plugin import VehiclesPlugin


class TestVehiclesConformance(PluginConformance, AnalyseConformance):
    entry_point = "vehicles"

    @pytest.fixture
    def plugin(self, vehicles_plugin: VehiclesPlugin) -> VehiclesPlugin:
        return vehicles_plugin

    @pytest.fixture
    def analysis_clip(self, truck_clip: Path) -> Path:
        return truck_clip
