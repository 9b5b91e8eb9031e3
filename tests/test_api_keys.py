"""API keys: created by an agency admin with scopes, shown once, stored as a digest, limited to their scopes,
audited like users, revocable at once, and refused while the agency is suspended."""

from consentcam.db.models import ApiKey, AuditEvent
from consentcam.security import digest
from consentcam.services.accounts import set_suspended
from sqlalchemy import select


async def test_key_lifecycle_scopes_and_audit(consentcam_client, consentcam_world, consentcam_platform):
    client, world, p = consentcam_client, consentcam_world, consentcam_platform
    agency = await world.agency()
    other = await world.agency(name="Other PD", lon=-80.0, lat=40.0)
    admin = await world.staff(agency, "admin")
    investigator = await world.staff(agency, "investigator")
    other_admin = await world.staff(other, "admin")
    owner = await world.owner()
    camera = await world.camera(owner, grant={"map": True})

    body = {"label": "GIS sync", "scopes": ["map:read"]}
    assert (await client.post(f"/api/v1/agencies/{agency}/api-keys", json=body, headers=investigator.headers)).status == 403
    assert (await client.post(f"/api/v1/agencies/{agency}/api-keys", json=body, headers=other_admin.headers)).status == 403
    r = await client.post(f"/api/v1/agencies/{agency}/api-keys", json={"label": "x", "scopes": ["root"]}, headers=admin.headers)
    assert r.status == 422 and (await r.json())["errors"][0]["loc"][:2] == ["body", "scopes"]
    r = await client.post(f"/api/v1/agencies/{agency}/api-keys", json=body, headers=admin.headers)
    assert r.status == 201, await r.text()
    created = await r.json()
    secret = created["key"]
    assert secret.startswith("cck_") and created["scopes"] == ["map:read"]

    async with p.db.sessions() as session:
        stored = (await session.execute(select(ApiKey))).scalar_one()
    assert stored.key_hash == digest(secret) and secret not in str(stored.__dict__)
    listing = await (await client.get(f"/api/v1/agencies/{agency}/api-keys", headers=admin.headers)).text()
    assert secret not in listing and created["id"] in listing

    key = {"Authorization": f"Bearer {secret}"}
    r = await client.get("/api/v1/map/cameras", headers=key)
    assert r.status == 200
    assert [f["id"] for f in (await r.json())["features"]] == [camera]
    for method, path in (("GET", "/api/v1/requests"), ("GET", "/api/v1/audit/verify"), ("GET", "/api/v1/me"),
                         ("POST", "/api/v1/cameras"), ("GET", f"/api/v1/agencies/{agency}/api-keys")):
        r = await client.request(method, path, headers=key, json={} if method == "POST" else None)
        assert r.status == 403, (method, path, r.status)

    async with p.db.sessions() as session:
        event = (await session.execute(select(AuditEvent).where(AuditEvent.action == "map.read"))).scalars().all()[-1]
    assert event.actor_role == "api_key" and event.actor_id == created["id"] and event.camera_ids == [camera]
    log = await (await client.get(f"/api/v1/cameras/{camera}/access-log", headers=owner.headers)).json()
    assert any(e["action"] == "map.read" and e["actor_role"] == "api_key" for e in log["events"])

    await set_suspended(p, admin.actor, agency, True)
    r = await client.get("/api/v1/map/cameras", headers=key)
    assert r.status == 403 and "suspended" in (await r.json())["detail"]
    await set_suspended(p, admin.actor, agency, False)
    assert (await client.get("/api/v1/map/cameras", headers=key)).status == 200

    assert (await client.delete(f"/api/v1/agencies/{agency}/api-keys/{created['id']}", headers=admin.headers)).status == 204
    assert (await client.get("/api/v1/map/cameras", headers=key)).status == 401
