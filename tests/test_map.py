"""The agency map over real HTTP: who sees which camera, where, and for how long."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from pyproj import Geod

from .conftest import locs, ok, problem

pytestmark = pytest.mark.usefixtures("fast_passwords")

GEOD = Geod(ellps="WGS84")
MAP = "/api/v1/map/cameras"
# Agency "home" is a square of +-0.02 deg around (-87.63, 41.88); "away" is the same around (-87.53, 41.88).
INSIDE = (41.8812345, -87.6298765)  # (lat, lon), deliberately not on a block-grid centre
OUTSIDE = (41.8823456, -87.5311111)  # inside "away", outside "home"


async def features(api, person, bbox: str | None = None) -> dict[str, dict]:
    body = await ok(await api.get(MAP, headers=person.headers, params={"bbox": bbox} if bbox else None))
    assert body["type"] == "FeatureCollection"
    return {f["id"]: f for f in body["features"]}


def metres(a: tuple[float, float], b_lonlat: list[float]) -> float:
    _, _, distance = GEOD.inv(a[1], a[0], b_lonlat[0], b_lonlat[1])
    return distance


@pytest.fixture
async def city(consentcam_world):
    w = consentcam_world
    home, away = await w.agency("Home PD"), await w.agency("Away PD", lon=-87.53)
    owner = await w.owner()
    return w, home, away, owner


async def test_only_map_granted_cameras_of_the_jurisdiction_or_shared(api, city):
    w, home, away, owner = city
    shown = await w.camera(owner, *INSIDE, grant={"map": True})
    no_map = await w.camera(owner, *INSIDE, grant={"map": False, "requests": True})
    never_granted = await w.camera(owner, *INSIDE)
    outside = await w.camera(owner, *OUTSIDE, grant={"map": True})
    shared_in = await w.camera(owner, *OUTSIDE, grant={"map": True, "share_with": [home]})
    home_investigator, away_investigator = await w.staff(home, "investigator"), await w.staff(away, "investigator")

    assert set(await features(api, home_investigator)) == {shown, shared_in}
    assert set(await features(api, away_investigator)) == {outside, shared_in}
    for role in ("supervisor", "auditor", "admin"):  # every role of the agency sees the same map
        assert set(await features(api, await w.staff(home, role))) == {shown, shared_in}
    assert no_map and never_granted  # registered, yet on nobody's map


async def test_block_precision_is_coarsened_consistently_and_exact_is_exact(api, city):
    w, home, _, owner = city
    block = await w.camera(owner, *INSIDE, precision="block", grant={"map": True},
                           view={"bearing_deg": 90, "fov_deg": 60, "range_m": 30})
    exact = await w.camera(owner, INSIDE[0] + 0.002, INSIDE[1], precision="exact", grant={"map": True},
                           view={"bearing_deg": 90, "fov_deg": 60, "range_m": 30})
    investigator = await w.staff(home, "investigator")
    first, second = await features(api, investigator), await features(api, investigator)

    coarse = first[block]["geometry"]["coordinates"]
    assert second[block]["geometry"]["coordinates"] == coarse  # repeated reads reveal nothing more
    assert coarse != [INSIDE[1], INSIDE[0]]
    assert 1 < metres(INSIDE, coarse) <= 160
    assert first[block]["properties"]["precision"] == "block" and first[block]["properties"]["accuracy_m"] > 0
    assert "view" not in first[block]["properties"]  # a bearing would point at the house

    assert first[exact]["geometry"]["coordinates"] == [INSIDE[1], INSIDE[0] + 0.002]
    assert first[exact]["properties"]["view"]["bearing_deg"] == 90


async def test_map_carries_no_owner_contact(api, city):
    w, home, _, _ = city
    email, name, phone = "grace.hopper@home.example.org", "Grace Brewster Hopper", "+1 312 555 0199"
    owner_id = (await ok(await api.post("/api/v1/auth/owners", json={
        "email": email, "password": "a long enough password", "name": name, "phone": phone,
        "notify": {"email": True, "sms": True, "webhook_url": "https://hooks.home.example.org/cam"}}), 201))["id"]
    token = (await ok(await api.post("/api/v1/auth/login", json={"email": email, "password": "a long enough password"})))["token"]
    for precision in ("exact", "block"):
        await ok(await api.post("/api/v1/cameras", headers={"Authorization": f"Bearer {token}"}, json={
            "label": "Porch", "location": {"lat": INSIDE[0], "lon": INSIDE[1]}, "retention_days": 7,
            "precision": precision}), 201)
    for camera in await ok(await api.get("/api/v1/cameras", headers={"Authorization": f"Bearer {token}"})):
        await ok(await api.put(f"/api/v1/cameras/{camera['id']}/grants", headers={"Authorization": f"Bearer {token}"},
                               json={"map": True, "requests": True}))
    response = await api.get(MAP, headers=(await w.staff(home, "investigator")).headers)
    text = await response.text()
    assert len(json.loads(text)["features"]) == 2
    for contact in (email, "grace", "Hopper", "555 0199", "+1 312", "hooks.home", owner_id):
        assert contact.lower() not in text.lower()


async def test_expiry_applies_to_the_very_next_read(api, city, consentcam_clock):
    w, home, _, owner = city
    expires = consentcam_clock.now() + timedelta(seconds=60)
    camera = await w.camera(owner, *INSIDE, grant={"map": True, "expires_at": expires})
    investigator = await w.staff(home, "investigator")
    consentcam_clock.advance(59)
    assert camera in await features(api, investigator)
    consentcam_clock.advance(1)  # exactly at expires_at the grant has lapsed
    assert camera not in await features(api, investigator)
    assert camera not in await features(api, investigator, "-87.7,41.8,-87.5,41.9")


async def test_revocation_and_pause_apply_to_the_next_read(api, city):
    w, home, away, owner = city
    revoked = await w.camera(owner, *INSIDE, grant={"map": True})
    paused = await w.camera(owner, *INSIDE, grant={"map": True})
    unshared = await w.camera(owner, *OUTSIDE, grant={"map": True, "share_with": [home]})
    investigator = await w.staff(home, "investigator")
    assert set(await features(api, investigator)) == {revoked, paused, unshared}

    await ok(await api.delete(f"/api/v1/cameras/{revoked}/grants", headers=owner.headers))
    await ok(await api.patch(f"/api/v1/cameras/{paused}", headers=owner.headers, json={"status": "paused"}))
    await ok(await api.put(f"/api/v1/cameras/{unshared}/grants", headers=owner.headers, json={"map": True}))
    assert set(await features(api, investigator)) == set()
    assert set(await features(api, investigator, "-87.7,41.8,-87.5,41.9")) == set()

    await ok(await api.patch(f"/api/v1/cameras/{paused}", headers=owner.headers, json={"status": "active"}))
    assert set(await features(api, investigator)) == {paused}


async def test_removed_camera_leaves_the_map(api, city):
    w, home, _, owner = city
    camera = await w.camera(owner, *INSIDE, grant={"map": True})
    investigator = await w.staff(home, "investigator")
    assert camera in await features(api, investigator)
    assert (await api.delete(f"/api/v1/cameras/{camera}", headers=owner.headers)).status == 204
    assert camera not in await features(api, investigator)


async def test_bbox_filters_and_never_widens(api, city):
    w, home, _, owner = city
    west = await w.camera(owner, 41.88, -87.645, grant={"map": True})
    east = await w.camera(owner, 41.88, -87.615, grant={"map": True})
    far = await w.camera(owner, *OUTSIDE, grant={"map": True})  # not this agency's, even inside the bbox
    investigator = await w.staff(home, "investigator")
    assert set(await features(api, investigator, "-87.65,41.87,-87.63,41.89")) == {west}
    assert set(await features(api, investigator, "-87.63,41.87,-87.61,41.89")) == {east}
    assert set(await features(api, investigator, "-87.7,41.8,-87.5,41.95")) == {west, east}
    assert set(await features(api, investigator, "-87.6,41.87,-87.5,41.89")) == set()
    assert far


async def test_bad_bbox_is_422_naming_query_bbox(api, city):
    w, home, _, _ = city
    investigator = await w.staff(home, "investigator")
    for bbox in ("1,2,3", "a,b,c,d", "-87.6,41.9,-87.7,41.8", "-190,0,0,0", "0,-91,1,1", "nan,41,-87,42",
                 "inf,41,-87,42", "", "1,2,3,4,5", "x" * 300):
        body = await problem(await api.get(MAP, headers=investigator.headers, params={"bbox": bbox}), 422)
        assert ["query", "bbox"] in locs(body), bbox
    body = await problem(await api.get(MAP, headers=investigator.headers, params={"box": "1,2,3,4"}), 422)
    assert ["query", "box"] in locs(body)


async def test_owners_and_the_platform_admin_cannot_read_the_map(api, city):
    w, _, _, owner = city
    await w.camera(owner, *INSIDE, grant={"map": True})
    await problem(await api.get(MAP, headers=owner.headers), 403)
    await problem(await api.get(MAP, headers=(await w.staff(None, "admin")).headers), 403)
    await problem(await api.get(MAP), 401)
