"""The fake speaks what ``ring-doorbell`` 0.9 sends and expects: the library itself, unchanged, signs in with a
two-factor code, refreshes, lists devices, pages history and downloads a recording through the redirect, over
HTTPS with the certificate checked. If the library changes its endpoints or shapes, these fail first."""

from __future__ import annotations

import aiohttp
import pytest
from ring_doorbell import Auth, AuthenticationError, Requires2FAError, Ring
from ring_testkit import CODE, DOORBELL_ID, EMAIL, LIBRARY_WARNINGS, NO_PLAN_ID, PASSWORD, event_id

pytestmark = LIBRARY_WARNINGS


async def test_sign_in_asks_for_the_code_then_gives_a_token(ring_fake):
    async with ring_fake.client_session() as http:
        auth = Auth("test/1", None, None, "hw-1", http_client_session=http)
        with pytest.raises(Requires2FAError):
            await auth.async_fetch_token(EMAIL, PASSWORD)
        assert ring_fake.codes_sent == 1
        with pytest.raises(AuthenticationError):
            await auth.async_fetch_token(EMAIL, PASSWORD, "000000")
        with pytest.raises(AuthenticationError):
            await auth.async_fetch_token(EMAIL, "wrong", CODE)
        token = await auth.async_fetch_token(EMAIL, PASSWORD, CODE)
        assert token["refresh_token"] in ring_fake.refresh_tokens and token["access_token"] in ring_fake.access_tokens
        first = token["refresh_token"]
        refreshed = await auth.async_refresh_tokens()
        assert refreshed["refresh_token"] != first and first not in ring_fake.refresh_tokens  # rotated
    token_calls = [c for c in ring_fake.calls if c.path == "/oauth/token"]
    assert {c.host for c in token_calls} == {"oauth.ring.com"}
    assert token_calls[-2].headers.get("2fa-code") == CODE and token_calls[-2].headers.get("hardware_id") == "hw-1"


async def test_devices_history_paging_and_the_recording_redirect(ring_fake, ring_media):
    async with ring_fake.client_session() as http:
        auth = Auth("test/1", None, None, "hw-2", http_client_session=http)
        ring_fake.two_factor = False
        await auth.async_fetch_token(EMAIL, PASSWORD)
        ring = Ring(auth)
        await ring.async_update_devices()
        assert ring_fake.session_hardware_ids == ["hw-2"]
        devices = {d.id: d for d in ring.devices().video_devices}
        assert set(devices) == {DOORBELL_ID, NO_PLAN_ID, 555001, 555002}
        door = devices[DOORBELL_ID]
        assert door.has_subscription and not devices[NO_PLAN_ID].has_subscription
        newest = await door.async_history(limit=2, convert_timezone=False)
        older = await door.async_history(limit=2, older_than=newest[-1]["id"], convert_timezone=False)
        assert [e["id"] for e in newest] == [event_id(4), event_id(3)]
        assert [e["id"] for e in older] == [event_id(2), event_id(1)]
        body = await door.async_recording_download(event_id(1))
        assert body == ring_media[event_id(1)].read_bytes()
        url = await door.async_recording_url(event_id(1))  # share/play
        assert url.startswith("https://download.ring.com/recordings/")
    media_calls = [c for c in ring_fake.calls if c.host == "download.ring.com"]
    assert len(media_calls) == 1 and "Authorization" not in media_calls[0].headers  # dropped on the cross-host redirect
    history_calls = [c for c in ring_fake.calls if c.path.endswith("/history")]
    assert history_calls[1].query == {"limit": "2", "older_than": str(event_id(3))}


async def test_the_certificate_is_checked_and_no_other_host_is_reached(ring_fake):
    # A session that does not trust the throw-away CA fails the handshake: TLS is real, not bypassed.
    from ring_fake import _LoopbackResolver

    untrusting = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=_LoopbackResolver(ring_fake.port)))
    async with untrusting:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await untrusting.get("https://api.ring.com/clients_api/ring_devices")
    async with ring_fake.client_session() as http:
        with pytest.raises(aiohttp.ClientConnectorError):
            await http.get("https://example.org/")
        with pytest.raises(aiohttp.ClientConnectorError):  # only the names themselves, not look-alikes
            await http.get("https://api.ring.com.example.org/")
