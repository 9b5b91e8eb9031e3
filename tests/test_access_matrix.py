"""The access-control matrix: every operation of the served OpenAPI document, called by every kind of caller, on
resources of agency A, of agency B, of one owner and of another. ``TABLE`` below is the expected allowed set,
written from the public contract (../shared/API.md) and the design's invariants (DESIGN.md), not from the code:

- Owners see and change only their own cameras; another owner's camera is 404 on every camera route.
- An agency sees only its own requests and evidence, and cameras whose owner granted it ``map`` (invariant 4);
  another agency's request, evidence or export is 404, as if it did not exist.
- Agencies, their users and their API keys are managed by the platform admin, or by the agency's own admin.
- An API key calls exactly the operations that declare one of its scopes, for its own agency.
- An upload link's token is the capability: whoever holds it may use it, signed in or not.
- While an agency is suspended, every request by its users and keys answers 403 saying so, public ones included.

"Allowed" means the call got past access control: any answer but 401, 403 and 404 (a 409, 410 or 422 about the
resource's state is allowed: the caller was entitled to learn it). A new operation in the OpenAPI document without
a row here fails the test: classify it following the contract."""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from consentcam.audit import verify_chain
from consentcam.db.models import LiveSession
from consentcam.services import accounts
from consentcam.services.accounts import Principal
from consentcam.testing.world import PASSWORD, Person, square
from consentcam.vault import retention

from .conftest import ok
from .fixtures.vault import put_clip

pytest_plugins = ("tests.fixtures.clips",)
pytestmark = pytest.mark.usefixtures("fast_passwords")

# --- who calls ----------------------------------------------------------------------------------------------------

ROLES = ("investigator", "supervisor", "auditor", "admin")
SCOPES = ("map:read", "requests:read", "evidence:read", "evidence:export", "audit:read")
ANONYMOUS = "anonymous"
PLATFORM_ADMIN = "platform admin"  # an admin without an agency: the city's operator
OWNERS = {"owner1", "owner2"}
CENTRES = {"A": (-87.63, 41.88), "B": (-87.70, 41.95), "S": (-87.55, 41.80)}  # lon, lat; S is the suspended agency


def staff(agency: str, *roles: str) -> set[str]:
    """Users of ``agency`` with these roles (all four when none is named)."""
    return {f"{agency}.{role}" for role in (roles or ROLES)}


def keys(agency: str, scope: str) -> set[str]:
    """API keys of ``agency`` that carry ``scope``: A has one key per scope, B one key with every scope."""
    return {f"A.key({scope})"} if agency == "A" else {f"{agency}.key(all)"}


ACTIVE_KEYS = {f"A.key({s})" for s in SCOPES} | {"B.key(all)"}
SUSPENDED = staff("S") | {"S.key(all)"}
USERS = OWNERS | staff("A") | staff("B") | {PLATFORM_ADMIN}  # signed-in people whose agency (if any) is active
EVERYONE = USERS | ACTIVE_KEYS | {ANONYMOUS}
CALLERS = sorted(EVERYONE | SUSPENDED)
NOBODY: set[str] = set()


def both(make: Callable[[str], set[str]], a: str, b: str) -> dict[str, set[str]]:
    """The same rule for a resource of agency A (label ``a``) and of agency B (label ``b``)."""
    return {a: make("A"), b: make("B")}


def agency_readers(scope: str) -> Callable[[str], set[str]]:
    return lambda x: staff(x) | keys(x, scope)


# --- what they call ----------------------------------------------------------------------------------------------

Body = Callable[["Matrix", str], Any]


@dataclass
class Row:
    method: str
    path: str
    allowed: set[str] | dict[str, set[str]]  # callers allowed; per resource label when the path names a resource
    body: Body | None = None
    raw: bytes | None = None  # a raw (non-JSON) body, with ``headers``
    headers: dict[str, str] = field(default_factory=dict)
    fresh_token: bool = False  # the call ends the caller's token: give each caller one of its own
    before: Callable[[Matrix], Awaitable[None]] | None = None  # put the resource back before each call
    query: dict[str, str] = field(default_factory=dict)
    refused: tuple[int, ...] = (401, 403, 404)  # answers that mean "refused"; without 404 when the path names no resource

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path


