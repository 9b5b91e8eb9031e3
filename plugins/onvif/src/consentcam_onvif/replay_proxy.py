"""A local RTSP proxy through which FFmpeg replays an ONVIF recording by absolute time.

ONVIF replay (Streaming spec, section 6) positions playback with PLAY's ``Range: clock=<UTC>-<UTC>`` and asks for
the ``Require: onvif-replay`` header. FFmpeg, and so PyAV, sends neither: its PLAY says ``npt=<seconds>-``. Rather
than a second RTSP client (unpacking H.264 and H.265 from RTP is FFmpeg's job, and it does it well), a pull points
FFmpeg at this proxy on 127.0.0.1, which carries FFmpeg's RTSP session to the recorder over one TCP connection and
changes only what ONVIF replay needs:

- PLAY's ``Range`` becomes ``clock=<window start>-<window end>``; DESCRIBE, SETUP and PLAY carry
  ``Require: onvif-replay``. A recorder that refuses the clock range (``CLOCK_REFUSALS``: 457 Invalid Range,
  551 Option not supported, ...) gets the same PLAY again with ``npt=<offset>-``, the window's offset into the
  recording; a recorder that refuses the feature tag (551) gets its requests again without it.
  ``ReplaySession`` records which range played and what the recorder answered, for the provenance.
- Authentication: the proxy answers the recorder's challenge itself (Basic, or Digest with MD5 or SHA-256, with
  ``qop=auth`` or the older form without qop), retrying a 401 once; a 401 that stands reaches FFmpeg without the
  challenge. FFmpeg never holds the credentials: they are not in its URL, its logs or its errors.
- CSeq: the proxy numbers its own requests to the recorder (a retry is a new request) and gives FFmpeg's numbers
  back on the answers.
- URLs: FFmpeg's request URIs move from the proxy's base to the recorder's; absolute URLs in ``Content-Base``,
  ``Content-Location``, ``RTP-Info`` and the SDP's ``a=control`` lines move back. Any host the recorder names is
  mapped to the proxy (a recorder behind NAT often names its LAN address), so everything travels on the one
  connection the proxy opened.

Media: FFmpeg is told to take RTP over the RTSP connection (TCP, interleaved), the transport the ONVIF Streaming
spec recommends for replay; the packets (``$``, channel, 16-bit length, data) pass through untouched in both
directions, between and around RTSP messages. ``Parser`` splits a byte stream into both, however the reads cut it,
and fails at once on bytes that are neither.

The proxy listens on 127.0.0.1, on a port the OS picks, under a random path, for the length of one pull, and
connects to the recorder at a connection's first request; a request for any other path is refused (403) before
that, so another local program cannot borrow the owner's session. A recorder out of reach gets FFmpeg a 503, and
the reason is kept (``ReplaySession.error``) for the pull's error message.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import secrets
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from urllib.parse import urlsplit

from consentcam_rtsp.masking import scrub

log = logging.getLogger(__name__)

ONVIF_REPLAY = "onvif-replay"
# Requests that set up and position a replay carry the feature tag; OPTIONS, keep-alives and TEARDOWN do not.
TAGGED_METHODS = frozenset({"DESCRIBE", "SETUP", "PLAY"})
# Answers to a PLAY with a clock range after which the same PLAY is sent again with an npt offset: the recorder
# cannot parse the range (400, 458), does not do it (457 Invalid Range, 501), or refuses the feature (551).
CLOCK_REFUSALS = frozenset({400, 457, 458, 501, 551})
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322}

MAX_START_LINE = 8 * 1024
MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024  # an SDP is a few kilobytes


class RtspProtocolError(Exception):
    """Bytes on an RTSP connection that are neither an RTSP message nor an interleaved frame."""


# --- the wire -------------------------------------------------------------------------------------------


@dataclass
class Message:
    """One RTSP request (``DESCRIBE rtsp://... RTSP/1.0``) or response (``RTSP/1.0 200 OK``): its start line,
    its headers in order, its body."""

    start_line: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return not self.start_line.startswith("RTSP/")

    @property
    def method(self) -> str:
        return self.start_line.split(" ", 1)[0] if self.is_request else ""

    @property
    def uri(self) -> str:
        return self.start_line.split(" ")[1]

    @property
    def status(self) -> int:
        return int(self.start_line.split(" ")[1]) if not self.is_request else 0

    @property
    def status_line(self) -> str:
        """``457 Invalid Range``: the answer without the protocol."""
        return self.start_line.split(" ", 1)[1] if not self.is_request else ""

    def get(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` header by one, in the first one's place (or at the end)."""
        at = next((i for i, (key, _) in enumerate(self.headers) if key.lower() == name.lower()), len(self.headers))
        self.remove(name)
        self.headers.insert(at, (name, value))

    def remove(self, name: str) -> None:
        self.headers = [(key, value) for key, value in self.headers if key.lower() != name.lower()]

    def with_uri(self, uri: str) -> None:
        method, _, version = self.start_line.split(" ")
        self.start_line = f"{method} {uri} {version}"

    def copy(self) -> Message:
        return Message(self.start_line, list(self.headers), self.body)

    def encode(self) -> bytes:
        """The message on the wire, its Content-Length saying the body's length."""
        headers = [(key, value) for key, value in self.headers if key.lower() != "content-length"]
        if self.body:
            headers.append(("Content-Length", str(len(self.body))))
        head = "".join(f"{key}: {value}\r\n" for key, value in headers)
        return f"{self.start_line}\r\n{head}\r\n".encode("utf-8", "surrogateescape") + self.body


@dataclass(frozen=True)
class Frame:
    """One interleaved packet: RTP or RTCP on ``channel``, carried inside the RTSP connection."""

    channel: int
    data: bytes

    def encode(self) -> bytes:
        return b"$" + bytes([self.channel]) + len(self.data).to_bytes(2, "big") + self.data


_REQUEST_LINE = re.compile(r"[A-Z][A-Z_-]* \S+ RTSP/1\.\d")
_RESPONSE_LINE = re.compile(r"RTSP/1\.\d \d{3}( .*)?")
_HEAD_END = re.compile(rb"\r?\n\r?\n")


class Parser:
    """Splits one direction of an RTSP connection into ``Message`` and ``Frame`` items, however the reads cut it.

    No I/O: ``feed`` the bytes that arrived and take the items they completed; ``end`` when the connection
    closes. Bytes that are neither raise ``RtspProtocolError`` as soon as they show, never a wait for more.
    """

    def __init__(self, peer: str) -> None:
        self.peer = peer  # who sends these bytes, for error messages: "the recorder", "FFmpeg"
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message | Frame]:
        self._buffer += data
        items: list[Message | Frame] = []
        while (item := self._next()) is not None:
            items.append(item)
        return items

    def end(self) -> None:
        """The connection closed: an error if it cut a message or a frame short."""
        if self._buffer.strip(b"\r\n"):
            what = "an interleaved frame" if self._buffer.lstrip(b"\r\n")[:1] == b"$" else "an RTSP message"
            raise RtspProtocolError(f"{self.peer} closed the connection in the middle of {what} "
                                    f"({len(self._buffer)} bytes unread)")

    def _next(self) -> Message | Frame | None:
        buffer = self._buffer
        while buffer[:1] in (b"\r", b"\n"):  # stray line ends between messages, which some servers send
            del buffer[:1]
        if not buffer:
            return None
        if buffer[0] == ord("$"):
            if len(buffer) < 4:
                return None
            length = int.from_bytes(buffer[2:4], "big")
            if len(buffer) < 4 + length:
                return None
            frame = Frame(buffer[1], bytes(buffer[4:4 + length]))
            del buffer[:4 + length]
            return frame
        if not ord("A") <= buffer[0] <= ord("Z"):
            raise RtspProtocolError(f"{self.peer} sent {bytes(buffer[:16])!r}: neither an RTSP message nor an "
                                    "interleaved frame")
        line_end = buffer.find(b"\n")
        if line_end < 0:
            if len(buffer) > MAX_START_LINE:
                raise RtspProtocolError(f"{self.peer} sent a first line longer than {MAX_START_LINE} bytes")
            return None
        start_line = bytes(buffer[:line_end]).rstrip(b"\r").decode("utf-8", "surrogateescape")
        if not (_REQUEST_LINE.fullmatch(start_line) or _RESPONSE_LINE.fullmatch(start_line)):
            raise RtspProtocolError(f"{self.peer} sent {start_line[:80]!r}: not an RTSP request or status line")
        head_end = _HEAD_END.search(buffer, line_end - 1 if line_end else 0)
        if head_end is None:
            if len(buffer) > MAX_HEAD:
                raise RtspProtocolError(f"{self.peer} sent a message head longer than {MAX_HEAD} bytes")
            return None
        message = Message(start_line, _headers(bytes(buffer[line_end + 1:head_end.start()]), self.peer))
        length = _content_length(message, self.peer)
        if len(buffer) < head_end.end() + length:
            return None
        message.body = bytes(buffer[head_end.end():head_end.end() + length])
        del buffer[:head_end.end() + length]
        return message


