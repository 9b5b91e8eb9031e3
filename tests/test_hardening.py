"""Hostile input at the edge: rate limits on login, sign-up and link guessing; security headers; constant-time
comparison of the CSRF token; body limits; JSON refused under a content type a forged cross-site request would use;
and the OpenAPI gaps the schemathesis run found (each a regression test)."""

from __future__ import annotations

import hmac

import pytest
from consentcam.testing.world import PASSWORD

from .conftest import ok, problem

pytestmark = pytest.mark.usefixtures("fast_passwords")


async def test_a_successful_login_does_not_reset_the_address_count(api, consentcam_world, consentcam_platform):
    """Otherwise one valid account would let its holder reset the address's count between guesses at others."""
    owner = await consentcam_world.owner(login=False)
    for n in range(consentcam_platform.settings.login_max_failures - 1):
        await problem(await api.post("/api/v1/auth/login", json={"email": f"victim{n}@x.org", "password": "guess-guess"}), 401)
    await ok(await api.post("/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}))
    await problem(await api.post("/api/v1/auth/login", json={"email": "victim9@x.org", "password": "guess-guess"}), 401)
    response = await api.post("/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD})
    await problem(response, 429)
    assert int(response.headers["Retry-After"]) >= 1


async def test_sign_ups_are_rate_limited_per_address(api, consentcam_platform):
    consentcam_platform.settings.registrations_per_address = 3
    for n in range(3):
        await ok(await api.post("/api/v1/auth/owners", json={"email": f"new{n}@home.example.org", "password": PASSWORD,
                                                             "name": "New"}), 201)
    response = await api.post("/api/v1/auth/owners", json={"email": "new9@home.example.org", "password": PASSWORD,
                                                           "name": "New"})
    body = await problem(response, 429)
    assert "sign-ups" in body["detail"] and int(response.headers["Retry-After"]) >= 1


async def test_guessing_upload_links_is_rate_limited(api, consentcam_platform):
    consentcam_platform.settings.link_failures_per_address = 3
    await problem(await api.get("/api/v1/uploads/up_guess0"), 404)
    await problem(await api.put("/api/v1/uploads/up_guess1", data=b"x", headers={"Content-Type": "video/mp4"}), 404)
    await problem(await api.post("/api/v1/uploads/up_guess2/decline", json={}), 404)
    for method in ("GET", "PUT", "POST"):
        path = "/api/v1/uploads/up_guess3" + ("/decline" if method == "POST" else "")
        await problem(await api.request(method, path, json={} if method == "POST" else None), 429)


async def test_security_headers_on_answers_and_problems(api):
    for path, status in (("/api/v1/health", 200), ("/api/v1/no-such-thing", 404), ("/api/v1/me", 401)):
        response = await api.get(path)
        assert response.status == status
        h = response.headers
        assert h["X-Content-Type-Options"] == "nosniff" and h["X-Frame-Options"] == "DENY"
        assert h["Referrer-Policy"] == "no-referrer" and h["Cache-Control"] == "no-store"
        assert "default-src 'none'" in h["Content-Security-Policy"], path


async def test_the_csrf_token_is_compared_in_constant_time(api, consentcam_world, monkeypatch):
    compared = []
    real = hmac.compare_digest

    def spy(a, b):  # noqa: ANN001, ANN202
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    owner = await consentcam_world.owner(login=False)
    session = await ok(await api.post("/api/v1/auth/session", json={"email": owner.email, "password": PASSWORD}))
    await problem(await api.post("/api/v1/auth/logout", headers={"X-CSRF-Token": "wrong"}), 403)
    assert compared and compared[-1][1] == session["csrf_token"].encode()
    assert (await api.post("/api/v1/auth/logout", headers={"X-CSRF-Token": session["csrf_token"]})).status == 204


async def test_bodies_over_the_limit_are_refused_everywhere(api, consentcam_platform):
    big = b'{"email": "' + b"a" * (consentcam_platform.settings.json_body_limit + 10) + b'"}'
    for path in ("/api/v1/auth/owners", "/api/v1/auth/login", "/api/v1/auth/session", "/api/v1/uploads/up_x/decline"):
        await problem(await api.post(path, data=big, headers={"Content-Type": "application/json"}), 413)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
async def test_json_sent_as_a_simple_cross_site_type_is_refused(api, consentcam_world, content_type):
    """A page on another site can POST these without a preflight: a login CSRF against the cookie session."""
    owner = await consentcam_world.owner(login=False)
    body = f'{{"email": "{owner.email}", "password": "{PASSWORD}"}}'
    response = await api.post("/api/v1/auth/session", data=body, headers={"Content-Type": content_type})
    assert "application/json" in (await problem(response, 400))["detail"]
    assert "consentcam_session" not in response.cookies
    await ok(await api.post("/api/v1/auth/login", data=body, headers={"Content-Type": "application/json"}))


async def test_list_and_log_query_parameters_are_declared_and_checked(api, consentcam_world):
    doc = await ok(await api.get("/api/v1/openapi.json"))
    params = {(path, p["name"]) for path, item in doc["paths"].items() for op in item.values()
              for p in op.get("parameters", [])}
    for declared in (("/api/v1/requests", "limit"), ("/api/v1/requests", "offset"), ("/api/v1/requests", "status"),
                     ("/api/v1/cameras/{camera_id}/access-log", "before")):
        assert declared in params
    agency = await consentcam_world.agency()
    investigator = await consentcam_world.staff(agency, "investigator")
    for query in ("limit=abc", "limit=0", "offset=-1", "status=lost", "offset=99999999999999999999"):  # PostgreSQL: bigint
        await problem(await api.get(f"/api/v1/requests?{query}", headers=investigator.headers), 422)
    assert (await ok(await api.get("/api/v1/requests?limit=5&status=open", headers=investigator.headers)))["requests"] == []
    owner = await consentcam_world.owner()
    camera = await consentcam_world.camera(owner)
    for before in ("x", "-1", str(2**63)):
        await problem(await api.get(f"/api/v1/cameras/{camera}/access-log?before={before}", headers=owner.headers), 422)
    await ok(await api.get(f"/api/v1/cameras/{camera}/access-log?before=5", headers=owner.headers))


async def test_openapi_declares_what_the_server_answers(api):
    doc = await ok(await api.get("/api/v1/openapi.json"))
    progress = doc["paths"]["/api/v1/uploads/{token}"]["put"]["responses"]["202"]
    assert progress["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/UploadProgress"}
    assert "UploadProgress" in doc["components"]["schemas"]
    for path, item in doc["paths"].items():  # a suspended agency's credential is refused even on public operations
        for method, op in item.items():
            assert "403" in op["responses"], (method, path)


async def test_evidence_search_by_a_user_without_an_agency_is_forbidden(api, consentcam_world):
    """Was a 404 the document did not declare for the platform admin."""
    admin = await consentcam_world.staff(None, "admin")
    await problem(await api.get("/api/v1/evidence", headers=admin.headers), 403)
