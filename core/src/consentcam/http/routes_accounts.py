"""Owners link and unlink their accounts at camera vendors' clouds (e.g. Ring). The kept secret never leaves
the server: no response carries it, and what the owner typed is used once and dropped."""

from __future__ import annotations

from aiohttp import web

from ..schemas import AccountLinkIn, AccountLinkOut, LinkedAccountList, LinkedAccountOut, LinkedDevice
from ..services import linked_accounts
from .api import Api, Call

OWNER = {"owner"}


def linked_account_routes(api: Api) -> None:
    @api.route("POST", "/api/v1/linked-accounts/{provider}",
               summary="Link an account at a camera vendor's cloud (email, password, then the two-factor code)",
               roles=OWNER, body=AccountLinkIn, response=AccountLinkOut, errors=(404, 422, 502), tags=("cameras",))
    async def link_account(call: Call) -> AccountLinkOut:
        provider = call.param("provider")
        result, row = await linked_accounts.link(call.platform, call.user, provider, call.body)
        return AccountLinkOut(provider=provider, linked=result.linked, code_required=result.code_required,
                              detail=result.detail, devices=[LinkedDevice.model_validate(d) for d in result.devices],
                              linked_at=row.created_at if row is not None else None)

    @api.route("GET", "/api/v1/linked-accounts", summary="The caller's linked accounts (never their secrets)",
               roles=OWNER, response=LinkedAccountList, tags=("cameras",))
    async def list_linked_accounts(call: Call) -> LinkedAccountList:
        rows = await linked_accounts.list_linked(call.platform, call.user)
        return LinkedAccountList(accounts=[LinkedAccountOut(provider=r.provider, linked_at=r.created_at,
                                                            updated_at=r.updated_at) for r in rows])

    @api.route("DELETE", "/api/v1/linked-accounts/{provider}", summary="Unlink: the kept token is deleted at once",
               roles=OWNER, status=204, errors=(404, 422), tags=("cameras",))
    async def unlink_account(call: Call) -> web.Response:
        await linked_accounts.unlink(call.platform, call.user, call.param("provider"))
        return web.Response(status=204)