def _headers(block: bytes, peer: str) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for raw in block.decode("utf-8", "surrogateescape").split("\n"):
        raw = raw.removesuffix("\r")
        if raw[:1] in (" ", "\t") and headers:  # a folded line continues the header above
            key, value = headers[-1]
            headers[-1] = (key, f"{value} {raw.strip()}")
            continue
        key, colon, value = raw.partition(":")
        if not colon or not key.strip() or key != key.strip():
            raise RtspProtocolError(f"{peer} sent a header line without a name: {raw[:80]!r}")
        headers.append((key, value.strip()))
    return headers


def _content_length(message: Message, peer: str) -> int:
    text = message.get("Content-Length")
    if text is None:
        return 0
    if not text.isdigit() or int(text) > MAX_BODY:
        raise RtspProtocolError(f"{peer} sent Content-Length {text[:20]!r}: not a length up to {MAX_BODY} bytes")
    return int(text)


# --- ranges ---------------------------------------------------------------------------------------------


def clock_time(moment: datetime) -> str:
    """An absolute time as RTSP's ``clock=`` ranges write it (RFC 2326 3.7, UTC): 20261130T030000Z, with a fraction
    of a second only when there is one (20261130T030000.5Z)."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y%m%dT%H%M%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


_CLOCK_TIME = re.compile(r"\d{8}T\d{6}(\.\d+)?Z")


def parse_clock_time(text: str) -> datetime:
    """The moment a ``clock=`` range writes as ``20261130T030000Z`` or ``20261130T030000.5Z``; ValueError if none."""
    if not _CLOCK_TIME.fullmatch(text):
        raise ValueError(f"not a UTC clock time: {text!r}")
    whole, _, fraction = text.removesuffix("Z").partition(".")
    moment = datetime.strptime(whole, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return moment + timedelta(seconds=float(f"0.{fraction}")) if fraction else moment


def clock_range(start: datetime, end: datetime) -> str:
    return f"clock={clock_time(start)}-{clock_time(end)}"


def npt_range(offset_s: float) -> str:
    return f"npt={offset_s:.3f}-"


# --- authentication ---------------------------------------------------------------------------------------


_AUTH_PARAM = re.compile(r'\s*([\w-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')
_DIGEST_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: its scheme (lower case) and parameters (names in lower case)."""

    scheme: str
    params: dict[str, str]

    @classmethod
    def parse(cls, value: str) -> Challenge:
        scheme, _, rest = value.strip().partition(" ")
        params = {}
        for match in _AUTH_PARAM.finditer(rest):
            raw = match.group(2)
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            params.setdefault(match.group(1).lower(), raw)  # the first wins (another scheme's may follow)
        return cls(scheme.lower(), params)

    @property
    def answerable(self) -> bool:
        if self.scheme == "basic":
            return True
        if self.scheme != "digest" or "nonce" not in self.params:
            return False
        algorithm = self.params.get("algorithm", "MD5").upper().removesuffix("-SESS")
        qops = _qops(self)
        return algorithm in _DIGEST_HASHES and (not qops or "auth" in qops)