def owner_signup(m: Matrix, who: str) -> dict[str, Any]:
    return {"email": f"signup{next(m.counter)}@home.example.org", "password": PASSWORD, "name": "New owner",
            "notify": {"email": True}}


def owner1_login(m: Matrix, who: str) -> dict[str, Any]:
    return {"email": m.people["owner1"].email, "password": PASSWORD}


def new_agency(m: Matrix, who: str) -> dict[str, Any]:
    n = next(m.counter)
    return {"name": f"Matrix agency {n}", "jurisdiction": square(-80.0 + n * 0.1, 35.0, 0.01)}


def new_staff(m: Matrix, who: str) -> dict[str, Any]:
    return {"email": f"hire{next(m.counter)}@agency.example.org", "role": "investigator"}


def new_camera(m: Matrix, who: str) -> dict[str, Any]:
    lon, lat = CENTRES["A"]
    return {"label": "Porch", "location": {"lat": lat, "lon": lon}, "retention_days": 30, "precision": "exact"}


def same_grant(m: Matrix, who: str) -> dict[str, Any]:
    return {"map": True, "requests": True, "direct_fetch": False, "live": "never", "share_with": []}


def fence(m: Matrix, who: str) -> dict[str, Any]:
    """A fence inside the caller's own jurisdiction (A's for callers without one) and a window of the past."""
    agency = who.split(".")[0] if who.split(".")[0] in CENTRES else "A"
    lon, lat = CENTRES[agency]
    end = m.clock.now() - timedelta(hours=3)
    return {"area": {"center": {"lat": lat, "lon": lon}, "radius_m": 200},
            "window": {"start": (end - timedelta(hours=1)).isoformat(), "end": end.isoformat()}}


def emergency(m: Matrix, who: str) -> dict[str, Any]:
    return {"area": fence(m, who)["area"], "minutes": 30, "reason": "Matrix: a fire on the block"}


def live_view(m: Matrix, who: str) -> dict[str, Any]:
    assert m.label is not None
    return {"camera_id": m.resources[m.label]["camera_id"], "reason": "Matrix: a shooting in progress"}


def new_request(m: Matrix, who: str) -> dict[str, Any]:
    return {"case_number": f"M-{next(m.counter)}", "description": "Matrix case", **fence(m, who)}


async def retention_policies(m: Matrix) -> None:
    for agency in ("A", "B", "S"):
        supervisor = m.people[f"{agency}.supervisor"]
        await retention.set_policy(m.p, Principal(supervisor.id, "supervisor", m.agencies[agency], 1, "setup"), "matrix", 30)


CHUNK = b"\x00" * 100  # the first 100 bytes of a clip announced as 1 MB: stored, not complete (202)
OWNER_OF = {"cam1": {"owner1"}, "cam2": {"owner2"}}
CASEWORKERS = ("investigator", "supervisor")
MANAGERS = ("supervisor", "admin")  # holds and retention
ACCOUNT_ADMINS = both(lambda x: staff(x, "admin") | {PLATFORM_ADMIN}, "A", "B")

