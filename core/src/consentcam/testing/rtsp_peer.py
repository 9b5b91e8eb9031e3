"""Real RTSP peers for tests, shared by the RTSP, ONVIF and edge-relay suites.

- ``RtspServer``: Debian's gst-rtsp-server, run by ``peers/gst_rtsp_server.py`` under Debian's ``/usr/bin/python3``
  (its GObject bindings are built for that interpreter, not for the project's virtual environment). It serves a
  live camera (``/live``, with ``clockoverlay``) and recorder-like playback mounts that map Hikvision, Dahua and
  generic time-window URLs onto one recorded file. Several servers run in the one process, each on its own port:
  see ``DEFAULT_SERVERS``.
- ``UdpRelay``: Debian's ``rtsp-server-perl``, a second and independent RTSP server that serves clients over UDP
  only (it answers a TCP-interleaved SETUP with 400), fed by an FFmpeg publisher looping the recorded file.
- ``make_recording``: the recorded file, made with FFmpeg: every frame shows its wall-clock time as text for people
  (``drawtext``) and its frame number as a row of black and white blocks for tests (bits, low bit on the left,
  then the same bits inverted as a check), so ``frame_number`` reads the time from pixels without OCR.

For relay and latency tests: ``/live`` shows the wall clock as text only (``clockoverlay``, for people); a
machine-readable time is in the recording's frames, so read the recorder mounts or ``UdpRelay`` (which loops
the recording: frame numbers wrap every ``RECORDING_SECONDS``) with ``Recording.time_shown``/``frame_number``.

A missing Debian package is an error naming the packages to install, never a skip: ``.ci/run`` installs them.
The pytest fixtures (``consentcam_rtsp_recording``, ``consentcam_rtsp_server``, ``consentcam_rtsp_udp_relay``)
are in ``consentcam.testing.pytest_plugin``.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).parent / "peers" / "gst_rtsp_server.py"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
DEBIAN_PACKAGES = (
    "ffmpeg", "python3-gst-1.0", "gir1.2-gst-rtsp-server-1.0", "gstreamer1.0-rtsp", "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good", "gstreamer1.0-plugins-ugly", "gstreamer1.0-plugins-bad", "gstreamer1.0-libav",
    "gstreamer1.0-tools", "gstreamer1.0-x", "fonts-dejavu-core", "rtsp-server-perl",
)
INSTALL_HINT = "apt-get install --no-install-recommends " + " ".join(DEBIAN_PACKAGES) + " (.ci/run does this)"

# The recording: within the default FakeClock's past (12:00 UTC), so a request for it is a valid request.
RECORDING_START = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
RECORDING_SECONDS = 90
FPS = 10
WIDTH, HEIGHT = 320, 240
CODE_BITS = 16
CODE_BLOCK = 20  # pixels: CODE_BITS blocks of CODE_BLOCK x CODE_BLOCK, bits in the top row, inverted below

# Credentials of the "auth" server: characters that must be percent-encoded in a URL's userinfo, on purpose.
PEER_USERNAME = "owner"
PEER_PASSWORD = "s3cr:t/p@ss%w0rd"

# name: what that server offers. Tests pick the server by name; each has its own port.
DEFAULT_SERVERS: tuple[dict[str, Any], ...] = (
    {"name": "main", "live": True, "recorder_timezone": "UTC"},
    {"name": "chicago", "recorder_timezone": "America/Chicago"},
    {"name": "udp", "recorder_timezone": "UTC", "protocols": "udp"},
    {"name": "auth", "live": True, "recorder_timezone": "UTC", "auth": [PEER_USERNAME, PEER_PASSWORD]},
)


class PeerUnavailable(RuntimeError):
    """A peer could not start: a Debian package is missing or the process failed. The message says which."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_range(count: int, low: int = 20000, high: int = 60000) -> int:
    """An even UDP port with ``count`` free ports from it (rtsp-server-perl takes RTP ports upwards from one)."""
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(low, high - count, 2)
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise PeerUnavailable(f"no {count} free UDP ports in a row between {low} and {high}")


