"""A local fake of the part of Ring's cloud API that ``ring-doorbell`` 0.9 calls for this plugin: a test double of
a cloud service, not a claim of compatibility beyond these endpoints.

| host | endpoint | what the fake does |
| --- | --- | --- |
| oauth.ring.com | POST /oauth/token, grant_type=password | client ``ring_official_android`` (HTTP Basic); without the ``2fa-code`` header: 412 with Ring's two-factor state; a wrong code: 400; a wrong password: 401; else 200, a bearer token |
| oauth.ring.com | POST /oauth/token, grant_type=refresh_token | a new access and refresh token; the old refresh token stops working (rotation) |
| api.ring.com | POST /clients_api/session | needs a bearer token; records the ``hardware_id``; 201 with a profile |
| api.ring.com | GET /clients_api/ring_devices | the account's devices by family, with ``features.show_recordings`` |
| api.ring.com | GET /clients_api/doorbots/{id}/history?limit=&older_than= | events newest first, ``older_than`` an event id |
| api.ring.com | GET /clients_api/dings/{id}/recording | 302 to a signed URL on download.ring.com (``share/play`` gives the same URL in JSON) |
| download.ring.com | GET /recordings/{id}.mp4?X-Amz-... | the MP4; refuses a request that also carries an Authorization header, like a presigned object store |

It serves HTTPS with a certificate for ``*.ring.com`` and ``*.rings.solutions`` signed by a throw-away CA made
here (the ``cryptography`` package). ``client_session()`` is the aiohttp session handed to the library: its
resolver sends those hosts (and no other) to this server's loopback port, and its TLS context trusts only the
throw-away CA, with host names checked as usual. So the library's fixed ``https://`` URLs, oauthlib's refusal of
plain HTTP, and certificate checks all stay as in production; only name resolution and the trust anchor differ.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import secrets
import socket
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CLIENT_ID = "ring_official_android"
FAKE_DOMAINS = ("ring.com", "rings.solutions")


def _is_ring_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in FAKE_DOMAINS)


@dataclass
class FakeEvent:
    id: int
    created_at: dt.datetime
    kind: str
    media: Path | None           # None: an event with no recording
    duration: float | None = None  # what history says; None leaves the field out

    def entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "answered": False, "created_at": self.created_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "events": [], "favorite": False, "id": self.id, "kind": self.kind,
            "recording": {"status": "ready"} if self.media else None, "snapshot_url": "",
        }
        if self.duration is not None:
            entry["duration"] = self.duration
        return entry


@dataclass
class FakeDevice:
    id: int
    description: str
    family: str = "doorbots"           # doorbots | authorized_doorbots | stickup_cams
    kind: str = "lpd_v1"
    show_recordings: bool = True
    events: list[FakeEvent] = field(default_factory=list)
    failing: bool = False              # its history answers 503, as during an outage of Ring's service

    def json(self) -> dict[str, Any]:
        return {
            "address": "100 W Randolph St", "alerts": {"connection": "online"}, "battery_life": 80,
            "description": self.description, "device_id": f"aa{self.id:010x}", "external_connection": False,
            "features": {"advanced_motion_enabled": False, "motion_message_enabled": False, "motions_enabled": True,
                         "people_only_enabled": False, "shadow_correction_enabled": False,
                         "show_recordings": self.show_recordings},
            "firmware_version": "1.4.26", "id": self.id, "kind": self.kind, "latitude": 41.88, "longitude": -87.63,
            "location_id": "fake-location", "motion_snooze": None, "owned": True,
            "owner": {"email": "owner@example.org", "first_name": "Fake", "id": 4242, "last_name": "Owner"},
            "settings": {"doorbell_volume": 5, "enable_vod": True, "motion_detection_enabled": True},
            "subscribed": self.show_recordings or None, "subscribed_motions": True, "time_zone": "America/Chicago",
        }


@dataclass
class Call:
    method: str
    host: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class RingFake:
    def __init__(self, *, email: str, password: str, code: str = "246810", two_factor: bool = True,
                 access_ttl_s: int = 3600) -> None:
        self.email, self.password, self.code, self.two_factor = email, password, code, two_factor
        self.access_ttl_s = access_ttl_s
        self.devices: list[FakeDevice] = []
        self.calls: list[Call] = []
        self.access_tokens: dict[str, float] = {}   # token -> expiry (epoch seconds)
        self.refresh_tokens: set[str] = set()        # valid ones; each used one is removed (rotation)
        self.issued_refresh_tokens: list[str] = []
        self.session_hardware_ids: list[str] = []
        self.codes_sent = 0
        self.signatures: dict[str, int] = {}         # presigned URL signature -> ding id
        self.port = 0
        self._runner: web.AppRunner | None = None
        self.ca_pem = b""

    # --- serving ------------------------------------------------------------------------------------

    async def start(self) -> RingFake:
        server_ctx = self._tls()
        app = web.Application(middlewares=[self._log])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def client_session(self) -> aiohttp.ClientSession:
        """The session the library gets: Ring's hosts resolve to the fake; TLS trusts only the fake's CA."""
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode())
        connector = aiohttp.TCPConnector(resolver=_LoopbackResolver(self.port), ssl=ctx, force_close=True)
        return aiohttp.ClientSession(connector=connector)

    def _tls(self) -> ssl.SSLContext:
        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ConsentCam test CA (Ring fake)")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
              .not_valid_after(now + dt.timedelta(days=1))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                           crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        names = ["ring.com", "*.ring.com", "rings.solutions", "*.rings.solutions", "*.prd.rings.solutions"]
        leaf = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "*.ring.com")]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]
                                                           + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(ca_key, hashes.SHA256()))
        self.ca_pem = ca.public_bytes(serialization.Encoding.PEM)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory(prefix="ring-fake-tls-") as folder:  # ssl loads key pairs from files only
            cert, private = Path(folder) / "cert.pem", Path(folder) / "key.pem"
            cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
            private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
            ctx.load_cert_chain(cert, private)
        return ctx

    @web.middleware
    async def _log(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.calls.append(Call(request.method, request.host.split(":")[0], request.path, dict(request.query),
                               dict(request.headers)))
        return await handler(request)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        host = request.host.split(":")[0]
        path = request.path
        if host == "oauth.ring.com" and path == "/oauth/token" and request.method == "POST":
            return await self._token(request)
        if host == "api.ring.com":
            if path == "/clients_api/session" and request.method == "POST":
                return await self._session(request)
            if path == "/clients_api/ring_devices" and request.method == "GET":
                return self._authorised(request) or web.json_response(self._devices())
            parts = path.strip("/").split("/")
            if request.method == "GET" and len(parts) == 4 and parts[:2] == ["clients_api", "doorbots"] and parts[3] == "history":
                return self._authorised(request) or self._history(request, parts[2])
            if request.method == "GET" and len(parts) == 4 and parts[:2] == ["clients_api", "dings"] and parts[3] == "recording":
                return self._authorised(request) or self._recording(parts[2], redirect=True)
            if (request.method == "GET" and len(parts) == 5 and parts[:2] == ["clients_api", "dings"]
                    and parts[3:] == ["share", "play"]):
                return self._authorised(request) or self._recording(parts[2], redirect=False)
        if host == "download.ring.com" and path.startswith("/recordings/") and request.method == "GET":
            return self._media(request)
        return web.json_response({"error": "Not Found"}, status=404)

    # --- OAuth --------------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"error": "invalid_client", "error_description": "client authentication failed"},
                                     status=401)
        form = {k: v[0] for k, v in parse_qs(await request.text()).items()}
        grant = form.get("grant_type")
        if grant == "password":
            if form.get("username") != self.email or form.get("password") != self.password:
                return web.json_response({"error": "access_denied", "error_description": "invalid user credentials"},
                                         status=401)
            if self.two_factor:
                code = request.headers.get("2fa-code")
                if not code:
                    self.codes_sent += 1
                    return web.json_response({"next_time_in_secs": 60, "phone": "+1xxxxxxxx89", "tsv_state": "sms"},
                                             status=412)
                if code != self.code:
                    return web.json_response({"error": "Verification Code is invalid or expired"}, status=400)
            if not request.headers.get("hardware_id"):
                return web.json_response({"error": "invalid_request", "error_description": "hardware_id"}, status=400)
            return self._issue()
        if grant == "refresh_token":
            token = form.get("refresh_token", "")
            if token not in self.refresh_tokens:
                return web.json_response({"error": "invalid_grant", "error_description": "token is invalid or does not exists"},
                                         status=401)
            self.refresh_tokens.discard(token)
            return self._issue()
        return web.json_response({"error": "unsupported_grant_type"}, status=400)

    def _issue(self) -> web.Response:
        access, refresh = "fake-access-" + secrets.token_urlsafe(24), "fake-refresh-" + secrets.token_urlsafe(32)
        self.access_tokens[access] = dt.datetime.now(dt.UTC).timestamp() + self.access_ttl_s
        self.refresh_tokens.add(refresh)
        self.issued_refresh_tokens.append(refresh)
        return web.json_response({"access_token": access, "token_type": "bearer", "expires_in": self.access_ttl_s,
                                  "refresh_token": refresh, "scope": "client",
                                  "created_at": int(dt.datetime.now(dt.UTC).timestamp())})

    def _authorised(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        expiry = self.access_tokens.get(token)
        if expiry is None or expiry < dt.datetime.now(dt.UTC).timestamp():
            return web.json_response({"error": "invalid_token"}, status=401)
        return None

    # --- the API ------------------------------------------------------------------------------------

    async def _session(self, request: web.Request) -> web.Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        body = await request.json()
        device = body.get("device") if isinstance(body, dict) else None
        if not isinstance(device, dict) or not device.get("hardware_id") or device.get("os") != "android":
            return web.json_response({"error": "bad session request"}, status=400)
        self.session_hardware_ids.append(device["hardware_id"])
        return web.json_response({"profile": {"id": 4242, "email": self.email, "first_name": "Fake",
                                              "last_name": "Owner", "features": {}}}, status=201)

    def _devices(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {"doorbots": [], "authorized_doorbots": [], "stickup_cams": [],
                                                "chimes": [], "other": []}
        for device in self.devices:
            out[device.family].append(device.json())
        return out

    def _history(self, request: web.Request, device_id: str) -> web.Response:
        device = next((d for d in self.devices if str(d.id) == device_id), None)
        if device is None:
            return web.json_response({"error": "Not Found"}, status=404)
        if device.failing:
            return web.Response(status=503, text="Service Unavailable")
        try:
            limit = int(request.query.get("limit", "30"))
            older_than = int(request.query["older_than"]) if "older_than" in request.query else None
        except ValueError:
            return web.json_response({"error": "bad parameter"}, status=400)
        events = sorted(device.events, key=lambda e: e.id, reverse=True)  # newest first
        if older_than is not None:
            events = [e for e in events if e.id < older_than]
        return web.json_response([e.entry() for e in events[: max(0, min(limit, 100))]])

    def _find(self, ding_id: str) -> tuple[FakeDevice, FakeEvent] | None:
        for device in self.devices:
            for event in device.events:
                if str(event.id) == ding_id:
                    return device, event
        return None

    def _recording(self, ding_id: str, *, redirect: bool) -> web.Response:
        found = self._find(ding_id)
        if found is None or found[1].media is None or not found[0].show_recordings:
            return web.json_response({"error": "Not Found"}, status=404)
        signature = secrets.token_hex(16)
        self.signatures[signature] = found[1].id
        url = (f"https://download.ring.com/recordings/{ding_id}.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256"
               f"&X-Amz-Expires=3600&X-Amz-Signature={signature}")
        if redirect:
            raise web.HTTPFound(url)
        return web.json_response({"url": url, "ding_id": int(ding_id)})

    def _media(self, request: web.Request) -> web.StreamResponse:
        if "Authorization" in request.headers:  # a presigned URL must be the only authentication
            return web.Response(status=400, text="Only one auth mechanism allowed")
        ding = self.signatures.get(request.query.get("X-Amz-Signature", ""))
        name = request.path.rsplit("/", 1)[-1]
        if ding is None or name != f"{ding}.mp4":
            return web.Response(status=403, text="AccessDenied")
        found = self._find(str(ding))
        assert found is not None and found[1].media is not None
        return web.FileResponse(found[1].media, headers={"Content-Type": "video/mp4"})


class _LoopbackResolver(AbstractResolver):
    """Ring's hosts to the fake on 127.0.0.1; every other host fails, so nothing leaves the machine."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if not _is_ring_host(host):
            raise OSError(f"the Ring fake resolves only *.ring.com and *.rings.solutions, not {host}")
        return [ResolveResult(hostname=host, host="127.0.0.1", port=self.port, family=socket.AF_INET, proto=0,
                              flags=socket.AI_NUMERICHOST)]

    async def close(self) -> None:
        return None
