"""POST /api/v1/cameras/{id}/probe: an owner reads the device behind their camera's connection through the plugin
for its kind; the capabilities are kept on the camera; errors are problems (502 unreachable, 422 rejected
credentials); the platform reaches only public addresses unless the operator allows a network; audited."""

from __future__ import annotations

from typing import Any

import pytest
from consentcam.errors import CredentialsRejected, DeviceUnreachable
from consentcam.hookspecs import hookimpl
from consentcam.hooktypes import CameraConnection, PluginInfo, ProbeResult
from consentcam.http.app import create_app
from consentcam.platform import open_platform
from consentcam.testing.world import World
from sqlalchemy import select

from consentcam.db.models import AuditEvent

from .conftest import problem

pytestmark = pytest.mark.usefixtures("fast_passwords")


class FakeProber:
    """Answers for ONVIF connections: the password decides, as a device would."""

    def __init__(self) -> None:
        self.seen: list[CameraConnection] = []

    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo("fake-prober", "1", ("probe",))

    @hookimpl
    async def consentcam_probe_camera(self, connection: CameraConnection) -> ProbeResult | None:
        if connection.kind != "onvif":
            return None
        self.seen.append(connection)
        if connection.fields.get("port") == 1:
            raise DeviceUnreachable("no answer from the device")
        if connection.secret.get("password") != "right-password":
            raise CredentialsRejected("the device refused the credentials")
        return ProbeResult(device={"manufacturer": "Acme", "model": "NVR-8"},
                           profiles=[{"name": "main", "encoding": "H264", "uri": "rtsp://127.0.0.1:554/main"}],
                           capabilities=["replay", "recording", "search"])


@pytest.fixture
async def setup(consentcam_settings: Any, consentcam_clock: Any, aiohttp_client: Any) -> Any:
    prober = FakeProber()
    platform = await open_platform(consentcam_settings, clock=consentcam_clock, extra_plugins=[prober])
    client = await aiohttp_client(create_app(consentcam_settings, platform=platform, run_jobs=False))
    yield client, World(platform), prober, platform
    await platform.db.dispose()


def onvif(host: str = "127.0.0.1", port: int = 8000, password: str = "right-password") -> dict[str, Any]:
    return {"kind": "onvif", "host": host, "port": port, "username": "admin", "password": password}


async def test_the_owner_probes_and_the_capabilities_are_kept(setup: Any) -> None:
    client, world, prober, platform = setup
    owner, other = await world.owner(), await world.owner()
    camera = await world.camera(owner, connection=onvif())
    response = await client.post(f"/api/v1/cameras/{camera}/probe", headers=owner.headers)
    body = await response.json()
    assert response.status == 200, body
    assert body["device"]["model"] == "NVR-8" and body["profiles"][0]["name"] == "main"
    assert body["capabilities"] == ["recording", "replay", "search"]
    assert "right-password" not in await response.text()
    assert prober.seen[0].secret["password"] == "right-password", "the plugin gets the decrypted secret for the call"
    shown = await (await client.get(f"/api/v1/cameras/{camera}", headers=owner.headers)).json()
    assert shown["capabilities"] == ["recording", "replay", "search"] and "password" not in str(shown)
    async with platform.db.sessions() as session:
        event = (await session.execute(select(AuditEvent).where(AuditEvent.action == "camera.probed"))).scalar_one()
    assert event.camera_ids == [camera] and "right-password" not in str(event.detail)

    await problem(await client.post(f"/api/v1/cameras/{camera}/probe", headers=other.headers), 404)
    agency = await world.agency()
    investigator = await world.staff(agency, "investigator")
    await problem(await client.post(f"/api/v1/cameras/{camera}/probe", headers=investigator.headers), 403)
    await problem(await client.post(f"/api/v1/cameras/{camera}/probe"), 401)


async def test_device_errors_are_problems_that_say_what_went_wrong(setup: Any) -> None:
    client, world, _prober, _platform = setup
    owner = await world.owner()
    wrong = await world.camera(owner, connection=onvif(password="wrong"))
    body = await problem(await client.post(f"/api/v1/cameras/{wrong}/probe", headers=owner.headers), 422)
    assert "refused the credentials" in body["detail"]
    dead = await world.camera(owner, connection=onvif(port=1))
    await problem(await client.post(f"/api/v1/cameras/{dead}/probe", headers=owner.headers), 502)
    manual = await world.camera(owner)
    body = await problem(await client.post(f"/api/v1/cameras/{manual}/probe", headers=owner.headers), 422)
    assert "nothing the platform can probe" in body["detail"]
    rtsp = await world.camera(owner, connection={"kind": "rtsp", "url": "rtsp://127.0.0.1:8554/live"})
    body = await problem(await client.post(f"/api/v1/cameras/{rtsp}/probe", headers=owner.headers), 422)
    assert "no installed plugin probes 'rtsp'" in body["detail"]


@pytest.mark.parametrize("host", ["10.0.0.5", "192.168.1.64", "169.254.169.254", "localhost"])
async def test_private_addresses_are_not_probed_unless_the_operator_allows_them(
        consentcam_settings: Any, consentcam_clock: Any, aiohttp_client: Any, host: str) -> None:
    strict = consentcam_settings.model_copy(update={"probe_allowed_networks": ""})
    prober = FakeProber()
    platform = await open_platform(strict, clock=consentcam_clock, extra_plugins=[prober])
    try:
        client = await aiohttp_client(create_app(strict, platform=platform, run_jobs=False))
        world = World(platform)
        owner = await world.owner()
        camera = await world.camera(owner, connection=onvif(host=host))
        body = await problem(await client.post(f"/api/v1/cameras/{camera}/probe", headers=owner.headers), 403)
        assert "public addresses only" in body["detail"]
        assert prober.seen == [], "nothing was sent to the private address"
    finally:
        await platform.db.dispose()