def wait_for_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# --- the recording --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    path: Path
    start: datetime
    seconds: int
    fps: int
    width: int
    height: int

    @property
    def frame_interval_s(self) -> float:
        return 1.0 / self.fps

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.seconds)

    def time_of_frame(self, number: int) -> datetime:
        return self.start + timedelta(seconds=number / self.fps)

    def time_shown(self, luma: Any) -> datetime | None:
        """The wall-clock time burnt into a decoded frame (its Y plane), or None when the code does not read."""
        number = frame_number(luma)
        return None if number is None else self.time_of_frame(number)


def frame_number(luma: Any) -> int | None:
    """The frame number in the block code at the top of a frame's luma plane; None if the check row disagrees."""
    plane = np.asarray(luma, dtype=np.float32)
    margin = CODE_BLOCK // 4
    bits, check = [], []
    for i in range(CODE_BITS):
        x0, x1 = i * CODE_BLOCK + margin, (i + 1) * CODE_BLOCK - margin
        bits.append(plane[margin:CODE_BLOCK - margin, x0:x1].mean() > 128)
        check.append(plane[CODE_BLOCK + margin:2 * CODE_BLOCK - margin, x0:x1].mean() > 128)
    if any(b == c for b, c in zip(bits, check, strict=True)):
        return None
    return sum(1 << i for i, bit in enumerate(bits) if bit)


def _require(tool: str, package: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise PeerUnavailable(f"{tool} is missing (Debian package {package}); {INSTALL_HINT}")
    return found


def make_recording(folder: Path, *, start: datetime = RECORDING_START, seconds: int = RECORDING_SECONDS, fps: int = FPS,
                   width: int = WIDTH, height: int = HEIGHT) -> Recording:
    """An H.264 MP4 like a recorder's: baseline, no B-frames, a key frame every second (on the whole second)."""
    ffmpeg = _require("ffmpeg", "ffmpeg")
    if not FONT.exists():
        raise PeerUnavailable(f"{FONT} is missing (Debian package fonts-dejavu-core); {INSTALL_HINT}")
    if width < CODE_BITS * CODE_BLOCK or height < 2 * CODE_BLOCK + 40:
        raise ValueError(f"frames must be at least {CODE_BITS * CODE_BLOCK}x{2 * CODE_BLOCK + 40} for the time code")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"recording-{int(start.timestamp())}-{seconds}s-{fps}fps-{width}x{height}.mp4"
    recording = Recording(path, start, seconds, fps, width, height)
    if path.exists():
        return recording
    epoch = int(start.timestamp())
    filters = [f"drawbox=x=0:y=0:w={CODE_BITS * CODE_BLOCK}:h={CODE_BLOCK}:color=black:t=fill",
               f"drawbox=x=0:y={CODE_BLOCK}:w={CODE_BITS * CODE_BLOCK}:h={CODE_BLOCK}:color=white:t=fill"]
    for i in range(CODE_BITS):
        bit = f"mod(floor(n/{1 << i})\\,2)"
        filters.append(f"drawbox=x={i * CODE_BLOCK}:y=0:w={CODE_BLOCK}:h={CODE_BLOCK}:color=white:t=fill:enable='{bit}'")
        filters.append(f"drawbox=x={i * CODE_BLOCK}:y={CODE_BLOCK}:w={CODE_BLOCK}:h={CODE_BLOCK}:color=black:t=fill:"
                       f"enable='{bit}'")
    filters.append(f"drawtext=fontfile={FONT}:fontsize=28:fontcolor=white:x=10:y={height // 2}:"
                   f"text='%{{pts\\:gmtime\\:{epoch}\\:%H\\\\\\:%M\\\\\\:%S}} UTC'")
    partial = path.with_suffix(".part.mp4")
    command = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"color=c=0x406080:s={width}x{height}:r={fps}:d={seconds}",
        "-vf", ",".join(filters),
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "baseline", "-pix_fmt", "yuv420p",
        "-g", str(fps), "-keyint_min", str(fps), "-sc_threshold", "0", "-bf", "0",
        "-movflags", "+faststart", str(partial),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise PeerUnavailable(f"ffmpeg could not make the recording (needs libx264 and drawtext): {result.stderr[-2000:]}")
    partial.replace(path)
    return recording


# --- gst-rtsp-server ------------------------------------------------------------------------------------


def missing_gstreamer_packages() -> list[str]:
    if not Path(SYSTEM_PYTHON).exists():
        return ["python3", "python3-gst-1.0"]
    result = subprocess.run([SYSTEM_PYTHON, str(SERVER_SCRIPT), "--check"], capture_output=True, text=True, timeout=60)
    for line in result.stdout.splitlines():
        if line.startswith("MISSING "):
            return list(json.loads(line[len("MISSING "):]))
    raise PeerUnavailable(f"the RTSP peer's package check failed: {result.stderr[-2000:]}")


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the test process dies, so no peer outlives a run
    that was killed (the peers do not all notice their standard input closing)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Process:
    """A child process whose standard error goes to a log file (read it with ``log_text``)."""

    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.log_path = folder / f"{name}.log"
        self.proc: subprocess.Popen[str] | None = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, argv: list[str]) -> subprocess.Popen[str]:
        log = self.log_path.open("a")
        try:
            # Standard input stays an open pipe: the gst server also leaves when it closes.
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            log.close()
        return self.proc

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        for stream in (proc.stdin, proc.stdout):
            if stream:
                stream.close()


