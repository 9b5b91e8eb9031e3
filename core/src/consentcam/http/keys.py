"""Typed keys for what the aiohttp application and requests carry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from ..platform import Platform
    from ..services.accounts import Principal

PLATFORM: web.AppKey["Platform"] = web.AppKey("platform")
API: web.AppKey[Any] = web.AppKey("api")
PRINCIPAL: web.RequestKey["Principal"] = web.RequestKey("principal")
SESSION_COOKIE = "consentcam_session"
