"""``consentcam plugin new NAME``: a new adapter distribution that installs, loads and runs the vendor kit's
conformance tests out of the box. Where the vendor must write code, a placeholder raises ``NotImplementedError``
whose message starts with ``PLACEHOLDER`` and says what to write; the tests that need that code fail until then.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import __version__

NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "consentcam-{dist}"
version = "0.1.0"
description = "ConsentCam adapter: clips by time from {title} cameras"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["consentcam>={core_version}"]

[project.optional-dependencies]
testing = ["consentcam[testing]", "pytest>=8", "pytest-asyncio>=0.24"]

# The core finds the adapter through this entry point, like every other plugin.
[project.entry-points.consentcam]
{name} = "{module}.plugin:plugin"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
# The conformance tests that run through the core use a database: SQLite here; add PostgreSQL with
# `--consentcam-backends sqlite,postgresql` (a server at 127.0.0.1:5432, or CONSENTCAM_TEST_PG=postgresql://...).
addopts = "--consentcam-backends sqlite"
'''

README = '''\
# consentcam-{dist}

A ConsentCam adapter for {title} cameras, made by `consentcam plugin new {name}`.

```sh
pip install -e '.[testing]'
pytest            # the vendor kit's conformance tests; the ones needing your code fail until you write it
```

Search for `PLACEHOLDER` and `VENDOR:` to find what to write: `src/{module}/plugin.py` (the fetch) and
`tests/test_{module}_conformance.py` (a camera or test peer holding recordings).
'''

INIT = '''\
"""ConsentCam adapter for {title} cameras."""

__version__ = "0.1.0"
'''

PLUGIN = '''\
"""ConsentCam adapter for {title} cameras: clips by time for approved requests (the ``fetch_recording`` hook).

Made by ``consentcam plugin new {name}``. Each ``PLACEHOLDER`` below raises until you write that part.
"""

from __future__ import annotations

import logging

from consentcam import hookimpl
from consentcam.hooktypes import CameraConnection, CameraRef, ClipSink, FetchResult, PluginInfo, TimeWindow

from . import __version__

log = logging.getLogger(__name__)

NAME = "{name}"
# Connection kinds are a fixed list in the core (manual, onvif, rtsp, ring, edge). An owner registers one of your
# cameras with one of them and `"vendor": "{name}"`, e.g. {{"kind": "rtsp", "vendor": "{name}", "url": ...,
# "username": ..., "password": ...}}; the password is taken out of the fields and handed to you in
# `connection.secret`, decrypted for the call only.
KINDS = frozenset({{"onvif", "rtsp"}})


class {cls}:
    name = NAME

    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo(NAME, __version__, ("fetch_recording",), "clips by time from {title} cameras")

    @staticmethod
    def is_ours(connection: CameraConnection) -> bool:
        return connection.kind in KINDS and connection.fields.get("vendor") == NAME

    @hookimpl
    async def consentcam_fetch_recording(self, camera: CameraRef, window: TimeWindow, sink: ClipSink) -> FetchResult | None:
        if not self.is_ours(camera.connection):
            return None  # not ours: the next plugin answers
        # VENDOR: write the fetch. The core calls this only after checking the owner's direct_fetch grant.
        #  1. Reach the device (camera.connection.fields, camera.connection.secret); raise
        #     consentcam.DeviceUnreachable when it does not answer, consentcam.CredentialsRejected when it refuses
        #     the credentials, consentcam.PluginError for anything else you detect. Never log the secret.
        #  2. Pull exactly window.start to window.end (camera.timezone is the recorder's time zone) into a file.
        #  3. evidence_id = await sink(path, {{"device": ..., "asked": ...}})  (JSON-serialisable provenance)
        #  4. return FetchResult(clips=[path], missing=[...parts of the window the device does not hold...])
        raise NotImplementedError(
            "PLACEHOLDER in {module}/plugin.py: consentcam_fetch_recording is not written yet; pull exactly the "
            "window from the device into a file, hand it to the sink, return a FetchResult"
        )


# The object the entry point loads.
plugin = {cls}()
'''

TESTS = '''\
"""The vendor kit's conformance tests (consentcam.testing.conformance) for this adapter. The fixtures marked
``VENDOR:`` describe your test device; point them at a test peer that your tests start (see the kit's RTSP peer,
``consentcam_rtsp_server``, for one way)."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest
from consentcam.hooktypes import TimeWindow
from consentcam.testing.conformance import FetchRecordingConformance, PluginConformance

from {module}.plugin import {cls}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Test{cls}Conformance(PluginConformance, FetchRecordingConformance):
    entry_point = "{name}"  # checks the installed distribution's entry point

    @pytest.fixture
    def plugin(self):
        return {cls}()

    @pytest.fixture
    def connection(self):
        # VENDOR: a camera (or a test peer your tests start) that holds recordings in `recorded_window`.
        return {{"kind": "rtsp", "vendor": "{name}", "url": "rtsp://127.0.0.1:8554/recorder",
                "username": "owner", "password": "test-password"}}

    @pytest.fixture
    def recorded_window(self):
        # VENDOR: a few seconds that the camera above holds.
        start = datetime(2026, 6, 1, 10, 0, 30, tzinfo=UTC)
        return TimeWindow(start, start + timedelta(seconds=3))

    @pytest.fixture
    def unreachable_connection(self):
        return {{"kind": "rtsp", "vendor": "{name}", "url": f"rtsp://127.0.0.1:{{closed_port()}}/recorder",
                "username": "owner", "password": "test-password"}}
'''


def names(name: str) -> dict[str, str]:
    """The spellings of one adapter name: distribution, module, class, title."""
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError("a plugin name is lower-case letters and digits, words joined by '-' or '_' (e.g. 'acme-nvr')")
    words = re.split(r"[-_]", name)
    return {
        "name": name.replace("-", "_"),
        "dist": name.replace("_", "-"),
        "module": "consentcam_" + "_".join(words),
        "cls": "".join(w.capitalize() for w in words) + "Plugin",
        "title": " ".join(w.capitalize() for w in words),
        "core_version": __version__,
    }


def scaffold(name: str, target: Path) -> list[Path]:
    """Write the distribution into ``target`` (which must not exist or be empty); return the files written."""
    spelled = names(name)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not empty")
    module = spelled["module"]
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"src/{module}/__init__.py": INIT,
        f"src/{module}/plugin.py": PLUGIN,
        f"tests/test_{module}_conformance.py": TESTS,
    }
    written = []
    for relative, template in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**spelled))
        written.append(path)
    return written