@dataclass
class RtspServer:
    """gst-rtsp-server in a child process. ``url(server, path)`` gives an address; see the module docstring."""

    recording: Recording
    servers: tuple[dict[str, Any], ...] = DEFAULT_SERVERS
    folder: Path | None = None
    start_timeout_s: float = 30.0
    ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder or tempfile.mkdtemp(prefix="consentcam-rtsp-peer-"))
        self._process = _Process("gst-rtsp-server", self.folder)

    def __enter__(self) -> RtspServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        missing = missing_gstreamer_packages()
        if missing:
            raise PeerUnavailable(f"the RTSP test peer needs Debian packages {', '.join(missing)}; {INSTALL_HINT}")
        config = {"recording": str(self.recording.path), "recording_start": self.recording.start.timestamp(),
                  "recording_seconds": self.recording.seconds,
                  "width": self.recording.width, "height": self.recording.height, "fps": self.recording.fps,
                  "servers": list(self.servers)}
        proc = self._process.start([SYSTEM_PYTHON, str(SERVER_SCRIPT), "--config", json.dumps(config)])
        line = _read_line(proc, self.start_timeout_s)
        if not line.startswith("READY "):
            self.stop()
            raise PeerUnavailable(f"gst-rtsp-server did not start ({line.strip()!r}): {self._process.log_text()[-3000:]}")
        self.ports = json.loads(line[len("READY "):])
        for name, port in self.ports.items():
            if not wait_for_port(port, self.start_timeout_s):
                self.stop()
                raise PeerUnavailable(f"gst-rtsp-server {name!r} does not accept connections on {port}")

    def stop(self) -> None:
        self._process.stop()

    @property
    def running(self) -> bool:
        return self._process.proc is not None and self._process.proc.poll() is None

    def log_text(self) -> str:
        return self._process.log_text()

    def base(self, server: str = "main") -> str:
        return f"rtsp://127.0.0.1:{self.ports[server]}"

    def url(self, server: str = "main", path: str = "/live") -> str:
        return self.base(server) + path

    @property
    def live_url(self) -> str:
        return self.url("main", "/live")

    def recorder_url(self, server: str = "main") -> str:
        """The recorder's address; playback paths (``/Streaming/tracks/101?...``, ...) go after it."""
        return self.base(server)


