"""Accounts over real HTTP: owner registration, login and its throttle, token expiry and logout, the admin API,
browser sessions with CSRF, and the kill switch."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from consentcam.db.models import Agency, User
from consentcam.services import accounts
from consentcam.testing.world import square

from .conftest import count, locs, ok, problem

pytestmark = pytest.mark.usefixtures("fast_passwords")

OWNER = {"email": "Ada@Example.org", "password": "a long enough password", "name": "Ada Owner",
         "phone": "+1 312 555 0100", "notify": {"email": True, "sms": False}}


async def register(api, **changes):
    return await api.post("/api/v1/auth/owners", json={**OWNER, **changes})


async def login(api, email, password):
    return await api.post("/api/v1/auth/login", json={"email": email, "password": password})


# --- owners and login ---------------------------------------------------------------------------------


async def test_owner_registers_and_logs_in(api, consentcam_clock, consentcam_settings):
    created = await ok(await register(api), 201)
    assert set(created) == {"id", "webhook_secret"} and created["webhook_secret"] is None  # no webhook, no secret

    body = await ok(await login(api, "ada@example.org", OWNER["password"]))  # email case does not matter
    assert body["token"] and body["user"]["id"] == created["id"]
    assert body["user"]["role"] == "owner" and body["user"]["agency_id"] is None
    expires = datetime.fromisoformat(body["expires_at"])
    assert expires == consentcam_clock.now() + timedelta(hours=consentcam_settings.token_hours)

    me = await ok(await api.get("/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"}))
    assert me["id"] == created["id"] and me["role"] == "owner"


async def test_duplicate_owner_email_is_409_naming_the_field(api, consentcam_platform):
    await ok(await register(api), 201)
    before = await count(consentcam_platform, User)
    body = await problem(await register(api, email="ADA@example.ORG", name="Someone else"), 409)
    assert ["body", "email"] in locs(body)
    assert await count(consentcam_platform, User) == before


async def test_failed_login_is_the_same_whether_or_not_the_email_exists(api):
    await ok(await register(api), 201)
    wrong_password = await login(api, OWNER["email"], "not the password at all")
    unknown_email = await login(api, "nobody@example.org", "not the password at all")
    a, b = await problem(wrong_password, 401), await problem(unknown_email, 401)
    assert a == b
    varying = {"Date"}
    assert {k: v for k, v in wrong_password.headers.items() if k not in varying} == \
        {k: v for k, v in unknown_email.headers.items() if k not in varying}


async def test_repeated_failures_are_slowed_then_released(api, consentcam_clock, consentcam_settings):
    await ok(await register(api), 201)
    for _ in range(consentcam_settings.login_max_failures):
        await problem(await login(api, OWNER["email"], "wrong password, again"), 401)
    throttled = await login(api, OWNER["email"], OWNER["password"])  # even the right password waits now
    await problem(throttled, 429)
    assert int(throttled.headers["Retry-After"]) >= 1
    consentcam_clock.advance(consentcam_settings.login_lockout_seconds + 0.01)
    await ok(await login(api, OWNER["email"], OWNER["password"]))


async def test_token_expires_after_token_hours(api, consentcam_world, consentcam_clock, consentcam_settings):
    owner = await consentcam_world.owner()
    await ok(await api.get("/api/v1/me", headers=owner.headers))
    consentcam_clock.advance(consentcam_settings.token_hours * 3600 - 1)
    await ok(await api.get("/api/v1/me", headers=owner.headers))
    consentcam_clock.advance(1)
    await problem(await api.get("/api/v1/me", headers=owner.headers), 401)


async def test_logout_revokes_the_token(api, consentcam_world):
    owner = await consentcam_world.owner()
    other = await consentcam_world.owner()
    assert (await api.post("/api/v1/auth/logout", headers=owner.headers)).status == 204
    await problem(await api.get("/api/v1/me", headers=owner.headers), 401)
    await ok(await api.get("/api/v1/me", headers=other.headers))  # only that token


async def test_unknown_or_missing_token_is_401(api):
    await problem(await api.get("/api/v1/me"), 401)
    await problem(await api.get("/api/v1/me", headers={"Authorization": "Bearer cc_not-a-token"}), 401)


async def test_cookie_session_needs_the_csrf_token_to_write(api, consentcam_world, consentcam_platform):
    owner = await consentcam_world.owner(login=False)
    secret, token, _ = await accounts.login(consentcam_platform, owner.email, "correct horse battery", "127.0.0.1",
                                            kind="cookie")
    cookie = {"Cookie": f"consentcam_session={secret}"}
    await ok(await api.get("/api/v1/me", headers=cookie))
    body = await problem(await api.post("/api/v1/auth/logout", headers=cookie), 403)
    assert "CSRF" in body["detail"]
    await problem(await api.post("/api/v1/auth/logout", headers={**cookie, "X-CSRF-Token": "guess"}), 403)
    await ok(await api.get("/api/v1/me", headers=cookie))  # the refused logout did nothing
    assert (await api.post("/api/v1/auth/logout", headers={**cookie, "X-CSRF-Token": token.csrf_token})).status == 204
    await problem(await api.get("/api/v1/me", headers=cookie), 401)


# --- the admin API ------------------------------------------------------------------------------------


async def test_platform_admin_creates_agency_and_its_users(api, consentcam_world):
    admin = await consentcam_world.staff(None, "admin")
    created = await ok(await api.post("/api/v1/agencies", headers=admin.headers, json={
        "name": "Metro PD", "jurisdiction": square(-87.63, 41.88, 0.02)}), 201)
    agency = await ok(await api.get(f"/api/v1/agencies/{created['id']}", headers=admin.headers))
    assert agency["name"] == "Metro PD" and agency["suspended"] is False
    assert agency["jurisdiction"]["type"] == "Polygon"

    user = await ok(await api.post(f"/api/v1/agencies/{created['id']}/users", headers=admin.headers, json={
        "email": "chief@metro.example.org", "role": "supervisor"}), 201)
    logged = await ok(await login(api, "chief@metro.example.org", user["password"]))
    assert logged["user"] == {"id": user["id"], "role": "supervisor", "agency_id": created["id"], "name": "chief"}

    # The same name twice is a conflict; an unknown agency has no users to create.
    await problem(await api.post("/api/v1/agencies", headers=admin.headers, json={
        "name": "Metro PD", "jurisdiction": square(-87.0, 41.0, 0.01)}), 409)
    await problem(await api.post("/api/v1/agencies/no-such-agency/users", headers=admin.headers, json={
        "email": "x@metro.example.org", "role": "investigator"}), 404)
    await problem(await api.post(f"/api/v1/agencies/{created['id']}/users", headers=admin.headers, json={
        "email": "chief@metro.example.org", "role": "investigator"}), 409)


async def test_agency_admin_creates_users_only_in_own_agency(api, consentcam_world, consentcam_platform):
    mine, theirs = await consentcam_world.agency(), await consentcam_world.agency(lon=-88.0)
    agency_admin = await consentcam_world.staff(mine, "admin")
    await ok(await api.post(f"/api/v1/agencies/{mine}/users", headers=agency_admin.headers,
                            json={"email": "new@mine.example.org", "role": "investigator"}), 201)
    before = await count(consentcam_platform, User)
    await problem(await api.post(f"/api/v1/agencies/{theirs}/users", headers=agency_admin.headers,
                                 json={"email": "new@theirs.example.org", "role": "admin"}), 403)
    await problem(await api.post("/api/v1/agencies", headers=agency_admin.headers,
                                 json={"name": "Rogue PD", "jurisdiction": square(-87.0, 41.0, 0.01)}), 403)
    await problem(await api.get(f"/api/v1/agencies/{theirs}", headers=agency_admin.headers), 404)
    assert await count(consentcam_platform, User) == before


async def test_investigator_and_owner_cannot_administer(api, consentcam_world, consentcam_platform):
    agency = await consentcam_world.agency()
    investigator = await consentcam_world.staff(agency, "investigator")
    owner = await consentcam_world.owner()
    users, agencies = await count(consentcam_platform, User), await count(consentcam_platform, Agency)
    for who in (investigator, owner):
        await problem(await api.post(f"/api/v1/agencies/{agency}/users", headers=who.headers,
                                     json={"email": "sneaky@example.org", "role": "admin"}), 403)
        await problem(await api.post("/api/v1/agencies", headers=who.headers,
                                     json={"name": "Sneaky PD", "jurisdiction": square(-87.0, 41.0, 0.01)}), 403)
        await problem(await api.post(f"/api/v1/agencies/{agency}/suspend", headers=who.headers), 403)
    assert (await count(consentcam_platform, User), await count(consentcam_platform, Agency)) == (users, agencies)


# --- the kill switch ----------------------------------------------------------------------------------


async def test_suspended_agency_is_refused_everywhere_until_resumed(api, consentcam_world):
    suspended, other = await consentcam_world.agency(), await consentcam_world.agency(lon=-88.0)
    admin = await consentcam_world.staff(None, "admin")
    people = [await consentcam_world.staff(suspended, role) for role in ("investigator", "auditor", "admin")]
    bystander = await consentcam_world.staff(other, "investigator")

    await ok(await api.post(f"/api/v1/agencies/{suspended}/suspend", headers=admin.headers))
    calls = [("GET", "/api/v1/me"), ("GET", "/api/v1/map/cameras"), ("GET", f"/api/v1/agencies/{suspended}"),
             ("GET", "/api/v1/audit/verify"), ("GET", "/api/v1/requests"), ("POST", "/api/v1/auth/logout")]
    for person in people:
        for method, path in calls:
            body = await problem(await api.request(method, path, headers=person.headers), 403)
            assert "suspended" in body["detail"] and body["type"].endswith("agency-suspended"), body
    await ok(await api.get("/api/v1/map/cameras", headers=bystander.headers))
    await ok(await api.get("/api/v1/me", headers=admin.headers))

    await ok(await api.post(f"/api/v1/agencies/{suspended}/resume", headers=admin.headers))
    for person in people:  # the same tokens work again; the refused logout revoked nothing
        await ok(await api.get("/api/v1/me", headers=person.headers))
    await ok(await api.get("/api/v1/map/cameras", headers=people[0].headers))


async def test_suspending_all_agencies_spares_owners_and_the_platform_admin(api, consentcam_world, consentcam_platform):
    a, b = await consentcam_world.agency(), await consentcam_world.agency(lon=-88.0)
    staff = [await consentcam_world.staff(a, "investigator"), await consentcam_world.staff(b, "supervisor")]
    owner, admin = await consentcam_world.owner(), await consentcam_world.staff(None, "admin")
    changed = await accounts.set_suspended(consentcam_platform, admin.actor, None, True, reason="audit finding 7")
    assert changed == 2
    for person in staff:
        body = await problem(await api.get("/api/v1/me", headers=person.headers), 403)
        assert "audit finding 7" in body["detail"]
    await ok(await api.get("/api/v1/me", headers=owner.headers))
    await ok(await api.get("/api/v1/me", headers=admin.headers))
    await accounts.set_suspended(consentcam_platform, admin.actor, None, False)
    for person in staff:
        await ok(await api.get("/api/v1/me", headers=person.headers))


async def test_suspending_an_unknown_agency_is_404(api, consentcam_world):
    admin = await consentcam_world.staff(None, "admin")
    await problem(await api.post("/api/v1/agencies/not-an-agency/suspend", headers=admin.headers), 404)


async def test_concurrent_failed_logins_are_all_counted_and_never_500(api, consentcam_settings):
    await ok(await register(api), 201)
    attempts = consentcam_settings.login_max_failures
    responses = await asyncio.gather(*[login(api, OWNER["email"], f"wrong password {i}") for i in range(attempts)])
    assert sorted(r.status for r in responses) == [401] * attempts
    await problem(await login(api, OWNER["email"], OWNER["password"]), 429)  # every failure was counted
