"""Bad input over real HTTP: every refusal is a 4xx problem naming the field, and nothing is written. Then a small
generic fuzz of every operation with a JSON body: nothing answers 500."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from consentcam.db.models import Agency, AuditEvent, Camera, CameraShare, GrantVersion, User
from consentcam.http.api import ANY_USER, PUBLIC
from consentcam.http.keys import API
from consentcam.testing.world import square

from .conftest import count, locs, ok, problem

pytestmark = pytest.mark.usefixtures("fast_passwords")

TABLES = (Agency, User, Camera, GrantVersion, CameraShare, AuditEvent)
CAMERA = {"label": "Porch", "location": {"lat": 41.88, "lon": -87.63}, "retention_days": 7}


async def snapshot(platform) -> dict[str, int]:
    return {model.__tablename__: await count(platform, model) for model in TABLES}


def raw(text: str) -> dict[str, Any]:
    return {"data": text.encode(), "headers": {"Content-Type": "application/json"}}


def camera_with(**changes: Any) -> dict[str, Any]:
    return {"json": {**CAMERA, **changes}}


def located(lat: Any, lon: Any) -> dict[str, Any]:
    return camera_with(location={"lat": lat, "lon": lon})


def viewed(bearing: Any, fov: Any = 90, range_m: Any = 20) -> dict[str, Any]:
    return camera_with(view={"bearing_deg": bearing, "fov_deg": fov, "range_m": range_m})


# (name, request keyword arguments, status, a loc the problem must name)
CAMERA_CASES = [
    ("latitude above 90", located(90.0001, -87.63), 422, ["body", "location", "lat"]),
    ("latitude below -90", located(-91, -87.63), 422, ["body", "location", "lat"]),
    ("longitude above 180", located(41.88, 180.5), 422, ["body", "location", "lon"]),
    ("longitude below -180", located(41.88, -181), 422, ["body", "location", "lon"]),
    ("latitude as text", located("north", -87.63), 422, ["body", "location", "lat"]),
    ("latitude missing", camera_with(location={"lon": -87.63}), 422, ["body", "location", "lat"]),
    ("latitude NaN", raw('{"label": "Porch", "location": {"lat": NaN, "lon": -87.63}, "retention_days": 7}'), 422,
     ["body", "location", "lat"]),
    ("longitude Infinity", raw('{"label": "Porch", "location": {"lat": 41.88, "lon": -Infinity}, "retention_days": 7}'),
     422, ["body", "location", "lon"]),
    ("retention NaN", raw('{"label": "Porch", "location": {"lat": 41.88, "lon": -87.63}, "retention_days": NaN}'), 422,
     ["body", "retention_days"]),
    ("bearing above 360", viewed(360.5), 422, ["body", "view", "bearing_deg"]),
    ("bearing negative", viewed(-1), 422, ["body", "view", "bearing_deg"]),
    ("bearing NaN", raw('{"label": "Porch", "location": {"lat": 41.88, "lon": -87.63}, "retention_days": 7, '
                        '"view": {"bearing_deg": NaN, "fov_deg": 90, "range_m": 20}}'), 422, ["body", "view", "bearing_deg"]),
    ("field of view zero", viewed(90, fov=0), 422, ["body", "view", "fov_deg"]),
    ("range negative", viewed(90, range_m=-5), 422, ["body", "view", "range_m"]),
    ("negative retention", camera_with(retention_days=-1), 422, ["body", "retention_days"]),
    ("fractional retention", camera_with(retention_days=1.5), 422, ["body", "retention_days"]),
    ("unknown field", camera_with(colour="red"), 422, ["body", "colour"]),
    ("unknown nested field", camera_with(location={"lat": 41.88, "lon": -87.63, "alt": 3}), 422,
     ["body", "location", "alt"]),
    ("over-long label", camera_with(label="x" * 201), 422, ["body", "label"]),
    ("empty label", camera_with(label=""), 422, ["body", "label"]),
    ("blank label", camera_with(label="   "), 422, ["body", "label"]),
    ("unknown precision", camera_with(precision="street"), 422, ["body", "precision"]),
    ("unknown connection kind", camera_with(connection={"kind": "telnet"}), 422, ["body", "connection", "kind"]),
    ("over-long connection field", camera_with(connection={"kind": "rtsp", "url": "rtsp://" + "h" * 2100}), 422,
     ["body", "connection", "url"]),
    ("invalid JSON", raw('{"label": "Porch", '), 400, ["body"]),
    ("empty body", {"data": b""}, 400, ["body"]),
    ("JSON array", {"json": []}, 422, ["body"]),
    ("JSON string", {"json": "x"}, 422, ["body"]),
    ("form-encoded body", {"data": {"label": "Porch", "retention_days": "7"}}, 400, ["body"]),
    ("XML body", {"data": b"<camera><label>Porch</label></camera>", "headers": {"Content-Type": "application/xml"}},
     400, ["body"]),
    ("binary body", {"data": bytes(range(256)), "headers": {"Content-Type": "application/octet-stream"}}, 400, ["body"]),
]


async def test_bad_cameras_are_refused_naming_the_field_and_write_nothing(api, consentcam_world, consentcam_platform):
    owner = await consentcam_world.owner()
    camera = await ok(await api.post("/api/v1/cameras", headers=owner.headers, json=CAMERA), 201)
    before = await snapshot(consentcam_platform)
    for name, kwargs, status, loc in CAMERA_CASES:
        request = {**kwargs, "headers": {**owner.headers, **kwargs.get("headers", {})}}
        body = await problem(await api.post("/api/v1/cameras", **request), status)
        assert loc in locs(body), (name, body)
        if isinstance(kwargs.get("json"), dict):  # the same rules when changing a camera
            changes = {k: v for k, v in kwargs["json"].items() if CAMERA.get(k) != v}
            body = await problem(await api.patch(f"/api/v1/cameras/{camera['id']}", headers=owner.headers,
                                                 json=changes), status)
            assert loc in locs(body), (name, "PATCH", body)
    assert await snapshot(consentcam_platform) == before
    unchanged = await ok(await api.get(f"/api/v1/cameras/{camera['id']}", headers=owner.headers))
    assert unchanged["label"] == "Porch" and unchanged["location"] == CAMERA["location"] and unchanged["view"] is None


async def test_bad_owner_registrations_are_refused_and_write_nothing(api, consentcam_platform):
    good = {"email": "ada@example.org", "password": "a long enough password", "name": "Ada"}
    cases = [
        ({**good, "email": "not-an-email"}, ["body", "email"]),
        ({**good, "email": "a@" + "b" * 320 + ".org"}, ["body", "email"]),
        ({**good, "password": "short"}, ["body", "password"]),
        ({**good, "password": "p" * 201}, ["body", "password"]),
        ({**good, "name": "n" * 201}, ["body", "name"]),
        ({**good, "phone": "call me maybe"}, ["body", "phone"]),
        ({**good, "notify": {"webhook_url": "ftp://example.org/hook"}}, ["body", "notify", "webhook_url"]),
        ({**good, "notify": {"carrier_pigeon": True}}, ["body", "notify", "carrier_pigeon"]),
        ({**good, "role": "admin"}, ["body", "role"]),  # nobody registers themselves into an agency role
        ({**good, "agency_id": str(uuid.uuid4())}, ["body", "agency_id"]),
        ({k: v for k, v in good.items() if k != "name"}, ["body", "name"]),
    ]
    before = await snapshot(consentcam_platform)
    for payload, loc in cases:
        body = await problem(await api.post("/api/v1/auth/owners", json=payload), 422)
        assert loc in locs(body), (payload, body)
    assert await snapshot(consentcam_platform) == before


async def test_bad_grants_are_refused_and_write_nothing(api, consentcam_world, consentcam_platform):
    owner = await consentcam_world.owner()
    camera = await consentcam_world.camera(owner, grant={"map": True})
    cases = [
        ({"live": "sometimes"}, ["body", "live"]),
        ({"map": "yes please"}, ["body", "map"]),
        ({"share_with": [str(uuid.uuid4()) for _ in range(51)]}, ["body", "share_with"]),
        ({"share_with": ["a" * 37]}, ["body", "share_with", 0]),
        ({"share_with": "everyone"}, ["body", "share_with"]),
        ({"expires_at": "tomorrow"}, ["body", "expires_at"]),
        ({"expires_at": "2999-01-01T00:00:00"}, ["body", "expires_at"]),  # no offset: ambiguous
        ({"scope": "all"}, ["body", "scope"]),
    ]
    before = await snapshot(consentcam_platform)
    for payload, loc in cases:
        body = await problem(await api.put(f"/api/v1/cameras/{camera}/grants", headers=owner.headers, json=payload), 422)
        assert loc in locs(body), (payload, body)
    assert await snapshot(consentcam_platform) == before


def ring(*points: tuple[float, float]) -> list[list[float]]:
    return [list(p) for p in points]


BOW_TIE = {"type": "Polygon", "coordinates": [ring((-87.64, 41.87), (-87.62, 41.89), (-87.62, 41.87), (-87.64, 41.89),
                                                   (-87.64, 41.87))]}
JURISDICTION_CASES = [
    ("a point", {"type": "Point", "coordinates": [-87.63, 41.88]}, ["body", "jurisdiction", "type"], "Polygon"),
    ("a line", {"type": "LineString", "coordinates": [[-87.63, 41.88], [-87.62, 41.89]]},
     ["body", "jurisdiction", "type"], "Polygon"),
    ("no type", {"coordinates": square(-87.63, 41.88, 0.01)["coordinates"]}, ["body", "jurisdiction", "type"], "Polygon"),
    ("open ring", {"type": "Polygon", "coordinates": [ring((-87.64, 41.87), (-87.62, 41.87), (-87.62, 41.89),
                                                           (-87.64, 41.89), (-87.64, 41.88))]},
     ["body", "jurisdiction", "coordinates", 0], "end where it starts"),
    ("too few points", {"type": "Polygon", "coordinates": [ring((-87.64, 41.87), (-87.62, 41.87), (-87.64, 41.87))]},
     ["body", "jurisdiction", "coordinates", 0], "four positions"),
    ("no rings", {"type": "Polygon", "coordinates": []}, ["body", "jurisdiction", "coordinates"], "linear rings"),
    ("latitude out of range", {"type": "Polygon", "coordinates": [ring((-87.64, 41.87), (-87.62, 41.87), (-87.62, 95),
                                                                       (-87.64, 41.87))]},
     ["body", "jurisdiction", "coordinates", 0, 2, "lat"], "latitude"),
    ("position as text", {"type": "Polygon", "coordinates": [["a", "b", "c", "d"]]},
     ["body", "jurisdiction", "coordinates", 0, 0], "position"),
    ("bow-tie", BOW_TIE, ["body", "jurisdiction", "coordinates"], "cross each other at longitude -87.630000, latitude 41.880000"),
    ("two features", {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": square(-87.63, 41.88, 0.01)},
        {"type": "Feature", "properties": {}, "geometry": square(-87.53, 41.88, 0.01)}]},
     ["body", "jurisdiction"], "exactly one"),
    ("empty FeatureCollection", {"type": "FeatureCollection", "features": []}, ["body", "jurisdiction"], "exactly one"),
    ("feature of a bow-tie", {"type": "Feature", "properties": {}, "geometry": BOW_TIE},
     ["body", "jurisdiction", "geometry", "coordinates"], "cross"),
    ("overlapping multipolygon", {"type": "MultiPolygon", "coordinates": [
        square(-87.63, 41.88, 0.01)["coordinates"], square(-87.625, 41.88, 0.01)["coordinates"]]},
     ["body", "jurisdiction"], "longitude"),
    ("not an object", "Polygon((0 0, 1 0, 1 1, 0 0))", ["body", "jurisdiction"], ""),
]


async def test_malformed_jurisdictions_are_refused_and_write_nothing(api, consentcam_world, consentcam_platform):
    admin = await consentcam_world.staff(None, "admin")
    before = await snapshot(consentcam_platform)
    for name, jurisdiction, loc, words in JURISDICTION_CASES:
        body = await problem(await api.post("/api/v1/agencies", headers=admin.headers,
                                            json={"name": f"PD {name}", "jurisdiction": jurisdiction}), 422)
        assert loc in locs(body), (name, body)
        assert words in body["detail"] and words in " ".join(e["msg"] for e in body["errors"]), (name, body)
    for extra, loc in (({"max_area_km2": -1}, ["body", "max_area_km2"]), ({"name": "n" * 201}, ["body", "name"]),
                       ({"max_window_hours": float("inf")}, ["body", "max_window_hours"])):
        payload = {"name": "Fine PD", "jurisdiction": square(-87.63, 41.88, 0.01), **extra}
        body = await problem(await api.post("/api/v1/agencies", headers={**admin.headers, "Content-Type": "application/json"},
                                            data=json.dumps(payload), params=None), 422)
        assert loc in locs(body), (extra, body)
    assert await snapshot(consentcam_platform) == before


async def test_oversized_body_is_413(api, consentcam_world, consentcam_platform, consentcam_settings):
    owner = await consentcam_world.owner()
    before = await snapshot(consentcam_platform)
    padding = "x" * (consentcam_settings.json_body_limit + 10)
    await problem(await api.post("/api/v1/cameras", headers=owner.headers, json={**CAMERA, "label": padding}), 413)
    assert await snapshot(consentcam_platform) == before


# --- a small generic fuzz -----------------------------------------------------------------------------

WRONG_VALUES: list[Any] = [None, True, -1, 1e308, "x", "x" * 5000, "a\x00b", [], {}, [[[[]]]], {"$ref": "#/x"}, {"\x00": 1}]
SHAPES: list[bytes] = [b"", b"{}", b"[]", b'"x"', b"1", b"null", b"{", b"\xff\xfe", b"[" * 5000 + b"]" * 5000,
                       b'{"a":' * 150 + b"1" + b"}" * 150, json.dumps({"a" * 1000: "b" * 100_000}).encode()]
ROLE_ORDER = ("owner", "investigator", "supervisor", "admin", "auditor")


def _schema(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


async def test_fuzz_every_json_body_never_500(api, consentcam_world):
    w = consentcam_world
    agency = await w.agency()
    people = {"owner": await w.owner(), "admin": await w.staff(None, "admin")}
    for role in ("investigator", "supervisor", "auditor"):
        people[role] = await w.staff(agency, role)
    camera = await w.camera(people["owner"], grant={"map": True, "requests": True})
    doc = await ok(await api.get("/api/v1/openapi.json"))
    roles = {op.operation_id: op.roles for op in api.server.app[API].operations}
    params = {"camera_id": camera, "agency_id": agency}

    tried = 0
    for path, methods in doc["paths"].items():
        for method, item in methods.items():
            content = item.get("requestBody", {}).get("content", {})
            if "application/json" not in content:
                continue
            allowed = roles[item["operationId"]]
            role = "owner" if allowed in (PUBLIC, ANY_USER) else next(r for r in ROLE_ORDER if r in allowed)
            headers = {**people[role].headers, "Content-Type": "application/json"}
            url = path
            for name in [p["name"] for p in item.get("parameters", []) if p["in"] == "path"]:
                url = url.replace("{" + name + "}", params.get(name, str(uuid.uuid4())))
            schema = _schema(doc, content["application/json"]["schema"])
            bodies = list(SHAPES)
            for prop in schema.get("properties", {}):
                bodies += [json.dumps({prop: value}).encode() for value in WRONG_VALUES]
            for body in bodies:
                response = await api.request(method.upper(), url, headers=headers, data=body)
                assert response.status < 500, (method, path, body[:200], await response.text())
                tried += 1
    assert tried > 100


async def test_nul_characters_are_refused_everywhere_and_write_nothing(api, consentcam_world, consentcam_platform):
    """PostgreSQL cannot store a NUL character; no caller needs one. Each is a 4xx naming where, never a 500."""
    owner = await consentcam_world.owner()
    investigator = await consentcam_world.staff(await consentcam_world.agency(), "investigator")
    admin = await consentcam_world.staff(None, "admin")
    camera = await consentcam_world.camera(owner)
    before = await snapshot(consentcam_platform)
    await problem(await api.get("/api/v1/cameras/%00", headers=owner.headers), 404)
    await problem(await api.put(f"/api/v1/cameras/{camera}%00/grants", headers=owner.headers, json={}), 404)
    body = await problem(await api.get("/api/v1/map/cameras", headers=investigator.headers,
                                       params={"bbox": "1,2,3,4\x00"}), 422)
    assert ["query", "bbox"] in locs(body)
    body = await problem(await api.get("/api/v1/requests", headers=investigator.headers, params={"status": "open\x00"}), 422)
    assert ["query", "status"] in locs(body)
    cases = [
        (owner, "POST", "/api/v1/cameras", {**CAMERA, "label": "Porch\x00"}, ["body", "label"]),
        (owner, "PATCH", f"/api/v1/cameras/{camera}", {"connection": {"kind": "rtsp", "url": "rtsp://h/\x00"}},
         ["body", "connection", "url"]),
        (None, "POST", "/api/v1/auth/owners", {"email": "nul@example.org", "password": "long enough password",
                                               "name": "N\x00L"}, ["body", "name"]),
        (None, "POST", "/api/v1/auth/login", {"email": "nul\x00@example.org", "password": "x"}, ["body", "email"]),
        (admin, "POST", "/api/v1/agencies", {"name": "NUL PD", "jurisdiction": {**square(-87.63, 41.88, 0.01),
                                                                                "note\x00": 1}},
         ["body", "jurisdiction", "note\x00"]),
    ]
    for who, method, path, payload, loc in cases:
        body = await problem(await api.request(method, path, json=payload, headers=who.headers if who else None), 422)
        assert loc in locs(body), (path, body)
    assert await snapshot(consentcam_platform) == before