def _read_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """One line of the child's standard output, or "" when it exits or says nothing in time."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return box[0] if box else ""


# --- rtsp-server-perl: UDP only -------------------------------------------------------------------------


@dataclass
class UdpRelay:
    """rtsp-server-perl with an FFmpeg publisher looping the recording at its real rate onto ``/camera``.

    It relays live: a client joins wherever the loop is. Clients must use UDP; a TCP-interleaved SETUP gets 400.
    """

    recording: Recording
    folder: Path | None = None
    start_timeout_s: float = 30.0
    client_port: int = 0
    source_port: int = 0

    def __post_init__(self) -> None:
        self.folder = Path(self.folder or tempfile.mkdtemp(prefix="consentcam-rtsp-relay-"))
        self._server = _Process("rtsp-server-perl", self.folder)
        self._publisher = _Process("ffmpeg-publisher", self.folder)

    def __enter__(self) -> UdpRelay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.client_port}/camera"

    def log_text(self) -> str:
        return self._server.log_text() + self._publisher.log_text()

    def start(self) -> None:
        _require("rtsp-server-perl", "rtsp-server-perl")
        ffmpeg = _require("ffmpeg", "ffmpeg")
        self.client_port, self.source_port = free_port(), free_port()
        rtp_start = free_udp_range(16)
        # Debian's /usr/bin/rtsp-server-perl in a few lines of Perl, with one quirk worked around: whenever no
        # stream is mounted (as when a readiness check connects and leaves) the server resets its next RTP port
        # to $RTSP::Server::RTP_START_PORT, 20000 whatever --rtp_start_port said, so two of them on one machine
        # collide. Setting that variable keeps each on its own ports.
        script = ("use AnyEvent; use RTSP::Server; $RTSP::Server::RTP_START_PORT = shift @ARGV; "
                  "my $server = RTSP::Server->new_with_options(); $server->listen; my $done = AnyEvent->condvar; "
                  "$SIG{TERM} = $SIG{INT} = sub { $done->send }; $done->recv;")
        self._server.start(["perl", "-e", script, str(rtp_start), "--clientport", str(self.client_port),
                            "--serverport", str(self.source_port), "--client_listen_address", "127.0.0.1",
                            "--source_listen_address", "127.0.0.1", "--rtp_start_port", str(rtp_start), "--loglevel", "2"])
        if not (wait_for_port(self.source_port, self.start_timeout_s) and wait_for_port(self.client_port, 5)):
            self.stop()
            raise PeerUnavailable(f"rtsp-server-perl did not listen: {self.log_text()[-2000:]}")
        self._publisher.start([ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
                               "-i", str(self.recording.path), "-c", "copy", "-f", "rtsp", "-rtsp_transport", "udp",
                               f"rtsp://127.0.0.1:{self.source_port}/camera"])
        if not self._wait_for_mount():
            self.stop()
            raise PeerUnavailable(f"the publisher did not mount /camera on rtsp-server-perl: {self.log_text()[-2000:]}")
        time.sleep(0.5)  # ANNOUNCE mounts before RECORD, which may still fail (e.g. its RTP port is taken)
        publisher = self._publisher.proc
        if publisher is None or publisher.poll() is not None:
            self.stop()
            raise PeerUnavailable(f"the publisher to rtsp-server-perl stopped: {self.log_text()[-2000:]}")

    def _wait_for_mount(self) -> bool:
        """DESCRIBE until the mount answers 200: the publisher has announced it."""
        deadline = time.monotonic() + self.start_timeout_s
        request = f"DESCRIBE {self.url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode()
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.client_port), timeout=2) as conn:
                    conn.sendall(request)
                    if conn.recv(200).startswith(b"RTSP/1.0 200"):
                        return True
            except OSError:
                pass
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        self._publisher.stop()
        self._server.stop()
