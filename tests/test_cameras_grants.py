"""Cameras and grants over real HTTP: another owner's camera does not exist, versions only grow, revocation is a
new version, bad grants write nothing, and connection secrets are write-only and encrypted at rest."""

from __future__ import annotations

from datetime import timedelta

import pytest
from consentcam.db.models import AuditEvent, Camera, GrantVersion
from consentcam.http.keys import API

from .conftest import count, database_text, locs, ok, problem

pytestmark = pytest.mark.usefixtures("fast_passwords")

CAMERA = {"label": "Front door", "location": {"lat": 41.8801, "lon": -87.6302}, "retention_days": 30,
          "precision": "block", "view": {"bearing_deg": 180, "fov_deg": 90, "range_m": 20}}
FULL = {"map": True, "requests": True, "direct_fetch": False, "live": "emergency_only"}


async def new_camera(api, owner, **changes):
    return await ok(await api.post("/api/v1/cameras", headers=owner.headers, json={**CAMERA, **changes}), 201)


async def test_owner_registers_lists_and_changes_a_camera(api, consentcam_world):
    owner = await consentcam_world.owner()
    camera = await new_camera(api, owner)
    assert camera["location"] == CAMERA["location"] and camera["precision"] == "block"
    assert camera["grant"]["version"] == 0 and camera["grant"]["in_force"] is False
    assert camera["connection"] == {"kind": "manual", "has_credentials": False}

    listed = await ok(await api.get("/api/v1/cameras", headers=owner.headers))
    assert [c["id"] for c in listed] == [camera["id"]]
    changed = await ok(await api.patch(f"/api/v1/cameras/{camera['id']}", headers=owner.headers,
                                       json={"label": "Back door", "status": "paused"}))
    assert (changed["label"], changed["status"]) == ("Back door", "paused")
    assert (await ok(await api.get(f"/api/v1/cameras/{camera['id']}", headers=owner.headers)))["label"] == "Back door"

    assert (await api.delete(f"/api/v1/cameras/{camera['id']}", headers=owner.headers)).status == 204
    await problem(await api.get(f"/api/v1/cameras/{camera['id']}", headers=owner.headers), 404)
    assert await ok(await api.get("/api/v1/cameras", headers=owner.headers)) == []


async def test_another_owners_camera_is_404_on_every_camera_route(api, consentcam_world, consentcam_platform):
    alice, mallory = await consentcam_world.owner(), await consentcam_world.owner()
    camera = await new_camera(api, alice)
    await ok(await api.put(f"/api/v1/cameras/{camera['id']}/grants", headers=alice.headers, json=FULL))
    base = f"/api/v1/cameras/{camera['id']}"
    calls = [
        ("GET", base, None), ("PATCH", base, {"label": "mine now"}), ("DELETE", base, None),
        ("PUT", f"{base}/grants", {"map": False}), ("GET", f"{base}/grants", None), ("DELETE", f"{base}/grants", None),
        ("GET", f"{base}/grants/history", None), ("GET", f"{base}/access-log", None), ("POST", f"{base}/probe", None),
    ]
    templates = {(method, path.replace(camera["id"], "{camera_id}")) for method, path, _ in calls}
    every_camera_route = {(op.method, op.path) for op in api.server.app[API].operations
                          if op.path.startswith("/api/v1/cameras/{camera_id}")}
    assert every_camera_route - templates == set(), "a camera route is missing from this test"
    events = await count(consentcam_platform, AuditEvent)
    not_found = await problem(await api.get("/api/v1/cameras/00000000-0000-0000-0000-000000000000",
                                            headers=mallory.headers), 404)
    for method, path, body in calls:
        answer = await problem(await api.request(method, path, headers=mallory.headers, json=body), 404)
        assert answer == not_found, (method, path)  # indistinguishable from a camera that does not exist
    assert await ok(await api.get("/api/v1/cameras", headers=mallory.headers)) == []
    # Nothing changed: same grant version, same label, same history, no audit event.
    after = await ok(await api.get(base, headers=alice.headers))
    assert (after["label"], after["status"], after["grant"]["version"], after["grant"]["map"]) == (
        "Front door", "active", 1, True)
    assert await count(consentcam_platform, AuditEvent) == events


async def test_agency_staff_have_no_camera_routes(api, consentcam_world):
    owner = await consentcam_world.owner()
    investigator = await consentcam_world.staff(await consentcam_world.agency(), "investigator")
    camera = await new_camera(api, owner)
    await problem(await api.get(f"/api/v1/cameras/{camera['id']}", headers=investigator.headers), 403)
    await problem(await api.post("/api/v1/cameras", headers=investigator.headers, json=CAMERA), 403)


