"""ConsentCam's test kit, installed as a pytest plugin (entry point ``pytest11``) for core, plugins and the SDK.

Fixtures (all prefixed so they never collide with a project's own):
- ``consentcam_backend``: "sqlite" or "postgresql"; parametrise with ``--consentcam-backends``.
- ``consentcam_database_url``: a fresh, migrated database for this test.
- ``consentcam_settings``: settings pointing at it, with a temporary data folder and a fixed test key.
- ``consentcam_clock``: a ``FakeClock`` that moves only when told.
- ``consentcam_platform``: the opened platform (database, plugins, keys).
- ``consentcam_client``: an aiohttp test client on a running core.
- ``consentcam_world``: helpers that make agencies, staff, owners, cameras and grants through the real services.
- ``consentcam_nats_url``: the shared NATS server (a private one a test may stop: ``consentcam.testing.broker``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..clock import FakeClock
from ..settings import Settings
from .databases import PostgresDatabases, SqliteDatabases

BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("consentcam")
    group.addoption(
        "--consentcam-backends",
        default=os.environ.get("CONSENTCAM_TEST_BACKENDS", ",".join(BACKENDS)),
        help="comma-separated database backends to run backend-parametrised tests on (default: sqlite,postgresql)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "consentcam_backend" in metafunc.fixturenames:
        chosen = [b.strip() for b in metafunc.config.getoption("--consentcam-backends").split(",") if b.strip()]
        unknown = set(chosen) - set(BACKENDS)
        if unknown:
            raise pytest.UsageError(f"unknown backend(s): {', '.join(sorted(unknown))}")
        metafunc.parametrize("consentcam_backend", chosen, ids=chosen)


@pytest.fixture(scope="session")
def _consentcam_pg() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def _consentcam_sqlite(tmp_path_factory: pytest.TempPathFactory) -> SqliteDatabases:
    return SqliteDatabases(tmp_path_factory.mktemp("consentcam-template"))


@pytest.fixture
def consentcam_database_url(
    consentcam_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    if consentcam_backend == "sqlite":
        yield request.getfixturevalue("_consentcam_sqlite").new(tmp_path / "db")
        return
    pg: PostgresDatabases = request.getfixturevalue("_consentcam_pg")
    url = pg.new()
    yield url
    pg.drop(url)


@pytest.fixture
def consentcam_settings(consentcam_database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        database_url=consentcam_database_url,
        secret_key="test-deployment-key-not-for-production",
        public_url="http://consentcam.test",
        load_entry_point_plugins=False,
        run_jobs_in_process=False,
        login_lockout_seconds=0.2,
        # Test receivers (webhooks) listen on loopback, which a deployment refuses by default (tests/test_outbound.py).
        webhook_allowed_networks="127.0.0.0/8",
        probe_allowed_networks="127.0.0.0/8",  # test devices (ONVIF simulators, RTSP peers) too
    )


@pytest.fixture
def consentcam_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def consentcam_platform(consentcam_settings: Settings, consentcam_clock: FakeClock) -> AsyncIterator[Any]:
    from ..platform import open_platform

    platform = await open_platform(consentcam_settings, clock=consentcam_clock)
    yield platform
    await platform.db.dispose()


@pytest.fixture
async def consentcam_client(consentcam_settings: Settings, consentcam_platform: Any, aiohttp_client: Any) -> Any:
    from ..http.app import create_app

    return await aiohttp_client(create_app(consentcam_settings, platform=consentcam_platform, run_jobs=False))


@pytest.fixture
def consentcam_world(consentcam_platform: Any) -> Any:
    from .world import World

    return World(consentcam_platform)


@pytest.fixture
def consentcam_smtp() -> Iterator[Any]:
    """A real SMTP server on 127.0.0.1 (aiosmtpd); point ``CONSENTCAM_SMTP_*`` at ``.host`` / ``.port``."""
    from .smtp import SmtpServer

    with SmtpServer() as box:
        yield box


# --- RTSP peers (consentcam.testing.rtsp_peer): shared by the RTSP, ONVIF and edge-relay suites ----------


@pytest.fixture(scope="session")
def consentcam_rtsp_recording(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The recorded file (made once per session with FFmpeg): each frame shows its time as text and as a code."""
    from .rtsp_peer import PeerUnavailable, make_recording

    try:
        return make_recording(tmp_path_factory.mktemp("rtsp-recording"))
    except PeerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def consentcam_rtsp_server(consentcam_rtsp_recording: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's gst-rtsp-server serving ``/live`` and recorder playback mounts (``RtspServer``); fails, never skips,
    when the Debian packages are missing."""
    from .rtsp_peer import PeerUnavailable, RtspServer

    server = RtspServer(consentcam_rtsp_recording, folder=tmp_path_factory.mktemp("rtsp-server"))
    try:
        server.start()
    except PeerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def consentcam_rtsp_udp_relay(consentcam_rtsp_recording: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's rtsp-server-perl (UDP only) relaying the recording live at ``.url`` (``UdpRelay``)."""
    from .rtsp_peer import PeerUnavailable, UdpRelay

    relay = UdpRelay(consentcam_rtsp_recording, folder=tmp_path_factory.mktemp("rtsp-relay"))
    try:
        relay.start()
    except PeerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield relay
    relay.stop()


# --- NATS (consentcam.testing.broker): the broker of the scale path ------------------------------------


@pytest.fixture(scope="session")
def consentcam_nats_url() -> str:
    """The shared NATS server (``CONSENTCAM_TEST_NATS``, default ``nats://127.0.0.1:4222``); use a subject prefix of
    your own on it (``consentcam.testing.broker.subject_prefix()``). Fails, never skips, when it does not answer."""
    from .broker import NatsUnavailable, shared_nats_url

    try:
        return shared_nats_url()
    except NatsUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
