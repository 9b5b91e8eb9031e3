"""Owners' accounts at camera vendors' clouds (e.g. Ring): link, list, unlink, and hand one to a plugin.

The core knows no vendor: the provider's plugin turns what the owner typed (email, password, two-factor code)
into the secret it needs later (a refresh token) through ``consentcam_link_account``. Only that secret is kept,
encrypted with the deployment key; the password and the code live for the one call. A plugin that rotates the
secret (a vendor's token updater) saves the new one through ``LinkedAccount.save``. Unlinking deletes the row,
so the next fetch finds no account. Linking and unlinking are audited, naming the owner's cameras of that kind.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from sqlalchemy import delete, select, update

from .. import audit
from ..db.models import Camera, LinkedAccount
from ..errors import Gone, InvalidInput, NotFound
from ..hooktypes import AccountCredentials, AccountLink
from ..hooktypes import LinkedAccount as LinkedAccountRef
from ..platform import Platform
from ..schemas import AccountLinkIn
from .accounts import Principal

log = logging.getLogger(__name__)

PROVIDER = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def _check_provider(provider: str) -> str:
    if not PROVIDER.match(provider):
        raise InvalidInput.at(("path", "provider"), "a provider is a short lower-case name such as 'ring'")
    return provider


async def _owner_cameras(session: Any, owner_id: str, provider: str) -> list[str]:
    rows = await session.execute(select(Camera.id).where(Camera.owner_id == owner_id, Camera.connection_kind == provider))
    return sorted(rows.scalars())


async def link(p: Platform, principal: Principal, provider: str, body: AccountLinkIn) -> tuple[AccountLink, LinkedAccount | None]:
    """Ask the provider's plugin to link; keep its secret (encrypted) when it did. Relinking replaces the secret."""
    _check_provider(provider)
    code = body.code.strip() if body.code else None
    result = await p.plugins.link_account(AccountCredentials(provider, body.email.strip(), body.password, code))
    if result is None:
        raise NotFound(f"no plugin links {provider!r} accounts on this platform")
    if not result.linked:
        return result, None
    if not result.secret:
        raise InvalidInput(f"the {provider} plugin linked the account but gave nothing to keep")  # a plugin bug
    now = p.now()
    sealed = p.keyring.encrypt(json.dumps(result.secret, sort_keys=True))
    async with p.db.transaction() as session:
        row = (await session.execute(select(LinkedAccount).where(LinkedAccount.owner_id == principal.user_id,
                                                                 LinkedAccount.provider == provider))).scalar_one_or_none()
        relinked = row is not None
        if row is None:
            row = LinkedAccount(owner_id=principal.user_id, provider=provider, secret=sealed, created_at=now, updated_at=now)
            session.add(row)
        else:
            row.secret, row.created_at, row.updated_at = sealed, now, now
        await session.flush()
        cameras = await _owner_cameras(session, principal.user_id, provider)
        await audit.record(p.db, session, now, principal.actor, "account.linked", subject_type="linked_account",
                           subject_id=row.id, camera_ids=cameras,
                           detail={"provider": provider, "relinked": relinked, "devices": len(result.devices)})
    return result, row


async def list_linked(p: Platform, principal: Principal) -> list[LinkedAccount]:
    async with p.db.sessions() as session:
        rows = await session.execute(select(LinkedAccount).where(LinkedAccount.owner_id == principal.user_id)
                                     .order_by(LinkedAccount.provider))
        return list(rows.scalars())


async def unlink(p: Platform, principal: Principal, provider: str) -> None:
    """Delete the kept secret at once: later fetches from this account's cameras find no account."""
    _check_provider(provider)
    now = p.now()
    async with p.db.transaction() as session:
        row = (await session.execute(select(LinkedAccount).where(LinkedAccount.owner_id == principal.user_id,
                                                                 LinkedAccount.provider == provider))).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no linked {provider} account")
        await session.execute(delete(LinkedAccount).where(LinkedAccount.id == row.id))
        cameras = await _owner_cameras(session, principal.user_id, provider)
        await audit.record(p.db, session, now, principal.actor, "account.unlinked", subject_type="linked_account",
                           subject_id=row.id, camera_ids=cameras, detail={"provider": provider})


async def account_for(p: Platform, owner_id: str, provider: str) -> LinkedAccountRef | None:
    """The owner's account at ``provider``, decrypted for one plugin call, with a saver for a rotated secret."""
    async with p.db.sessions() as session:
        row = (await session.execute(select(LinkedAccount).where(LinkedAccount.owner_id == owner_id,
                                                                 LinkedAccount.provider == provider))).scalar_one_or_none()
    if row is None:
        return None
    account_id = row.id

    async def save(secret: dict[str, Any]) -> None:
        if not secret:
            raise InvalidInput("an account's secret cannot be saved empty")
        sealed = p.keyring.encrypt(json.dumps(secret, sort_keys=True))
        async with p.db.transaction() as session:
            changed = await session.execute(update(LinkedAccount).where(LinkedAccount.id == account_id)
                                            .values(secret=sealed, updated_at=p.now()))
        if changed.rowcount == 0:
            # Unlinked while the plugin worked: the new secret is not kept, and the plugin must stop.
            raise Gone(f"the owner unlinked the {provider} account")
        log.info("linked %s account %s: secret rotated", provider, account_id)

    return LinkedAccountRef(provider=provider, secret=json.loads(p.keyring.decrypt(row.secret)), save=save)
