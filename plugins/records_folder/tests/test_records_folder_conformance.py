"""The vendor kit's conformance suite (consentcam.testing.conformance), run against the records-delivery plugin:
a watched folder as the working destination, an HTTPS endpoint on a closed port as the refusing one."""

from __future__ import annotations

import socket

import pytest
from consentcam.testing.conformance import ExportReadyConformance, PluginConformance
from consentcam_records_folder import RecordsFolder


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestRecordsFolderConformance(PluginConformance, ExportReadyConformance):
    entry_point = "records_folder"

    @pytest.fixture
    def inbox(self, tmp_path):
        return tmp_path / "rms-inbox"

    @pytest.fixture
    def plugin(self, inbox):
        return RecordsFolder(folder=inbox)

    @pytest.fixture
    def delivered(self, inbox):
        return lambda: [p.read_bytes() for p in sorted(inbox.rglob("*.zip"))]

    @pytest.fixture(params=["endpoint down", "folder not writable"])
    def failing_plugin(self, request, tmp_path):
        if request.param == "endpoint down":
            return RecordsFolder(url=f"https://127.0.0.1:{closed_port()}/ingest", timeout_s=5)
        blocked = tmp_path / "not-a-folder"
        blocked.write_text("a file where the inbox should be")
        return RecordsFolder(folder=blocked)
