"""An owner chooses how they are told of requests, and sees the webhook signing secret once (at registration, or
when the URL changes or they rotate it), so that their receiver can check every delivery's signature."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from consentcam.channels import verify_webhook
from consentcam.workflows import make_worker

from .conftest import ok, problem

pytestmark = pytest.mark.usefixtures("fast_passwords")
CENTRE = (41.88, -87.63)


async def test_the_webhook_secret_is_shown_once_and_signs_what_the_owner_receives(
        api: Any, consentcam_world: Any, consentcam_platform: Any, consentcam_clock: Any, aiohttp_server: Any) -> None:
    received: list[tuple[bytes, str]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers["ConsentCam-Signature"]))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    url = f"http://127.0.0.1:{server.port}/hook"

    created = await ok(await api.post("/api/v1/auth/owners", json={
        "email": "hooked@home.example.org", "password": "a long password", "name": "Hooked",
        "notify": {"email": False, "webhook_url": url}}), 201)
    first = created["webhook_secret"]
    assert first.startswith("whsec_") and len(first) > 20
    plain = await ok(await api.post("/api/v1/auth/owners", json={
        "email": "plain@home.example.org", "password": "a long password", "name": "Plain"}), 201)
    assert plain["webhook_secret"] is None

    token = (await ok(await api.post("/api/v1/auth/login", json={"email": "hooked@home.example.org",
                                                                  "password": "a long password"})))["token"]
    me = {"Authorization": f"Bearer {token}"}
    shown = await ok(await api.get("/api/v1/me/notifications", headers=me))
    assert shown == {"email": False, "sms": False, "webhook_url": url, "webhook_secret_set": True, "webhook_secret": None}

    same = await ok(await api.put("/api/v1/me/notifications", headers=me, json={"email": True, "webhook_url": url}))
    assert same["email"] is True and same["webhook_secret"] is None, "an unchanged URL keeps its secret, unshown"
    rotated = await ok(await api.put("/api/v1/me/notifications", headers=me,
                                     json={"email": False, "webhook_url": url, "rotate_webhook_secret": True}))
    second = rotated["webhook_secret"]
    assert second and second != first

    # A request reaches the receiver signed with the secret the owner was shown last, and not with the old one.
    world = consentcam_world
    agency = await world.agency(require_approval=False)
    investigator = await world.staff(agency, "investigator")
    camera = await ok(await api.post("/api/v1/cameras", headers=me, json={
        "label": "Porch", "location": {"lat": CENTRE[0], "lon": CENTRE[1]}, "retention_days": 30}), 201)
    await ok(await api.put(f"/api/v1/cameras/{camera['id']}/grants", headers=me, json={"requests": True}))
    end = consentcam_clock.now().replace(microsecond=0)
    from datetime import timedelta

    await ok(await api.post("/api/v1/requests", headers=investigator.headers, json={
        "case_number": "WH-1", "description": "d", "area": {"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 80},
        "window": {"start": (end - timedelta(hours=2)).isoformat(), "end": (end - timedelta(hours=1)).isoformat()}}), 201)
    await make_worker(consentcam_platform).drain()
    assert len(received) == 1
    body, signature = received[0]
    assert verify_webhook(second, body, signature) and not verify_webhook(first, body, signature)

    removed = await ok(await api.put("/api/v1/me/notifications", headers=me, json={"email": True, "webhook_url": None}))
    assert removed["webhook_secret_set"] is False and removed["webhook_url"] is None


async def test_only_owners_choose_and_bad_urls_are_refused(api: Any, consentcam_world: Any) -> None:
    agency = await consentcam_world.agency()
    investigator = await consentcam_world.staff(agency, "investigator")
    await problem(await api.get("/api/v1/me/notifications", headers=investigator.headers), 403)
    await problem(await api.get("/api/v1/me/notifications"), 401)
    owner = await consentcam_world.owner()
    await problem(await api.put("/api/v1/me/notifications", headers=owner.headers,
                                json={"webhook_url": "file:///etc/passwd"}), 422)