TABLE: list[Row] = [
    # --- public: anyone, signed in or not (suspended callers excepted) ----------------------------------------------
    Row("GET", "/api/v1/health", EVERYONE),
    Row("GET", "/api/v1/transparency", EVERYONE),
    Row("GET", "/api/v1/signing-key", EVERYONE),
    Row("GET", "/api/v1/jurisdictions", EVERYONE),
    Row("POST", "/api/v1/auth/owners", EVERYONE, body=owner_signup),  # "anyone may register as an owner"
    Row("POST", "/api/v1/auth/login", EVERYONE, body=owner1_login),
    Row("POST", "/api/v1/auth/session", EVERYONE, body=owner1_login),
    Row("DELETE", "/api/v1/auth/session", EVERYONE),  # signing a browser out needs no credential
    # --- any signed-in person (an API key is not a person: it calls only operations with its scope) -----------------
    Row("GET", "/api/v1/me", USERS),
    Row("GET", "/api/v1/me/notifications", OWNERS, refused=(401, 403)),  # an owner's own choices
    Row("PUT", "/api/v1/me/notifications", OWNERS, body=lambda m, who: {"email": True}, refused=(401, 403)),
    Row("GET", "/api/v1/auth/session", USERS),
    Row("POST", "/api/v1/auth/logout", USERS, fresh_token=True),
    # --- agencies: the platform admin, or the agency's own admin -------------------------------------------------------
    Row("POST", "/api/v1/agencies", {PLATFORM_ADMIN}, body=new_agency),
    Row("GET", "/api/v1/agencies/{agency_id}", both(lambda x: staff(x) | {PLATFORM_ADMIN}, "A", "B")),
    Row("POST", "/api/v1/agencies/{agency_id}/users", ACCOUNT_ADMINS, body=new_staff),
    Row("POST", "/api/v1/agencies/{agency_id}/api-keys", ACCOUNT_ADMINS,
        body=lambda m, who: {"label": "matrix", "scopes": ["map:read"]}),
    Row("GET", "/api/v1/agencies/{agency_id}/api-keys", ACCOUNT_ADMINS),
    Row("GET", "/api/v1/plugins", staff("A", "admin") | staff("B", "admin") | {PLATFORM_ADMIN}),
    # --- cameras and consent: the camera's owner only ------------------------------------------------------------------
    Row("POST", "/api/v1/cameras", OWNERS, body=new_camera),
    Row("GET", "/api/v1/cameras", OWNERS),
    Row("GET", "/api/v1/cameras/{camera_id}", OWNER_OF),
    Row("PATCH", "/api/v1/cameras/{camera_id}", OWNER_OF, body=lambda m, who: {"label": "Renamed"}),
    Row("PUT", "/api/v1/cameras/{camera_id}/grants", OWNER_OF, body=same_grant),
    Row("GET", "/api/v1/cameras/{camera_id}/grants", OWNER_OF),
    Row("GET", "/api/v1/cameras/{camera_id}/grants/history", OWNER_OF),
    Row("GET", "/api/v1/cameras/{camera_id}/access-log", OWNER_OF),
    # The matrix's cameras have no connection: the owner is let in (422, nothing to probe), everyone else refused.
    Row("POST", "/api/v1/cameras/{camera_id}/probe", OWNER_OF),
    # --- linked vendor accounts: the caller's own; {provider} names a plugin (none is loaded here: 404 to an owner) --
    Row("GET", "/api/v1/linked-accounts", OWNERS),
    Row("POST", "/api/v1/linked-accounts/{provider}", {"ring": OWNERS}, refused=(401, 403),
        body=lambda m, who: {"email": "me@home.example.org", "password": "vendor password"}),
    Row("DELETE", "/api/v1/linked-accounts/{provider}", {"ring": OWNERS}, refused=(401, 403)),
    # --- the map: agency users and map:read keys (what each sees is checked in test_nothing_leaks_across_agencies) --
    Row("GET", "/api/v1/map/cameras", staff("A") | staff("B") | keys("A", "map:read") | keys("B", "map:read")),
    # --- address search for placing a camera: any signed-in person (404 to them when no geocoding plugin is loaded) --
    Row("GET", "/api/v1/geocode", USERS, query={"q": "State and Madison"}, refused=(401, 403)),
    # --- oversight: auditors (and admins) verify the chain; it reveals counts and a hash, nothing of a camera -------
    Row("GET", "/api/v1/audit/verify", staff("A", "auditor", "admin") | staff("B", "auditor", "admin") | {PLATFORM_ADMIN}
        | keys("A", "audit:read") | keys("B", "audit:read")),
    # --- footage requests: investigators (and supervisors) ask; the same agency's supervisor approves ------------------
    Row("POST", "/api/v1/requests", staff("A", *CASEWORKERS) | staff("B", *CASEWORKERS), body=new_request),
    Row("POST", "/api/v1/requests/preview", staff("A", *CASEWORKERS) | staff("B", *CASEWORKERS), body=fence),
    Row("GET", "/api/v1/requests", staff("A") | staff("B") | keys("A", "requests:read") | keys("B", "requests:read")),
    Row("GET", "/api/v1/requests/{request_id}", both(agency_readers("requests:read"), "reqA", "reqB")),
    Row("POST", "/api/v1/requests/{request_id}/approve", both(lambda x: staff(x, "supervisor"), "pendA", "pendB")),
    Row("GET", "/api/v1/inbox", OWNERS),
    # --- live feeds: supervisors declare emergencies; investigators (and supervisors) open live views -------------------
    Row("POST", "/api/v1/emergencies", staff("A", "supervisor") | staff("B", "supervisor"), body=emergency),
    Row("GET", "/api/v1/emergencies", staff("A") | staff("B") | {PLATFORM_ADMIN}),  # the operator's: none (no agency)
    # {cam1: A's camera, cam2: B's} named in the body; a camera whose grant refuses live view is a 403 consent-refused
    # problem ("which rule refused it"): past access control. Another agency's camera is 404.
    Row("POST", "/api/v1/live-sessions", both(lambda x: staff(x, *CASEWORKERS), "cam1", "cam2"), body=live_view),
    # A live session: the investigator who opened it, or a supervisor of the same agency; only the opener renews it
    # and watches it.
    Row("GET", "/api/v1/live-sessions/{session_id}", both(lambda x: staff(x, *CASEWORKERS), "liveA", "liveB")),
    Row("POST", "/api/v1/live-sessions/{session_id}/renew", both(lambda x: staff(x, "investigator"), "liveA", "liveB"),
        body=lambda m, who: {"reason": "Matrix: still in progress"}),
    Row("GET", "/api/v1/live-sessions/{session_id}/playlist.m3u8", both(lambda x: staff(x, "investigator"), "liveA", "liveB")),
    Row("GET", "/api/v1/live-sessions/{session_id}/segments/{segment}",
        both(lambda x: staff(x, "investigator"), "liveA", "liveB")),
    # --- edge relays: the owner's own; pairing by a one-time code (the capability); the socket by a device key only --
    Row("POST", "/api/v1/edge/pairing-codes", OWNERS),
    Row("POST", "/api/v1/edge/pair", {"code": EVERYONE}, body=lambda m, who: {"code": m.pairing_code, "label": "Garage"}),
    Row("GET", "/api/v1/edge/devices", OWNERS),
    Row("PATCH", "/api/v1/edge/devices/{device_id}", {"devA": {"owner1"}, "devB": {"owner2"}},
        body=lambda m, who: {"label": "Relay"}),
    Row("GET", "/api/v1/edge/connect", NOBODY),  # no user or API key opens it: a paired device's key (the edge suite)
    # --- upload links: the token is the capability -----------------------------------------------------------------------
    Row("GET", "/api/v1/uploads/{token}", {"tokA": EVERYONE, "tokB": EVERYONE}),
    Row("PUT", "/api/v1/uploads/{token}", {"tokA": EVERYONE, "tokB": EVERYONE}, raw=CHUNK,
        headers={"Content-Type": "video/mp4", "Content-Range": f"bytes 0-{len(CHUNK) - 1}/1000000"}),
    # --- evidence: the requesting agency only ----------------------------------------------------------------------------
    Row("GET", "/api/v1/evidence", staff("A") | staff("B") | keys("A", "evidence:read") | keys("B", "evidence:read")),
    Row("GET", "/api/v1/evidence/{evidence_id}", both(agency_readers("evidence:read"), "evA", "evB")),
    Row("GET", "/api/v1/evidence/{evidence_id}/content", both(agency_readers("evidence:read"), "evA", "evB")),
    Row("POST", "/api/v1/evidence/{evidence_id}/hold", both(lambda x: staff(x, *MANAGERS), "evA", "evB"),
        body=lambda m, who: {"reason": "matrix"}),
    Row("DELETE", "/api/v1/evidence/{evidence_id}/hold", both(lambda x: staff(x, *MANAGERS), "evA", "evB")),
    Row("GET", "/api/v1/retention", staff("A") | staff("B")),
    Row("PUT", "/api/v1/retention/{category}", {"matrix": staff("A", *MANAGERS) | staff("B", *MANAGERS)},
        body=lambda m, who: {"days": 30}),
    Row("DELETE", "/api/v1/retention/{category}", {"matrix": staff("A", *MANAGERS) | staff("B", *MANAGERS)},
        before=retention_policies),
    Row("POST", "/api/v1/requests/{request_id}/export",
        both(lambda x: staff(x, *CASEWORKERS) | keys(x, "evidence:export"), "reqA", "reqB")),
    Row("GET", "/api/v1/exports/{export_id}", both(agency_readers("evidence:export"), "expA", "expB")),
    # --- state-changing calls, last: declines, closing, revoking, suspending, removing --------------------------------
    Row("POST", "/api/v1/items/{item_id}/decline", {"itemA": {"owner1"}, "itemB": {"owner2"}}, body=lambda m, who: {}),
    Row("POST", "/api/v1/uploads/{token}/decline", {"tokA": EVERYONE, "tokB": EVERYONE}, body=lambda m, who: {}),
    Row("POST", "/api/v1/requests/{request_id}/close", both(lambda x: staff(x, *CASEWORKERS), "reqA", "reqB")),
    Row("DELETE", "/api/v1/agencies/{agency_id}/api-keys/{key_id}",
        {"spare key of A": ACCOUNT_ADMINS["A"], "spare key of B": ACCOUNT_ADMINS["B"], "B's spare key under A": NOBODY}),
    Row("DELETE", "/api/v1/live-sessions/{session_id}", both(lambda x: staff(x, *CASEWORKERS), "liveA", "liveB")),
    Row("DELETE", "/api/v1/emergencies/{emergency_id}", both(lambda x: staff(x, "supervisor"), "emA", "emB")),
    Row("DELETE", "/api/v1/edge/devices/{device_id}", {"devA": {"owner1"}, "devB": {"owner2"}}),
    Row("POST", "/api/v1/agencies/{agency_id}/suspend", {"A": {PLATFORM_ADMIN}, "B": {PLATFORM_ADMIN}}),
    Row("POST", "/api/v1/agencies/{agency_id}/resume", {"A": {PLATFORM_ADMIN}, "B": {PLATFORM_ADMIN}}),
    Row("DELETE", "/api/v1/cameras/{camera_id}/grants", OWNER_OF),
    Row("DELETE", "/api/v1/cameras/{camera_id}", OWNER_OF),
]


