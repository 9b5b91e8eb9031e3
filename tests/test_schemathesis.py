"""Schemathesis against the served OpenAPI document: every operation, called as every role with a few generated
examples each (derandomized, so that a failure replays), on a real server on 127.0.0.1. Every answer must be
one the document declares, of a declared content type, with a body matching its schema, and none may be a server
error.

Bounded for CI by ``CONSENTCAM_FUZZ_EXAMPLES`` (examples per operation and role, default 2); raise it locally for a
deeper run."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from consentcam.clock import FakeClock
from consentcam.settings import Settings
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("CONSENTCAM_FUZZ_EXAMPLES", "2"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
SKIP = {("GET", "/api/v1/edge/connect")}  # a WebSocket upgrade, not a request/response operation


@dataclass
class Served:
    base_url: str
    tokens: dict[str, str | None] = field(default_factory=dict)  # role -> bearer secret (None: anonymous)
    loop: asyncio.AbstractEventLoop | None = None
    calls: int = 0
    ids: dict[str, str] = field(default_factory=dict)  # real path parameters, so that cases reach the handlers
    statuses: dict[int, int] = field(default_factory=dict)

    def fresh_token(self, role: str) -> str | None:
        """A new token for ``role`` (logout revokes the one it is called with)."""
        if self.tokens.get(role) is None or role == "api key":
            return self.tokens.get(role)
        return asyncio.run_coroutine_threadsafe(self._login(role), self.loop).result(30)  # type: ignore[arg-type]

    async def _login(self, role: str) -> str:
        raise NotImplementedError  # replaced by the server thread


def serve(tmp: Any, database_url: str) -> Iterator[Served]:
    """The core on 127.0.0.1 in a thread with its own event loop (schemathesis calls it synchronously), with a
    small world: an agency with every role, an owner with a camera, a platform admin and an all-scope API key."""
    from aiohttp import web
    from consentcam.http.app import create_app
    from consentcam.platform import open_platform
    from consentcam.services import accounts
    from consentcam.testing.world import World

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    served = Served("", loop=loop)
    state: dict[str, Any] = {}

    settings_ = Settings(_env_file=None, data_dir=tmp / "data", database_url=database_url,  # type: ignore[call-arg]
                         secret_key="test-deployment-key-not-for-production", public_url="http://consentcam.test",
                         load_entry_point_plugins=False, run_jobs_in_process=False, login_lockout_seconds=0.2,
                         # every call comes from 127.0.0.1: throttles would answer instead of the handlers
                         login_max_failures=1_000_000, registrations_per_address=1_000_000,
                         link_failures_per_address=1_000_000)

    async def start() -> None:
        platform = await open_platform(settings_, clock=FakeClock())
        world = World(platform)
        agency = await world.agency()
        people = {role: await world.staff(agency, role) for role in ("investigator", "supervisor", "auditor", "admin")}
        people["platform admin"] = await world.staff(None, "admin")
        owner = await world.owner()
        camera = await world.camera(owner, grant={"map": True, "requests": True})
        people["owner"] = owner
        served.ids = {"camera_id": camera, "agency_id": agency}
        passwords = {}
        for role, person in people.items():  # known passwords, for fresh tokens
            passwords[role] = "fuzzing password " + role
            async with platform.db.transaction() as session:
                from consentcam.db.models import User
                from consentcam.security import hash_password

                user = await session.get(User, person.id)
                user.password_hash = hash_password(passwords[role])
        from consentcam.services import apikeys
        from consentcam.services.accounts import Principal

        admin = people["admin"]
        _, key = await apikeys.create_key(platform, Principal(admin.id, "admin", agency, 1, "admin"), agency, "fuzz",
                                          sorted(apikeys.SCOPES), None)
        served.tokens = {"anonymous": None, "api key": key, **{r: p.token for r, p in people.items()}}

        async def login(role: str) -> str:
            secret, _, _ = await accounts.login(platform, people[role].email, passwords[role], "127.0.0.2")
            return secret

        served._login = login  # type: ignore[method-assign]
        app = create_app(settings_, platform=platform, run_jobs=False)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        served.base_url = f"http://127.0.0.1:{port}"
        state.update(runner=runner, platform=platform)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        finally:
            ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="consentcam-fuzz-server", daemon=True)
    thread.start()
    ready.wait(60)
    assert served.base_url, "the server did not start"
    yield served

    async def stop() -> None:
        await state["runner"].cleanup()
        await state["platform"].db.dispose()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture
def served(request: pytest.FixtureRequest, tmp_path: Any, fast_passwords: None) -> Iterator[Served]:
    """On SQLite only: the run is about the HTTP edge, and the matrix covers both backends."""
    yield from serve(tmp_path, request.getfixturevalue("_consentcam_sqlite").new(tmp_path / "db"))


def negative_role(method: str, path: str) -> str:
    """A role the operation lets in, so that invalid input reaches validation rather than a 403."""
    from consentcam.http.api import ANY_USER, PUBLIC
    from consentcam.http.app import build_api

    op = next(o for o in build_api().operations if (o.method, o.path) == (method, path))
    if op.roles == PUBLIC:
        return "anonymous"
    if op.roles == ANY_USER:
        return "owner"
    if path == "/api/v1/agencies" or "/suspend" in path or "/resume" in path:
        return "platform admin"
    return next(r for r in ("owner", "investigator", "supervisor", "auditor", "admin") if r in op.roles)


def run_operation(operation: Any, served: Served, role: str, failures: list[str], *,
                  mode: GenerationMode = GenerationMode.POSITIVE, checks: list[Any] = CHECKS) -> None:
    method, path = operation.method.upper(), operation.path
    fresh = (method, path) == ("POST", "/api/v1/auth/logout")
    # Real ids for reads and changes (never for removals, which would leave later cases only 404s).
    names = [p.name for p in operation.path_parameters]
    real = {n: served.ids[n] for n in names if n in served.ids} if method != "DELETE" else {}
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=real or None)

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case: Any) -> None:
        secret = served.fresh_token(role) if fresh else served.tokens[role]
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        headers.pop("Cookie", None)
        response = case.call(base_url=served.base_url, headers=headers, timeout=30)
        served.calls += 1
        served.statuses[response.status_code] = served.statuses.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{mode.value} {role}: {method} {path} -> {response.status_code}: {str(exc)[:600]}\n  {case.as_curl_command()}")
            raise

    try:
        check()
    except Unsatisfiable:  # nothing of this operation can be made invalid (no parameters, or free-form strings only)
        assert mode is GenerationMode.NEGATIVE, f"{method} {path}: no valid case could be generated"
    except Exception as exc:  # a failed check was recorded above; anything else (the call itself failed) is here
        if not failures or f"{mode.value} {role}: {method} {path} " not in failures[-1]:
            failures.append(f"{mode.value} {role}: {method} {path}: {type(exc).__name__}: {str(exc)[:600]}")


def test_schemathesis_every_operation_every_role(served: Served):
    schema = schemathesis.openapi.from_url(f"{served.base_url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    failures: list[str] = []
    for role in ("anonymous", "owner", "investigator", "supervisor", "auditor", "admin", "platform admin", "api key"):
        for operation in operations:
            if (operation.method.upper(), operation.path) in SKIP:
                continue
            run_operation(operation, served, role, failures)
    for operation in operations:  # invalid input, as a caller the operation lets in: a 4xx, never accepted
        method, path = operation.method.upper(), operation.path
        if (method, path) not in SKIP and (method, path) != ("POST", "/api/v1/auth/logout"):
            run_operation(operation, served, negative_role(method, path), failures, mode=GenerationMode.NEGATIVE,
                          checks=[not_a_server_error, status_code_conformance, negative_data_rejection])
    print(f"schemathesis: {served.calls} calls, statuses {dict(sorted(served.statuses.items()))}")
    assert served.calls >= len(operations) * 8, "the operations were not all called"
    unique = list(dict.fromkeys(failures))
    assert not unique, f"{len(unique)} schemathesis failures:\n" + "\n".join(unique[:40])
