"""The ring-doorbell library over our own aiohttp session, and the refresh token it rotates.

The library's endpoints are fixed at import (``https://oauth.ring.com``, ``https://api.ring.com``); it accepts an
aiohttp ``ClientSession`` (``http_client_session=``), which is how a deployment adds a proxy or a test points it
at a local fake. We keep only ``{"refresh_token", "hardware_id"}``: the password and the code are used once, the
access token lives for one fetch. The hardware id is chosen at link time and kept, so every later session
presents the same client to Ring (Ring lists each one as an authorised device of the account).

Every fetch starts with a refresh. The library reports each new token through ``token_updater``, a plain
callback called inside its coroutines; ``TokenKeeper`` saves each one through the core, in order, and ``flush``
waits for the saves, so that a rotated refresh token is stored before the fetch goes on.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from consentcam import CredentialsRejected, DeviceUnreachable
from consentcam.hooktypes import AccountCredentials, AccountLink, LinkedAccount
from ring_doorbell import Auth, AuthenticationError, Requires2FAError, Ring, RingError

from . import const

log = logging.getLogger(__name__)

SessionFactory = Callable[[], aiohttp.ClientSession]
# Failures of Ring's service or of the way there; a refused sign-in (AuthenticationError) is caught before these.
UNREACHABLE = (RingError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


def unreachable(exc: BaseException) -> DeviceUnreachable:
    # The library's messages carry the URL asked (an API path, no secret) and aiohttp's reason.
    return DeviceUnreachable(f"Ring could not be reached ({type(exc).__name__}: {str(exc)[:300]})")


async def link(session_factory: SessionFactory, credentials: AccountCredentials) -> AccountLink:
    """Sign in with email and password (and the code, once Ring sent one); list the account's cameras."""
    hardware_id = str(uuid.uuid4())
    async with session_factory() as http:
        auth = Auth(const.USER_AGENT, None, None, hardware_id, http_client_session=http)
        try:
            token = await auth.async_fetch_token(credentials.email, credentials.password, credentials.code)
        except Requires2FAError:
            if credentials.code:
                raise CredentialsRejected("Ring asked for a verification code again: the code was not accepted; "
                                          "link again without a code to receive a new one") from None
            return AccountLink(linked=False, code_required=True,
                               detail="Ring sent a verification code to the account's phone or email: send the same "
                                      "email and password again with it as 'code'")
        except AuthenticationError:
            what = "the verification code" if credentials.code else "the email or password"
            raise CredentialsRejected(f"Ring refused {what}") from None
        except UNREACHABLE as exc:
            raise unreachable(exc) from None
        refresh_token = token.get("refresh_token")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise DeviceUnreachable("Ring signed in but gave no refresh token")
        ring = Ring(auth)
        try:
            await ring.async_update_devices()
        except AuthenticationError:
            raise CredentialsRejected("Ring refused the new session") from None
        except UNREACHABLE as exc:
            raise unreachable(exc) from None
        devices = [device_summary(d) for d in ring.devices().video_devices]
    log.info("Ring account linked: %d video device(s)", len(devices))
    return AccountLink(linked=True, secret={"refresh_token": refresh_token, "hardware_id": hardware_id},
                       devices=devices, detail=f"linked: {len(devices)} Ring camera(s)")


def device_summary(device: Any) -> dict[str, Any]:
    return {"device_id": str(device.id), "name": str(device.name), "kind": str(device.kind),
            "recordings": bool(device.has_subscription)}


class TokenKeeper:
    def __init__(self, account: LinkedAccount, hardware_id: str) -> None:
        self.account = account
        self.hardware_id = hardware_id
        self.saves: list[asyncio.Task[None]] = []
        self.lock = asyncio.Lock()
        self.latest: str | None = None
        self.rotations = 0

    def update(self, token: dict[str, Any]) -> None:
        """The library's ``token_updater``: never logs the token."""
        refresh_token = token.get("refresh_token")
        if isinstance(refresh_token, str) and refresh_token:
            self.latest = refresh_token
            self.saves.append(asyncio.get_running_loop().create_task(self._save()))

    async def _save(self) -> None:
        async with self.lock:
            token = self.latest
            if token is None or self.account.save is None:
                return
            await self.account.save({"refresh_token": token, "hardware_id": self.hardware_id})
            self.rotations += 1

    async def flush(self) -> None:
        saves, self.saves = self.saves, []
        for outcome in await asyncio.gather(*saves, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome


@asynccontextmanager
async def signed_in(session_factory: SessionFactory, account: LinkedAccount) -> AsyncIterator[tuple[Ring, TokenKeeper]]:
    """A Ring session from the kept refresh token, its devices loaded; every rotated token saved on the way."""
    refresh_token, hardware_id = account.secret.get("refresh_token"), account.secret.get("hardware_id")
    if not isinstance(refresh_token, str) or not refresh_token:
        raise CredentialsRejected("the linked Ring account holds no refresh token: the owner must link it again")
    hardware_id = hardware_id if isinstance(hardware_id, str) and hardware_id else str(uuid.uuid4())
    async with session_factory() as http:
        keeper = TokenKeeper(account, hardware_id)
        auth = Auth(const.USER_AGENT, {"refresh_token": refresh_token}, keeper.update, hardware_id,
                    http_client_session=http)
        try:
            try:
                await auth.async_refresh_tokens()
                await keeper.flush()  # stored before anything else: Ring may already refuse the old one
                ring = Ring(auth)
                await ring.async_update_devices()
            except AuthenticationError:
                # Expired, revoked in Ring's Control Center, or rotated by a concurrent fetch (a retry reads the
                # newest): the job retries, and fails with this message if it persists.
                raise CredentialsRejected("Ring refused the linked account's refresh token: the owner may need to "
                                          "link the account again") from None
            except UNREACHABLE as exc:
                raise unreachable(exc) from None
            yield ring, keeper
        finally:
            await keeper.flush()
