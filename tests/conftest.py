"""Shared helpers of the foundation tests: a client that checks every response against the contract, problem
assertions, and row counts. Kept small on purpose; fixtures of the test kit come from ``consentcam.testing``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import func, select

PROBLEM_TYPE = "application/problem+json"
PROBLEM_FIELDS = ("type", "title", "status", "detail")


@pytest.fixture
def fast_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 with its cheapest parameters, so that tests making many accounts stay fast."""
    from argon2 import PasswordHasher
    from consentcam import security

    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    dummy = cheap.hash("never-a-password")
    monkeypatch.setattr(security, "_hasher", cheap)
    monkeypatch.setattr(security, "_dummy_hash", lambda: dummy)


@pytest.fixture
async def api(consentcam_settings: Any, consentcam_platform: Any, aiohttp_client: Any) -> Any:
    """An aiohttp test client on the real app, which also checks every response the test provoked: each error is
    an RFC 9457 problem with type/title/status/detail, and each status is one the OpenAPI document declares for
    that operation."""
    from consentcam.http.app import create_app

    app = create_app(consentcam_settings, platform=consentcam_platform, run_jobs=False)
    seen: list[tuple[str, str | None, int, str, bytes]] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        body = response.body if isinstance(response, web.Response) and isinstance(response.body, bytes) else b""
        seen.append((request.method, request.match_info.route.name, response.status, response.content_type, body))

    app.on_response_prepare.append(record)
    client = await aiohttp_client(app)
    client.responses = seen
    yield client
    doc = app[_api_key()].openapi()
    declared = {item["operationId"]: set(item["responses"])
                for methods in doc["paths"].values() for item in methods.values()}
    wrong = []
    for method, name, status, content_type, body in seen:
        if status >= 400:
            if content_type != PROBLEM_TYPE:
                wrong.append(f"{method} {name} {status}: content type {content_type}")
                continue
            problem = json.loads(body)
            missing = [f for f in PROBLEM_FIELDS if f not in problem]
            if missing or problem.get("status") != status:
                wrong.append(f"{method} {name} {status}: problem body {problem}")
        if name in declared and method != "HEAD" and str(status) not in declared[name]:
            wrong.append(f"{method} {name} answered {status}, not declared in OpenAPI ({sorted(declared[name])})")
    if wrong:
        pytest.fail("responses broke the contract:\n" + "\n".join(wrong))


def _api_key() -> Any:
    from consentcam.http.keys import API

    return API


async def problem(response: Any, status: int) -> dict[str, Any]:
    """Assert ``response`` is a problem document with ``status`` and return its body."""
    text = await response.text()
    assert response.status == status, f"expected {status}, got {response.status}: {text}"
    assert response.content_type == PROBLEM_TYPE, response.content_type
    body = json.loads(text)
    for name in PROBLEM_FIELDS:
        assert name in body, f"problem lacks {name}: {body}"
    assert body["status"] == status
    return body


def locs(body: dict[str, Any]) -> list[list[str | int]]:
    return [e["loc"] for e in body.get("errors", [])]


async def ok(response: Any, status: int = 200) -> Any:
    text = await response.text()
    assert response.status == status, f"expected {status}, got {response.status}: {text}"
    return json.loads(text) if text else None


async def count(platform: Any, model: Any) -> int:
    async with platform.db.sessions() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def database_text(platform: Any) -> str:
    """Every row of every table, as text: to prove a secret is nowhere at rest."""
    from consentcam.db.models import Base

    parts = []
    async with platform.db.sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                parts.append(repr(tuple(row)))
    return "\n".join(parts)