# --- the world the matrix runs in --------------------------------------------------------------------------------------


@dataclass
class Matrix:
    api: Any
    p: Any
    world: Any
    clock: Any
    people: dict[str, Person] = field(default_factory=dict)
    secrets: dict[str, str | None] = field(default_factory=dict)  # caller -> bearer secret (None: anonymous)
    agencies: dict[str, str] = field(default_factory=dict)
    resources: dict[str, dict[str, str]] = field(default_factory=dict)  # label -> path parameters
    counter: Any = field(default_factory=itertools.count)
    label: str | None = None  # the resource of the cell being called (bodies that name a resource read it)

    def headers(self, who: str) -> dict[str, str]:
        secret = self.secrets[who]
        return {"Authorization": f"Bearer {secret}"} if secret else {}

    async def fresh_headers(self, who: str) -> dict[str, str]:
        person = self.people.get(who)
        if person is None:
            return self.headers(who)
        password = PASSWORD if person.role == "owner" else self.passwords[who]
        secret, _, _ = await accounts.login(self.p, person.email, password, "127.0.0.1")
        return {"Authorization": f"Bearer {secret}"}

    passwords: dict[str, str] = field(default_factory=dict)
    pairing_code: str = ""


async def request_with_link(m: Matrix, agency: str, owner: Person, camera_id: str, *, approve: bool) -> dict[str, str]:
    lon, lat = CENTRES[agency]
    investigator, supervisor = m.people[f"{agency}.investigator"], m.people[f"{agency}.supervisor"]
    end = m.clock.now() - timedelta(hours=3)
    body = {"case_number": f"{agency}-{next(m.counter)}", "description": "Matrix case",
            "area": {"center": {"lat": lat, "lon": lon}, "radius_m": 200},
            "window": {"start": (end - timedelta(hours=1)).isoformat(), "end": end.isoformat()}}
    created = await ok(await m.api.post("/api/v1/requests", json=body, headers=investigator.headers), 201)
    out = {"request_id": created["id"]}
    if approve:
        await ok(await m.api.post(f"/api/v1/requests/{created['id']}/approve", headers=supervisor.headers))
        inbox = await ok(await m.api.get("/api/v1/inbox", headers=owner.headers))
        item = next(i for i in inbox["items"] if i["camera_id"] == camera_id and i["case_number"] == body["case_number"])
        out["item_id"] = item["id"]
        out["token"] = urlsplit(item["upload_url"]).path.rsplit("/", 1)[1]
    return out