def _qops(challenge: Challenge) -> list[str]:
    return [q.strip().lower() for q in challenge.params.get("qop", "").split(",") if q.strip()]


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Authenticator:
    """Answers a recorder's challenges with the owner's credentials, which it holds and never shows."""

    def __init__(self, username: str | None, password: str | None) -> None:
        self._username, self._password = username or "", password or ""
        self._challenge: Challenge | None = None
        self._count = 0  # Digest nonce count: how many requests used the current nonce

    def __repr__(self) -> str:  # never the credentials
        return f"Authenticator(scheme={self.scheme!r})"

    @property
    def scheme(self) -> str | None:
        return self._challenge.scheme if self._challenge else None

    def learn(self, response: Message) -> bool:
        """Take the best challenge of a 401 that these credentials can answer (Digest before Basic). False when
        there is nothing to answer with: the 401 stands."""
        if not (self._username or self._password):
            return False
        challenges = [Challenge.parse(value) for value in response.get_all("WWW-Authenticate")]
        usable = sorted((c for c in challenges if c.answerable), key=lambda c: c.scheme != "digest")
        if not usable:
            return False
        self._challenge, self._count = usable[0], 0
        return True

    def header(self, method: str, uri: str) -> str | None:
        """The ``Authorization`` value for a request, or None before the recorder asked for one."""
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return "Basic " + base64.b64encode(f"{self._username}:{self._password}".encode()).decode()
        self._count += 1
        return digest_authorization(challenge, self._username, self._password, method, uri, self._count,
                                    secrets.token_hex(8))


