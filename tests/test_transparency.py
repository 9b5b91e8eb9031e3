"""The public transparency report: counts only, no login, nothing that names a camera, owner or case."""

from datetime import timedelta


async def test_public_report_counts_requests_items_and_revocations(consentcam_client, consentcam_world, consentcam_clock):
    world, client = consentcam_world, consentcam_client
    agency = await world.agency(name="Metro PD", require_approval=False, policy_text="We never use face recognition.")
    investigator = await world.staff(agency, "investigator")
    owners = [await world.owner() for _ in range(3)]
    cameras = [await world.camera(o, 41.88 + i * 0.0003, -87.63, grant={"requests": True}) for i, o in enumerate(owners)]
    end = consentcam_clock.now() - timedelta(hours=2)
    body = {"case_number": "SECRET-CASE-7", "description": "private description", "window":
            {"start": (end - timedelta(hours=1)).isoformat(), "end": end.isoformat()},
            "area": {"center": {"lat": 41.88, "lon": -87.63}, "radius_m": 200}}
    for _ in range(2):
        assert (await client.post("/api/v1/requests", json=body, headers=investigator.headers)).status == 201
    await world.revoke(owners[0], cameras[0])

    r = await client.get("/api/v1/transparency")
    assert r.status == 200
    report = await r.json()
    month = consentcam_clock.now().strftime("%Y-%m")
    assert report["months"] == [{"month": month, "agency_id": agency, "agency": "Metro PD", "requests": 2,
                                 "cameras_asked": 6, "clips_received": 0, "live_sessions": 0, "emergencies": 0}]
    assert report["revocations"] == [{"month": month, "count": 1}]
    assert report["agencies"][0]["policy_text"] == "We never use face recognition."
    text = await r.text()
    for secret in ("SECRET-CASE-7", "private description", *cameras, *(o.email for o in owners), "41.88"):
        assert secret not in text
