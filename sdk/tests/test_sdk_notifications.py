"""An owner's notification choices through the SDK: the webhook secret comes back once, at registration and on
rotation, and never from a read."""

from __future__ import annotations

from typing import Any

from consentcam_sdk import AsyncClient


async def test_webhook_secret_is_shown_at_registration_and_on_rotation_only(live: Any) -> None:
    async with AsyncClient(live.url) as cc:
        created = await cc.register_owner(email="hooks@home.example.org", password="a long password", name="Ada",
                                          notify={"email": True, "webhook_url": "https://hooks.example.org/cam"})
        assert created.id and created.webhook_secret and created.webhook_secret.startswith("whsec_")
        await cc.login("hooks@home.example.org", "a long password")
        read = await cc.notifications()
        assert read.webhook_secret_set and read.webhook_secret is None
        rotated = await cc.set_notifications(webhook_url="https://hooks.example.org/cam", rotate_webhook_secret=True)
        assert rotated.webhook_secret and rotated.webhook_secret != created.webhook_secret
        quiet = await cc.set_notifications(email=False, webhook_url=None)
        assert not quiet.webhook_secret_set and quiet.email is False