async def test_grant_versions_increment_and_history_is_append_only(api, consentcam_world, consentcam_platform):
    owner = await consentcam_world.owner()
    other_agency = await consentcam_world.agency(lon=-88.0)
    camera = await new_camera(api, owner)
    grants = f"/api/v1/cameras/{camera['id']}/grants"
    first = await ok(await api.put(grants, headers=owner.headers, json=FULL))
    assert (first["version"], first["map"], first["in_force"], first["revoked"]) == (1, True, True, False)
    history_1 = await ok(await api.get(f"{grants}/history", headers=owner.headers))

    second = await ok(await api.put(grants, headers=owner.headers,
                                    json={"map": True, "share_with": [other_agency], "live": "never"}))
    assert second["version"] == 2 and second["share_with"] == [other_agency] and second["requests"] is False
    assert (await ok(await api.get(grants, headers=owner.headers))) == second

    revoked = await ok(await api.delete(grants, headers=owner.headers))
    assert revoked["version"] == 3 and revoked["revoked"] is True and revoked["in_force"] is False
    assert (revoked["map"], revoked["requests"], revoked["direct_fetch"], revoked["live"], revoked["share_with"]) == (
        False, False, False, "never", [])
    assert await ok(await api.get(grants, headers=owner.headers)) == revoked
    assert (await ok(await api.get(f"/api/v1/cameras/{camera['id']}", headers=owner.headers)))["grant"] == revoked

    history = await ok(await api.get(f"{grants}/history", headers=owner.headers))
    assert [v["version"] for v in history] == [1, 2, 3]
    assert history[:1] == history_1  # earlier versions are never rewritten
    assert history[1]["share_with"] == [other_agency] and history[2]["revoked"] is True
    assert await count(consentcam_platform, GrantVersion) == 3

    again = await ok(await api.put(grants, headers=owner.headers, json={"requests": True}))
    assert again["version"] == 4 and again["in_force"] is True


async def test_past_expiry_and_unknown_agency_are_422_and_write_nothing(api, consentcam_world, consentcam_clock,
                                                                       consentcam_platform):
    owner = await consentcam_world.owner()
    camera = await new_camera(api, owner)
    grants = f"/api/v1/cameras/{camera['id']}/grants"
    await ok(await api.put(grants, headers=owner.headers, json=FULL))
    before = (await count(consentcam_platform, GrantVersion), await count(consentcam_platform, AuditEvent))

    past = (consentcam_clock.now() - timedelta(minutes=1)).isoformat()
    body = await problem(await api.put(grants, headers=owner.headers, json={**FULL, "expires_at": past}), 422)
    assert ["body", "expires_at"] in locs(body)
    now = consentcam_clock.now().isoformat()  # "now" has already passed too
    assert ["body", "expires_at"] in locs(await problem(
        await api.put(grants, headers=owner.headers, json={**FULL, "expires_at": now}), 422))
    naive = consentcam_clock.now().replace(tzinfo=None) + timedelta(days=1)
    assert ["body", "expires_at"] in locs(await problem(
        await api.put(grants, headers=owner.headers, json={**FULL, "expires_at": naive.isoformat()}), 422))

    unknown = "11111111-1111-1111-1111-111111111111"
    body = await problem(await api.put(grants, headers=owner.headers, json={**FULL, "share_with": [unknown]}), 422)
    assert ["body", "share_with"] in locs(body) and unknown in body["detail"]

    assert (await count(consentcam_platform, GrantVersion), await count(consentcam_platform, AuditEvent)) == before
    current = await ok(await api.get(grants, headers=owner.headers))
    assert current["version"] == 1 and current["share_with"] == [] and current["expires_at"] is None


async def test_future_expiry_is_kept_and_lapses(api, consentcam_world, consentcam_clock):
    owner = await consentcam_world.owner()
    camera = await new_camera(api, owner)
    grants = f"/api/v1/cameras/{camera['id']}/grants"
    expires = consentcam_clock.now() + timedelta(hours=2)
    grant = await ok(await api.put(grants, headers=owner.headers, json={**FULL, "expires_at": expires.isoformat()}))
    assert grant["in_force"] is True
    consentcam_clock.advance(2 * 3600)
    assert (await ok(await api.get(grants, headers=owner.headers)))["in_force"] is False


# --- connection secrets -------------------------------------------------------------------------------

ONVIF_PASSWORD = "Onvif-Pa55word-9f3k"
RTSP_PASSWORD = "Rtsp-Pa55word-x7q2"


