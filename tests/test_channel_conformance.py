"""The core's own notification channels pass the vendor kit's NotifyConformance, like any third-party channel
would: email against a real SMTP server (aiosmtpd), signed webhooks against a real HTTP receiver."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from aiohttp import web
from consentcam.channels import EmailChannel, WebhookChannel, verify_webhook
from consentcam.security import Keyring
from consentcam.settings import Settings
from consentcam.testing.conformance import NotifyConformance, PluginConformance


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings(**changes: Any) -> Settings:
    return Settings(_env_file=None, secret_key="k", smtp_from="consentcam@city.example", **changes)  # type: ignore[call-arg]


class BuiltIn:
    """Core's own channels have no entry point: the core registers them itself. Check that instead of skipping."""

    def test_the_entry_point_loads_this_plugin(self, plugin: Any) -> None:
        from consentcam.platform import builtin_plugins

        assert any(type(p) is type(plugin) for p in builtin_plugins(settings(), Keyring(b"k")))


class TestEmailChannelConformance(BuiltIn, PluginConformance, NotifyConformance):
    peer_loggers = ("mail.log",)  # aiosmtpd, the SMTP peer, logs what it receives

    @pytest.fixture
    def plugin(self, consentcam_smtp):
        return EmailChannel(settings(smtp_host=consentcam_smtp.host, smtp_port=consentcam_smtp.port))

    @pytest.fixture
    def chosen_channels(self):
        return {"email": True, "sms": False, "webhook_url": None, "webhook_secret": None}

    @pytest.fixture
    def failing_channels(self, chosen_channels, plugin):
        plugin.settings = settings(smtp_host="127.0.0.1", smtp_port=closed_port())
        return chosen_channels

    async def test_the_message_arrives(self, plugin, chosen_channels, consentcam_smtp):
        await plugin.consentcam_notify_owner(self.notification(chosen_channels))
        (message,) = consentcam_smtp.to("owner@home.example.org")
        assert message["Subject"] == "Conformance" and "up_conformance-capability-link" in consentcam_smtp.body(message)


@pytest.fixture
async def receiver():
    received: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hook", received
    await runner.cleanup()


class TestWebhookChannelConformance(BuiltIn, PluginConformance, NotifyConformance):
    @pytest.fixture
    def plugin(self):
        # The receiver listens on loopback, which webhooks may reach only when the operator allows it.
        return WebhookChannel(settings(webhook_allowed_networks="127.0.0.0/8"), Keyring(b"k"))

    @pytest.fixture
    def chosen_channels(self, receiver):
        return {"email": False, "sms": False, "webhook_url": receiver[0], "webhook_secret": "whsec_conformance"}

    @pytest.fixture
    def failing_channels(self):
        return {"email": False, "sms": False, "webhook_url": f"http://127.0.0.1:{closed_port()}/hook",
                "webhook_secret": "whsec_conformance"}

    async def test_the_delivery_is_signed(self, plugin, chosen_channels, receiver):
        await plugin.consentcam_notify_owner(self.notification(chosen_channels))
        ((headers, body),) = receiver[1]
        assert verify_webhook("whsec_conformance", body, headers["ConsentCam-Signature"])
        assert headers["Idempotency-Key"] == "job-conformance-1"
