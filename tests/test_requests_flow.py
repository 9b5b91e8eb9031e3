"""Footage requests end to end over HTTP: fence, approval, emails through a real SMTP server, links, decline,
revocation, close; and the outbox's promise that no notification is lost."""

from __future__ import annotations

import re
from datetime import timedelta

from consentcam.db.models import Job, RequestItem
from consentcam.errors import Gone
from consentcam.services.requests import item_for_upload
from consentcam.workflows import make_worker
from sqlalchemy import func, select

CENTRE = (41.88, -87.63)  # lat, lon; the World's default agency square is centred here


def metres_north(lat: float, lon: float, m: float) -> tuple[float, float]:
    return lat + m / 111_132.0, lon


async def _setup(world, client, *, approval=True, owners=3):
    agency = await world.agency(require_approval=approval)
    investigator = await world.staff(agency, "investigator")
    supervisor = await world.staff(agency, "supervisor")
    people = []
    for i in range(owners):
        owner = await world.owner()
        lat, lon = metres_north(*CENTRE, 50 * i)
        camera = await world.camera(owner, lat, lon, grant={"map": True, "requests": True})
        people.append((owner, camera))
    return agency, investigator, supervisor, people


def _window(clock, hours_ago=3, length_h=1):
    end = clock.now() - timedelta(hours=hours_ago)
    return {"start": (end - timedelta(hours=length_h)).isoformat(), "end": end.isoformat()}