async def build(api: Any, world: Any, platform: Any, clock: Any, clip: bytes) -> Matrix:
    m = Matrix(api, platform, world, clock)
    # Every caller below comes from 127.0.0.1: the per-address limits (test_hardening.py) would answer 429 first.
    platform.settings.registrations_per_address = platform.settings.link_failures_per_address = 10_000
    for agency, (lon, lat) in CENTRES.items():
        m.agencies[agency] = await world.agency(f"Agency {agency}", lon=lon, lat=lat)
        for role in ROLES:
            email = f"{role}@{agency.lower()}.example.org"
            user_id, password = await accounts.create_agency_user(platform, world_actor(), m.agencies[agency], email, role)
            person = Person(user_id, email, role, m.agencies[agency], None)  # type: ignore[arg-type]
            person.token, _, _ = await accounts.login(platform, email, password, "127.0.0.1")
            m.people[f"{agency}.{role}"], m.passwords[f"{agency}.{role}"] = person, password
    user_id, password = await accounts.create_agency_user(platform, world_actor(), "", "operator@city.example.org", "admin",
                                                          platform_admin=True)
    m.people[PLATFORM_ADMIN] = Person(user_id, "operator@city.example.org", "admin", None, None)  # type: ignore[arg-type]
    m.people[PLATFORM_ADMIN].token, _, _ = await accounts.login(platform, "operator@city.example.org", password, "127.0.0.1")
    m.passwords[PLATFORM_ADMIN] = password
    for name in ("owner1", "owner2"):
        m.people[name] = await world.owner()
    cameras = {}
    for name, agency in (("cam1", "A"), ("cam2", "B")):
        lon, lat = CENTRES[agency]
        owner = m.people["owner1" if name == "cam1" else "owner2"]
        cameras[name] = await world.camera(owner, lat, lon, grant={"map": True, "requests": True})
        m.resources[name] = {"camera_id": cameras[name]}
    # owner2's second camera, in A's jurisdiction, on the map of A (its jurisdiction) and of B (shared with it)
    shared = await world.camera(m.people["owner2"], CENTRES["A"][1] + 0.001, CENTRES["A"][0], retention_days=30,
                                grant={"map": True, "requests": False, "share_with": [m.agencies["B"]]})
    m.resources["shared"] = {"camera_id": shared}

    async def new_key(agency: str, scopes: list[str]) -> tuple[str, str]:
        admin = m.people[f"{agency}.admin"]
        made = await ok(await api.post(f"/api/v1/agencies/{m.agencies[agency]}/api-keys",
                                       json={"label": "matrix", "scopes": scopes}, headers=admin.headers), 201)
        return made["id"], made["key"]

    for scope in SCOPES:
        m.secrets[f"A.key({scope})"] = (await new_key("A", [scope]))[1]
    for agency in ("B", "S"):
        m.secrets[f"{agency}.key(all)"] = (await new_key(agency, list(SCOPES)))[1]
    spare_a, spare_b = (await new_key("A", ["map:read"]))[0], (await new_key("B", ["map:read"]))[0]

    for agency, owner, camera in (("A", "owner1", "cam1"), ("B", "owner2", "cam2")):
        m.resources[agency] = {"agency_id": m.agencies[agency]}
        opened = await request_with_link(m, agency, m.people[owner], cameras[camera], approve=True)
        pending = await request_with_link(m, agency, m.people[owner], cameras[camera], approve=False)
        m.resources[f"req{agency}"] = {"request_id": opened["request_id"]}
        m.resources[f"pend{agency}"] = {"request_id": pending["request_id"]}
        m.resources[f"item{agency}"] = {"item_id": opened["item_id"]}
        m.resources[f"tok{agency}"] = {"token": opened["token"]}
        receipt = await ok(await put_clip(api, f"/api/v1/uploads/{opened['token']}", clip), 201)
        m.resources[f"ev{agency}"] = {"evidence_id": receipt["evidence_id"]}
        investigator = m.people[f"{agency}.investigator"]
        exported = await api.post(f"/api/v1/requests/{opened['request_id']}/export", headers=investigator.headers)
        assert exported.status == 201, await exported.text()
        m.resources[f"exp{agency}"] = {"export_id": exported.headers["X-Export-Id"]}
        await exported.read()
    m.resources["matrix"] = {"category": "matrix"}
    m.resources["ring"] = {"provider": "ring"}
    for agency, owner, camera in (("A", "owner1", "cam1"), ("B", "owner2", "cam2")):
        supervisor, investigator = m.people[f"{agency}.supervisor"], m.people[f"{agency}.investigator"]
        declared = await ok(await api.post("/api/v1/emergencies", json=emergency(m, f"{agency}.supervisor"),
                                           headers=supervisor.headers), 201)
        m.resources[f"em{agency}"] = {"emergency_id": declared["id"]}
        code = await ok(await api.post("/api/v1/edge/pairing-codes", headers=m.people[owner].headers), 201)
        paired = await ok(await api.post("/api/v1/edge/pair", json={"code": code["code"]}), 201)
        device = f"dev{agency}"
        m.resources[device] = {"device_id": paired["device_id"]}
        async with platform.db.transaction() as session:  # a live view as the relay would have carried it
            live = LiveSession(camera_id=cameras[camera], device_id=paired["device_id"], agency_id=m.agencies[agency],
                               user_id=investigator.id, reason="matrix", live_mode="always", started_at=clock.now(),
                               ends_at=clock.now() + timedelta(minutes=15), renewals=0)
            session.add(live)
            await session.flush()
            m.resources[f"live{agency}"] = {"session_id": live.id, "segment": "0.ts"}
    m.pairing_code = (await ok(await api.post("/api/v1/edge/pairing-codes", headers=m.people["owner1"].headers), 201))["code"]
    m.resources["code"] = {}
    m.resources["spare key of A"] = {"agency_id": m.agencies["A"], "key_id": spare_a}
    m.resources["spare key of B"] = {"agency_id": m.agencies["B"], "key_id": spare_b}
    m.resources["B's spare key under A"] = {"agency_id": m.agencies["A"], "key_id": spare_b}

    for name, person in m.people.items():
        m.secrets[name] = person.token
    m.secrets[ANONYMOUS] = None
    await accounts.set_suspended(platform, world_actor(), m.agencies["S"], True, "matrix: the kill switch")
    return m


