"""Owners' webhooks reach public addresses only (SSRF guard, consentcam.outbound): loopback, private networks,
link-local (cloud metadata) and names resolving to them are refused at delivery, without a retry, and without the
request ever leaving; redirects are not followed; the operator can allow a network explicitly."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from consentcam import outbound
from consentcam.channels import WebhookChannel
from consentcam.hooktypes import OwnerNotification
from consentcam.security import Keyring
from consentcam.settings import Settings


@pytest.mark.parametrize("address, ok", [
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.9", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("::1", False), ("fd00::1", False), ("fe80::1", False), ("::ffff:127.0.0.1", False),
    ("8.8.8.8", True), ("2606:4700:4700::1111", True),
])
def test_only_public_addresses_are_allowed(address: str, ok: bool) -> None:
    assert outbound.allowed(address) is ok
    assert outbound.allowed(address, outbound.networks("0.0.0.0/0, ::/0")) is True  # the operator's explicit choice


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://[::1]/x", "http://169.254.169.254/latest/meta-data/",
                                 "http://localhost:8080/", "https://admin.localhost/"])
def test_literal_private_destinations_are_refused_before_connecting(url: str) -> None:
    with pytest.raises(outbound.RefusedDestination):
        outbound.check_url(url)


async def test_a_name_resolving_to_loopback_is_refused_at_connection_time() -> None:
    resolver = outbound.PublicResolver()
    try:
        with pytest.raises(outbound.RefusedDestination, match="resolves only to private"):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()


async def test_check_host_demands_every_address_be_allowed() -> None:
    """For connections made elsewhere (a plugin probing a camera resolves the name again): all addresses must pass."""
    with pytest.raises(outbound.RefusedDestination, match="localhost is, or resolves to"):
        await outbound.check_host("localhost")
    with pytest.raises(outbound.RefusedDestination):
        await outbound.check_host("10.0.0.5", 80)
    assert await outbound.check_host("8.8.8.8", 554) == ["8.8.8.8"]
    loopback = outbound.networks("127.0.0.0/8, ::1/128")
    assert set(await outbound.check_host("localhost", extra=loopback)) <= {"127.0.0.1", "::1"}
    with pytest.raises(OSError) as caught:
        await outbound.check_host("no-such-host.invalid")
    assert not isinstance(caught.value, outbound.RefusedDestination), "not resolving is not a refusal"


def _notification(url: str) -> OwnerNotification:
    return OwnerNotification(owner_id="o1", email="o1@home.example.org", name="O", phone=None, kind="request",
                             subject="s", text="t", data={}, idempotency_key="k1",
                             channels={"webhook_url": url, "webhook_secret": "whsec_x"})


async def test_the_webhook_channel_refuses_loopback_without_retry_and_sends_nothing(unused_tcp_port: int,
                                                                                    tmp_path: Any) -> None:
    hits: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        base = {"_env_file": None, "data_dir": tmp_path, "secret_key": "k"}
        refusing = WebhookChannel(Settings(**base), Keyring(b"k"))  # type: ignore[arg-type]
        for url in (f"http://127.0.0.1:{unused_tcp_port}/hook", f"http://localhost:{unused_tcp_port}/hook"):
            result = await refusing.consentcam_notify_owner(_notification(url))
            assert result is not None and not result.delivered and result.retryable is False, result
            assert "public addresses only" in result.detail
        assert hits == [], "nothing may leave for a refused destination"

        allowing = WebhookChannel(Settings(**base, webhook_allowed_networks="127.0.0.0/8"), Keyring(b"k"))  # type: ignore[arg-type]
        result = await allowing.consentcam_notify_owner(_notification(f"http://localhost:{unused_tcp_port}/hook"))
        assert result is not None and result.delivered, result
        assert hits == ["/hook"]
    finally:
        await runner.cleanup()


async def test_redirects_are_not_followed(unused_tcp_port: int, tmp_path: Any) -> None:
    """A public receiver answering 307 to an internal address must not become a way in."""
    hits: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append(request.path)
        if request.path == "/hook":
            raise web.HTTPTemporaryRedirect("/internal")
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_post("/internal", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        channel = WebhookChannel(Settings(_env_file=None, data_dir=tmp_path, secret_key="k",  # type: ignore[call-arg]
                                          webhook_allowed_networks="127.0.0.1/32"), Keyring(b"k"))
        result = await channel.consentcam_notify_owner(_notification(f"http://127.0.0.1:{unused_tcp_port}/hook"))
        assert result is not None and not result.delivered and result.detail == "HTTP 307"
        await asyncio.sleep(0.05)
        assert hits == ["/hook"]
    finally:
        await runner.cleanup()
