"""Probe against ipycam 1.3.0, a third-party virtual ONVIF camera with WS-Security turned on: device facts, media
profiles, live stream URIs that really stream, and the failures an owner can act on (wrong password, wrong port).
Also through the core's plugin host, as the portal calls it."""

from __future__ import annotations

import asyncio
import logging

import pytest
from consentcam import CredentialsRejected, DeviceUnreachable, InvalidInput
from consentcam.hooktypes import CameraConnection
from consentcam_onvif.device import OnvifDevice
from consentcam_onvif.plugin import OnvifPlugin
from consentcam_rtsp.masking import with_credentials
from consentcam_rtsp.puller import PullOptions, RtspSource
from onvif_testkit import IPYCAM_PASSWORD, IPYCAM_USERNAME, IpyCam, closed_port, running_ipycam

pytestmark = pytest.mark.peer("ipycam")


@pytest.fixture(scope="module")
def ipycam(tmp_path_factory):
    camera = running_ipycam(tmp_path_factory.mktemp("ipycam"))
    yield camera
    camera.stop()


def connection(camera: IpyCam, password: str = IPYCAM_PASSWORD, **fields) -> CameraConnection:
    return CameraConnection(kind="onvif", fields={"host": "127.0.0.1", "port": camera.ports["onvif_port"],
                                                  "username": IPYCAM_USERNAME, **fields},
                            secret={"username": IPYCAM_USERNAME, "password": password})


async def test_probe_lists_device_profiles_and_stream_uris(ipycam):
    result = await OnvifPlugin(timeout_s=5).consentcam_probe_camera(connection(ipycam))
    assert result is not None
    assert result.device["manufacturer"] == "PythonCam" and result.device["model"] == "VirtualCam-1"
    assert result.device["firmware"] == "1.3.0"
    by_name = {profile["name"]: profile for profile in result.profiles}
    assert set(by_name) == {"MainStream", "SubStream"}, result.profiles
    main = by_name["MainStream"]
    assert (main["encoding"], main["width"], main["height"]) == ("H264", 640, 360)
    assert main["stream_uri"] == f"rtsp://127.0.0.1:{ipycam.ports['rtsp_port']}/video_main"
    # ipycam has no recording, search or replay service: it is a live camera, and says so.
    assert result.capabilities == ["probe", "live"]


async def test_the_probed_stream_uri_streams_live_video(ipycam):
    result = await OnvifPlugin(timeout_s=5).consentcam_probe_camera(connection(ipycam))
    uri = next(p["stream_uri"] for p in result.profiles if p["name"] == "MainStream")
    options = PullOptions(open_timeout_s=5, read_timeout_s=5, attempts=3, backoff_s=0.5)
    source = RtspSource(with_credentials(uri, IPYCAM_USERNAME, IPYCAM_PASSWORD), uri, options, (IPYCAM_PASSWORD,))
    facts = await asyncio.to_thread(source.probe)
    assert (facts.codec, facts.width, facts.height) == ("h264", 640, 360)


async def test_a_wrong_password_is_a_clear_credentials_error(ipycam, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(CredentialsRejected) as raised:
        await OnvifPlugin(timeout_s=5).consentcam_probe_camera(connection(ipycam, password="not-the-password"))
    assert "refused the credentials" in raised.value.detail and "not authorized" in raised.value.detail.lower()
    assert raised.value.__cause__ is None and raised.value.__context__ is None  # no library exception rides along
    assert "not-the-password" not in caplog.text


async def test_the_password_never_reaches_the_log(ipycam, caplog):
    caplog.set_level(logging.DEBUG)
    await OnvifPlugin(timeout_s=5).consentcam_probe_camera(connection(ipycam))
    assert IPYCAM_PASSWORD not in caplog.text
    assert repr(connection(ipycam)).count(IPYCAM_PASSWORD) == 0  # the connection's secret is not in its repr


async def test_nothing_listening_is_device_unreachable():
    with pytest.raises(DeviceUnreachable) as raised:
        async with OnvifDevice("127.0.0.1", closed_port(), "u", "p", timeout_s=3):
            pass
    assert "no answer" in raised.value.detail


async def test_a_camera_that_is_not_onvif_is_not_ours_and_a_missing_host_is_invalid():
    plugin = OnvifPlugin()
    assert await plugin.consentcam_probe_camera(CameraConnection(kind="rtsp", fields={})) is None
    with pytest.raises(InvalidInput):
        await plugin.consentcam_probe_camera(CameraConnection(kind="onvif", fields={"port": 80}))


async def test_probe_through_the_plugin_host(ipycam, consentcam_settings, consentcam_clock):
    from consentcam.platform import open_platform

    platform = await open_platform(consentcam_settings, clock=consentcam_clock, extra_plugins=[OnvifPlugin(timeout_s=5)])
    try:
        result = await platform.plugins.probe_camera(connection(ipycam))
        assert result is not None and len(result.profiles) == 2
        with pytest.raises(CredentialsRejected):
            await platform.plugins.probe_camera(connection(ipycam, password="wrong"))
    finally:
        await platform.db.dispose()


async def test_the_owner_probes_through_the_api_and_the_camera_keeps_its_capabilities(
        ipycam, consentcam_settings, consentcam_clock, aiohttp_client):
    """POST /api/v1/cameras/{id}/probe, as the portal calls it: the real plugin, the real virtual camera."""
    from consentcam.http.app import create_app
    from consentcam.platform import open_platform
    from consentcam.testing.world import World

    platform = await open_platform(consentcam_settings, clock=consentcam_clock, extra_plugins=[OnvifPlugin(timeout_s=5)])
    try:
        client = await aiohttp_client(create_app(consentcam_settings, platform=platform, run_jobs=False))
        world = World(platform)
        owner = await world.owner()
        fields = {"kind": "onvif", "host": "127.0.0.1", "port": ipycam.ports["onvif_port"], "username": IPYCAM_USERNAME}
        camera = await world.camera(owner, connection={**fields, "password": IPYCAM_PASSWORD})
        response = await client.post(f"/api/v1/cameras/{camera}/probe", headers=owner.headers)
        body = await response.json()
        assert response.status == 200, body
        assert {p["name"] for p in body["profiles"]} == {"MainStream", "SubStream"}
        assert body["capabilities"] == ["live", "probe"] and IPYCAM_PASSWORD not in await response.text()
        shown = await (await client.get(f"/api/v1/cameras/{camera}", headers=owner.headers)).json()
        assert shown["capabilities"] == ["live", "probe"]

        wrong = await world.camera(owner, connection={**fields, "password": "not-the-password"})
        refused = await client.post(f"/api/v1/cameras/{wrong}/probe", headers=owner.headers)
        assert refused.status == 422 and "credentials" in (await refused.json())["detail"]
    finally:
        await platform.db.dispose()
