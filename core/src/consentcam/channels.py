"""Core's own plugins: its declaration, and the two built-in notification channels (email over SMTP, signed
webhooks). They use the same hooks as any third-party channel would."""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from email.header import Header
from email.message import Message
from email.mime.text import MIMEText
from email.utils import formatdate

import aiohttp
import aiosmtplib

from . import __version__, outbound
from .hookspecs import hookimpl
from .hooktypes import DeliveryResult, OwnerNotification, PluginInfo
from .security import Keyring
from .settings import Settings


class CorePlugin:
    name = "consentcam-core"

    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo("consentcam-core", __version__, ("core",), "registry, consent, requests, vault, audit")


class EmailChannel:
    """Email over SMTP through a small pool of open connections per event loop (``smtp_connections``), so a worker
    sending many notifications pays the connection and greeting once, not once per message. A pooled connection
    the server has since dropped is replaced and the message sent once more on a fresh one; every other failure
    is a result, never an exception, and the outbox decides whether to retry."""

    name = "consentcam-email"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SmtpPool] = weakref.WeakKeyDictionary()

    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo("consentcam-email", __version__, ("notify_email",), "email over SMTP")

    @hookimpl
    async def consentcam_notify_owner(self, notification: OwnerNotification) -> DeliveryResult | None:
        if not notification.channels.get("email") or not notification.email:
            return None
        message = self._message(notification)
        pool = self._pool()
        async with pool.slots:
            client = pool.take(self.settings.smtp_idle_seconds)
            try:
                if client is not None:
                    try:
                        await client.send_message(message)
                    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPReadTimeoutError, ConnectionError):
                        # Dropped while idle (server timeout, restart): the message was not taken; once more, fresh.
                        client.close()
                        client = None
                    else:
                        pool.give_back(client)
                        return DELIVERED
                client = self._client()
                await client.connect()
                await client.send_message(message)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                pool.give_back(client)  # the client reset the envelope; the connection is good for the next owner
                return DeliveryResult("email", False, f"recipient refused: {exc}", retryable=False)
            except aiosmtplib.SMTPResponseException as exc:
                pool.give_back(client)
                return DeliveryResult("email", False, f"SMTP failed: {type(exc).__name__}: {exc}", retryable=True)
            except (aiosmtplib.SMTPException, OSError) as exc:
                if client is not None:
                    client.close()
                return DeliveryResult("email", False, f"SMTP failed: {type(exc).__name__}: {exc}", retryable=True)
            pool.give_back(client)
            return DELIVERED

    def _message(self, notification: OwnerNotification) -> Message:
        """A plain-text message. Built with the email package's compat32 classes, a third of the cost of an
        ``EmailMessage`` (whose header registry parses every header), which shows at hundreds of messages a second;
        ASCII text goes as it is (7bit), other text as UTF-8."""
        message = MIMEText(notification.text, "plain", "us-ascii" if notification.text.isascii() else "utf-8")
        message["From"] = self.settings.smtp_from
        message["To"] = notification.email
        subject = notification.subject
        message["Subject"] = subject if subject.isascii() else Header(subject, "utf-8")
        message["Date"] = formatdate(usegmt=True)
        if notification.idempotency_key:
            # Lets a mail system drop a duplicate of an at-least-once delivery.
            domain = self.settings.smtp_from.rpartition("@")[2] or "consentcam.local"
            message["Message-ID"] = f"<{notification.idempotency_key}@{domain}>"
        return message

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(hostname=s.smtp_host, port=s.smtp_port, start_tls=s.smtp_starttls, username=s.smtp_username,
                               password=s.smtp_password, timeout=20, local_hostname=s.smtp_helo_name or None)

    def _pool(self) -> _SmtpPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = _SmtpPool(max(1, self.settings.smtp_connections))
        return pool

    async def aclose(self) -> None:
        """Say goodbye on every idle connection of this event loop (a worker stopping; tests)."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.aclose()


DELIVERED = DeliveryResult("email", True, "accepted by the SMTP server")


class _SmtpPool:
    """Idle connections of one event loop, newest last, and the slots that bound how many are open at once."""

    def __init__(self, size: int) -> None:
        self.slots = asyncio.Semaphore(size)
        self.idle: list[tuple[aiosmtplib.SMTP, float]] = []

    def take(self, max_idle_s: float) -> aiosmtplib.SMTP | None:
        now = time.monotonic()
        while self.idle:
            client, since = self.idle.pop()
            if client.is_connected and now - since <= max_idle_s:
                return client
            client.close()
        return None

    def give_back(self, client: aiosmtplib.SMTP | None) -> None:
        if client is None:
            return
        if client.is_connected:
            self.idle.append((client, time.monotonic()))
        else:
            client.close()

    async def aclose(self) -> None:
        idle, self.idle = self.idle, []
        for client, _ in idle:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()


class WebhookChannel:
    """POSTs the notification as JSON, signed: header ``ConsentCam-Signature: t=<unix>,v1=<hex HMAC-SHA256>``
    over ``"<t>.<body>"`` with the owner's webhook secret, so receivers can reject forgeries and replays."""

    name = "consentcam-webhook"

    def __init__(self, settings: Settings, keyring: Keyring) -> None:
        self.settings = settings
        self.keyring = keyring

    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo("consentcam-webhook", __version__, ("notify_webhook",), "HMAC-signed webhooks")

    def _secret(self, stored: str | None) -> str | None:
        return _webhook_secret(self.keyring, stored)

    @hookimpl
    async def consentcam_notify_owner(self, notification: OwnerNotification) -> DeliveryResult | None:
        url = notification.channels.get("webhook_url")
        secret = self._secret(notification.channels.get("webhook_secret"))
        if not url or not secret:
            return None
        body = json.dumps(
            {"kind": notification.kind, "subject": notification.subject, "text": notification.text,
             "data": notification.data, "id": notification.idempotency_key},
            separators=(",", ":"), sort_keys=True,
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "ConsentCam-Signature": sign_webhook(secret, body, int(time.time())),
            "Idempotency-Key": notification.idempotency_key,
        }
        extra = outbound.networks(self.settings.webhook_allowed_networks)
        try:
            # Public addresses only, checked on every address the name resolves to; redirects are not followed.
            outbound.check_url(url, extra)
            async with outbound.session(extra, timeout=15) as session, \
                    session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                if 200 <= response.status < 300:
                    return DeliveryResult("webhook", True, f"HTTP {response.status}")
                return DeliveryResult("webhook", False, f"HTTP {response.status}", retryable=response.status >= 500 or response.status == 429)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            guard = outbound.refused(exc)
            if guard is not None:  # retrying cannot help: the owner must give a public address
                return DeliveryResult("webhook", False, f"refused: {guard}", retryable=False)
            return DeliveryResult("webhook", False, f"{type(exc).__name__}: {exc}", retryable=True)


def _webhook_secret(keyring: Keyring, stored: str | None) -> str | None:
    """Stored secrets are encrypted with the deployment key; a plain ``whsec_`` value (an older row, or a caller
    handing one directly) is used as it is. One that no longer decrypts (another deployment key) sends nothing."""
    if not stored:
        return None
    if stored.startswith("whsec_"):
        return stored
    try:
        return keyring.decrypt(stored)
    except ValueError:
        return None


def sign_webhook(secret: str, body: bytes, timestamp: int) -> str:
    import hashlib
    import hmac

    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_webhook(secret: str, body: bytes, header: str, *, now: float | None = None, tolerance_s: int = 300) -> bool:
    """For receivers (and tests): checks the signature and that it is fresh."""
    import hmac

    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance_s:
        return False
    expected = sign_webhook(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))