async def test_fence_approval_emails_links_decline_and_revocation(consentcam_client, consentcam_world, consentcam_platform,
                                                                  consentcam_clock, consentcam_smtp):
    p, client, world = consentcam_platform, consentcam_client, consentcam_world
    p.settings.smtp_host, p.settings.smtp_port = consentcam_smtp.host, consentcam_smtp.port
    agency, investigator, supervisor, people = await _setup(world, client)
    outsider = await world.owner()
    await world.camera(outsider, *metres_north(*CENTRE, 900), grant={"requests": True})  # outside the 300 m fence
    unwilling = await world.owner()
    await world.camera(unwilling, *metres_north(*CENTRE, 20), grant={"map": True, "requests": False})
    short_memory = await world.owner()
    await world.camera(short_memory, *metres_north(*CENTRE, 30), retention_days=0, grant={"requests": True})

    body = {"case_number": "2026-0042", "description": "Thefts from autos, 3 a.m.",
            "area": {"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 300}, "window": _window(consentcam_clock)}
    r = await client.post("/api/v1/requests", json=body, headers=investigator.headers)
    assert r.status == 201, await r.text()
    created = await r.json()
    assert created["status"] == "pending_approval" and created["matched"] == 3

    # Nobody is told anything before approval.
    assert await make_worker(p).drain() == 0
    assert consentcam_smtp.messages == []
    for owner, _ in people:
        inbox = await (await client.get("/api/v1/inbox", headers=owner.headers)).json()
        assert inbox["items"] == []

    # Only a supervisor of the same agency approves.
    r = await client.post(f"/api/v1/requests/{created['id']}/approve", headers=investigator.headers)
    assert r.status == 403
    r = await client.post(f"/api/v1/requests/{created['id']}/approve", headers=supervisor.headers)
    assert r.status == 200 and (await r.json())["status"] == "open"
    assert await make_worker(p).drain() == 3

    links = {}
    for owner, camera in people:
        mails = consentcam_smtp.to(owner.email)
        assert len(mails) == 1, f"one message per owner per request, got {len(mails)}"
        text = consentcam_smtp.body(mails[0])
        assert "2026-0042" in text and "Thefts from autos" in text
        found = re.findall(r"PUT (http://consentcam\.test/api/v1/uploads/(up_[0-9a-f]{64}))", text)
        assert len(found) == 1
        links[owner.id] = found[0][1]
        # The inbox shows the same link and the request, never another owner's details.
        inbox = (await (await client.get("/api/v1/inbox", headers=owner.headers)).json())["items"]
        assert [i["camera_id"] for i in inbox] == [camera]
        assert inbox[0]["upload_url"].endswith(links[owner.id])
        for other, _ in people:
            if other.id != owner.id:
                assert other.email not in str(inbox) and other.email not in text
    for person in (outsider, unwilling, short_memory):
        assert consentcam_smtp.to(person.email) == []

    (a, cam_a), (b, cam_b), (c, cam_c) = people
    # Owner B declines through the link; owner C revokes; A's link still works.
    r = await client.post(f"/api/v1/uploads/{links[b.id]}/decline", json={"reason": "nothing recorded"})
    assert r.status == 200 and (await r.json())["status"] == "declined"
    r = await client.delete(f"/api/v1/cameras/{cam_c}/grants", headers=c.headers)
    assert r.status == 200
    target = await item_for_upload(p, links[a.id])
    assert target.camera_id == cam_a
    for owner in (b, c):
        try:
            await item_for_upload(p, links[owner.id])
        except Gone:
            pass
        else:
            raise AssertionError("a declined or revoked item's link must answer 410")
    r = await client.post(f"/api/v1/uploads/{links[c.id]}/decline")
    assert r.status == 410 and r.content_type == "application/problem+json"

    detail = await (await client.get(f"/api/v1/requests/{created['id']}", headers=investigator.headers)).json()
    statuses = {i["camera_id"]: i["status"] for i in detail["items"]}
    assert statuses == {cam_a: "notified", cam_b: "declined", cam_c: "cancelled"}
    assert "email" not in str(detail)

    # Another agency cannot see the request at all.
    other = await world.agency(name="Elsewhere PD", lon=-87.0, lat=41.0)
    stranger = await world.staff(other, "investigator")
    r = await client.get(f"/api/v1/requests/{created['id']}", headers=stranger.headers)
    assert r.status == 404

    # Closing cancels what is still open; the last link dies too.
    r = await client.post(f"/api/v1/requests/{created['id']}/close", headers=investigator.headers)
    assert (await r.json())["status"] == "closed"
    try:
        await item_for_upload(p, links[a.id])
    except Gone:
        pass
    else:
        raise AssertionError("closing the request must kill its links")

    # Every state change is in the owner's access log.
    log = await (await client.get(f"/api/v1/cameras/{cam_c}/access-log", headers=c.headers)).json()
    actions = [e["action"] for e in log["events"]]
    assert "request.opened" in actions and "items.cancelled" in actions and "grant.revoked" in actions


async def test_without_approval_owners_are_asked_at_once_and_links_expire(consentcam_client, consentcam_world,
                                                                          consentcam_platform, consentcam_clock):
    p, client = consentcam_platform, consentcam_client
    agency, investigator, _, people = await _setup(consentcam_world, client, approval=False, owners=1)
    body = {"case_number": "X1", "description": "d", "window": _window(consentcam_clock),
            "area": {"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 100}}
    created = await (await client.post("/api/v1/requests", json=body, headers=investigator.headers)).json()
    assert created["status"] == "open" and created["matched"] == 1
    owner, camera = people[0]
    inbox = (await (await client.get("/api/v1/inbox", headers=owner.headers)).json())["items"]
    token = inbox[0]["upload_url"].rsplit("/", 1)[1]
    assert (await item_for_upload(p, token)).camera_id == camera
    consentcam_clock.advance(timedelta(days=15).total_seconds())  # past the default 14-day link
    try:
        await item_for_upload(p, token)
    except Gone:
        pass
    else:
        raise AssertionError("an expired link must answer 410")
    from consentcam.services.requests import sweep

    assert (await sweep(p))["expired"] == 1
    colleague = await consentcam_world.staff(agency, "investigator")  # the first one's token expired with the jump
    detail = await (await client.get(f"/api/v1/requests/{created['id']}", headers=colleague.headers)).json()
    assert detail["items"][0]["status"] == "expired"


async def test_a_polygon_request_opens_at_once_without_approval(consentcam_client, consentcam_world, consentcam_clock):
    """Found by the consent machine: the polygon a request stores was re-read in the same transaction with tuples
    for coordinates, so every polygon request of an agency without approval was refused."""
    client = consentcam_client
    _, investigator, _, people = await _setup(consentcam_world, client, approval=False, owners=2)
    lat, lon = CENTRE
    d = 0.002  # ~200 m: holds both cameras (0 and 50 m north of the centre)
    ring = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]]
    body = {"case_number": "P1", "description": "d", "window": _window(consentcam_clock),
            "area": {"type": "Polygon", "coordinates": [ring]}}
    response = await client.post("/api/v1/requests", json=body, headers=investigator.headers)
    created = await response.json()
    assert response.status == 201 and created["status"] == "open" and created["matched"] == 2, created


async def test_grant_expiry_cancels_items_and_kills_links(consentcam_client, consentcam_world, consentcam_platform,
                                                          consentcam_clock):
    p, client, world = consentcam_platform, consentcam_client, consentcam_world
    agency = await world.agency(require_approval=False)
    investigator = await world.staff(agency, "investigator")
    owner = await world.owner()
    expires = consentcam_clock.now() + timedelta(hours=1)
    camera = await world.camera(owner, *CENTRE, grant={"requests": True, "expires_at": expires})
    body = {"case_number": "X2", "description": "d", "window": _window(consentcam_clock),
            "area": {"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 100}}
    created = await (await client.post("/api/v1/requests", json=body, headers=investigator.headers)).json()
    assert created["matched"] == 1
    inbox = (await (await client.get("/api/v1/inbox", headers=owner.headers)).json())["items"]
    token = inbox[0]["upload_url"].rsplit("/", 1)[1]
    consentcam_clock.advance(2 * 3600)
    try:
        await item_for_upload(p, token)
    except Gone as exc:
        assert "consent" in exc.detail
    else:
        raise AssertionError("a lapsed grant must kill the link at once, before any sweep")
    from consentcam.services.requests import sweep

    assert (await sweep(p))["cancelled"] == 1
    detail = await (await client.get(f"/api/v1/requests/{created['id']}", headers=investigator.headers)).json()
    assert detail["items"] == [{**detail["items"][0], "camera_id": camera, "status": "cancelled"}]


async def test_notifications_survive_a_down_mail_server(consentcam_client, consentcam_world, consentcam_platform,
                                                        consentcam_clock, consentcam_smtp):
    """The outbox never loses a notification: refused deliveries are retried with backoff until they land."""
    p, client = consentcam_platform, consentcam_client
    p.settings.smtp_host, p.settings.smtp_port = consentcam_smtp.host, consentcam_smtp.port
    agency, investigator, _, people = await _setup(consentcam_world, client, approval=False, owners=2)
    consentcam_smtp.refuse = True
    body = {"case_number": "X3", "description": "d", "window": _window(consentcam_clock),
            "area": {"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 200}}
    assert (await client.post("/api/v1/requests", json=body, headers=investigator.headers)).status == 201
    worker = make_worker(p)
    assert await worker.drain() == 2
    async with p.db.sessions() as session:
        jobs = (await session.execute(select(Job).where(Job.kind == "notify.request"))).scalars().all()
    assert [j.status for j in jobs] == ["pending", "pending"] and all("451" in (j.last_error or "") for j in jobs)
    consentcam_smtp.refuse = False
    assert await worker.drain() == 0  # backoff: not yet due
    consentcam_clock.advance(60)
    assert await worker.drain() == 2
    for owner, _ in people:
        assert len(consentcam_smtp.to(owner.email)) == 1
    async with p.db.sessions() as session:
        done = (await session.execute(select(func.count()).select_from(Job).where(Job.status == "done"))).scalar_one()
        assert done == 2


async def test_webhook_channel_signs_and_a_receiver_can_verify(consentcam_client, consentcam_world, consentcam_platform,
                                                               consentcam_clock, aiohttp_server):
    from aiohttp import web
    from consentcam.channels import verify_webhook

    received = []

    async def hook(request):
        received.append((await request.read(), request.headers["ConsentCam-Signature"], request.headers["Idempotency-Key"]))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    p, client, world = consentcam_platform, consentcam_client, consentcam_world
    agency = await world.agency(require_approval=False)
    investigator = await world.staff(agency, "investigator")
    owner = await world.owner(email=False, webhook_url=f"http://127.0.0.1:{server.port}/hook")
    await world.camera(owner, *CENTRE, grant={"requests": True})
    body = {"case_number": "X4", "description": "d", "window": _window(consentcam_clock),
            "area": {"center": {"lat": CENTRE[0], "lon": CENTRE[1]}, "radius_m": 100}}
    assert (await client.post("/api/v1/requests", json=body, headers=investigator.headers)).status == 201
    assert await make_worker(p).drain() == 1
    assert len(received) == 1
    payload, signature, key = received[0]
    async with p.db.sessions() as session:
        from consentcam.db.models import User

        stored = (await session.get(User, owner.id)).webhook_secret
    assert not stored.startswith("whsec_"), "the signing secret is kept encrypted at rest"
    secret = p.keyring.decrypt(stored)
    assert verify_webhook(secret, payload, signature)
    assert not verify_webhook(secret, payload + b" ", signature), "a changed body must not verify"
    assert not verify_webhook("whsec_wrong", payload, signature)
    t = int(signature.split(",")[0][2:])
    assert not verify_webhook(secret, payload, signature, now=t + 3600), "a replay an hour later must not verify"
    assert key.startswith("notify.request:")
    async with p.db.sessions() as session:
        count = (await session.execute(select(func.count()).select_from(RequestItem))).scalar_one()
    assert count == 1
