"""While the database is unreachable (a PostgreSQL restart, a failover), every request answers a 503 problem with
Retry-After, reads as well as writes, including the token lookup before the handler; once it is back, the same
calls work again by themselves. bench/load.py --restart-postgres does this to a live city topology."""

from __future__ import annotations

import contextlib
import types
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from consentcam.db import database_unavailable

from .conftest import ok, problem

pytestmark = pytest.mark.usefixtures("fast_passwords")


def refused() -> OperationalError:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def test_what_counts_as_unavailable() -> None:
    assert database_unavailable(refused())
    try:
        try:
            raise refused()
        except OperationalError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert database_unavailable(outer), "found through the chain"
    assert database_unavailable(ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"))
    assert not database_unavailable(OperationalError("SELECT 1", {}, ValueError("syntax error at or near")))
    assert not database_unavailable(ValueError("connection"))  # not a database error at all


def _raised_in(module: str, exc: BaseException) -> BaseException:
    """``exc`` as raised by code of ``module`` (a function whose globals name that module)."""
    def raiser() -> None:
        raise exc
    try:
        types.FunctionType(raiser.__code__, {"__name__": module}, closure=raiser.__closure__)()
    except BaseException as raised:  # noqa: BLE001 - handed back to the caller
        return raised
    raise AssertionError("did not raise")


def test_a_reset_counts_only_when_the_driver_raised_it() -> None:
    # A restart resets the driver's socket: seen in bench/load.py --restart-postgres as 500s before this rule.
    assert database_unavailable(_raised_in("asyncpg.connection", ConnectionResetError(104, "Connection reset by peer")))
    # The same error from anything else (an S3 or webhook call, the HTTP client going away) is not the database.
    assert not database_unavailable(_raised_in("aiobotocore.endpoint", ConnectionResetError(104, "Connection reset by peer")))
    assert not database_unavailable(ConnectionResetError(104, "Connection reset by peer"))


def test_asyncpg_misuse_is_not_unavailability() -> None:
    from asyncpg.exceptions import InterfaceError

    assert database_unavailable(InterfaceError("connection is closed"))
    assert not database_unavailable(InterfaceError("cannot perform operation: another operation is in progress"))


async def test_reads_and_token_lookups_answer_503_then_recover(api: Any, consentcam_world: Any, consentcam_platform: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    owner = await consentcam_world.owner()
    await ok(await api.get("/api/v1/cameras", headers=owner.headers))

    @contextlib.asynccontextmanager
    async def down(*_args: Any, **_kwargs: Any) -> Any:
        raise refused()
        yield  # pragma: no cover

    with monkeypatch.context() as patch:
        patch.setattr(consentcam_platform.db, "sessions", down)
        for path in ("/api/v1/cameras", "/api/v1/me"):
            response = await api.get(path, headers=owner.headers)
            body = await problem(response, 503)
            assert int(response.headers["Retry-After"]) >= 1
            assert "not reachable" in body["detail"] and "Traceback" not in body["detail"]
    await ok(await api.get("/api/v1/cameras", headers=owner.headers))  # back by itself, nothing to restart
