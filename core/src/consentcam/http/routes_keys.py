"""API keys for an agency's machine clients (records systems, GIS syncs)."""

from __future__ import annotations

from aiohttp import web

from ..schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList
from ..services import apikeys
from .api import Api, Call


def key_routes(api: Api) -> None:
    @api.route("POST", "/api/v1/agencies/{agency_id}/api-keys", summary="Create an API key (shown once)",
               roles={"admin"}, body=ApiKeyCreate, response=ApiKeyCreated, status=201, errors=(404,), tags=("agencies",))
    async def create_api_key(call: Call) -> ApiKeyCreated:
        p, b = call.platform, call.body
        key, secret = await apikeys.create_key(p, call.user, call.param("agency_id"), b.label, list(b.scopes), b.expires_at)
        return ApiKeyCreated.model_validate({**apikeys.key_out(key, p.now()), "key": secret})

    @api.route("GET", "/api/v1/agencies/{agency_id}/api-keys", summary="The agency's API keys (never the secrets)",
               roles={"admin"}, response=ApiKeyList, errors=(404,), tags=("agencies",))
    async def list_api_keys(call: Call) -> ApiKeyList:
        p = call.platform
        keys = await apikeys.list_keys(p, call.user, call.param("agency_id"))
        return ApiKeyList.model_validate({"keys": [apikeys.key_out(k, p.now()) for k in keys]})

    @api.route("DELETE", "/api/v1/agencies/{agency_id}/api-keys/{key_id}", summary="Revoke an API key at once",
               roles={"admin"}, status=204, errors=(404,), tags=("agencies",))
    async def revoke_api_key(call: Call) -> web.Response:
        await apikeys.revoke_key(call.platform, call.user, call.param("agency_id"), call.param("key_id"))
        return web.Response(status=204)