def world_actor() -> Any:
    from consentcam.audit import Actor

    return Actor.system("access-matrix")


# --- running it ------------------------------------------------------------------------------------------------------


def fill(path: str, params: dict[str, str]) -> str:
    for name, value in params.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no value for a parameter of {path}"
    return path


async def call(m: Matrix, row: Row, label: str | None, who: str) -> tuple[int, str, str]:
    if row.before is not None:
        await row.before(m)
    m.label = label
    url = fill(row.path, m.resources[label] if label and "{" in row.path else {})
    headers = dict(row.headers)
    headers.update(await m.fresh_headers(who) if row.fresh_token else m.headers(who))
    kwargs: dict[str, Any] = {"headers": headers, "params": row.query}
    if row.body is not None:
        kwargs["json"] = row.body(m, who)
    elif row.raw is not None:
        kwargs["data"] = row.raw
    response = await m.api.request(row.method, url, **kwargs)
    text = (await response.read()).decode(errors="replace")
    m.api.session.cookie_jar.clear()  # a session cookie set by one caller must not speak for the next
    return response.status, response.content_type, text


async def run_matrix(m: Matrix) -> list[str]:
    """Every row, every resource, every caller: the refused callers first, so that an allowed call that changes
    state (a decline, a revocation) cannot turn a later refusal into a different one."""
    wrong: list[str] = []
    for row in TABLE:
        cells = row.allowed if isinstance(row.allowed, dict) else {None: row.allowed}
        for label, allowed in cells.items():
            unknown = allowed - EVERYONE
            assert not unknown, f"{row.method} {row.path}: unknown or suspended callers in the table: {unknown}"
            for who in sorted(CALLERS, key=lambda w: (w in allowed, w)):
                status, content_type, text = await call(m, row, label, who)
                where = f"{row.method} {row.path} [{label or '-'}] as {who}: {status}"
                if status == 403 and content_type == "application/problem+json" and \
                        json.loads(text)["type"].endswith("/consent-refused"):
                    status = 200  # the owner's consent refused it, after access control let the caller ask
                if who in allowed:
                    if status in row.refused or status >= 500:
                        wrong.append(f"{where}, expected allowed: {text[:200]}")
                    continue
                if status not in row.refused:
                    wrong.append(f"LEAK {where}, expected refused: {text[:200]}")
                    continue
                if content_type != "application/problem+json":
                    wrong.append(f"{where}: a refusal that is not a problem document ({content_type})")
                elif who == ANONYMOUS and status != 401:
                    wrong.append(f"{where}: an anonymous caller is refused with 401")
                elif who in SUSPENDED and (status != 403 or "suspended" not in json.loads(text)["detail"]):
                    wrong.append(f"{where}: a suspended agency's caller gets 403 saying so: {text[:200]}")
    return wrong