def digest_authorization(challenge: Challenge, username: str, password: str, method: str, uri: str, count: int,
                         cnonce: str) -> str:
    """The ``Authorization`` value answering a Digest challenge: RFC 7616 with ``qop=auth`` (MD5 or SHA-256, and
    their ``-sess`` forms), or RFC 2069 when the challenge names no qop."""
    params = challenge.params
    algorithm = params.get("algorithm", "MD5")
    digest = _DIGEST_HASHES[algorithm.upper().removesuffix("-SESS")]

    def hash_of(text: str) -> str:
        return digest(text.encode("utf-8")).hexdigest()

    realm, nonce = params.get("realm", ""), params["nonce"]
    secret = hash_of(f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        secret = hash_of(f"{secret}:{nonce}:{cnonce}")
    request = hash_of(f"{method}:{uri}")
    fields = [("username", _quoted(username)), ("realm", _quoted(realm)), ("nonce", _quoted(nonce)),
              ("uri", _quoted(uri))]
    if _qops(challenge):
        nc = f"{count:08x}"
        answer = hash_of(f"{secret}:{nonce}:{nc}:{cnonce}:auth:{request}")
        fields += [("response", _quoted(answer)), ("qop", "auth"), ("nc", nc), ("cnonce", _quoted(cnonce))]
    else:
        fields.append(("response", _quoted(hash_of(f"{secret}:{nonce}:{request}"))))
    if "algorithm" in params:
        fields.append(("algorithm", algorithm))
    if "opaque" in params:
        fields.append(("opaque", _quoted(params["opaque"])))
    return "Digest " + ", ".join(f"{key}={value}" for key, value in fields)


# --- the proxy --------------------------------------------------------------------------------------------


@dataclass
class ReplaySession:
    """What happened on one connection FFmpeg opened through the proxy (a pull may open several)."""

    range: str | None = None  # "clock" or "npt": the form of the PLAY range the recorder accepted
    range_sent: str | None = None  # that PLAY's Range header
    range_answered: str | None = None  # the recorder's Range in its answer: what it says it plays
    clock_refused: str | None = None  # the recorder's answer to the clock range, when it refused it
    onvif_replay: bool = True  # False once the recorder refused Require: onvif-replay (551)
    authentication: str | None = None  # "basic" or "digest", when the recorder asked for credentials
    error: str | None = None  # why the proxy ended the connection early


_ABSOLUTE_URL = re.compile(r"rtsps?://[^/\s;,\"?]*")  # an RTSP URL's scheme and authority, userinfo included


class ReplayProxy:
    """The proxy for one pull. ``async with ReplayProxy(...) as proxy``: give FFmpeg ``proxy.url`` (TCP only); once
    it is done, ``proxy.played`` says how the recorder was positioned.

    ``replay_uri`` is the recorder's (without credentials); the PLAY range is ``clock=<start>-<end>``, or
    ``npt=<offset_s>-`` when the recorder refuses that. ``timeout_s`` bounds connecting to the recorder and
    each of its answers.
    """

    def __init__(self, replay_uri: str, start: datetime, end: datetime, offset_s: float, username: str | None,
                 password: str | None, *, timeout_s: float) -> None:
        parts = urlsplit(replay_uri)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an RTSP URL: {replay_uri}")
        self.recorder_host = parts.hostname
        self.recorder_port = parts.port or DEFAULT_PORTS[parts.scheme]
        self._tls = parts.scheme == "rtsps"
        self._recorder_base = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self._rest = replay_uri[len(f"{parts.scheme}://{parts.netloc}"):]  # path and query
        self.clock = clock_range(start, end)
        self.npt = npt_range(offset_s)
        self._username, self._password = username, password
        self.timeout_s = timeout_s
        self._token = secrets.token_urlsafe(16)
        self.base = ""  # rtsp://127.0.0.1:<port>/<token>, once listening
        self.sessions: list[ReplaySession] = []
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:  # never the credentials
        return f"ReplayProxy({self._recorder_base})"

    @property
    def url(self) -> str:
        """Where FFmpeg connects: the replay URI's path and query under the proxy's base."""
        return self.base + self._rest

    @property
    def played(self) -> ReplaySession | None:
        """The last connection whose PLAY the recorder accepted."""
        return next((session for session in reversed(self.sessions) if session.range), None)

    async def __aenter__(self) -> ReplayProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base = f"rtsp://127.0.0.1:{port}/{self._token}"
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        session = ReplaySession()
        self.sessions.append(session)
        try:
            await _Connection(self, session, reader, writer).run()
        except asyncio.CancelledError:
            pass  # the proxy is closing; a connection task ending cancelled makes asyncio (3.11) log an error
        finally:
            self._connections.discard(task)
            writer.close()

    # --- URLs ---

    def to_recorder(self, uri: str) -> str | None:
        """A request URI from FFmpeg as the recorder knows it; None when it is not under the proxy's base."""
        if uri == "*":
            return uri
        rest = uri[len(self.base):]
        if not uri.startswith(self.base) or rest[:1] not in ("", "/", "?"):
            return None
        return self._recorder_base + rest

    def to_client(self, text: str) -> str:
        """Every absolute RTSP URL in ``text`` pointed at the proxy (credentials in one are dropped)."""
        return _ABSOLUTE_URL.sub(lambda _: self.base, text)

    async def open_recorder(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        context = None
        if self._tls:
            # As FFmpeg does by default (tls_verify=0), which is how this plugin opened rtsps replay URIs before:
            # recorders on owners' networks carry self-signed certificates.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        async with asyncio.timeout(self.timeout_s):
            return await asyncio.open_connection(self.recorder_host, self.recorder_port, ssl=context)

    def authenticator(self) -> Authenticator:
        return Authenticator(self._username, self._password)

    def scrub(self, text: str) -> str:
        return scrub(text, (self._password, self._username))


class _Connection:
    """One FFmpeg connection and the recorder connection opened for it, at FFmpeg's first request.

    Two loops: FFmpeg's side reads requests and handles each in turn (send, maybe retry, answer), passing its
    interleaved frames (RTCP receiver reports) straight on; the recorder's side passes frames to FFmpeg and hands
    each answer to the request waiting for it, found by CSeq. When either side closes, so does the other.
    """

    def __init__(self, proxy: ReplayProxy, session: ReplaySession, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.proxy, self.session = proxy, session
        self.client_reader, self.client_writer = reader, writer
        self.auth = proxy.authenticator()
        self._cseq = 0
        self._waiting: dict[int, asyncio.Future[Message]] = {}
        self._group: asyncio.TaskGroup | None = None
        self.recorder_writer: asyncio.StreamWriter | None = None

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as self._group:
                self._group.create_task(self._from_client())
        except* (RtspProtocolError, _Closed, OSError, TimeoutError) as errors:
            first = errors.exceptions[0]
            if not isinstance(first, _Closed):  # its text may quote the recorder: never let a password through
                self.session.error = self.proxy.scrub(str(first) or type(first).__name__)
            if self.session.error:
                log.warning("replay proxy %r: %s", self.proxy, self.session.error)
        finally:
            if self.recorder_writer is not None:
                self.recorder_writer.close()

    async def _connect(self, cseq: str) -> None:
        """Open the recorder's connection, once; a recorder out of reach gets FFmpeg a 503 and ends this one."""
        if self.recorder_writer is not None:
            return
        try:
            reader, self.recorder_writer = await self.proxy.open_recorder()
        except (OSError, TimeoutError) as exc:
            self.session.error = (f"could not connect to {self.proxy.recorder_host}:{self.proxy.recorder_port}: "
                                  f"{exc or 'timed out'}")
            await self._answer_client(Message("RTSP/1.0 503 Service Unavailable", [("CSeq", cseq)]))
            raise _Closed from None
        assert self._group is not None
        self._group.create_task(self._from_recorder(reader))

    # --- FFmpeg's side ---

    async def _from_client(self) -> None:
        parser = Parser("FFmpeg")
        while data := await self.client_reader.read(65536):
            for item in parser.feed(data):
                if isinstance(item, Frame):
                    await self._to_recorder_raw(item.encode())
                elif not item.is_request:  # FFmpeg answering a request of the recorder's
                    await self._to_recorder_raw(item.encode())
                else:
                    await self._handle(item)
        parser.end()
        raise _Closed

    async def _handle(self, request: Message) -> None:
        client_cseq = request.get("CSeq")
        upstream = self._for_recorder(request)
        if upstream is None:
            await self._answer_client(Message("RTSP/1.0 403 Forbidden", [("CSeq", client_cseq or "0")]))
            raise _Closed
        await self._connect(client_cseq or "0")
        response = await self._send(upstream)
        if upstream.method == "PLAY":
            response = await self._play_answered(upstream, response)
        response = self._for_client(response)
        response.set("CSeq", client_cseq or "0")
        await self._answer_client(response)

    def _for_recorder(self, request: Message) -> Message | None:
        uri = self.proxy.to_recorder(request.uri)
        if uri is None:
            log.warning("replay proxy: refused a request outside the proxy's path")
            return None
        upstream = request.copy()
        upstream.with_uri(uri)
        upstream.remove("Authorization")  # FFmpeg has no credentials; the proxy answers for them
        if upstream.method in TAGGED_METHODS and self.session.onvif_replay:
            upstream.set("Require", ONVIF_REPLAY)
        if upstream.method == "PLAY":
            upstream.set("Range", self.proxy.clock)
        return upstream

    async def _play_answered(self, play: Message, response: Message) -> Message:
        """A clock range refused: the same PLAY with the window's npt offset. Either way, note what played."""
        if response.status in CLOCK_REFUSALS and play.get("Range") == self.proxy.clock:
            self.session.clock_refused = response.status_line
            log.info("replay proxy: the recorder refused %s (%s); playing %s instead", self.proxy.clock,
                     response.status_line, self.proxy.npt)
            play = play.copy()
            play.set("Range", self.proxy.npt)
            if not self.session.onvif_replay:
                play.remove("Require")
            response = await self._send(play)
        if response.status == 200:
            range_sent = play.get("Range") or ""
            self.session.range = range_sent.partition("=")[0]
            self.session.range_sent = range_sent
            self.session.range_answered = response.get("Range")
        return response

    def _for_client(self, response: Message) -> Message:
        answer = response.copy()
        # The proxy answers challenges; a 401 that reaches FFmpeg is final, and without one FFmpeg does not try
        # again with the empty credentials it has.
        answer.remove("WWW-Authenticate")
        for name in ("Content-Base", "Content-Location", "RTP-Info"):
            value = answer.get(name)
            if value is not None:
                answer.set(name, self.proxy.to_client(value))
        if (answer.get("Content-Type") or "").lower().startswith("application/sdp"):
            lines = answer.body.decode("utf-8", "surrogateescape").split("\n")
            answer.body = "\n".join(self.proxy.to_client(line) if line.startswith("a=control:") else line
                                    for line in lines).encode("utf-8", "surrogateescape")
        return answer

    async def _answer_client(self, message: Message) -> None:
        await self._to_client_raw(message.encode())

    async def _to_client_raw(self, data: bytes) -> None:
        """FFmpeg gone (it closes right after its TEARDOWN, without waiting for the answer) ends the connection."""
        try:
            self.client_writer.write(data)
            await self.client_writer.drain()
        except ConnectionError as exc:
            raise _Closed from exc

    # --- the recorder's side ---

    async def _send(self, request: Message) -> Message:
        """Send a request, and once more after a 401 the credentials can answer, or after a 551 that refused the
        feature tag (without it, for the rest of the connection)."""
        response = await self._exchange(request)
        if response.status == 401 and self.auth.learn(response):
            self.session.authentication = self.auth.scheme
            response = await self._exchange(request)
        if response.status == 551 and request.get("Require") == ONVIF_REPLAY:
            log.info("replay proxy: the recorder does not know %s (%s)", ONVIF_REPLAY, response.status_line)
            self.session.onvif_replay = False
            request = request.copy()
            request.remove("Require")
            response = await self._exchange(request)
        return response

    async def _exchange(self, request: Message) -> Message:
        """One request to the recorder, with our own CSeq and the credentials, and its answer."""
        self._cseq += 1
        cseq = self._cseq
        sent = request.copy()
        sent.set("CSeq", str(cseq))
        authorization = self.auth.header(sent.method, sent.uri)
        if authorization:
            sent.set("Authorization", authorization)
        answer: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[cseq] = answer
        try:
            await self._to_recorder_raw(sent.encode())
            async with asyncio.timeout(self.proxy.timeout_s):
                return await answer
        except TimeoutError:
            raise TimeoutError(f"the recorder did not answer {sent.method} within {self.proxy.timeout_s:g} s") from None
        finally:
            self._waiting.pop(cseq, None)

    async def _to_recorder_raw(self, data: bytes) -> None:
        if self.recorder_writer is None:
            raise RtspProtocolError("FFmpeg sent media or an answer before any request")
        self.recorder_writer.write(data)
        await self.recorder_writer.drain()

    async def _from_recorder(self, reader: asyncio.StreamReader) -> None:
        parser = Parser("the recorder")
        while data := await reader.read(65536):
            for item in parser.feed(data):
                if isinstance(item, Frame):
                    await self._to_client_raw(item.encode())
                elif item.is_request:  # the recorder asking FFmpeg something (rare): pass it on
                    await self._answer_client(self._for_client(item))
                else:
                    self._answered(item)
        parser.end()
        raise _Closed

    def _answered(self, response: Message) -> None:
        cseq = response.get("CSeq")
        waiting = self._waiting.get(int(cseq)) if cseq and cseq.isdigit() else None
        if waiting is None and cseq is None and len(self._waiting) == 1:
            waiting = next(iter(self._waiting.values()))  # a recorder that forgets CSeq, with one request out
        if waiting is None or waiting.done():
            log.info("replay proxy: dropped an answer to no request of ours (CSeq %s)", cseq)
            return
        waiting.set_result(response)


class _Closed(Exception):
    """One side closed its connection: the other is closed too."""

