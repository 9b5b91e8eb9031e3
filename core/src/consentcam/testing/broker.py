"""NATS for the tests of the scale path (``consentcam.live.broker``).

- ``shared_nats_url()``: the deployment-like server every test may share (``CONSENTCAM_TEST_NATS``, default
  ``nats://127.0.0.1:4222``; ``.ci/run`` starts Debian's ``nats-server`` there when nothing listens). Tests keep out
  of each other's way with a subject prefix of their own.
- ``NatsServer``: a private ``nats-server`` on a free port, for the tests that stop the broker under running
  processes or shrink its ``max_payload``.

Both fail, never skip, when NATS is missing: the scale path is part of the platform.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

from .rtsp_peer import free_port

SHARED_URL = os.environ.get("CONSENTCAM_TEST_NATS", "nats://127.0.0.1:4222")
INSTALL_HINT = "Debian: apt-get install nats-server; .ci/run starts it on 127.0.0.1:4222"


class NatsUnavailable(RuntimeError):
    """NATS is missing or did not start; the message says what to do."""


def _answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """A NATS server greets every new connection with INFO."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            return conn.recv(5).startswith(b"INFO")
    except OSError:
        return False


def shared_nats_url() -> str:
    parsed = urlparse(SHARED_URL)
    if not _answers(parsed.hostname or "127.0.0.1", parsed.port or 4222):
        raise NatsUnavailable(f"NATS is required by this test and does not answer at {SHARED_URL}. Start it ({INSTALL_HINT}) "
                              "or point CONSENTCAM_TEST_NATS at one")
    return SHARED_URL


def subject_prefix() -> str:
    """A prefix of one's own on a shared server."""
    return f"cctest{uuid.uuid4().hex[:10]}"


def nats_server_binary() -> str:
    found = shutil.which("nats-server") or ("/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None)
    if found is None:
        raise NatsUnavailable(f"nats-server is required by this test ({INSTALL_HINT})")
    return found


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no server outlives the run
    except (OSError, AttributeError):
        pass


class NatsServer:
    """A private nats-server on 127.0.0.1; ``stop`` kills it (as a crash would), ``start`` brings it back on the
    same port, so that clients reconnect to the same URL."""

    def __init__(self, folder: Path, *, max_payload: int | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.max_payload = max_payload
        self.log_path = folder / f"nats-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / f"nats-{self.port}.conf"
        config.write_text(f"listen: 127.0.0.1:{self.port}\n"
                          + (f"max_payload: {self.max_payload}\n" if self.max_payload else ""))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([nats_server_binary(), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)  # noqa: PLW1509
        deadline = time.monotonic() + timeout
        while not _answers("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise NatsUnavailable(f"nats-server did not start on port {self.port}:\n{self.log()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