async def served_operations(api: Any) -> set[tuple[str, str]]:
    doc = await ok(await api.get("/api/v1/openapi.json"))
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


async def test_every_operation_has_a_row(api):
    """A new operation must be classified in TABLE before the matrix passes; a row for a gone one is stale."""
    served = await served_operations(api)
    table = {row.key for row in TABLE}
    assert len(table) == len(TABLE), "an operation has two rows"
    missing, stale = sorted(served - table), sorted(table - served)
    assert not missing, f"operations without a row in tests/test_access_matrix.py TABLE (classify them): {missing}"
    assert not stale, f"rows for operations the server no longer has: {stale}"


async def test_access_matrix(api, consentcam_world, consentcam_platform, consentcam_clock, h264_clip):
    m = await build(api, consentcam_world, consentcam_platform, consentcam_clock, h264_clip.read_bytes())
    await nothing_leaks_across_agencies(m)  # first: the matrix then declines, closes and revokes
    wrong = await run_matrix(m)
    assert not wrong, f"{len(wrong)} cells disagree with the table:\n" + "\n".join(wrong)
    assert (await verify_chain(consentcam_platform.db)).ok
    unclassified = await served_operations(api) - {row.key for row in TABLE}
    assert not unclassified, f"operations the matrix did not call (classify them in TABLE): {sorted(unclassified)}"


