"""Retries: a GET answered 503 or 429 is tried again with backoff; a POST never is. (The server here is a tiny
aiohttp app, because the core does not answer 503 on demand.)"""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp import web
from consentcam_sdk import AsyncClient, ServiceUnavailable

PROBLEM = {"type": "https://consentcam.example/problems/unavailable", "title": "Service unavailable", "status": 503,
           "detail": "busy"}


def _flaky(status: int, failures: int, calls: list[str]) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        calls.append(request.method)
        if len(calls) <= failures:
            return web.json_response({**PROBLEM, "status": status}, status=status,
                                     content_type="application/problem+json")
        return web.json_response({"status": "ok", "database": "x", "spatial_index": "y", "version": "1"})

    app = web.Application()
    app.router.add_route("*", "/api/v1/health", handle)
    app.router.add_route("*", "/api/v1/requests/{id}/approve", handle)
    return app


@pytest.mark.parametrize("status", [503, 429])
async def test_get_is_retried_with_backoff(aiohttp_server: Any, status: int) -> None:
    calls: list[str] = []
    server = await aiohttp_server(_flaky(status, 2, calls))
    async with AsyncClient(str(server.make_url("/")), backoff=0.05) as cc:
        started = time.monotonic()
        health = await cc.health()
    assert health.status == "ok"
    assert calls == ["GET", "GET", "GET"]
    assert time.monotonic() - started >= 0.05 + 0.1  # 0.05 s, then 0.1 s


async def test_retries_give_up_after_the_limit(aiohttp_server: Any) -> None:
    calls: list[str] = []
    server = await aiohttp_server(_flaky(503, 10, calls))
    async with AsyncClient(str(server.make_url("/")), backoff=0.001, retries=2) as cc:
        with pytest.raises(ServiceUnavailable) as caught:
            await cc.health()
    assert len(calls) == 3 and caught.value.detail == "busy"


async def test_post_is_not_retried(aiohttp_server: Any) -> None:
    calls: list[str] = []
    server = await aiohttp_server(_flaky(503, 2, calls))
    async with AsyncClient(str(server.make_url("/")), backoff=0.001) as cc:
        with pytest.raises(ServiceUnavailable):
            await cc.approve_request("r1")
    assert calls == ["POST"]
