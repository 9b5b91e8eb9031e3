"""Typed keys for what the aiohttp application and requests carry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ..platform import Platform

PLATFORM: web.AppKey["Platform"] = web.AppKey("platform")
PRINCIPAL = "consentcam.principal"
SESSION_COOKIE = "consentcam_session"