async def test_connection_secrets_are_never_returned_and_encrypted_at_rest(api, consentcam_world, consentcam_platform):
    owner = await consentcam_world.owner()
    bodies: list[str] = []

    async def call(method, path, **kwargs):
        response = await api.request(method, path, headers=owner.headers, **kwargs)
        bodies.append(await response.text())
        assert response.status < 300, bodies[-1]
        return await response.json() if response.status != 204 else None

    onvif = await call("POST", "/api/v1/cameras", json={**CAMERA, "connection": {
        "kind": "onvif", "host": "192.0.2.10", "port": 80, "username": "admin", "password": ONVIF_PASSWORD}})
    rtsp = await call("POST", "/api/v1/cameras", json={**CAMERA, "label": "Garage", "connection": {
        "kind": "rtsp", "url": f"rtsp://viewer:{RTSP_PASSWORD}@192.0.2.11:554/Streaming/Channels/101"}})
    assert onvif["connection"] == {"kind": "onvif", "host": "192.0.2.10", "port": 80, "username": "admin",
                                   "has_credentials": True}
    assert rtsp["connection"]["url"] == "rtsp://192.0.2.11:554/Streaming/Channels/101"
    assert rtsp["connection"]["has_credentials"] is True
    for camera in (onvif, rtsp):
        await call("GET", f"/api/v1/cameras/{camera['id']}")
        await call("PUT", f"/api/v1/cameras/{camera['id']}/grants", json=FULL)
        await call("GET", f"/api/v1/cameras/{camera['id']}/access-log")
        await call("GET", f"/api/v1/cameras/{camera['id']}/grants/history")
    await call("GET", "/api/v1/cameras")
    # Changing the connection through PATCH keeps the rule.
    patched = await call("PATCH", f"/api/v1/cameras/{onvif['id']}", json={"connection": {
        "kind": "onvif", "host": "192.0.2.12", "username": "admin", "password": ONVIF_PASSWORD + "-new"}})
    assert patched["connection"]["host"] == "192.0.2.12" and patched["connection"]["has_credentials"] is True

    investigator = await consentcam_world.staff(await consentcam_world.agency(), "investigator")
    revealed = await api.get("/api/v1/map/cameras", headers=investigator.headers)
    assert len((await revealed.json())["features"]) == 2
    everything = [body for *_, body in api.responses]  # every response of this test, as the server sent it
    assert len(everything) >= len(bodies) + 1
    for body in [*bodies, *(b.decode(errors="replace") for b in everything)]:
        assert ONVIF_PASSWORD not in body and RTSP_PASSWORD not in body
    at_rest = await database_text(consentcam_platform)
    assert ONVIF_PASSWORD not in at_rest and RTSP_PASSWORD not in at_rest and "viewer:" not in at_rest

    # ...but the platform can still read them back for a plugin call.
    from consentcam.services.consent import connection_secret
    from sqlalchemy import select
    async with consentcam_platform.db.sessions() as session:
        stored = {c.id: c for c in (await session.execute(select(Camera))).scalars()}
    assert connection_secret(consentcam_platform, stored[onvif["id"]])["password"] == ONVIF_PASSWORD + "-new"
    assert connection_secret(consentcam_platform, stored[rtsp["id"]]) == {"username": "viewer", "password": RTSP_PASSWORD}


async def test_credentials_in_urls_are_split_off_decoded_or_refused_without_echo(consentcam_client, consentcam_world, consentcam_platform):
    from consentcam.db.models import Camera
    from consentcam.services.consent import connection_secret
    from sqlalchemy import select

    owner = await consentcam_world.owner()

    async def register(url):
        return await consentcam_client.post("/api/v1/cameras", headers=owner.headers, json={
            "label": "NVR", "location": {"lat": 41.88, "lon": -87.63}, "retention_days": 7,
            "connection": {"kind": "rtsp", "url": url}})

    r = await register("rtsp://admin:p%2Fw%40rd@10.0.0.2:554/s")
    assert r.status == 201
    body = await r.text()
    assert "p%2Fw%40rd" not in body and "p/w@rd" not in body and "admin" not in body
    camera_id = (await r.json())["id"]
    async with consentcam_platform.db.sessions() as session:
        camera = (await session.execute(select(Camera).where(Camera.id == camera_id))).scalar_one()
    assert connection_secret(consentcam_platform, camera) == {"username": "admin", "password": "p/w@rd"}
    assert camera.connection["url"] == "rtsp://10.0.0.2:554/s"
    for url, secret in (("rtsp://admin:pa55/word@10.0.0.2/s", "pa55"), ("rtsp://10.0.0.2/cam?user=admin&password=hunter22", "hunter22"),
                        ("rtsp://u:zq9x#cret@h/s", "zq9x")):
        r = await register(url)
        assert r.status == 422, url
        problem = await r.json()
        assert problem["errors"][0]["loc"] == ["body", "connection", "url"]
        assert secret not in await r.text(), f"the refusal must not repeat the password ({url})"