async def nothing_leaks_across_agencies(m: Matrix) -> None:
    """What the allowed list calls return: each agency sees its own requests, evidence and granted cameras only;
    each owner their own cameras and request items."""
    r = m.resources
    mine = {"A": ("cam1", "reqA", "evA"), "B": ("cam2", "reqB", "evB")}
    for agency, other in (("A", "B"), ("B", "A")):
        callers = [f"{agency}.{role}" for role in ROLES] + ([f"A.key({s})" for s in SCOPES] if agency == "A" else ["B.key(all)"])
        for who in callers:
            h = m.headers(who)
            features = await m.api.get("/api/v1/map/cameras", headers=h)
            if features.status == 200:
                shown = {f["id"] for f in (await features.json())["features"]}
                assert shown == {r[mine[agency][0]]["camera_id"], r["shared"]["camera_id"]}, who
            listed = await m.api.get("/api/v1/requests", headers=h)
            if listed.status == 200:
                ids = {q["id"] for q in (await listed.json())["requests"]}
                assert r[mine[agency][1]]["request_id"] in ids and r[mine[other][1]]["request_id"] not in ids, who
                assert ids <= {r[f"req{agency}"]["request_id"], r[f"pend{agency}"]["request_id"]}, who
            for params in ({}, {"request_id": r[mine[other][1]]["request_id"]}, {"camera_id": r[mine[other][0]]["camera_id"]}):
                found = await m.api.get("/api/v1/evidence", headers=h, params=params)
                if found.status == 200:
                    ids = {e["id"] for e in (await found.json())["items"]}
                    assert r[mine[other][2]]["evidence_id"] not in ids, (who, params)
                    assert ids == ({r[mine[agency][2]]["evidence_id"]} if not params else set()), (who, params)
    for owner, camera, other_camera in (("owner1", "cam1", "cam2"), ("owner2", "cam2", "cam1")):
        h = m.headers(owner)
        cameras = await ok(await m.api.get("/api/v1/cameras", headers=h))
        assert [c["id"] for c in cameras] == [r[camera]["camera_id"]] + ([r["shared"]["camera_id"]] if owner == "owner2" else [])
        inbox = await ok(await m.api.get("/api/v1/inbox", headers=h))
        assert {i["camera_id"] for i in inbox["items"]} == {r[camera]["camera_id"]}
        assert r[other_camera]["camera_id"] not in json.dumps(inbox)
