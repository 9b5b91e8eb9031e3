"""Peers for the ONVIF plugin's tests (a module, not a conftest, so its name cannot clash with other suites'):

- ``IpyCam``: ipycam 1.3.0, a third-party virtual ONVIF camera (device and media services, WS-Security, its own
  RTSP server, WS-Discovery), run as a child process on a short source video made with FFmpeg.
- ``ProfileGDevice``: a small aiohttp SOAP server that plays an ONVIF Profile G recorder (device, search and
  replay services, WS-Security UsernameToken checked for real); its replay URI points at its ``RecorderFront``.
  No installable simulator offers search and replay.
- ``RecorderFront``: the RTSP side of that recorder, a small asyncio server in front of the gst-rtsp-server peer
  (which serves the recording with the burnt-in clock). It honours only ONVIF replay's absolute ``clock=`` ranges
  (or, switched, only npt offsets), checks Basic or Digest credentials, and records every request it received.
  It shares no code with the plugin's proxy, on purpose: a bug in one must not be cancelled by the same bug in
  the other.
- ``read_clip``: what a fetched clip holds (duration, and the time each frame shows).

A peer that cannot start is an error naming what is missing, never a skip.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
from aiohttp import web
from consentcam.testing.rtsp_peer import PeerUnavailable, Recording, free_port, wait_for_port
from lxml import etree

# --- ipycam -----------------------------------------------------------------------------------------------

IPYCAM_USERNAME = "owner"
IPYCAM_PASSWORD = "c4m:p@ss/w%rd"  # characters a URL or an XML document would need escaped, on purpose


def make_source_video(folder: Path, seconds: int = 4) -> Path:
    """A short 640x360 15 fps test pattern for ipycam to loop."""
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        raise PeerUnavailable("ffmpeg is missing (Debian package ffmpeg; .ci/run installs it)")
    path = folder / "ipycam-source.mp4"
    if not path.exists():
        result = subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                                 f"testsrc=size=640x360:rate=15:d={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
                                 "-pix_fmt", "yuv420p", str(path)], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise PeerUnavailable(f"ffmpeg could not make ipycam's source video: {result.stderr[-1500:]}")
    return path


@dataclass
class IpyCam:
    """ipycam in a child process. ``argv_prefix`` runs it elsewhere (``ip netns exec <ns>``); ``local_ip`` is the
    address it announces and serves on (it listens on all interfaces, so its ports are free high ones)."""

    folder: Path
    local_ip: str = "127.0.0.1"
    username: str = IPYCAM_USERNAME
    password: str = IPYCAM_PASSWORD
    name: str = "ConsentCam Test Camera"
    argv_prefix: tuple[str, ...] = ()
    start_timeout_s: float = 30.0
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> IpyCam:
        source = make_source_video(self.folder)
        self.ports = {name: free_port() for name in ("onvif_port", "rtsp_port", "web_port", "rtmp_port", "go2rtc_api_port")}
        config = {"local_ip": self.local_ip, **self.ports, "name": self.name, "username": self.username,
                  "password": self.password, "main_width": 640, "main_height": 360, "main_fps": 15,
                  "main_bitrate": "400K", "sub_width": 320, "sub_height": 180, "sub_fps": 15, "sub_bitrate": "150K",
                  "hw_accel": "cpu", "show_timestamp": False}
        config_path = self.folder / "ipycam.json"
        config_path.write_text(json.dumps(config))
        self.log_path = self.folder / "ipycam.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([*self.argv_prefix, sys.executable, "-m", "ipycam", "--config", str(config_path),
                                          "--source", str(source), "--log-level", "WARNING"],
                                         cwd=self.folder, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        if not self._wait_ready():
            self.stop()
            raise PeerUnavailable(f"ipycam did not start: {self.log_text()[-3000:]}")
        return self

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            if self._listening():
                time.sleep(0.5)  # the RTSP server and the frame loop start right after the ONVIF one
                return True
            time.sleep(0.2)
        return False

    def _listening(self) -> bool:
        if not self.argv_prefix:
            return wait_for_port(self.ports["onvif_port"], 0.5)
        # In another network namespace: connect from inside it.
        check = f"import socket; socket.create_connection(({self.local_ip!r}, {self.ports['onvif_port']}), timeout=0.5)"
        return subprocess.run([*self.argv_prefix, sys.executable, "-c", check], capture_output=True,
                              timeout=10).returncode == 0

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> IpyCam:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the Profile G test device ------------------------------------------------------------------------------

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "tse": "http://www.onvif.org/ver10/search/wsdl",
    "trp": "http://www.onvif.org/ver10/replay/wsdl",
    "tt": "http://www.onvif.org/ver10/schema",
}
ENVELOPE = ('<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{s}" xmlns:tds="{tds}" xmlns:tse="{tse}" '
            'xmlns:trp="{trp}" xmlns:tt="{tt}"><s:Body>{{body}}</s:Body></s:Envelope>').format(**NS)
AUTHLESS = {"GetSystemDateAndTime"}  # what ONVIF lets anyone ask (clients need it to sign their requests)


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class DeviceRecording:
    token: str
    start: datetime
    end: datetime


@dataclass
class ProfileGDevice:
    """An ONVIF Profile G recorder on 127.0.0.1. Switches, as in Home Assistant's fake cameras:
    ``profile_g`` (False: GetServices lists the device service only), ``recordings`` (what the search finds; by
    default one spanning the whole peer recording), ``replay_url`` (the gst peer's mount, behind the front),
    ``replay_ranges``, ``replay_tag``, ``replay_lead_s``, ``rtsp_auth`` and ``rtsp_password`` (the front's, see
    ``RecorderFront``).
    ``calls`` lists every operation asked, in order; ``front.received`` every RTSP request."""

    recording: Recording
    replay_url: str  # the gst-rtsp-server address the front forwards to, without a query
    username: str
    password: str
    profile_g: bool = True
    recordings: list[DeviceRecording] | None = None
    replay_ranges: str = "clock"
    replay_tag: bool = True
    replay_lead_s: float = 0.0
    rtsp_auth: str = "basic"
    rtsp_password: str | None = None  # the password the RTSP side wants, when it is not the device's
    calls: list[str] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        if self.recordings is None:
            self.recordings = [DeviceRecording("rec-1", self.recording.start, self.recording.end)]
        self._runner: web.AppRunner | None = None
        parts = urlsplit(self.replay_url)
        self.front = RecorderFront(f"{parts.scheme}://{parts.netloc}", self.recording.start, self.username,
                                   self.password, ranges=self.replay_ranges, tag=self.replay_tag,
                                   lead_s=self.replay_lead_s, auth=self.rtsp_auth,
                                   client_password=self.rtsp_password)
        self._replay_path = parts.path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/onvif/device_service"

    async def __aenter__(self) -> ProfileGDevice:
        await self.front.start()
        app = web.Application()
        app.router.add_post("/onvif/{service}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.front.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        root = etree.fromstring(await request.read(), etree.XMLParser(resolve_entities=False, no_network=True))
        body = root.find("s:Body", NS)
        operation = etree.QName(body[0]).localname
        self.calls.append(operation)
        if operation not in AUTHLESS and not self._authorised(root):
            return self._fault("ter:NotAuthorized", "Sender not authorized")
        answer = getattr(self, f"op_{operation}", None)
        if answer is None:
            return self._fault("ter:ActionNotSupported", f"{operation} is not supported")
        return web.Response(text=ENVELOPE.format(body=answer(body[0])), content_type="application/soap+xml")

    def _authorised(self, root: etree._Element) -> bool:
        """WS-Security UsernameToken with PasswordDigest = Base64(SHA-1(nonce + created + password))."""
        token = root.find("s:Header/wsse:Security/wsse:UsernameToken", NS)
        if token is None:
            return False
        username = token.findtext("wsse:Username", namespaces=NS)
        password = token.find("wsse:Password", NS)
        nonce = token.findtext("wsse:Nonce", namespaces=NS) or ""
        created = token.findtext("wsu:Created", namespaces=NS) or ""
        if username != self.username or password is None:
            return False
        if (password.get("Type") or "").endswith("#PasswordText"):
            return password.text == self.password
        expected = base64.b64encode(hashlib.sha1(base64.b64decode(nonce) + created.encode() + self.password.encode()).digest())
        return (password.text or "").encode() == expected

    def _fault(self, subcode: str, reason: str) -> web.Response:
        body = (f'<s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value xmlns:ter="http://www.onvif.org/ver10/error">'
                f'{subcode}</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en">{reason}</s:Text></s:Reason></s:Fault>')
        return web.Response(status=400 if "NotAuthorized" in subcode else 500, text=ENVELOPE.format(body=body),
                            content_type="application/soap+xml")

    # --- device service ---

    def op_GetSystemDateAndTime(self, _: Any) -> str:
        now = datetime.now(UTC)
        return ("<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>Manual</tt:DateTimeType>"
                "<tt:DaylightSavings>false</tt:DaylightSavings><tt:UTCDateTime>"
                f"<tt:Time><tt:Hour>{now.hour}</tt:Hour><tt:Minute>{now.minute}</tt:Minute><tt:Second>{now.second}</tt:Second></tt:Time>"
                f"<tt:Date><tt:Year>{now.year}</tt:Year><tt:Month>{now.month}</tt:Month><tt:Day>{now.day}</tt:Day></tt:Date>"
                "</tt:UTCDateTime></tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>")

    def op_GetServices(self, _: Any) -> str:
        services = [(NS["tds"], "device_service")]
        if self.profile_g:
            services += [(NS["tse"], "search_service"), (NS["trp"], "replay_service")]
        items = "".join(f"<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>http://127.0.0.1:{self.port}/onvif/"
                        f"{path}</tds:XAddr><tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version>"
                        "</tds:Service>" for ns, path in services)
        return f"<tds:GetServicesResponse>{items}</tds:GetServicesResponse>"

    def op_GetCapabilities(self, _: Any) -> str:
        return (f"<tds:GetCapabilitiesResponse><tds:Capabilities><tt:Device><tt:XAddr>{self.url}</tt:XAddr></tt:Device>"
                "</tds:Capabilities></tds:GetCapabilitiesResponse>")

    def op_GetDeviceInformation(self, _: Any) -> str:
        return ("<tds:GetDeviceInformationResponse><tds:Manufacturer>ConsentCam Tests</tds:Manufacturer>"
                "<tds:Model>Profile G recorder</tds:Model><tds:FirmwareVersion>1.0</tds:FirmwareVersion>"
                "<tds:SerialNumber>PG-1</tds:SerialNumber><tds:HardwareId>PG</tds:HardwareId>"
                "</tds:GetDeviceInformationResponse>")

    # --- search service ---

    def op_GetRecordingSummary(self, _: Any) -> str:
        assert self.recordings is not None
        if not self.recordings:
            start = end = self.recording.start
        else:
            start, end = min(r.start for r in self.recordings), max(r.end for r in self.recordings)
        return (f"<tse:GetRecordingSummaryResponse><tse:Summary><tt:DataFrom>{_time(start)}</tt:DataFrom>"
                f"<tt:DataUntil>{_time(end)}</tt:DataUntil><tt:NumberRecordings>{len(self.recordings)}"
                "</tt:NumberRecordings></tse:Summary></tse:GetRecordingSummaryResponse>")

    def op_FindRecordings(self, _: Any) -> str:
        return "<tse:FindRecordingsResponse><tse:SearchToken>search-1</tse:SearchToken></tse:FindRecordingsResponse>"

    def op_GetRecordingSearchResults(self, _: Any) -> str:
        assert self.recordings is not None
        items = "".join(
            f"<tt:RecordingInformation><tt:RecordingToken>{r.token}</tt:RecordingToken><tt:Source>"
            "<tt:SourceId>camera-1</tt:SourceId><tt:Name>Front door</tt:Name><tt:Location>Door</tt:Location>"
            "<tt:Description>test</tt:Description><tt:Address>camera-1</tt:Address></tt:Source>"
            f"<tt:EarliestRecording>{_time(r.start)}</tt:EarliestRecording><tt:LatestRecording>{_time(r.end)}"
            "</tt:LatestRecording><tt:Content>continuous</tt:Content><tt:RecordingStatus>Stopped</tt:RecordingStatus>"
            "</tt:RecordingInformation>" for r in self.recordings)
        return (f"<tse:GetRecordingSearchResultsResponse><tse:ResultList><tt:SearchState>Completed</tt:SearchState>"
                f"{items}</tse:ResultList></tse:GetRecordingSearchResultsResponse>")

    def op_EndSearch(self, _: Any) -> str:
        return f"<tse:EndSearchResponse><tse:Endpoint>{_time(datetime.now(UTC))}</tse:Endpoint></tse:EndSearchResponse>"

    # --- replay service ---

    def op_GetReplayUri(self, request: Any) -> str:
        """The replay URI names the whole recording, at the front; the gst peer behind it reads that span from the
        query and serves it as one stream from the recording's start (``npt=0``), so the npt range the front sends
        it is a place in the recording."""
        token = request.findtext("trp:RecordingToken", namespaces=NS)
        assert self.recordings is not None
        (recording,) = [r for r in self.recordings if r.token == token]
        start, end = int(recording.start.timestamp()), int(recording.end.timestamp())
        return (f"<trp:GetReplayUriResponse><trp:Uri>{self.front.base}{self._replay_path}?start={start}&amp;end={end}"
                "</trp:Uri></trp:GetReplayUriResponse>")


# --- the recorder's RTSP front ----------------------------------------------------------------------------

DIGEST_REALM = "ConsentCam test recorder"
_CLOCK_RANGE = re.compile(r"clock=(\d{8}T\d{6}(?:\.\d+)?)Z-(?:(\d{8}T\d{6}(?:\.\d+)?)Z)?")
_NPT_ANSWER = re.compile(r"npt=(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)?")
_DIGEST_FIELD = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


@dataclass(frozen=True)
class Received:
    """One RTSP request as the front received it; header names in lower case."""

    method: str
    uri: str
    headers: dict[str, str]


def _clock_moment(text: str) -> datetime:
    whole, _, fraction = text.partition(".")
    moment = datetime.strptime(whole, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return moment + timedelta(seconds=float(f"0.{fraction}")) if fraction else moment


@dataclass
class RecorderFront:
    """The RTSP side of an ONVIF replay server, in front of the gst-rtsp-server peer at ``upstream``.

    ``ranges="clock"``: a PLAY with ``Require: onvif-replay`` and ``Range: clock=<UTC>-[<UTC>]`` plays from that
    time (sent on to gst as its offset from ``recording_start``, the answer's npt range turned back into clock);
    any other PLAY, npt range or none, plays from the recording's start, as a replay server does for a client that
    does not ask by time. ``ranges="npt"``: a recorder without clock ranges, which answers them 457 Invalid Range
    and passes npt ranges on. ``tag=False``: a recorder that does not know the ``onvif-replay`` feature tag and
    answers a request requiring it 551 Option not supported. ``lead_s``: a clock range plays from that many seconds
    before the asked start (a recorder whose key frames are far apart), and the answer says so. ``auth``: "basic"
    or "digest" (MD5, qop=auth, a fresh nonce per challenge, nonce counts that must grow), checked on every request
    against ``username`` and ``client_password`` (``password`` unless given); gst is asked with Basic and
    ``password``. ``Require`` never reaches gst (it would refuse a feature it does not know)."""

    upstream: str  # rtsp://127.0.0.1:<port>
    recording_start: datetime
    username: str
    password: str
    ranges: str = "clock"
    tag: bool = True
    lead_s: float = 0.0
    auth: str = "basic"
    client_password: str | None = None
    received: list[Received] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._nonces: dict[str, int] = {}  # nonce: the highest nonce count used with it

    @property
    def base(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}"

    def requests(self, method: str) -> list[Received]:
        return [request for request in self.received if request.method == method]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._relay(reader, writer)
        except asyncio.CancelledError:
            pass  # stopping; a connection task ending cancelled makes asyncio (3.11) log an error
        finally:
            self._connections.discard(task)
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parts = urlsplit(self.upstream)
        gst_reader, gst_writer = await asyncio.open_connection(parts.hostname, parts.port)
        answers: asyncio.Queue[tuple[str, list[tuple[str, str]], bytes]] = asyncio.Queue()

        async def from_gst() -> None:
            while (item := await _read_rtsp(gst_reader)) is not None:
                if isinstance(item, bytes):  # an interleaved packet
                    writer.write(item)
                    await writer.drain()
                else:
                    await answers.put(item)

        pump = asyncio.create_task(from_gst())
        try:
            while (item := await _read_rtsp(reader)) is not None:
                if isinstance(item, bytes):
                    gst_writer.write(item)
                else:
                    writer.write(await self._answer(item, gst_writer, answers))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            gst_writer.close()
            writer.close()

    async def _answer(self, request: tuple[str, list[tuple[str, str]], bytes], gst: asyncio.StreamWriter,
                      answers: asyncio.Queue[tuple[str, list[tuple[str, str]], bytes]]) -> bytes:
        line, header_list, body = request
        method, uri, _ = line.split(" ")
        headers = {name.lower(): value for name, value in header_list}
        self.received.append(Received(method, uri, headers))
        cseq = headers.get("cseq", "0")
        if not self._authorised(method, uri, headers.get("authorization")):
            return _reply("401 Unauthorized", cseq, [("WWW-Authenticate", self._challenge())])
        if not self.tag and "onvif-replay" in headers.get("require", ""):
            return _reply("551 Option not supported", cseq, [("Unsupported", "onvif-replay")])
        forward = [(n, v) for n, v in header_list if n.lower() not in ("authorization", "require", "range")]
        if method == "PLAY":
            npt = self._npt(headers.get("range", ""), headers.get("require", ""))
            if npt is None:
                return _reply("457 Invalid Range", cseq)
            forward.append(("Range", npt))
        basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        forward.append(("Authorization", f"Basic {basic}"))
        gst.write(_message(f"{method} {uri.replace(self.base, self.upstream)} RTSP/1.0", forward, body))
        await gst.drain()
        status_line, answer_headers, answer_body = await answers.get()
        answer_body = answer_body.replace(self.upstream.encode(), self.base.encode())
        answer_headers = [(n, v.replace(self.upstream, self.base)) for n, v in answer_headers]
        if method == "PLAY" and self.ranges == "clock":
            answer_headers = [(n, self._as_clock(v) if n.lower() == "range" else v) for n, v in answer_headers]
        return _message(status_line, answer_headers, answer_body)

    def _npt(self, asked: str, require: str) -> str | None:
        """The npt range gst gets for a PLAY's range; None when the front refuses the range (457)."""
        asked = asked.strip()
        if self.ranges == "npt":
            return None if asked.startswith("clock=") else (asked or "npt=0.000-")
        tagged = "onvif-replay" in [tag.strip() for tag in require.split(",")]
        if not (tagged and asked.startswith("clock=")):
            return "npt=0.000-"  # not asked by time the ONVIF way: from the recording's start
        clock = _CLOCK_RANGE.fullmatch(asked)
        if clock is None:
            return None
        start = (_clock_moment(clock.group(1)) - self.recording_start).total_seconds() - self.lead_s
        end = (_clock_moment(clock.group(2)) - self.recording_start).total_seconds() if clock.group(2) else None
        return f"npt={max(start, 0.0):.3f}-" + (f"{end:.3f}" if end is not None else "")

    def _as_clock(self, npt: str) -> str:
        found = _NPT_ANSWER.fullmatch(npt.strip())
        if not found:
            return npt
        start = self.recording_start + timedelta(seconds=float(found.group(1)))
        end = self.recording_start + timedelta(seconds=float(found.group(2))) if found.group(2) else None
        return f"clock={start:%Y%m%dT%H%M%S}Z-" + (f"{end:%Y%m%dT%H%M%S}Z" if end else "")

    def _challenge(self) -> str:
        if self.auth == "basic":
            return f'Basic realm="{DIGEST_REALM}"'
        nonce = secrets.token_hex(16)
        self._nonces[nonce] = 0
        return f'Digest realm="{DIGEST_REALM}", nonce="{nonce}", qop="auth", algorithm=MD5'

    def _authorised(self, method: str, uri: str, header: str | None) -> bool:
        scheme, _, value = (header or "").partition(" ")
        password = self.password if self.client_password is None else self.client_password
        if self.auth == "basic":
            expected = base64.b64encode(f"{self.username}:{password}".encode()).decode()
            return scheme == "Basic" and hmac.compare_digest(value.strip(), expected)
        if scheme != "Digest":
            return False
        fields = {name: quoted or bare for name, quoted, bare in _DIGEST_FIELD.findall(value)}
        nonce, count = fields.get("nonce", ""), int(fields.get("nc", "0") or "0", 16)
        if (fields.get("username") != self.username or fields.get("realm") != DIGEST_REALM or fields.get("uri") != uri
                or fields.get("qop") != "auth" or nonce not in self._nonces or count <= self._nonces[nonce]):
            return False

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        secret, asked = md5(f"{self.username}:{DIGEST_REALM}:{password}"), md5(f"{method}:{uri}")
        expected = md5(f"{secret}:{nonce}:{fields['nc']}:{fields.get('cnonce', '')}:auth:{asked}")
        if not hmac.compare_digest(expected, fields.get("response", "")):
            return False
        self._nonces[nonce] = count
        return True


async def _read_rtsp(reader: asyncio.StreamReader) -> bytes | tuple[str, list[tuple[str, str]], bytes] | None:
    """The next interleaved packet (as raw bytes) or RTSP message (first line, headers, body); None at the end."""
    first = await reader.read(1)
    if not first:
        return None
    if first == b"$":
        head = await reader.readexactly(3)
        return first + head + await reader.readexactly(int.from_bytes(head[1:], "big"))
    lines = (first + await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
    headers = [(name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:] if line)]
    length = int(next((value for name, value in headers if name.lower() == "content-length"), "0"))
    return lines[0], headers, await reader.readexactly(length) if length else b""


def _message(line: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
    if body:
        headers.append(("Content-Length", str(len(body))))
    return (line + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n").encode() + body


def _reply(status: str, cseq: str, headers: list[tuple[str, str]] | None = None) -> bytes:
    return _message(f"RTSP/1.0 {status}", [("CSeq", cseq), *(headers or [])])


# --- reading a clip ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipFacts:
    duration_s: float
    times: list[datetime | None]
    codec: str
    width: int
    height: int

    @property
    def first_time(self) -> datetime | None:
        return self.times[0] if self.times else None

    @property
    def last_time(self) -> datetime | None:
        return self.times[-1] if self.times else None


def read_clip(path: Path, recording: Recording) -> ClipFacts:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [recording.time_shown(frame.to_ndarray(format="gray")) for frame in container.decode(stream)]
        return ClipFacts(duration_s=container.duration / 1_000_000 if container.duration else 0.0, times=times,
                         codec=stream.codec_context.name, width=stream.codec_context.width,
                         height=stream.codec_context.height)


def seconds_between(a: datetime | None, b: datetime) -> float:
    assert a is not None, "the frame's time code did not read"
    return (a - b).total_seconds()


def temporary_folder(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def closed_port() -> int:
    """A port nothing listens on (taken and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ONE_SECOND = timedelta(seconds=1)


def running_ipycam(folder: Path) -> IpyCam:
    """A started ipycam on 127.0.0.1, or the test fails (never skips) saying why."""
    import pytest

    camera = IpyCam(folder)
    try:
        return camera.start()
    except PeerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
