"""The core's conformance suite for plugins, run against the Ring export plugin and the Ring fake: declaration,
strict loading, capabilities backed by hooks, the window honoured (clips within it, the rest reported missing),
no secret in provenance, note or log, an outage as a core error, and through the core: the approved item fetched
into the vault, and never a fetch without a valid ``direct_fetch`` grant at job time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from consentcam.hooktypes import AccountCredentials, TimeWindow
from consentcam.testing.conformance import FetchRecordingConformance, PluginConformance
from consentcam_ring_export.plugin import RingExportPlugin
from ring_testkit import BASE, CODE, DOORBELL_ID, EMAIL, FAILING_ID, LIBRARY_WARNINGS, PASSWORD

pytestmark = LIBRARY_WARNINGS


class TestRingExportConformance(PluginConformance, FetchRecordingConformance):
    entry_point = "ring_export"

    @pytest.fixture
    def plugin(self, ring_fake, tmp_path):  # noqa: ANN001, ANN201
        return RingExportPlugin(session_factory=ring_fake.client_session, work_dir=tmp_path, page_size=2)

    @pytest.fixture
    async def account_secret(self, plugin):  # noqa: ANN001, ANN201
        await plugin.consentcam_link_account(AccountCredentials("ring", EMAIL, PASSWORD))
        linked = await plugin.consentcam_link_account(AccountCredentials("ring", EMAIL, PASSWORD, CODE))
        return dict(linked.secret)

    @pytest.fixture
    def connection(self) -> dict:
        return {"kind": "ring", "device_id": DOORBELL_ID}

    @pytest.fixture
    def recorded_window(self) -> TimeWindow:
        return TimeWindow(BASE + timedelta(minutes=9), BASE + timedelta(minutes=20))  # two whole events inside

    @pytest.fixture
    def unreachable_connection(self) -> dict:
        return {"kind": "ring", "device_id": FAILING_ID}  # Ring answers 503 for its history
