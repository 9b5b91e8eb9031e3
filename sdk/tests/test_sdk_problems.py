"""Problem responses become typed exceptions with type, status, detail and field errors."""

from __future__ import annotations

from typing import Any

import pytest
from consentcam_sdk import AsyncClient, InvalidInput, NotFound, ProblemError, Unauthorized


async def test_validation_problem_is_invalid_input_with_field_errors(live: Any) -> None:
    async with AsyncClient(live.url) as cc:
        with pytest.raises(InvalidInput) as caught:
            # Passes the SDK's model (a str), refused by the server (not an email, password too short).
            await cc.register_owner(email="not-an-email", password="short", name="Ada")
    problem = caught.value
    assert isinstance(problem, ProblemError)
    assert problem.status == 422
    assert problem.type.endswith("invalid-input")
    assert problem.detail
    locs = {e.loc for e in problem.errors}
    assert ("body", "email") in locs and ("body", "password") in locs, locs


async def test_another_owners_camera_is_not_found(live: Any) -> None:
    owner, other = await live.world.owner(), await live.world.owner()
    camera_id = await live.world.camera(owner)
    async with AsyncClient(live.url, token=other.token) as cc:
        with pytest.raises(NotFound) as caught:
            await cc.get_camera(camera_id)
    assert caught.value.status == 404 and caught.value.type.endswith("not-found") and caught.value.detail
    assert caught.value.errors == []


async def test_wrong_password_is_unauthorized(live: Any) -> None:
    async with AsyncClient(live.url) as cc:
        with pytest.raises(Unauthorized) as caught:
            await cc.login("nobody@example.org", "wrong password")
    assert caught.value.status == 401 and cc.token is None
