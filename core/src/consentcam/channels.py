"""Core's own plugins: its declaration, and the two built-in notification channels (email over SMTP, signed
webhooks). They use the same hooks as any third-party channel would."""

from __future__ import annotations

import json
import time
from email.message import EmailMessage

import aiohttp
import aiosmtplib

from . import __version__, outbound
from .hooktypes import DeliveryResult, OwnerNotification, PluginInfo
from .hookspecs import hookimpl
from .security import Keyring
from .settings import Settings


class CorePlugin:
    name = "consentcam-core"

    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo("consentcam-core", __version__, ("core",), "registry, consent, requests, vault, audit")


class EmailChannel:
    name = "consentcam-email"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo("consentcam-email", __version__, ("notify_email",), "email over SMTP")

    @hookimpl
    async def consentcam_notify_owner(self, notification: OwnerNotification) -> DeliveryResult | None:
        if not notification.channels.get("email") or not notification.email:
            return None
        message = EmailMessage()
        message["From"] = self.settings.smtp_from
        message["To"] = notification.email
        message["Subject"] = notification.subject
        if notification.idempotency_key:
            # Lets a mail system drop a duplicate of an at-least-once delivery.
            domain = self.settings.smtp_from.rpartition("@")[2] or "consentcam.local"
            message["Message-ID"] = f"<{notification.idempotency_key}@{domain}>"
        message.set_content(notification.text)
        try:
            await aiosmtplib.send(
                message,
                hostname=self.settings.smtp_host,
                port=self.settings.smtp_port,
                start_tls=self.settings.smtp_starttls,
                username=self.settings.smtp_username,
                password=self.settings.smtp_password,
                timeout=20,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return DeliveryResult("email", False, f"recipient refused: {exc}", retryable=False)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return DeliveryResult("email", False, f"SMTP failed: {type(exc).__name__}: {exc}", retryable=True)
        return DeliveryResult("email", True, "accepted by the SMTP server")


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
